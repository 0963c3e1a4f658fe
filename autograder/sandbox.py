"""The sandboxed Python kernel that grades untrusted submissions (``make grade``'s default).

nbgrader runs student code as the grading user. The kernelspecs this module writes
(``flowlib-sandbox``, and ``flowlib-sandbox-<name>`` wrapping another kernelspec such as a
CUDA one) start the kernel inside bubblewrap (Debian's ``bubblewrap``: the kernel
namespaces that containers use, without a container engine or daemon) with:

* a user namespace with every capability dropped (``--unshare-user --cap-drop ALL``), also
  when the grader runs as root, and no further user namespaces inside
  (``--disable-userns``): read-only binds cannot be remounted writable;
* no network at all: a new, empty network namespace (not even the host's 127.0.0.1);
* an empty private working folder, ``/tmp/work`` in a size-capped tmpfs that exists only
  inside the sandbox: nbgrader never reads anything back from it; the graded notebook
  returns over the kernel protocol only. Nothing of the machine is mounted but the system
  folders (/usr, /etc, ...), the kernel's Python and flowlib, read-only; no course folder
  (other students' work, the gradebook, the solutions, the autograded notebook with its
  restored hidden tests), no home directory;
* an empty environment (``--clearenv``) but for an allow-list (``ENV_ALLOWED``, plus the keys
  of the wrapped kernelspec's ``env``): the grader's secrets stay outside;
* its own PID, IPC, UTS and session (``--new-session``), and it dies with the grader;
* resource limits set before bubblewrap starts (``resource.setrlimit``, inherited): address
  space (``FLOWLIB_KERNEL_MEMORY_MB``, default 8192; off by default on a GPU machine, where
  CUDA reserves huge address ranges), CPU seconds for the whole notebook
  (``FLOWLIB_KERNEL_CPU_SECONDS``, default 1800), size of any one file written (256 MiB),
  no core dumps;
* ``"interrupt_mode": "message"``: nbgrader's per-cell timeout interrupts the kernel with an
  ``interrupt_request`` message, which the kernel turns into a SIGINT to itself, so a
  timed-out cell costs only that cell (a SIGINT to bubblewrap would kill the sandbox).

The grader talks to the kernel over ZeroMQ IPC sockets (files in the connection file's
folder, which is bound into the sandbox) instead of TCP, which a kernel without a network
could not serve: grade.py passes ``--KernelManager.transport=ipc`` and gives each student
its own runtime folder, so one student's kernel never sees another's sockets or keys.

    python autograder/sandbox.py install [KERNELSPEC]  # register flowlib-sandbox[-KERNELSPEC]
    python autograder/sandbox.py --mount DIR ... -- KERNEL_ARGV...   # what the kernelspec runs
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

KERNEL_NAME = "flowlib-sandbox"
WORKDIR = "/tmp/work"  # the kernel's cwd, inside the sandbox's private tmpfs
TMPFS_MB = 512  # size of that tmpfs (the kernel's /tmp)
FILE_SIZE_MB = 256  # largest file the kernel may write (RLIMIT_FSIZE)
# What the kernel's environment may contain (everything else is cleared). PATH, HOME and
# MPLCONFIGDIR are set by the sandbox itself.
PYTHON = os.path.normpath(os.path.abspath(sys.executable))  # no "..": the path must exist inside
ENV_ALLOWED = (
    "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TERM",
    "FLOWLIB_DEVICE", "FLOWLIB_SEED", "FLOWLIB_PROGRESS", "NBGRADER_EXECUTION", "PYTHONHASHSEED",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
)
_PROBE = ("import importlib.util, json, sys; s = importlib.util.find_spec('flowlib'); "
          "print(json.dumps([sys.prefix, sys.base_prefix, s.origin if s else None]))")


def bwrap() -> str:
    """Path of bubblewrap, or SystemExit saying how to get it."""
    path = shutil.which("bwrap")
    if path is None:
        raise SystemExit("the sandboxed kernel needs bubblewrap (`apt-get install bubblewrap`), "
                         "or grade without it: `make grade SANDBOX=0` / `grade.py --no-sandbox` "
                         "(student code then runs as you, unconfined): `bwrap` was not found on PATH")
    return path


def check() -> None:
    """Fail once, with the reason, when bubblewrap cannot make the sandbox on this machine
    (e.g. user namespaces disabled), rather than once per student."""
    probe = [bwrap(), "--unshare-user", "--cap-drop", "ALL", "--disable-userns", "--unshare-net",
             *_system_mounts(), "--proc", "/proc", "--dev", "/dev", "true"]
    proc = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"bubblewrap cannot create the grading sandbox here ({proc.stderr.strip()}); "
                         "user namespaces must be enabled (sysctl kernel.unprivileged_userns_clone=1, "
                         "user.max_user_namespaces > 0), or grade with SANDBOX=0 at your own risk")


class NoSuchBaseKernel(LookupError):
    """The kernelspec to wrap does not exist."""


def kernel_name(base: str | None = None) -> str:
    return KERNEL_NAME if not base else f"{KERNEL_NAME}-{base}"


def kernelspec_dir(name: str = KERNEL_NAME, prefix: str = sys.prefix) -> Path:
    return Path(prefix) / "share" / "jupyter" / "kernels" / name


def _base_kernel(base: str | None) -> tuple[list[str], dict[str, str]]:
    """argv and env of the kernel to wrap: this environment's own ipykernel, or a named
    kernelspec (its ``python`` resolved as Jupyter does)."""
    if not base:
        return [PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"], {}
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(base)
    except NoSuchKernel:
        raise NoSuchBaseKernel(f"No such kernel named {base} (see `jupyter kernelspec list`)") from None
    argv = list(spec.argv)
    if argv and argv[0] in {"python", f"python{sys.version_info[0]}", "python%i.%i" % sys.version_info[:2]}:
        argv[0] = PYTHON
    elif argv and not os.path.isabs(argv[0]):
        argv[0] = shutil.which(argv[0]) or argv[0]
    argv[0] = os.path.normpath(argv[0])
    if "{connection_file}" not in argv:
        raise SystemExit(f"kernelspec {base} does not take a {{connection_file}} argument: cannot wrap it")
    return argv, dict(spec.env or {})


def _mounts_for(python: str) -> list[str]:
    """What the kernel's interpreter needs, read-only: its environment, the interpreter it
    links to, and flowlib (an editable install lives outside the environment)."""
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True).stdout
        prefix, base_prefix, flowlib = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
        raise SystemExit(f"cannot sandbox the kernel {python}: asking it for its folders failed ({err})") from None
    needed = {str(Path(prefix).resolve()), str(Path(base_prefix).resolve())}
    if flowlib:
        needed.add(str(Path(flowlib).resolve().parent))
    return sorted(needed)


def install(base: str | None = None, prefix: str = sys.prefix) -> str:
    """Write the sandbox kernelspec (wrapping ``base``, or this environment's ipykernel)
    into this environment; idempotent. Returns its name. A ``base`` that does not exist
    raises NoSuchBaseKernel and removes a sandbox kernelspec left for it by an earlier run."""
    try:
        argv, env = _base_kernel(base)
    except NoSuchBaseKernel:
        shutil.rmtree(kernelspec_dir(kernel_name(base), prefix), ignore_errors=True)
        raise
    mounts = _mounts_for(argv[0])
    name = kernel_name(base)
    wrapper = [sys.executable, str(Path(__file__).resolve())]
    for path in mounts:
        wrapper += ["--mount", path]
    for key in env:
        wrapper += ["--env", key]
    spec = {
        "argv": [*wrapper, "--", *argv],
        "display_name": f"{base or 'Python 3'} (grading sandbox)",
        "language": "python",
        "interrupt_mode": "message",
        "env": env,
        "metadata": {"debugger": False},
    }
    folder = kernelspec_dir(name, prefix)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"kernel.json.{os.getpid()}"
    tmp.write_text(json.dumps(spec, indent=1) + "\n")
    tmp.replace(folder / "kernel.json")  # atomic: graders running at once never read half a file
    return name


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
    return args


def _gpu_devices() -> list[Path]:
    return sorted(Path("/dev").glob("nvidia*"))


def kernel_env(environ: dict[str, str], extra_keys: list[str] = (), python: str = PYTHON) -> dict[str, str]:
    """The kernel's whole environment: the allow-list's variables that are set, and the
    wrapped kernelspec's own keys."""
    env = {k: environ[k] for k in (*ENV_ALLOWED, *extra_keys) if k in environ}
    env.update(PATH=f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin", HOME="/tmp",
               MPLCONFIGDIR="/tmp/matplotlib")
    return env


def command(connection_file: str | None, socket_dir: str, kernel_argv: list[str], mounts: list[str],
            env: dict[str, str]) -> list[str]:
    """The bubblewrap command line that runs ``kernel_argv``. Mounted: the system folders
    and ``mounts`` read-only, the connection file read-only, the socket folder writable,
    a private tmpfs at /tmp with the empty working folder; nothing else."""
    cmd = [bwrap(), "--unshare-user", "--cap-drop", "ALL", "--disable-userns",
           "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--new-session", "--die-with-parent", *_system_mounts(), "--dev", "/dev", "--proc", "/proc"]
    for device in _gpu_devices():  # a GPU grader's kernel keeps its GPU
        cmd += ["--dev-bind", str(device), str(device)]
    cmd += ["--size", str(TMPFS_MB * 2**20), "--tmpfs", "/tmp", "--dir", WORKDIR]
    for path in mounts:
        cmd += ["--ro-bind", path, path]
    cmd += ["--bind", socket_dir, socket_dir]
    if connection_file is not None:
        connection_file = str(Path(connection_file).resolve())
        cmd += ["--ro-bind", connection_file, connection_file]
    cmd += ["--clearenv"]
    for key, value in sorted(env.items()):
        cmd += ["--setenv", key, value]
    # in its own PID namespace the kernel's parent is PID 1, which ipykernel would read as
    # "the grader has exited": JPY_PARENT_PID is not passed; --die-with-parent does that job
    cmd += ["--chdir", WORKDIR, *kernel_argv]
    return cmd


def _limit(kind: int, value: int) -> None:
    soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))


def set_limits(environ: dict[str, str]) -> None:
    """rlimits for the kernel (inherited through bubblewrap): memory, CPU time, file size."""
    memory_default = "0" if _gpu_devices() else "8192"
    memory_mb = int(environ.get("FLOWLIB_KERNEL_MEMORY_MB", memory_default))
    if memory_mb > 0:
        _limit(resource.RLIMIT_AS, memory_mb * 2**20)
    cpu = int(environ.get("FLOWLIB_KERNEL_CPU_SECONDS", "1800"))
    if cpu > 0:
        _limit(resource.RLIMIT_CPU, cpu)
    _limit(resource.RLIMIT_FSIZE, FILE_SIZE_MB * 2**20)
    _limit(resource.RLIMIT_CORE, 0)


def _parse(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    mounts, env_keys = [], []
    args = list(argv)
    while args and args[0] != "--":
        flag = args.pop(0)
        if flag not in ("--mount", "--env") or not args:
            raise SystemExit(__doc__)
        (mounts if flag == "--mount" else env_keys).append(args.pop(0))
    if not args:
        raise SystemExit(__doc__)
    return mounts, env_keys, args[1:]


def launch(argv: list[str]) -> None:
    mounts, env_keys, kernel_argv = _parse(argv)
    if "-f" not in kernel_argv[:-1]:
        raise SystemExit(f"{KERNEL_NAME}: the kernel command has no `-f CONNECTION_FILE`: {kernel_argv}")
    connection_file = kernel_argv[kernel_argv.index("-f") + 1]
    info = json.loads(Path(connection_file).read_text())
    if info.get("transport") != "ipc":
        raise SystemExit(f"{KERNEL_NAME}: the kernel has no network, so the grader must use IPC sockets "
                         "(--KernelManager.transport=ipc; grade.py sets it); "
                         f"the connection file asks for {info.get('transport')!r}")
    socket_prefix = Path(info.get("ip", ""))
    if not socket_prefix.is_absolute() or not socket_prefix.parent.is_dir():
        raise SystemExit(f"{KERNEL_NAME}: the IPC socket prefix must be an absolute path in an existing folder "
                         f"of this kernel's own (--KernelManager.ip=/dir/kernel-ipc); got {info.get('ip')!r}")
    env = kernel_env(dict(os.environ), env_keys, kernel_argv[0])
    cmd = command(connection_file, str(socket_prefix.parent.resolve()), kernel_argv, mounts, env)
    set_limits(dict(os.environ))
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "install":
        print(install(sys.argv[2] if len(sys.argv) > 2 else None))
    else:
        launch(sys.argv[1:])
