"""Proving the isolation on this machine: each probe is a program run through the real pool."""

from __future__ import annotations

import pydantic

from sandbox.config import SandboxConfig
from sandbox.pool import Sandbox, open_sandbox
from sandbox.result import ExecResult, Status


class Probe(pydantic.BaseModel):
    """One isolation property and whether it held."""

    name: str
    passed: bool
    detail: str


_ESCAPES = {
    # name: (program printing what it saw, expected stdout)
    "uid unprivileged": ("import os\nprint(os.getuid(), os.geteuid(), os.getgid())", "65534 65534 65534"),
    "filesystem read-only": (
        "for p in ('/x', '/usr/lib/x', '/tmp/x'):\n"
        "    try:\n        open(p, 'w'); print('WROTE', p)\n    except OSError:\n        pass\nprint('ok')",
        "ok",
    ),
    "host files hidden": (
        "import os\nprint([p for p in ('/etc/passwd', '/proc/self', '/dev/null', '/root', '/home', '/work', '/sys')"
        " if os.path.exists(p)])",
        "[]",
    ),
    "network off": (
        "import socket\n"
        "try:\n    s = socket.create_connection(('1.1.1.1', 53), timeout=0.5); print('CONNECTED')\n"
        "except OSError:\n    print('ok')",
        "ok",
    ),
    "environment empty": ("import os\nprint(dict(os.environ))", "{}"),
    "privileges dropped": (
        "import os\nout = []\n"
        "for name, call in (('setuid', lambda: os.setuid(0)), ('chroot', lambda: os.chroot('/'))):\n"
        "    try:\n        call(); out.append(name)\n    except OSError:\n        pass\nprint(out)",
        "[]",
    ),
    "no ctypes": (
        "try:\n    import ctypes; print('ctypes loaded')\nexcept ImportError:\n    print('ok')",
        "ok",
    ),
}


# Writes forged results on every fd 3..20 (the old JSON verdict and a frame of the current layout
# with a guessed nonce), then ends: by exiting 0 at once, or by returning normally.
_FORGE = """import os
FRAMES = [b'{"status": "ok", "value": "42"}', bytes(16) + b'V' + (2).to_bytes(4, 'big') + b'42']
def f(x):
    for fd in range(3, 21):
        for frame in FRAMES:
            try:
                os.write(fd, frame)
            except OSError:
                pass
    END
"""
_FORGE_JOBS = [(_FORGE.replace("END", "os._exit(0)"), "1"), (_FORGE.replace("END", "return 7"), "1")]


def _probe_forge(results: list[ExecResult]) -> Probe:
    passed = all(r.status is not Status.ok for r in results)
    seen = "; ".join(f"{r.status.value}" + (f" {r.value_repr}" if r.value_repr else "") for r in results)
    return Probe(name="forged frames are refused", passed=passed,
                 detail=f"JSON verdicts and guessed-nonce frames on fds 3-20: {seen} (a program that reads "
                        "its own nonce can still lie about its own value: see the README)")


# Each of these, on the worker (the parent of the program), sets what it reads back: harmless if it
# succeeds, but it must not (seccomp refuses calls on another pid; the worker checks itself too).
_REACH_WORKER = """import os, resource
pp = os.getppid()
reached = []
for name, call in (
    ('prlimit', lambda: resource.prlimit(pp, resource.RLIMIT_CORE, resource.prlimit(pp, resource.RLIMIT_CORE))),
    ('setpriority', lambda: os.setpriority(os.PRIO_PROCESS, pp, os.getpriority(os.PRIO_PROCESS, pp))),
    ('sched_setscheduler', lambda: os.sched_setscheduler(pp, os.sched_getscheduler(pp), os.sched_param(0))),
    ('sched_setaffinity', lambda: os.sched_setaffinity(pp, os.sched_getaffinity(pp))),
):
    try:
        call()
        reached.append(name)
    except OSError:
        pass
print(reached)
"""
_SECRET = "def f(x):\n    return 'AZR-DOCTOR-SECRET'\n"
# Looks for another job's text (source, input, reply) among every object its process can reach.
_SPY = """import gc, sys
def f(x):
    needle = 'AZR-DOCTOR-' + 'SECRET'
    hits = 0
    for o in gc.get_objects():
        kind = type(o)
        items = list(o.values()) if kind is dict else o if kind in (list, tuple) else ()
        hits += sum(1 for v in items if type(v) is str and needle in v and v != needle)
    return hits
"""


def _reach_jobs(size: int) -> list[tuple[str, str | None]]:
    """Per worker a job with a secret, then a spy in the same request frame (jobs are dealt to the
    workers one at a time in turn), then the worker-reach attempt."""
    return [(_SECRET, "0")] * size + [(_SPY, "0")] * size + [(_REACH_WORKER, None)]


def _probe_reach(results: list[ExecResult], size: int) -> list[Probe]:
    spies, reach = results[size:2 * size], results[2 * size]
    seen = [r.value_repr if r.status is Status.ok else r.status.value for r in spies]
    probes = [Probe(name="other jobs' data is dropped", passed=all(v == "0" for v in seen),
                    detail=f"another job's text found by a program walking its memory: {seen}")]
    reached = reach.stdout.strip() if reach.status is Status.ok else f"{reach.status.value}: {reach.error}"
    probes.append(Probe(name="worker out of reach", passed=reached == "[]",
                        detail=f"calls that reached the worker (rlimits, priority, scheduler, CPUs): {reached}"))
    return probes


def _probe_escape(name: str, res: ExecResult, expected: str) -> Probe:
    seen = res.stdout.strip()
    return Probe(name=name, passed=res.status is Status.ok and seen == expected,
                 detail=f"saw {seen[:80]!r}" if res.status is Status.ok else f"{res.status.value}: {res.error or res.detail}")


def run_probes(sb: Sandbox) -> list[Probe]:
    """Escape attempts and limit checks, run through the given pool."""
    cfg = sb.cfg
    names = list(_ESCAPES)
    limit_jobs = [
        ("import os\ntry:\n    os.fork(); print('forked')\nexcept OSError:\n    print('ok')", None),
        (f"x = bytearray({cfg.memory_mb * 2} * 1024 * 1024)", None),
        ("while True:\n    pass", None),
        (f"print('x' * {cfg.max_stdout_bytes + 1})", None),
    ]
    reach_jobs = _reach_jobs(sb.size)
    results = sb.run_many([(src, None) for src, _ in _ESCAPES.values()] + limit_jobs + _FORGE_JOBS)
    reach_results = sb.run_many(reach_jobs)
    probes = [_probe_escape(n, r, _ESCAPES[n][1]) for n, r in zip(names, results, strict=False)]
    fork, memory, loop, flood = results[len(names):len(names) + len(limit_jobs)]
    probes += [
        Probe(name="process limit", passed=fork.stdout.strip() == "ok" or cfg.max_processes > 1,
              detail=f"fork with max_processes={cfg.max_processes}: {fork.stdout.strip() or fork.status.value}"),
        Probe(name="memory limit", passed=memory.status is Status.memory,
              detail=f"{cfg.memory_mb * 2} MiB allocation: {memory.status.value}"),
        Probe(name="time limit", passed=loop.status is Status.timeout,
              detail=f"infinite loop: {loop.status.value} after {loop.seconds:.2f}s"),
        Probe(name="output cap", passed=flood.status is Status.output_limit,
              detail=f"stdout flood: {flood.status.value}"),
    ]
    probes.append(_probe_forge(results[len(names) + len(limit_jobs):]))
    probes += _probe_reach(reach_results, sb.size)
    shifted = sb.shifted_workers()
    offsets = sorted({round(w.clock_offset_s) for i, w in enumerate(sb._workers) if w and i in shifted})
    probes.append(Probe(
        name="clock shifted on a worker", passed=bool(shifted) or not cfg.shift_clock,
        detail=f"workers {sorted(shifted)} run {offsets} s off: the determinism check sees the date and time"
        if shifted else "no worker runs under a shifted clock (sandbox.shift_clock is off, or libfaketime is "
        "missing: run scripts/setup.sh): a gold output that reads the date or the time to the second passes"))
    seeds = sb.hash_probes()
    probes.append(Probe(name="hash seeds differ", passed=len(set(seeds)) == len(seeds),
                        detail=f"{len(set(seeds))} distinct seeds over {len(seeds)} workers"))
    return probes


def doctor(cfg: SandboxConfig) -> list[Probe]:
    """Start a pool with `cfg` (short timeout) and run every probe; raises SandboxUnavailable."""
    quick = cfg.model_copy(update={"timeout_s": min(cfg.timeout_s, 1.0)})
    with open_sandbox(quick) as sb:
        sb.ensure_size(3)  # as task validation does
        probes = [Probe(name=f"{cfg.backend} starts", passed=True, detail=f"{sb.size} warm workers")]
        return probes + run_probes(sb)
