"""Looking at a run: `azr report` (figures + a Markdown summary) and `azr inspect` (the records
of one stage as a table or JSON)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from azr_cli import display
from azr_cli.errors import UserError
from azr_cli.options import JsonOpt, RunOpt
from stages.method.kinds import KINDS
from stages.rundir.layout import PROPOSALS, STAGE_NAMES, STAGE_RECORDS, VALIDATIONS

StageName = StrEnum("StageName", {name: name for name in ("seed", *STAGE_NAMES)})
"""The stages of an iteration, and ``seed``: the seeding phase's rounds."""
TypeName = StrEnum("TypeName", {name: name for name in KINDS})


OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Folder for the figures and README.md; default: RUN/report.",
                 show_default=False),
]
InspectIterOpt = Annotated[
    int | None,
    typer.Option("--iter", "-i", help="Iteration; default: the latest one whose stage is complete.",
                 show_default=False),
]
StageOpt = Annotated[StageName, typer.Option(
    "--stage", help="Stage whose records to show (seed: the seeding phase's proposals and verdicts).")]
RoundOpt = Annotated[
    int | None,
    typer.Option("--round", help="With --stage seed: one seeding round; default: every round.", show_default=False),
]
TypeOpt = Annotated[
    TypeName | None, typer.Option("--type", "-t", help="Only records of this task type.", show_default=False)
]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", min=0, help="Show at most this many records (0: all).")]


# ----------------------------------------------------------------------------- report


def report(run: RunOpt, out: OutOpt = None, json_: JsonOpt = False) -> None:
    """PNG figures of a run (rewards, accuracy, validity, rejections, buffers, tokens/s, loss,
    time, eval scores) and a README.md summary beside them."""
    from stages.monitor import report as report_lib
    from stages.rundir.manifest import open_run

    result = report_lib.build(open_run(run)[0], out)
    if json_:
        display.print_json({
            "run": str(run), "out": str(result.out), "iterations": result.iterations,
            "files": [str(p) for p in result.files], "notes": result.notes,
        })
        return
    for note in result.notes:
        display.warn(note)
    display.out.print(f"report of {result.iterations} iteration(s) in [bold]{result.out}[/]:", soft_wrap=True)
    for p in result.files:
        display.out.print(f"  {p}", soft_wrap=True, markup=False)


# ----------------------------------------------------------------------------- inspect


def inspect(
    run: RunOpt,
    iter_: InspectIterOpt = None,
    stage: StageOpt = StageName("validate"),
    type_: TypeOpt = None,
    limit: LimitOpt = 20,
    json_: JsonOpt = False,
    round_: RoundOpt = None,
) -> None:
    """The records of one stage as a table: ids, type, prompt and completion (shortened),
    verdicts, rewards. `--json` prints the records untruncated as a JSON list, token ids left
    out (for `update`, which writes no records, its summary). `--stage seed`: the seeding phase's
    proposals with their verdicts (rejection reasons included), every round or `--round K`."""
    from stages.rundir.manifest import open_run

    r = open_run(run)[0]
    name = stage.value
    if name == "seed":
        if iter_ is not None:
            raise UserError("--iter does not apply to --stage seed (the seeding phase precedes iteration 1); "
                            "use --round K")
        inspect_seed(r, round_, type_, limit, json_)
        return
    if round_ is not None:
        raise UserError("--round applies only to --stage seed")
    n = pick_iteration(r, name, iter_)
    if not STAGE_RECORDS[name]:
        summary = r.summary(n, name)
        if json_:
            display.print_json(summary.model_dump(mode="json"))
        else:
            display.info(f"the {name} stage writes no records (its checkpoint is under checkpoints/); its summary:")
            display.out.print(display.kv_table(f"iteration {n} · {name}", _rounded(summary.metrics)))
        return
    records = load_records(r, n, name)
    total = len(records)
    if type_ is not None:
        records = [x for x in records if x.type == type_.value]
    matching = len(records)
    shown = records[:limit] if limit else records
    if json_:
        display.print_json([x.model_dump(mode="json", exclude=TOKEN_IDS) for x in shown])
        return
    title = f"iteration {n} · {name} · {len(shown)} of {matching}" + (
        f" {type_.value} (of {total})" if type_ is not None else ""
    )
    display.out.print(records_table(name, shown, title, proposals=_proposals_for(r, n, name)))
    if len(shown) < matching:
        display.info(f"{matching - len(shown)} more; --limit 0 shows all, --json the full records")


def inspect_seed(run: Any, round_: int | None, type_: Any, limit: int, json_: bool) -> None:
    """The seeding phase's proposals joined with their verdicts, round by round."""

    done = run.seed_rounds()
    if not done:
        grow = "on" if run.config.seed.grow else "off"
        raise UserError(f"{run.path} has no complete seeding round (seed.grow is {grow}); run `azr seed --run "
                        f"{run.path}` or `azr loop` first")
    if round_ is not None and not 1 <= round_ <= done:
        raise UserError(f"seeding round {round_} has not completed (rounds {_ranges(list(range(1, done + 1)))} have)")
    ks = [round_] if round_ is not None else list(range(1, done + 1))
    rows: list[tuple[int, Any, Any]] = []
    for k in ks:
        proposals = {p.proposal_id: p for p in run.round_records(k, PROPOSALS)}
        rows += [(k, proposals.get(v.proposal_id), v) for v in run.round_records(k, VALIDATIONS)]
    total = len(rows)
    if type_ is not None:
        rows = [x for x in rows if x[2].type == type_.value]
    matching = len(rows)
    shown = rows[:limit] if limit else rows
    if json_:
        display.print_json([{"round": k, **(p.model_dump(mode="json", exclude=TOKEN_IDS) if p is not None else {}),
                             **v.model_dump(mode="json")} for k, p, v in shown])
        return
    which = f"round {ks[0]}" if len(ks) == 1 else f"rounds {_ranges(ks)}"
    title = f"seeding phase · {which} · {len(shown)} of {matching}" + (
        f" {type_.value} (of {total})" if type_ is not None else "")
    proposals = {p.proposal_id: p for _, p, _ in shown if p is not None}
    display.out.print(records_table("validate", [v for _, _, v in shown], title, proposals=proposals))
    if len(shown) < matching:
        display.info(f"{matching - len(shown)} more; --limit 0 shows all, --json the full records")
    reasons: dict[str, int] = {}
    for _, _, v in rows:
        if not v.valid:
            reasons[v.reason or "?"] = reasons.get(v.reason or "?", 0) + 1
    valid = sum(v.valid for _, _, v in rows)
    display.info(f"{valid} of {matching} valid; rejected: "
                 + (", ".join(f"{k} {c}" for k, c in sorted(reasons.items(), key=lambda kv: -kv[1])) or "none"))


def pick_iteration(run: Any, stage: str, requested: int | None) -> int:
    done = [n for n in run.iterations() if run.is_done(n, stage)]
    if requested is None:
        if not done:
            raise UserError(f"no iteration of {run.path} has a complete '{stage}' stage yet; "
                            f"run `azr {stage} --run {run.path}` or `azr loop` first")
        return done[-1]
    if not run.is_done(requested, stage):
        have = f"complete for iterations {_ranges(done)}" if done else "not complete in any iteration"
        raise UserError(f"iteration {requested}: stage '{stage}' has not completed ({stage} is {have})")
    return requested


def load_records(run: Any, n: int, stage: str) -> list[Any]:
    """The stage's main record file (the first it writes, in the stage table)."""
    return run.records(n, STAGE_RECORDS[stage][0])


def _proposals_for(run: Any, n: int, stage: str) -> dict[str, Any]:
    """validate rows show the proposal they judge (joined by id)."""
    if stage != "validate" or not run.is_done(n, "propose"):
        return {}
    return {p.proposal_id: p for p in run.records(n, PROPOSALS)}


# ----------------------------------------------------------------------------- table

TOKEN_IDS = {"prompt_ids", "completion_ids"}
"""Left out of `--json` (hundreds of numbers per record); the .jsonl files keep them."""


def snippet(text: str | None, width: int = 60) -> str:
    """A one-line view of model text: newlines as ⏎, tabs as →; when longer than `width`, the
    head and the tail around an ellipsis (the end of a prompt and of a completion matter most)."""
    if text is None:
        return ""
    flat = text.replace("\r\n", "\n").replace("\n", "⏎").replace("\t", "→")
    if len(flat) <= width:
        return flat
    head = max(width // 3, 1)
    tail = max(width - head - 1, 1)
    return f"{flat[:head]}…{flat[-tail:]}"


def _mark(ok: bool | None, why: str | None = None) -> str:
    if ok is None:
        return "·"
    return "✓" if ok else ("✗ " + why if why else "✗")


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:+.3f}"


COLUMNS: dict[str, tuple[str, ...]] = {
    "propose": ("proposal", "type", "prompt", "completion", "format"),
    "validate": ("proposal", "type", "verdict", "detail", "program / completion"),
    "solve": ("rollout", "task", "type", "prompt", "completion", "prediction", "verdict"),
    "reward": ("sample", "role", "type", "reward", "adv", "solved", "verdict"),
}
TEXT_COLUMNS = {"prompt": 2, "completion": 3, "program / completion": 3, "detail": 2, "prediction": 1}
"""Model text columns and how many lines of the column's width their snippet may fill."""
ID_COLUMNS = {"proposal", "rollout", "sample"}
DROP_ORDER = ("prompt", "task", "detail", "prediction")
"""Left out, in this order, when the terminal is too narrow for every column."""


def record_row(stage: str, x: Any, proposals: dict[str, Any]) -> tuple[str, ...]:
    if stage == "propose":
        return (x.proposal_id, x.type, x.prompt, x.completion, _mark(x.format_ok, x.format_error))
    if stage == "validate":
        p = proposals.get(x.proposal_id)
        body = x.task.program if x.task is not None else ((p.program or p.completion) if p is not None else "")
        return (x.proposal_id, x.type, _mark(x.valid, x.reason), x.detail, body or "")
    if stage == "solve":
        if not x.format_ok:
            verdict = _mark(False, f"format: {x.format_error}" if x.format_error else "format")
        else:
            verdict = "✓ correct" if x.correct else "✗ wrong"
        if not KINDS[x.type].proposes_program and x.format_ok:  # checked on hidden pairs
            verdict += f" ({x.fraction:.0%} hidden)"
        return (x.rollout_id, x.task_id, x.type, x.prompt, x.completion, x.prediction or "", verdict)
    if stage == "reward":
        rate = "" if x.solve_rate is None else f"{x.solve_rate:.2f}"
        return (x.sample_id, x.role, x.type, _num(x.reward), _num(x.advantage), rate, _sample_verdict(x))
    raise ValueError(f"no table for stage {stage!r}")


def _sample_verdict(x: Any) -> str:
    if not x.format_ok:
        return "✗ format"
    if x.role == "proposer":
        return "✓ valid" if x.valid else ("✗ invalid" if x.valid is not None else "·")
    return "✓ correct" if x.correct else ("✗ wrong" if x.correct is not None else "·")


def records_table(stage: str, records: list[Any], title: str, proposals: dict[str, Any] | None = None,
                  width: int | None = None) -> Any:
    """A table that fits `width` (default: the terminal): ids and verdicts whole, model text cut
    to a snippet of a few lines of its column; the least useful columns go when it is narrow."""
    from rich.table import Table
    from rich.text import Text

    width = width or display.out.width
    cols = list(COLUMNS[stage])
    rows = [record_row(stage, x, proposals or {}) for x in records]
    fixed = {c: min(max([len(c), *(len(r[i]) for r in rows)]), 28)
             for i, c in enumerate(cols) if c not in TEXT_COLUMNS}
    while True:
        text = [c for c in cols if c in TEXT_COLUMNS]
        spare = width - sum(fixed[c] for c in cols if c in fixed) - (3 * len(cols) + 1)
        droppable = [c for c in DROP_ORDER if c in cols]
        if not text or spare >= 14 * len(text) or not droppable:
            break
        cols.remove(droppable[0])
    per = max(spare // len(text), 8) if text else 0
    t = Table(title=title, title_justify="left")
    for c in cols:
        if c in TEXT_COLUMNS:
            t.add_column(c, width=per, overflow="fold")
        elif c in ID_COLUMNS:  # ids are read whole; short columns wrap first when space is short
            t.add_column(c, no_wrap=True)
        else:
            t.add_column(c, overflow="fold", max_width=fixed[c])
    keep = [COLUMNS[stage].index(c) for c in cols]
    for row in rows:
        cells = [snippet(row[i], per * TEXT_COLUMNS[c]) if c in TEXT_COLUMNS else row[i]
                 for i, c in zip(keep, cols, strict=True)]
        # Text(): model output is full of [brackets] that Rich would read as markup
        t.add_row(*(Text(c) for c in cells))
    return t


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in metrics.items()}


def _ranges(ns: list[int]) -> str:
    parts, start = [], None
    for i, n in enumerate(ns):
        if start is None:
            start = n
        if i + 1 == len(ns) or ns[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}–{n}")
            start = None
    return ", ".join(parts)
