"""Start the student's JupyterLab: `make lab` and tests/test_lab.py both run this file.

    python autograder/student_lab/lab.py [--root DIR] [--exchange DIR] [jupyter lab options]

Binds to 127.0.0.1 and serves DIR (default: the repository's notebooks/). nbgrader's student
extensions (assignment list, validate) are on and its instructor ones (formgrader, create
assignment, course list) are off, server and frontend alike, through the config in this
folder, which JUPYTER_CONFIG_PATH puts ahead of the user's and the environment's config
without changing either. News and update checks are off: the lab makes no request to the
internet. The local exchange (--exchange, default autograder/student_lab/exchange, git-ignored)
receives a copy of every released assignment under DIR at each start (an exchange named with
--exchange, e.g. the instructor's, keeps what is published there) and has the inbound and
feedback folders, so Submit hands a notebook in and Fetch Feedback gets the feedback page
(`make collect` / `make feedback` with EXCHANGE= the same folder).

The course website: the lab serves the built site (--site, default _build/html; `make book`
builds it) read-only at /course-site/, and shows the notebooks' chapter links
(../../book/<chapter>.md, which resolve on the website but lie outside the lab's root)
pointing there, or at the published site when `html.baseurl` in _config.yml is set
(course_site.py in this folder does both; the files on disk keep the relative links).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COURSE_ID = "flows-and-scores"  # the same as in autograder/nbgrader_config.py


def fill_exchange(root: Path, exchange: Path, replace: bool = True) -> list[str]:
    """Copy each assignment root/<asg>/<asg>.ipynb to exchange/<course>/outbound/<asg>/ (with
    ``replace=False``, only those not published there yet: an instructor's exchange keeps its
    release), and make the inbound and feedback folders nbgrader's Submit and Fetch Feedback
    need, with nbgrader's permissions (inbound: students may write, not list)."""
    course = exchange / COURSE_ID
    outbound = course / "outbound"
    released = sorted(p.name for p in root.iterdir() if (p / f"{p.name}.ipynb").is_file())
    if not released:
        raise SystemExit(f"lab.py: no assignment folders <asg>/<asg>.ipynb in {root}")
    outbound.mkdir(parents=True, exist_ok=True)
    for asg in released:
        dest = outbound / asg
        if dest.exists():
            if not replace:
                continue
            shutil.rmtree(dest)
        shutil.copytree(root / asg, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name, mode in (("inbound", 0o2733), ("feedback", 0o711)):
        if not (course / name).is_dir():
            (course / name).mkdir()
            os.chmod(course / name, mode)
    return released


# `python -m jupyterlab` with this folder on sys.path (for course_site, which the server config
# in this folder loads), without PYTHONPATH, which the kernels would inherit.
LAUNCH = (f"import sys; sys.path.insert(0, {str(HERE)!r}); "
          "from jupyterlab.labapp import main; sys.exit(main())")


def published_site() -> str:
    """`html.baseurl` of _config.yml: the published website, or "" (then the lab's copy)."""
    import yaml

    config = yaml.safe_load((REPO / "_config.yml").read_text()) or {}
    return str((config.get("html") or {}).get("baseurl") or "").strip()


def command(root: Path, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-c", LAUNCH, "--ip=127.0.0.1", "--no-browser",
           f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd + extra


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Start the student's JupyterLab (what `make lab` runs).",
        epilog="Any other option goes to `jupyter lab`, e.g. --port=8890.")
    parser.add_argument("--root", type=Path, default=REPO / "notebooks",
                        help="folder with the student notebooks (default: notebooks/)")
    parser.add_argument("--site", type=Path, default=REPO / "_build" / "html",
                        help="the built course website to serve at /course-site/ (default: _build/html)")
    parser.add_argument("--exchange", type=Path, default=HERE / "exchange",
                        help="local nbgrader exchange (default: autograder/student_lab/exchange)")
    args, extra = parser.parse_known_args(argv)
    root, exchange = args.root.resolve(), args.exchange.resolve()
    if not root.is_dir():
        raise SystemExit(f"lab.py: --root {root} is not a folder")
    fill_exchange(root, exchange, replace=args.exchange.resolve() == (HERE / "exchange").resolve())

    env = dict(os.environ)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
        [str(HERE)] + ([env["JUPYTER_CONFIG_PATH"]] if env.get("JUPYTER_CONFIG_PATH") else []))
    env["FLOWLIB_LAB_EXCHANGE"] = str(exchange)
    env["FLOWLIB_SITE_DIR"] = str(args.site.resolve())
    env["FLOWLIB_SITE_URL"] = published_site()
    if not (args.site / "index.html").is_file() and not env["FLOWLIB_SITE_URL"]:
        print(f"lab.py: the course website is not built ({args.site}); chapter links need `make book`",
              file=sys.stderr)
    # nbgrader's extensions read nbgrader_config.py from the working folder too: serve from root.
    os.chdir(root)
    cmd = command(root, extra)
    os.execve(cmd[0], cmd, env)  # same process: a signal to it reaches the server


if __name__ == "__main__":
    main()
