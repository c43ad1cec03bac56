"""The levers beyond the paper, side by side: the learning benchmark (``bench/learning.py``'s
machinery: ``azr loop``, then ``azr eval`` of the last iteration's policy) under named settings,
each a set of ``--set`` overrides on one config, with a random-reward control.

    python bench/ablation.py                                  # every setting, 10 iterations each, Qwen 0.5B CPU
    python bench/ablation.py --settings paper,clip-high       # some of them (the results file keeps the others)
    python bench/ablation.py --config configs/tiny.yaml --iters 2 --settings paper,random-control --eval-limit 4

Each setting has its own run folder (``--runs``, default ``runs/ablation-<config>/<setting>``),
created with the setting's overrides and resumed (or only re-read) on a later call; a folder made
under another config or other overrides is refused, not reused. Evaluations are saved in the run
(``eval/<suite>-<iteration>.json``) and reused when their item limit matches, so a rerun gives the
same figures without generating anything.

Per setting: ``iterations`` (complete), ``dev`` (the development set, ``azr eval --suite dev
--data bench/dev/qwen2.5-coder-0.5b.jsonl``; null while that file is absent), ``heldout`` (the
held-out suites' scores, default ``humaneval-io``), ``in_layout`` and ``by_kind`` (per suite: the
share of answers in the asked layout, the score per item kind), ``vs_base`` and ``vs_paper`` (per
suite: the paired difference over the items, with a bootstrap's 90% interval), ``loop_s`` (the stages' wall time over the
iterations, from their summaries), and the mean of the last iterations' training figures. The
base model's scores, the same for every setting, are under ``base``. Written to
``bench/results/ablation.json`` for the default config, ``bench/results/ablation-<config>.json``
for another; the file keeps the settings not run in this call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from learning import azr, iteration_rows, known_mean, paired, saved_eval  # noqa: E402

from stages.config.schema import lever_defaults  # noqa: E402
from stages.method.tasks import ROLES  # noqa: E402

DEFAULT_CONFIG = Path("configs/qwen2.5-coder-0.5b-cpu.yaml")
DEV = Path("bench/dev/qwen2.5-coder-0.5b.jsonl")
HELDOUT = ("humaneval-io",)
TAIL = 3
"""Training figures: the mean over the last TAIL iterations (and, for entropy and similarity, the first)."""

COMBINED = {
    "solve.difficulty_band": [0.2, 0.8],
    "solve.reuse_learnability": True,
    "reward.diversity_penalty": 0.5,
    "update.clip_high": 0.28,
    "update.overlong": "penalize",
}
SETTINGS: dict[str, dict[str, Any]] = {
    "paper": {},
    "difficulty-band": {"solve.difficulty_band": [0.2, 0.8]},
    "reuse-learnability": {"solve.reuse_learnability": True},
    "diversity": {"reward.diversity_penalty": 0.5},
    "clip-high": {"update.clip_high": 0.28},
    "sequence-mean": {"update.loss_aggregation": "sequence"},
    "overlong-mask": {"update.overlong": "mask"},
    "overlong-penalize": {"update.overlong": "penalize"},
    "no-entropy": {"update.entropy_coef": 0.0},
    "combined": COMBINED,
    "random-control": {"reward.control": "random"},
}
"""Name -> overrides. `paper`: every lever off. Each lever alone (the loss aggregation's lever is
`sequence`, since azr's default is already DAPO's token mean; the entropy bonus is on in the
paper, so its setting turns it off), `combined` (the DAPO-style levers together, token mean and the
paper's entropy bonus kept), and the random-reward control."""


def set_args(overrides: dict[str, Any]) -> list[str]:
    """``--set key=value`` pairs, values as JSON (which the config reads as YAML)."""
    return [x for k, v in overrides.items() for x in ("--set", f"{k}={json.dumps(v)}")]


def results_path(config: Path) -> Path:
    stem = "" if config.resolve() == (REPO / DEFAULT_CONFIG).resolve() else f"-{config.stem}"
    return REPO / "bench" / "results" / f"ablation{stem}.json"


def check_run(path: Path, config: Path, overrides: dict[str, Any]) -> None:
    """An existing run folder must be this setting's: the same meaning-changing config."""
    from stages.config.layers import load_config
    from stages.rundir.manifest import open_run

    want = load_config(config.resolve(), set_args(overrides)[1::2]).digest()
    have = open_run(path)[0].config.digest()
    if have != want:
        raise SystemExit(f"{path}: made under another config or other overrides (config {have}, this setting "
                         f"{want}); remove it or choose another --runs folder")


def scores(run_path: Path, which: list[str], suites: list[str], limit: int | None, dev: Path | None
           ) -> dict[str, Any]:
    """The dev and held-out scores of one policy (each saved evaluation read, or made first when it
    is missing or of another item limit), with, per suite, the share of answers in the asked layout
    and the score per item kind (output / input prediction)."""
    evals = {s: saved_eval(run_path, which, s, limit, None) for s in suites}
    if dev is not None:
        evals["dev"] = saved_eval(run_path, which, "dev", limit, dev)
    return {"dev": float(evals["dev"]["score"]) if dev is not None else None,
            "heldout": {s: float(evals[s]["score"]) for s in suites},
            "in_layout": {s: round(float(e["format_ok"]), 4) for s, e in evals.items()},
            "by_kind": {s: {k: round(float(v), 4) for k, v in e.get("by_kind", {}).items()} for s, e in evals.items()},
            "correct": {s: {r["item_id"]: bool(r["correct"]) for r in e["results"]} for s, e in evals.items()}}


def compare(runs: dict[str, dict[str, Any]], base: dict[str, Any]) -> None:
    """Each setting's paired difference, per suite, from the base model and from ``paper`` (the
    items both scored, a bootstrap's 90% interval); the per-item verdicts are then dropped."""
    ref = runs.get("paper", {}).get("correct")
    for name, r in runs.items():
        mine = r.pop("correct", None)
        if mine is None:
            continue
        r["vs_base"] = {s: paired(base["correct"][s], c) for s, c in mine.items() if s in base["correct"]}
        if ref is not None and name != "paper":
            r["vs_paper"] = {s: paired(ref[s], c) for s, c in mine.items() if s in ref}
    base.pop("correct", None)


def training_tail(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The mean of the last TAIL iterations' validity, solver accuracy and format, each role's
    policy entropy and the proposals' similarity (absent: None); the entropy and similarity also
    over the first TAIL iterations (``.../first``), to show how they moved."""
    head, tail = rows[:TAIL], rows[-TAIL:]
    keys = ("validity", "solver_accuracy", "solver_format", *(f"entropy/{role}" for role in ROLES), "similarity")
    out = {k: rounded(known_mean(r.get(k) for r in tail)) for k in keys}
    out |= {f"{k}/first": rounded(known_mean(r.get(k) for r in head)) for k in keys[3:]}
    return out


def rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def run_setting(name: str, args: argparse.Namespace, dev: Path | None) -> dict[str, Any]:
    overrides = SETTINGS[name]
    # every lever at its off value first: each setting starts from the paper's recipe, whatever the
    # config itself turns on (the Qwen config's recommended levers)
    applied = {**lever_defaults(), **overrides}
    path = args.runs / name
    if (path / "manifest.json").exists():
        check_run(path, args.config, applied)
        azr("loop", "--run", str(path), "--iters", str(args.iters), "--json")
    else:
        azr("loop", "--run", str(path), "--config", str(args.config.resolve()), "--iters", str(args.iters), "--json",
            *set_args(applied))
    rows = iteration_rows(path)
    last = rows[-1]["iteration"] if rows else 0
    evaluated = scores(path, ["--iter", str(last)], args.suites, args.eval_limit, dev) if last else {}
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return {"overrides": overrides, "run": str(shown), "iterations": last, **evaluated,
            "loop_s": round(sum(r["seconds"] for r in rows), 1), "training_last": training_tail(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    ap.add_argument("--runs", type=Path, default=None, help="folder of the run folders (default runs/ablation-<config>)")
    ap.add_argument("--eval-limit", type=int, default=None, help="items per suite (default: all)")
    ap.add_argument("--suites", default=",".join(HELDOUT), help="held-out suites, comma-separated")
    ap.add_argument("--dev", type=Path, default=DEV, help="the development set; absent: dev is null")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown setting(s) {', '.join(unknown)}; the settings are: {', '.join(SETTINGS)}")
    args.suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    args.runs = (args.runs or REPO / "runs" / f"ablation-{args.config.stem}").resolve()
    out = args.out or results_path(args.config)
    dev = args.dev if args.dev is not None and (REPO / args.dev).is_file() else None
    dev = (REPO / dev) if dev is not None else None

    previous = json.loads(out.read_text()) if out.is_file() else {}
    if previous.get("config") not in (None, str(args.config)):
        previous = {}  # another config's results are not merged
    started = time.perf_counter()
    runs = dict(previous.get("runs", {}))
    for name in names:
        print(f"[ablation] {name}: {SETTINGS[name] or 'every lever off'}", file=sys.stderr, flush=True)
        runs[name] = run_setting(name, args, dev)
    base_run = next(args.runs / n for n in ("paper", *names) if (args.runs / n / "manifest.json").exists())
    result = {
        "config": str(args.config),
        "iters": args.iters,
        "eval_limit": args.eval_limit,
        "dev_set": str(args.dev) if dev is not None else None,
        "base": scores(base_run, ["--base"], args.suites, args.eval_limit, dev),
        "runs": {k: runs[k] for k in SETTINGS if k in runs},
    }
    compare(result["runs"], result["base"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    head = ["setting", "iters", "dev", *args.suites, "loop_s", "valid", "s.acc"]
    print(" ".join(f"{h:>18}" for h in head))
    for name, r in result["runs"].items():
        cells = [name, r["iterations"], r.get("dev"), *(r.get("heldout", {}).get(s) for s in args.suites),
                 r["loop_s"], r["training_last"]["validity"], r["training_last"]["solver_accuracy"]]
        print(" ".join(f"{c:>18.3f}" if isinstance(c, float) else f"{c!s:>18}" for c in cells))
    print(f"wrote {out} ({time.perf_counter() - started:.0f} s in this call)")


if __name__ == "__main__":
    main()
