"""`azr eval`: evaluate the base model or an iteration's policy on a suite, or compare the saved
scores side by side (`--compare`). The work is in :mod:`stages.evaluation`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from azr_cli import display
from azr_cli.options import DeviceOpt, JsonOpt, RunOpt, SetOpt

EvalIterOpt = Annotated[
    list[int] | None,
    typer.Option("--iter", "-i", help="Evaluate the policy after iteration N's update; with --compare, "
                 "repeatable to choose the columns.", show_default=False),
]
BaseOpt = Annotated[bool, typer.Option("--base", help="Evaluate the base model (no adapter).")]
SuiteOpt = Annotated[
    list[str] | None,
    typer.Option("--suite", help="humaneval | humaneval-io | cruxeval | mbpp | dev (repeatable); "
                 "default: the run's eval.suites.", show_default=False),
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, help="Evaluate the first K items only.", show_default=False)
]
DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Local JSONL data: CRUXEval (code/input/output), MBPP (text/code/test_list), azr tasks (dev), "
                 "or another HumanEval file.", show_default=False),
]
CompareOpt = Annotated[bool, typer.Option("--compare", help="Show saved scores: base vs iterations.")]


def eval_cmd(
    run: RunOpt,
    iter_: EvalIterOpt = None,
    base: BaseOpt = False,
    suite: SuiteOpt = None,
    limit: LimitOpt = None,
    data: DataOpt = None,
    compare: CompareOpt = False,
    json_: JsonOpt = False,
    set_: SetOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Evaluate on held-out benchmarks with greedy decoding; writes eval/<suite>-<base|N>.json."""
    from stages.errors import EvalError
    from stages.evaluation import evaluate
    from stages.evaluation.suites import check_suite
    from stages.rundir.manifest import open_run

    run_, _ = open_run(run, None, set_, {"model": {"device": device}} if device else None)
    if compare:
        table = evaluate.compare(run_, iter_ or None)
        if json_:
            display.print_json(table)
        else:
            display.out.print(compare_table(table))
        return
    if base == bool(iter_) or (iter_ and len(iter_) > 1):
        raise EvalError("choose what to evaluate: --base, or one --iter N")
    suites = suite or run_.config.eval.suites
    for s in suites:
        check_suite(s, data)
    iteration = None if base else iter_[0]  # type: ignore[index]
    policy = evaluate.policy_of(run_, iteration)
    from sandbox.pool import open_sandbox

    outs = []
    with open_sandbox(run_.config.sandbox) as sandbox:
        for s in suites:
            with display.progress(f"eval {s}") as bar:
                out = evaluate.evaluate(run_, policy, sandbox, s, iteration, limit=limit, data=data, progress=bar)
            outs.append({k: v for k, v in out.items() if k != "results"}
                        | {"file": str(evaluate.eval_path(run_, s, iteration))})
    if json_:
        display.print_json(outs[0] if len(outs) == 1 else outs)
        return
    for o in outs:
        who = "base" if iteration is None else f"iteration {iteration}"
        rows: dict[str, Any] = {"score": f"{o['score']:.1%}", "items": o["items"]}
        rows |= {f"score/{k}": f"{v:.1%}" for k, v in o["by_kind"].items()}
        rows |= {"strict (format too)": f"{o['score_strict']:.1%}", "format ok": f"{o['format_ok']:.1%}",
                 "seconds": o["seconds"], "file": o["file"]}
        display.out.print(display.kv_table(f"{o['suite']} · {who}", rows))


def compare_table(data: dict[str, Any]) -> Table:
    cols = data["columns"]
    t = Table(title="evaluation: score (items)", title_justify="left")
    t.add_column("suite", style="bold")
    for c in cols:
        t.add_column("base" if c == "base" else f"iter {c}", justify="right")
    for suite, by_col in data["suites"].items():
        cells = []
        for c in cols:
            s = by_col.get(str(c))
            cells.append("—" if s is None else f"{s['score']:.1%} ({s['items']})")
        t.add_row(suite, *cells)
    return t
