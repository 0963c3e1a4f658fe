"""`make margins`: every outcome assertion's threshold against its spread over seeds and
threads and against a named weaker model -> bench/outcome-margins.md.

The experiments are the registry of tests/outcomes.py (the tests call the same functions at
their own seed). For each experiment this runs the reference at MARGIN_SEEDS with 1 and
with 2 torch threads (another thread count takes another floating-point path) and the
weaker model at the same seeds, and for each check reports the reference's min / median /
max, the weaker model's, and the margin: how far the reference's worst run is from the
threshold, as a fraction of the distance from that worst run to the weaker model's best.
tests/test_outcomes.py asserts from the committed table that every registered check has a
row, that every margin is at least 25% and that the weaker model misses on every seed.

Run: `python bench/margins.py [--only NAME ...] [--seeds 0 1 2] [--out PATH]`.
"""
from __future__ import annotations

import argparse
import fcntl
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("FLOWLIB_PROGRESS", "0")

import torch  # noqa: E402

import outcomes  # noqa: E402

OUT = HERE / "outcome-margins.md"
VALUES = HERE / "outcome-margins.json"  # the measured values behind the table (--recompute reuses them)


def measure(exp, seeds, threads) -> tuple[dict[str, list[float]], dict[str, list[float]], float]:
    ref: dict[str, list[float]] = {c.stat: [] for c in exp.checks}
    weak: dict[str, list[float]] = {c.stat: [] for c in exp.checks}
    start = time.perf_counter()
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for seed in seeds:
            stats = exp.run(seed)
            for c in exp.checks:
                ref[c.stat].append(float(stats[c.stat]))
    torch.set_num_threads(1)
    for variant in dict.fromkeys(exp.weaker_of(c)[1] for c in exp.checks):
        for seed in seeds:
            stats = exp.run(seed, weaker=variant)
            for c in exp.checks:
                if exp.weaker_of(c)[1] == variant:
                    weak[c.stat].append(float(stats[c.stat]))
    return ref, weak, time.perf_counter() - start


def fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def row(exp, check, ref, weak) -> str:
    m, misses = outcomes.margin(check, ref, weak)
    spread = lambda vs: f"{fmt(min(vs))} / {fmt(statistics.median(vs))} / {fmt(max(vs))}"  # noqa: E731
    what, weaker = check.what.replace("|", "\\|"), exp.weaker_of(check)[0].replace("|", "\\|")
    return (f"| `{exp.name}` | {exp.where} | {what} | {check.stat} {check.op} {check.threshold:g} | "
            f"{spread(ref)} | {weaker}: {spread(weak)} | {m:.2f} | {'yes' if misses else 'NO'} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="experiment names (default: all)")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(outcomes.MARGIN_SEEDS))
    parser.add_argument("--threads", type=int, nargs="*", default=list(outcomes.THREADS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--recompute", action="store_true",
                        help="rewrite the table from the values in bench/outcome-margins.json (after a threshold "
                             "changed) instead of measuring again; an experiment without stored values is measured")
    args = parser.parse_args(argv)
    registry = outcomes.load_all()
    names = args.only or sorted(registry)
    lines, total = [], time.perf_counter()
    worst = []
    stored = json.loads(VALUES.read_text()) if VALUES.is_file() else {}
    for name in names:
        exp = registry[name]
        old = stored.get(name, {})
        if args.recompute and all(c.stat in old for c in exp.checks):
            ref, weak, secs = {s: v["ref"] for s, v in old.items()}, {s: v["weak"] for s, v in old.items()}, 0.0
        else:
            ref, weak, secs = measure(exp, args.seeds, args.threads)
            stored[name] = {c.stat: {"ref": ref[c.stat], "weak": weak[c.stat]} for c in exp.checks}
            if args.only:
                stored.setdefault("_remeasured", {})[name] = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        for check in exp.checks:
            lines.append(row(exp, check, ref[check.stat], weak[check.stat]))
            worst.append((outcomes.margin(check, ref[check.stat], weak[check.stat])[0], name, check.stat))
        print(f"{name}: {secs:.1f} s", *lines[-len(exp.checks):], sep="\n", flush=True)
    elapsed = time.perf_counter() - total
    # Several `--only` runs may measure at once (one per assignment being written): the stored
    # values and the table are re-read and merged under a lock, so no run drops another's rows.
    lock = open(VALUES.with_suffix(".lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    measured = {n: stored[n] for n in names if n in stored}
    remeasured = stored.get("_remeasured", {})
    stored = json.loads(VALUES.read_text()) if VALUES.is_file() else {}
    stored.update(measured)
    if args.only:
        stored.setdefault("_remeasured", {}).update({n: w for n, w in remeasured.items() if n in names})
    meta = stored.get("_meta", {})
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    if not args.recompute and not args.only:
        meta = {"when": now, "seconds": round(elapsed)}
        stored["_meta"] = meta
    when, secs = meta.get("when", "?"), meta.get("seconds", round(elapsed))
    if args.only:  # the worst margins of the whole table, from the stored values
        worst = [(outcomes.margin(c, stored[n][c.stat]["ref"], stored[n][c.stat]["weak"])[0], n, c.stat)
                 for n, e in registry.items() if n in stored for c in e.checks if c.stat in stored[n]]
    worst.sort()
    header = [
        "# Outcome assertions: thresholds, spread over seeds and threads, weaker models",
        "",
        "Written by `make margins` (`bench/margins.py`); do not edit by hand. Each row is one check of an",
        "experiment registered in `tests/outcomes.py`. *Reference* is the reference implementation's",
        f"value at seeds {args.seeds} with {' and '.join(map(str, args.threads))} torch threads (min / median / max);",
        "*weaker* is the named weaker model at the same seeds (1 thread). *Margin* is the distance from",
        "the reference's worst run to the threshold as a fraction of the distance from that worst run",
        "to the weaker model's best; `tests/test_outcomes.py` requires at least "
        f"{outcomes.MIN_MARGIN:.2f} and the weaker model missing the threshold on every seed.",
        "",
        f"Measured {when} on {platform.machine()} ({os.cpu_count()} cores, "
        f"torch {torch.__version__}, {platform.processor() or 'cpu'}), {secs} s in all"
        + (" (thresholds since re-set from the stored values with `--recompute`)." if args.recompute else "."),
        f"Worst margins: " + ", ".join(f"`{n}`.{s} {m:.2f}" for m, n, s in worst[:3]) + ".",
        "",
        "| experiment | where | what | threshold | reference min / median / max | weaker model: min / median / max | margin | weaker misses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if args.only and args.out.is_file():  # keep the rows of the experiments not re-measured
        import re

        kept = [ln for ln in args.out.read_text().splitlines()
                if (m := re.match(r"\| `([^`]+)` \|", ln)) and m.group(1) not in names]
        lines = sorted(kept + lines)
    if not args.only and not args.recompute:  # a full measurement: every row is from this run
        stored.pop("_remeasured", None)
    later = stored.get("_remeasured", {})
    if later:
        header[9] += " Re-measured later (`--only`): " + ", ".join(f"{n} ({w})" for n, w in sorted(later.items())) + "."
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out == OUT:
        # A full run drops experiments that no longer exist; an --only run keeps every other row
        # (another run may have measured an experiment this process did not import).
        keep = (lambda k: True) if args.only else (lambda k: k in registry or k.startswith("_"))
        VALUES.write_text(json.dumps({k: stored[k] for k in sorted(stored) if keep(k)}, indent=1) + "\n")
    args.out.write_text("\n".join(header + lines) + "\n")
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    print(f"wrote {args.out} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
