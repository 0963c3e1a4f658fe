"""A throwaway local PostgreSQL server for parallel grading on one machine.

Used by the tests and bench/grading_throughput.py, and usable by hand:

    python autograder/local_postgres.py start   # prints the URL to pass as DB=...
    python autograder/local_postgres.py stop

The server listens on 127.0.0.1 only, trusts local connections (it holds nothing but a
gradebook), and keeps its files in a temporary folder. It needs Debian's `postgresql`
package (or any PostgreSQL with `initdb` and `pg_ctl`). PostgreSQL refuses to run as
root, so as root the server runs as the `postgres` user.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

STATE = Path(tempfile.gettempdir()) / "flowlib-local-postgres.txt"


def bindir() -> Path | None:
    """Folder with initdb, pg_ctl and createdb (Debian's versioned folder first), or None
    when PostgreSQL is not installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    found = shutil.which("initdb")
    for path in [Path(c) for c in reversed(candidates)] + ([Path(found)] if found else []):
        if all((path.parent / tool).exists() for tool in ("pg_ctl", "createdb")):
            return path.parent
    return None


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """``with LocalPostgres() as url:`` gives a SQLAlchemy URL of a fresh, empty database."""

    def __init__(self, db: str = "gradebook"):
        self.bin = bindir()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found; on Debian: "
                                    "apt-get install postgresql")
        self.db, self.port, self.root = db, _free_port(), Path(tempfile.mkdtemp(prefix="flowlib-pg-"))
        self.data = self.root / "data"

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run(_as_server_user([str(self.bin / cmd[0]), *cmd[1:]]), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "grader")
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.root / "server.log"), "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "grader", self.db)
        return self.url

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://grader@127.0.0.1:{self.port}/{self.db}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(action: str) -> None:
    if action == "start":
        server = LocalPostgres()
        print(server.start())
        STATE.write_text(f"{server.root}\n{server.bin}\n")
    elif action == "stop":
        root, bin_ = STATE.read_text().split()
        server = LocalPostgres.__new__(LocalPostgres)
        server.root, server.data, server.bin = Path(root), Path(root) / "data", Path(bin_)
        server.stop()
        STATE.unlink()
    else:
        raise SystemExit("usage: local_postgres.py start|stop")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
