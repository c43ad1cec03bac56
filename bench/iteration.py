"""Time per stage of an AZR iteration, and the share spent outside model computation.

    python bench/iteration.py --config configs/tiny.yaml --iters 2          # runs a fresh loop
    python bench/iteration.py --run runs/demo                               # reads an existing run
    ... [--json]

Model computation = generation (propose, solve) + the update step; everything else (sandbox
validation and answer checks, prompt building, parsing, record I/O, model loading, checkpointing)
is "outside". Figures come from the stage summaries of the run, so they are the run's own.
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

from stages.pipeline import STAGE_NAMES as STAGES  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--run", type=Path, help="an existing run to read instead of running one")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    run_path = args.run
    if run_path is None:
        if args.config is None:
            ap.error("give --config (to run a loop) or --run (to read one)")
        run_path = Path(tempfile.mkdtemp(prefix="azr-bench-")) / "run"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-m", "azr_cli.main", "loop", "--run", str(run_path), "--config",
                        str(args.config), "--iters", str(args.iters), "--json"], cwd=REPO, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    result = measure(run_path)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"run {result['run']} ({result['model']})")
    print("iter " + " ".join(f"{s:>9}" for s in STAGES) + "    total  model  outside  sandbox")
    for r in result["iterations"]:
        cells = " ".join(f"{r['stage_seconds'][s]:9.1f}" for s in STAGES)
        print(f"{r['iteration']:>4} {cells} {r['total_s']:8.1f} {r['model_s']:6.1f} {r['outside_share']:8.2%}"
              f" {r['sandbox_s']:8.1f}")


if __name__ == "__main__":
    main()
