"""Does self-play teach? `azr loop` for N iterations on the embedded default, then the base model
against the final policy on held-out items, with the per-iteration curves and their trend.

    python bench/learning.py                         # 20 iterations of configs/qwen2.5-coder-0.5b-cpu.yaml
    python bench/learning.py --run runs/learning-qwen  # resume (or just re-read) that run
    python bench/learning.py --config configs/smollm2-cpu.yaml --run runs/learning \
        --out bench/results/learning.json --eval-limit 60   # the earlier SmolLM2 benchmark

Per iteration, from the run's stage summaries: proposal validity (all and per type), the solver's
format rate and accuracy on its training batch (per type), the mean reward of each role, and the
share of responses cut at max_new_tokens. The trend of a curve: the least-squares slope per
iteration, and the mean of the last 5 iterations minus the mean of the first 5.

Held out (never seen by training, never used to choose a setting): ``humaneval-io`` (output and
input prediction derived from HumanEval, read the way the run's solver is judged) and
``humaneval`` (code generation), each on its first ``--eval-limit`` items, greedy, for the base
model and the policy after the last iteration (all items unless ``--eval-limit``). ``in_layout`` is
the share of answers in the asked layout (the run's ``reward.format``), ``score`` the share
correct. ``eval.paired.<suite>``: final minus base over the same items, with the 90% interval of a
paired bootstrap over items (10,000 resamples, fixed seed).

Beside them, the development set (``--dev``, built by ``bench/devset.py`` from the base model's own
proposals under other seeds): the only scores a setting may be chosen on.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.method.kinds import KINDS  # noqa: E402
from stages.method.tasks import ROLES, TASK_TYPES  # noqa: E402

RESULTS = REPO / "bench" / "results" / "learning-qwen.json"
SUITES = ("humaneval-io", "humaneval")
DEV = REPO / "bench" / "dev" / "qwen2.5-coder-0.5b.jsonl"
BOOTSTRAP = 10_000


def azr(*args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "azr_cli.main", *args], cwd=REPO, env=env, check=True,
                          stdout=subprocess.PIPE, text=True)
    return done.stdout


def iteration_rows(run_path: Path) -> list[dict[str, Any]]:
    from stages.rundir.manifest import open_run

    run = open_run(run_path)[0]
    rows = []
    for n in range(1, run.completed_iterations() + 1):
        m = {s: run.summary(n, s).metrics for s in ("propose", "validate", "solve", "reward", "update")}
        v, so, r = m["validate"], m["solve"], m["reward"]
        rows.append({
            "iteration": n,
            "validity": v.get("valid", 0.0),
            **{f"validity/{t}": v.get(f"valid/{t}", 0.0) for t in TASK_TYPES},
            "solver_format": so.get("train/format_ok", 0.0),
            **{f"solver_accuracy/{t}": so.get(f"train/accuracy/{t}", 0.0) for t in TASK_TYPES},
            "solver_accuracy": so.get("train/accuracy", 0.0),
            **{f"reward/{role}": statistics.fmean(r[k] for t in TASK_TYPES if (k := f"reward/{role}/{t}") in r)
               if any(f"reward/{role}/{t}" in r for t in TASK_TYPES) else None for role in ROLES},
            **{f"entropy/{role}": m["update"].get(f"entropy/{role}") for role in ROLES},
            "similarity": known_mean(r.get(f"similarity/{t}") for t in TASK_TYPES),
            "truncated/propose": m["propose"].get("truncated"),
            "truncated/solve": so.get("truncated"),
            "seconds": round(sum(float(x.get("seconds", 0.0)) for x in m.values()), 1),
        })
    return rows


def known_mean(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are there (None when none is): a role with no sample in an
    update has no entropy, and a proposal's similarity is kept only with the diversity penalty on."""
    known = [float(v) for v in values if v is not None]
    return statistics.fmean(known) if known else None


def trend(values: list[float]) -> dict[str, float | None]:
    """Least-squares slope per iteration, and last-5 mean minus first-5 mean (halves when shorter)."""
    if len(values) < 2:
        return {"slope": None, "last5_minus_first5": None}
    xs = range(len(values))
    mx, my = statistics.fmean(xs), statistics.fmean(values)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / sum((x - mx) ** 2 for x in xs)
    k = min(5, len(values) // 2)
    return {"slope": round(slope, 4),
            "last5_minus_first5": round(statistics.fmean(values[-k:]) - statistics.fmean(values[:k]), 4)}


def saved_eval(run_path: Path, which: list[str], suite: str, limit: int | None, data: Path | None) -> dict[str, Any]:
    """The saved result of one evaluation (``--base`` or ``--iter N``), made first with `azr eval`
    when it is missing or was made with another item limit."""
    tag = "base" if which == ["--base"] else f"{int(which[1]):06d}"
    saved = run_path / "eval" / f"{suite}-{tag}.json"
    result = json.loads(saved.read_text()) if saved.is_file() else None
    if result is None or result.get("limit") != limit:
        args = ["eval", "--run", str(run_path), *which, "--suite", suite, "--json"]
        args += ["--limit", str(limit)] if limit else []
        args += ["--data", str(data)] if data else []
        azr(*args)
        result = json.loads(saved.read_text())
    return result


def evaluate(run_path: Path, which: list[str], limit: int | None, dev: Path | None) -> dict[str, Any]:
    """One evaluation (``--base`` or ``--iter N``) on the held-out suites and the development set,
    reusing a saved result of the same size."""
    out = {}
    suites = [(s, None) for s in SUITES] + ([("dev", dev)] if dev is not None else [])
    for suite, data_file in suites:
        data = saved_eval(run_path, which, suite, limit, data_file)
        out[suite] = {"in_layout": data["format_ok"], "score": data["score"], "items": data["items"],
                      "by_kind": data.get("by_kind"),
                      "correct": {r["item_id"]: bool(r["correct"]) for r in data["results"]}}
    primary = out[SUITES[0]]
    return {"in_layout": primary["in_layout"], "score": primary["score"], "suites": out}


def paired(base: dict[str, bool], final: dict[str, bool], resamples: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """final − base over the items both scored, with a paired bootstrap's 90% interval."""
    ids = sorted(set(base) & set(final))
    diffs = [int(final[i]) - int(base[i]) for i in ids]
    if not diffs:
        return {"items": 0, "diff": None, "ci90": None}
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo, hi = means[int(0.05 * resamples)], means[int(0.95 * resamples) - 1]
    return {"items": n, "diff": round(sum(diffs) / n, 4), "ci90": [round(lo, 4), round(hi, 4)],
            "gained": sum(d > 0 for d in diffs), "lost": sum(d < 0 for d in diffs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("configs/qwen2.5-coder-0.5b-cpu.yaml"))
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--run", type=Path, default=Path("runs/learning-qwen"), help="the run (resumed when it exists)")
    ap.add_argument("--eval-limit", type=int, default=None, help="held-out items per suite (default: all)")
    ap.add_argument("--dev", type=Path, default=DEV, help="the development set (bench/devset.py); '' for none")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    dev = args.dev if args.dev and str(args.dev) and Path(args.dev).is_file() else None
    started = time.perf_counter()
    loop = ["loop", "--run", str(args.run), "--iters", str(args.iters), "--json"]
    if not (args.run / "manifest.json").exists():
        loop += ["--config", str(args.config)]
    azr(*loop)
    rows = iteration_rows(args.run)
    last = rows[-1]["iteration"] if rows else 0
    base = evaluate(args.run, ["--base"], args.eval_limit, dev)
    final = evaluate(args.run, ["--iter", str(last)], args.eval_limit, dev)
    paired_diffs = {s: paired(base["suites"][s].pop("correct"), final["suites"][s].pop("correct"))
                    for s in base["suites"]}
    result = {
        "run": str(args.run), "config": str(args.config), "completed_iterations": last,
        "iterations": rows,
        "trend": {key: trend([r[key] for r in rows]) for key in ("validity", "solver_format", "solver_accuracy")},
        "eval": {"base": base, "final": final, "paired": paired_diffs, "dev_set": str(dev) if dev else None},
        "wall_s_this_call": round(time.perf_counter() - started, 1),
        "loop_s": round(sum(r["seconds"] for r in rows), 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    head = ["iter", "valid", *(f"v/{KINDS[t].short}" for t in TASK_TYPES), "s.fmt", *(f"acc/{KINDS[t].short}" for t in TASK_TYPES),
            "r.prop", "r.solv", "trunc.p", "trunc.s", "sec"]
    print(" ".join(f"{h:>8}" for h in head))
    for r in rows:
        cells = [r["iteration"], r["validity"], *(r[f"validity/{t}"] for t in TASK_TYPES), r["solver_format"],
                 *(r[f"solver_accuracy/{t}"] for t in TASK_TYPES), r["reward/proposer"], r["reward/solver"],
                 r["truncated/propose"], r["truncated/solve"], r["seconds"]]
        print(" ".join(f"{c:>8.3f}" if isinstance(c, float) else f"{c!s:>8}" for c in cells))
    for key, t in result["trend"].items():
        print(f"trend {key:<16} slope {t['slope']}/iter   last5 - first5 {t['last5_minus_first5']}")
    for name in ("base", "final"):
        e = result["eval"][name]
        print(f"eval {name:<5} " + "   ".join(f"{s}: in-layout {v['in_layout']:.3f} score {v['score']:.3f}"
                                             f" ({v['items']})" for s, v in e["suites"].items()))
    for suite, d in result["eval"]["paired"].items():
        print(f"final - base {suite:<13} {d['diff']}  90% CI {d['ci90']}  ({d.get('gained')} gained, "
              f"{d.get('lost')} lost of {d['items']})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
