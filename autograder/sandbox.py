"""A sandboxed Python kernel for grading untrusted submissions (`make grade SANDBOX=1`).

nbgrader runs student code as the grading user. This kernelspec, ``flowlib-sandbox``,
starts the same Python kernel inside bubblewrap (Debian's ``bubblewrap``; the same kernel
namespaces a container engine uses, without needing one) with:

* no network at all: a new, empty network namespace (not even the host's 127.0.0.1);
* only the submission's folder mounted, writable (the kernel's working directory), plus
  what a Python kernel needs, read-only: the system folders (/usr, /etc, ...), the
  kernel's Python and flowlib. Nothing else of the machine is there: no course folder
  (other students' work, the gradebook, the solutions), no home directory; /tmp is private;
* its own PID and IPC namespaces, and it dies with the grader.

The grader talks to the kernel over ZeroMQ IPC sockets (files in the connection file's
folder, which is bound into the sandbox) instead of TCP, which a kernel without a network
could not serve: grade.py passes ``--KernelManager.transport=ipc`` and gives each student
its own runtime folder, so one student's kernel never sees another's sockets or keys.

    python autograder/sandbox.py install      # register the kernelspec in this environment
    python autograder/sandbox.py {connection_file}   # what the kernelspec runs
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

KERNEL_NAME = "flowlib-sandbox"


def bwrap() -> str:
    """Path of bubblewrap, or SystemExit saying how to get it."""
    path = shutil.which("bwrap")
    if path is None:
        raise SystemExit("the sandboxed kernel needs bubblewrap (`apt-get install bubblewrap`): "
                         "`bwrap` was not found on PATH")
    return path


def kernelspec_dir(prefix: str = sys.prefix) -> Path:
    return Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME


def install(prefix: str = sys.prefix) -> Path:
    """Write the kernelspec into this environment (idempotent); returns its folder."""
    folder = kernelspec_dir(prefix)
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, str(Path(__file__).resolve()), "{connection_file}"],
        "display_name": "Python 3 (sandbox: no network, read-only files)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    return folder


def _system_mounts() -> list[str]:
    """Read-only system folders (programs, libraries, fonts, /etc for the loader's and
    matplotlib's configuration); merged-/usr links such as /lib -> usr/lib stay links."""
    args = []
    for name in ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "sys"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for device in sorted(Path("/dev").glob("nvidia*")):  # a GPU grader's kernel keeps its GPU
        args += ["--dev-bind", str(device), str(device)]
    return args


def command(connection_file: str, socket_dir: str, workdir: str) -> list[str]:
    """The bubblewrap command line that runs the kernel. Nothing of the machine is mounted
    but the system folders, the kernel's Python and flowlib (read-only), the submission's
    folder and the socket folder (writable) and the connection file (read-only)."""
    connection_file = str(Path(connection_file).resolve())
    cmd = [bwrap(), *_system_mounts(), "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
           "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
    # the kernel's Python (a venv and the interpreter it links to) and flowlib
    needed = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    spec = importlib.util.find_spec("flowlib")
    if spec is not None and spec.origin:
        needed.add(Path(spec.origin).resolve().parent)
    for path in sorted(needed):
        cmd += ["--ro-bind", str(path), str(path)]
    cmd += ["--bind", workdir, workdir, "--bind", socket_dir, socket_dir,
            "--ro-bind", connection_file, connection_file,
            # in its own PID namespace the kernel's parent is PID 1, which ipykernel would read
            # as "the grader has exited": --die-with-parent does that job instead
            "--unsetenv", "JPY_PARENT_PID",
            "--setenv", "HOME", "/tmp", "--setenv", "MPLCONFIGDIR", "/tmp/matplotlib",
            "--chdir", workdir,
            sys.executable, "-m", "ipykernel_launcher", "-f", connection_file]
    return cmd


def launch(connection_file: str) -> None:
    info = json.loads(Path(connection_file).read_text())
    if info.get("transport") != "ipc":
        raise SystemExit(f"{KERNEL_NAME}: the kernel has no network, so the grader must use IPC sockets "
                         "(--KernelManager.transport=ipc; grade.py --sandbox sets it); "
                         f"the connection file asks for {info.get('transport')!r}")
    socket_prefix = Path(info.get("ip", ""))
    if not socket_prefix.is_absolute() or not socket_prefix.parent.is_dir():
        raise SystemExit(f"{KERNEL_NAME}: the IPC socket prefix must be an absolute path in an existing folder "
                         f"of this kernel's own (--KernelManager.ip=/dir/kernel-ipc); got {info.get('ip')!r}")
    cmd = command(connection_file, str(socket_prefix.parent.resolve()), os.getcwd())
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    if sys.argv[1] == "install":
        print(install())
    else:
        launch(sys.argv[1])
