"""Time per stage of an AZR iteration, and the share spent outside model computation; with
``--baseline REF``, the same measured side by side against another commit of azr.

    python bench/iteration.py --config configs/tiny.yaml --iters 2          # runs a fresh loop
    python bench/iteration.py --run runs/demo                               # reads an existing run
    python bench/iteration.py --config configs/smollm2-cpu.yaml --iters 2 --baseline bb7a2be
    ... [--json]

Model computation = generation (propose, solve) + the update step; everything else (sandbox
validation and answer checks, prompt building, parsing, record I/O, checkpointing) is "outside".
Figures come from the stage summaries of the run, so they are the run's own (model loading and
the seeding phase are not stages: they are left out of an iteration's time).

``--baseline REF`` exports that commit's tree (``git archive``) to a temporary folder and runs
its own ``azr loop`` with its own version of the same config file, then this tree's, in one run of
this script on the same machine (``--repeat 2`` adds a second pair in the other order), and
prints the iteration-time ratio baseline / current.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.rundir.layout import STAGE_NAMES as STAGES  # noqa: E402


def measure(run_path: Path) -> dict:
    from stages.rundir.manifest import open_run

    run = open_run(run_path)[0]
    rows = []
    for n in range(1, run.completed_iterations() + 1):
        m = {s: run.summary(n, s).metrics for s in STAGES}
        stage_s = {s: float(m[s].get("seconds", 0.0)) for s in STAGES}
        # Runs made before the update recorded step_seconds: count the whole update stage.
        step = float(m["update"].get("step_seconds", stage_s["update"]))
        model_s = float(m["propose"].get("generate_s", 0)) + float(m["solve"].get("generate_s", 0)) + step
        total = sum(stage_s.values())
        rows.append({"iteration": n, "stage_seconds": stage_s, "total_s": round(total, 2),
                     "model_s": round(model_s, 2), "outside_share": round(1 - model_s / total, 3) if total else None,
                     "sandbox_s": round(stage_s["validate"] + float(m["solve"].get("check_s", 0)), 2),
                     "tokens_per_s": {s: m[s].get("tokens_per_s") for s in ("propose", "solve")}})
    return {"run": str(run_path), "model": run.config.model.name, "iterations": rows}


def run_loop(tree: Path, config: Path, iters: int, extra: list[str]) -> Path:
    """`azr loop` of the azr in ``tree`` (its own code and its own copy of ``config``)."""
    run_path = Path(tempfile.mkdtemp(prefix="azr-bench-")) / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree), "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([sys.executable, "-m", "azr_cli.main", "loop", "--run", str(run_path), "--config",
                    str(tree / config), "--iters", str(iters), "--json", *extra], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return run_path


def export_tree(ref: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix=f"azr-{ref[:10]}-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def mean_iteration(result: dict) -> float:
    totals = [r["total_s"] for r in result["iterations"]]
    return sum(totals) / len(totals) if totals else 0.0


def side_by_side(args: argparse.Namespace) -> dict:
    config = args.config.resolve().relative_to(REPO) if args.config.is_absolute() else args.config
    old_tree = export_tree(args.baseline)
    order = [("baseline", old_tree, []), ("current", REPO, args.set)]
    runs: dict[str, list[dict]] = {"baseline": [], "current": []}
    for k in range(args.repeat):
        for name, tree, extra in order if k % 2 == 0 else order[::-1]:
            print(f"[bench] {name} ({args.baseline if name == 'baseline' else 'this tree'}), round {k + 1}",
                  file=sys.stderr)
            runs[name].append(measure(run_loop(tree, config, args.iters, extra)))
    per = {name: sum(mean_iteration(r) for r in rs) / len(rs) for name, rs in runs.items()}
    return {"config": str(config), "baseline_ref": args.baseline, "iters": args.iters, "repeat": args.repeat,
            "iteration_s": {k: round(v, 1) for k, v in per.items()},
            "ratio_baseline_over_current": round(per["baseline"] / per["current"], 2) if per["current"] else None,
            "runs": runs}


def print_table(result: dict) -> None:
    print(f"run {result['run']} ({result['model']})")
    print("iter " + " ".join(f"{s:>9}" for s in STAGES) + "    total  model  outside  sandbox")
    for r in result["iterations"]:
        cells = " ".join(f"{r['stage_seconds'][s]:9.1f}" for s in STAGES)
        print(f"{r['iteration']:>4} {cells} {r['total_s']:8.1f} {r['model_s']:6.1f} {r['outside_share']:8.2%}"
              f" {r['sandbox_s']:8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--run", type=Path, help="an existing run to read instead of running one")
    ap.add_argument("--baseline", help="a git ref: run it and this tree side by side and compare")
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs with --baseline (alternating order)")
    ap.add_argument("--set", action="append", default=[], help="--set for this tree's loop (repeatable)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.set = [x for kv in args.set for x in ("--set", kv)]
    if args.baseline:
        if args.config is None:
            ap.error("--baseline needs --config")
        result = side_by_side(args)
        if args.json:
            print(json.dumps(result, indent=2))
            return
        for name in ("baseline", "current"):
            for r in result["runs"][name]:
                print(f"== {name}")
                print_table(r)
        print(f"iteration {result['iteration_s']['baseline']:.1f} s (baseline {result['baseline_ref']}) vs "
              f"{result['iteration_s']['current']:.1f} s (current): {result['ratio_baseline_over_current']}x")
        return
    run_path = args.run
    if run_path is None:
        if args.config is None:
            ap.error("give --config (to run a loop) or --run (to read one)")
        run_path = run_loop(REPO, args.config, args.iters, args.set)
    result = measure(run_path)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print_table(result)


if __name__ == "__main__":
    main()
