"""Sandbox throughput, measured side by side in one run (the host is noisy: compare ratios).

    .venv/bin/python bench/sandbox.py [--json] [--programs N] [--rounds R]

- pool_per_s: trivial programs (`f(1)` on `def f(a): return a`) through the warm nsjail pool;
- fresh_jail_per_s: the same, one fresh nsjail per program;
- subprocess_per_s: the same as plain `python -I -S -c` subprocesses, no jail at all;
- validate_384_s: validating a realistic batch of 384 proposals (some bad: banned, syntax,
  raising, nondeterministic, not literal, two infinite loops) with the default config.
The fresh-jail and subprocess rates use one thread per core, like the pool. The pool and the
subprocess rates are measured in R interleaved rounds (pool, subprocess, pool, ...) and the
ratio is the median of the rounds' ratios, so a change in the host's load hits both sides.
- cpu_ratio_pool_vs_subprocess: CPU time per program (user + system, this process and every
  process under it: jails, workers, programs) of a plain subprocess over that of the warm pool
  (two pools are run, one with `programs` more than the other, so starting jails cancels out).
  It moves far less with other jobs on the machine than the rates do.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox import SandboxConfig, open_sandbox, run_fresh, validate_tasks
from sandbox.jail import find_interpreter

TRIVIAL = "def f(a):\n    return a"
GOOD = [
    ("def f(s):\n    return s[::-1].upper()", "'Hello world'"),
    ("def f(xs):\n    return sorted(xs, key=lambda x: (-x, x))", "[3, 1, 2, 5, 4]"),
    ("def f(d):\n    return {k: v * 2 for k, v in d.items() if v % 2}", "{'a': 1, 'b': 2, 'c': 3}"),
    ("def helper(n):\n    return n * (n + 1) // 2\n\ndef f(n, m):\n    return [helper(i) % m for i in range(n)]", "10, 7"),
    ("def f(s):\n    out = {}\n    for ch in s:\n        out[ch] = out.get(ch, 0) + 1\n    return sorted(out.items())", "'mississippi'"),
    ("def f(a, b):\n    while b:\n        a, b = b, a % b\n    return a", "1071, 462"),
]
BAD = [
    ("import os\ndef f(a):\n    return os.getpid()", "1"),  # banned
    ("def f(a) return a", "1"),  # parse
    ("def f(xs):\n    return xs[10]", "[1, 2]"),  # error
    ("def f(a):\n    return list({'x', 'y', 'z', 'w', 'v'})", "0"),  # nondeterministic
    ("def f(a):\n    return float('inf')", "1"),  # output_not_literal
]
LOOP = ("def f(a):\n    while True:\n        a += 1", "0")


def proposals(n: int = 384) -> list[tuple[str, list[str]]]:
    items = [(LOOP[0], [LOOP[1]])] * 2
    pool = GOOD * 5 + BAD  # ~1 in 7 bad, besides the loops
    while len(items) < n:
        src, arg = pool[len(items) % len(pool)]
        items.append((src + f"\n# variant {len(items)}", [arg]))
    return items


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for descendants so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def rate(fn, n: int, threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda _: fn(), range(n)))
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--programs", type=int, default=2000, help="trivial programs through the pool per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved pool/subprocess rounds")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    cfg = SandboxConfig()
    python = find_interpreter(None).path
    script = TRIVIAL + "\nprint(repr(f(1)))"

    def one_subprocess() -> None:
        subprocess.run([python, "-I", "-S", "-c", script], capture_output=True, check=True)

    pool_rates: list[float] = []
    sub_rates: list[float] = []
    with open_sandbox(cfg) as sb:
        sb.run_many([(TRIVIAL, "1")] * 50)  # warm-up
        for _ in range(args.rounds):
            start = time.perf_counter()
            results = sb.run_many([(TRIVIAL, "1")] * args.programs)
            pool_rates.append(args.programs / (time.perf_counter() - start))
            assert all(r.value_repr == "1" for r in results)
            sub_rates.append(rate(one_subprocess, 200, cores))
        items = proposals()
        start = time.perf_counter()
        verdicts = validate_tasks(sb, items)
        validate_s = time.perf_counter() - start
    fresh_per_s = rate(lambda: run_fresh(cfg, TRIVIAL, "1"), 100, cores)
    # CPU per program: two pools of their own (started, run, closed: only then is their jails' CPU
    # counted), one running `programs` more than the other, so that starting them cancels out.
    def pool_cpu_for(n: int) -> float:
        start = cpu_seconds()
        with open_sandbox(cfg) as sb:
            sb.run_many([(TRIVIAL, "1")] * n)
        return cpu_seconds() - start

    pool_cpu = (pool_cpu_for(50 + args.programs) - pool_cpu_for(50)) / args.programs
    start = cpu_seconds()
    rate(one_subprocess, 200, cores)
    subprocess_cpu = (cpu_seconds() - start) / 200
    pool_per_s = statistics.median(pool_rates)
    subprocess_per_s = statistics.median(sub_rates)
    ratios = [p / q for p, q in zip(pool_rates, sub_rates, strict=True)]

    report = {
        "pool_per_s": round(pool_per_s, 1),
        "fresh_jail_per_s": round(fresh_per_s, 1),
        "subprocess_per_s": round(subprocess_per_s, 1),
        "ratio_pool_vs_subprocess": round(statistics.median(ratios), 2),
        "ratio_per_round": [round(r, 2) for r in ratios],
        "cpu_ratio_pool_vs_subprocess": round(subprocess_cpu / pool_cpu, 2),
        "pool_cpu_ms_per_program": round(pool_cpu * 1000, 3),
        "subprocess_cpu_ms_per_program": round(subprocess_cpu * 1000, 3),
        "ratio_pool_vs_fresh_jail": round(pool_per_s / fresh_per_s, 2),
        "validate_384_s": round(validate_s, 2),
        "validate_384_valid": sum(v.valid for v in verdicts),
        "validate_384_reasons": {r: sum(v.reason == r for v in verdicts) for r in sorted({v.reason for v in verdicts if v.reason})},
        "workers": max(2, cfg.workers or cores),
        "cores": cores,
        "timeout_s": cfg.timeout_s,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:28s} {value}")


if __name__ == "__main__":
    main()
