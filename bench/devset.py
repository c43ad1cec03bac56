"""Build the development set: tasks the *base* model proposes under seeds of its own, validated in
the sandbox and frozen in a file, so that settings are tuned on them and never on a held-out
benchmark. Nothing here is derived from HumanEval or any other benchmark.

    python bench/devset.py                                  # configs/qwen2.5-coder-0.5b-cpu.yaml
    python bench/devset.py --seeds 101 102 --target 16      # more seeds, more tasks per seed

For each seed, `azr seed` runs the seeding phase of a scratch run (runs/devset-<seed>) with that
``run.seed``: the base model proposes, the sandbox validates (two runs on two workers, literal
output), duplicates are dropped. The deduction and abduction tasks it keeps, less the identity seed
every run starts from, are written once more deduplicated across seeds to ``--out`` as azr task
records; `azr eval --suite dev --data FILE` asks each as output and input prediction. Rerunning
with the same arguments resumes the scratch runs and rewrites the same file.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "dev" / "qwen2.5-coder-0.5b.jsonl"
IDENTITY = "def f(a):\n    return a"


def canonical(program: str) -> str:
    try:
        return ast.unparse(ast.parse(program))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return program


def seed_run(config: Path, seed: int, target: int, rounds: int) -> Path:
    run = REPO / "runs" / f"devset-{seed}"
    cmd = [sys.executable, "-m", "azr_cli.main", "seed", "--run", str(run), "--set", f"seed.target={target}",
           "--set", f"seed.max_rounds={rounds}", "--set", "seed.when_short=go_on"]
    if not (run / "manifest.json").exists():
        cmd += ["--config", str(config), "--set", f"run.seed={seed}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    return run


def collect(runs: list[Path]) -> list[dict]:
    rows, seen = [], {canonical(IDENTITY)}
    for run in runs:
        for line in (run / "buffer" / "seed.jsonl").read_text().splitlines():
            task = json.loads(line)
            key = canonical(task["program"])
            if task["type"] not in ("deduction", "abduction") or key in seen:
                continue
            seen.add(key)
            rows.append({"task_id": f"dev/{run.name}/{task['task_id']}", "type": task["type"],
                         "program": task["program"], "inputs": task["inputs"][:1], "outputs": task["outputs"][:1]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "qwen2.5-coder-0.5b-cpu.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    ap.add_argument("--target", type=int, default=12, help="seed.target per scratch run (tasks per type)")
    ap.add_argument("--rounds", type=int, default=6, help="seed.max_rounds per scratch run")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    rows = collect([seed_run(args.config, s, args.target, args.rounds) for s in args.seeds])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds = {t: sum(r["type"] == t for r in rows) for t in ("deduction", "abduction")}
    print(f"wrote {len(rows)} tasks ({kinds}) to {args.out}; evaluate with "
          f"`azr eval --run R --base --suite dev --data {args.out}`")


if __name__ == "__main__":
    main()
