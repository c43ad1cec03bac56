"""Sandbox throughput, measured side by side in one run (the host is noisy: compare ratios).

    .venv/bin/python bench/sandbox.py [--json] [--programs N]

- pool_per_s: trivial programs (`f(1)` on `def f(a): return a`) through the warm nsjail pool;
- fresh_jail_per_s: the same, one fresh nsjail per program;
- subprocess_per_s: the same as plain `python -I -S -c` subprocesses, no jail at all;
- validate_384_s: validating a realistic batch of 384 proposals (some bad: banned, syntax,
  raising, nondeterministic, not literal, two infinite loops) with the default config.
The fresh-jail and subprocess rates use one thread per core, like the pool.
"""

from __future__ import annotations

import argparse
import json
import os
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


def rate(fn, n: int, threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda _: fn(), range(n)))
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--programs", type=int, default=2000, help="trivial programs through the pool")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    cfg = SandboxConfig()
    python = find_interpreter(None).path
    script = TRIVIAL + "\nprint(repr(f(1)))"

    with open_sandbox(cfg) as sb:
        sb.run_many([(TRIVIAL, "1")] * 50)  # warm-up
        start = time.perf_counter()
        results = sb.run_many([(TRIVIAL, "1")] * args.programs)
        pool_per_s = args.programs / (time.perf_counter() - start)
        assert all(r.value_repr == "1" for r in results)
        items = proposals()
        start = time.perf_counter()
        verdicts = validate_tasks(sb, items)
        validate_s = time.perf_counter() - start
    fresh_per_s = rate(lambda: run_fresh(cfg, TRIVIAL, "1"), 100, cores)
    subprocess_per_s = rate(lambda: subprocess.run([python, "-I", "-S", "-c", script], capture_output=True, check=True), 200, cores)

    report = {
        "pool_per_s": round(pool_per_s, 1),
        "fresh_jail_per_s": round(fresh_per_s, 1),
        "subprocess_per_s": round(subprocess_per_s, 1),
        "ratio_pool_vs_subprocess": round(pool_per_s / subprocess_per_s, 2),
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
