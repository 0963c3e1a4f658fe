"""`make bench`: every side-by-side comparison, each in its own process, in one report.

Sections (one subprocess each, so thread settings and memory never leak between them):

1. bench/ring_kl.py        KL to the ring of 8 Gaussians after a wall-clock budget, and after a
                           fixed number of steps (flowlib vs zuko; MAF, RealNVP, NSF)
2. bench/throughput.py     log_prob / sample time ratios flowlib / zuko, 2-D and 8-D
3. bench/ode_likelihood.py ODE log-likelihood error against NFE (flowlib RK4, scipy RK45)
4. bench/course_costs.py   make book cold and warm, autograde time per assignment, grading throughput

The report (header: date, cores, load, library versions, mode) is printed and written to
``bench/results.md`` (full run, committed) or, with ``--quick``, to
``_build/bench/results-quick.md``: quick runs (tiny budgets, used by the test suite) must
never overwrite the committed full results, and _build/ is ignored by git.

Run: `python bench/run.py [--quick] [--out PATH]` (what `make bench [QUICK=1]` calls).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from bench_common import markdown

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FULL_OUT = HERE / "results.md"
QUICK_OUT = REPO / "_build" / "bench" / "results-quick.md"

# name -> (script, full arguments, quick arguments)
SECTIONS = {
    "ring_kl": ("ring_kl.py", ["--seconds", "60", "--threads", "2"], ["--seconds", "1.5", "--threads", "2"]),
    "ring_kl_steps": ("ring_kl.py", ["--steps", "3000", "--threads", "2"], ["--steps", "20", "--threads", "2"]),
    "throughput": ("throughput.py", ["--batch", "10000", "--repeats", "15", "--threads", "2"],
                   ["--batch", "2000", "--repeats", "2", "--threads", "2"]),
    "ode_likelihood": ("ode_likelihood.py", ["--points", "64"], ["--points", "16", "--quick"]),
    "course_costs": ("course_costs.py", [], ["--quick"]),
}


def versions() -> str:
    out = [f"python {platform.python_version()}"]
    for pkg in ("torch", "zuko", "flowlib", "scipy", "jupyter-book", "nbgrader"):
        try:
            out.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def commit() -> str:
    try:
        proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if proc.returncode != 0:
        return "unknown"
    return proc.stdout.strip() + (" (working tree has uncommitted changes)" if dirty.stdout.strip() else "")


def load() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def run_section(name: str, quick: bool, tmp: Path) -> tuple[dict | None, float, str]:
    script, full, fast = SECTIONS[name]
    out = tmp / f"{name}.json"
    cmd = [sys.executable, str(HERE / script), *(fast if quick else full), "--json", str(out)]
    print(f"== {name}: {' '.join(cmd[1:-2])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO)  # output streams to the terminal
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        return None, seconds, f"exit status {proc.returncode}"
    return json.loads(out.read_text()), seconds, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (about a minute); writes the quick path")
    parser.add_argument("--out", type=Path, help=f"report path (default {FULL_OUT.relative_to(REPO)}, "
                                                 f"or {QUICK_OUT.relative_to(REPO)} with --quick)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    args = parser.parse_args()
    out = args.out or (QUICK_OUT if args.quick else FULL_OUT)
    names = args.only or list(SECTIONS)

    started = _dt.datetime.now().astimezone()
    load_start = load()
    blocks, failed, timings = [], [], []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name in names:
            load_before = load().split(" / ")[0]
            section, seconds, error = run_section(name, args.quick, Path(tmp))
            timings.append(f"{name} {seconds:.0f} s (1-min load {load_before} at its start)")
            if section is None:
                failed.append(name)
                blocks.append(f"## {name}\n\nFAILED ({error}); see the console output of `make bench`.\n")
            else:
                blocks.append(markdown(section))
    total = time.perf_counter() - t0

    header = [
        "# flowlib benchmarks",
        "",
        f"- mode: {'QUICK (tiny budgets: a smoke test, not a measurement)' if args.quick else 'full'}",
        f"- date: {started.isoformat(timespec='seconds')}",
        f"- cores: {os.cpu_count()}",
        f"- load average (1/5/15 min): {load_start} at start, {load()} at end",
        f"- versions: {versions()}",
        f"- commit: {commit()}",
        f"- sections (wall clock): {', '.join(timings)}; total {total:.0f} s",
        "",
        "Generated by `make bench` (bench/run.py); every number below comes from this run.",
        "",
    ]
    report = "\n".join(header) + "\n" + "\n".join(blocks)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print("\n" + report)
    print(f"written to {out}")
    if failed:
        print(f"FAILED sections: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
