"""`azr eval`: evaluate the base model or an iteration's policy on a suite, or compare the saved
scores side by side (`--compare`). The work is in :mod:`stages.evaluation`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from azr_cli import display
from azr_cli.options import DeviceOpt, JsonOpt, RunOpt, SetOpt, runtime_flags

EvalIterOpt = Annotated[
    list[int] | None,
    typer.Option("--iter", "-i", help="Evaluate the policy after iteration N's update; with --compare, "
                 "repeatable to choose the columns.", show_default=False),
]
BaseOpt = Annotated[bool, typer.Option("--base", help="Evaluate the base model (no adapter).")]
SuiteOpt = Annotated[
    list[str] | None,
    typer.Option("--suite", help="code: humaneval-plus | mbpp-plus | livecodebench | humaneval | mbpp; math: "
                 "math500 | aime24 | aime25 | amc23 | minerva | olympiadbench | math-synth (offline); I/O "
                 "prediction: humaneval-io | cruxeval | dev (repeatable); default: the run's eval.suites.",
                 show_default=False),
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, help="Evaluate the first K items only.", show_default=False)
]
DataOpt = Annotated[
    list[str] | None,
    typer.Option("--data", help="The benchmark's published file (JSONL, .jsonl.gz; LiveCodeBench: a file or the "
                 "folder of test*.jsonl), or SUITE=FILE, repeatable, one per suite; default: the copy --download "
                 "fetched. Also CRUXEval (code/input/output), MBPP (text/code/test_list), azr tasks (dev).",
                 show_default=False),
]
CompareOpt = Annotated[bool, typer.Option("--compare", help="Show saved scores: base vs iterations.")]
TableOpt = Annotated[
    str | None,
    typer.Option("--table", help="With --compare: 'paper' prints the paper's Table 1 (code and math benchmarks, "
                 "their averages and the overall one) for the base model and each iteration.", show_default=False),
]
SamplesOpt = Annotated[int, typer.Option("--samples", "-n", min=1, help="Completions per item; pass@k for every "
                                         "k <= N (needs --temperature > 0 when N > 1).")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", "-t", min=0.0, help="Sampling temperature "
                                               "(0: greedy).")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Fetch the suites' published files (network) into "
                                           "the azr cache, pinned to a revision, before evaluating.")]
RevisionOpt = Annotated[
    str | None,
    typer.Option("--revision", help="With --download: the dataset revision (commit, branch or tag) to fetch; "
                 "default: the one azr pins.", show_default=False),
]


def eval_cmd(
    run: RunOpt,
    iter_: EvalIterOpt = None,
    base: BaseOpt = False,
    suite: SuiteOpt = None,
    limit: LimitOpt = None,
    data: DataOpt = None,
    compare: CompareOpt = False,
    table: TableOpt = None,
    samples: SamplesOpt = 1,
    temperature: TemperatureOpt = 0.0,
    download: DownloadOpt = False,
    revision: RevisionOpt = None,
    json_: JsonOpt = False,
    set_: SetOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Evaluate on held-out benchmarks (greedy, or --samples N at --temperature T for pass@k);
    writes eval/<suite>-<base|N>.json. `--compare [--table paper]` shows the saved results."""
    from stages.errors import EvalError
    from stages.evaluation import evaluate
    from stages.evaluation.suites import check_suite
    from stages.rundir.manifest import open_run

    if table is not None and table != "paper":
        raise EvalError(f"--table {table}: the only table is 'paper'")
    if table is not None and not compare:
        raise EvalError("--table paper shows saved results: add --compare")
    run_, _ = open_run(run, None, set_, runtime_flags(device=device))
    if compare:
        shown = evaluate.paper_table(run_, iter_ or None) if table == "paper" else evaluate.compare(run_, iter_ or None)
        if json_:
            display.print_json(shown)
        else:
            display.out.print(paper_table(shown) if table == "paper" else compare_table(shown))
        return
    if base == bool(iter_) or (iter_ and len(iter_) > 1):
        raise EvalError("choose what to evaluate: --base, or one --iter N")
    if samples > 1 and temperature <= 0:
        raise EvalError(f"--samples {samples} with --temperature 0 gives {samples} equal completions; "
                        "set --temperature > 0 (e.g. 0.6)")
    suites = suite or run_.config.eval.suites
    files = data_files(data, suites)
    if revision is not None and not download:
        raise EvalError("--revision applies to --download")
    if download:
        from stages.evaluation.data import download as fetch
        from stages.evaluation.suites import SPECS

        for s in suites:  # the suites that read files; math-synth and humaneval need none
            if files.get(s) is None and s in SPECS and SPECS[s].source == "file":
                display.info(f"{s}: fetched {fetch(s, revision)}")
    for s in suites:
        check_suite(s, files.get(s), limit)
    iteration = None if base else iter_[0]  # type: ignore[index]
    policy = evaluate.policy_of(run_, iteration)
    from sandbox.pool import open_sandbox

    outs = []
    with open_sandbox(run_.config.sandbox) as sandbox:
        for s in suites:
            with display.progress(f"eval {s}") as bar:
                out = evaluate.evaluate(run_, policy, sandbox, s, iteration, limit=limit, data=files.get(s), progress=bar,
                                        samples=samples, temperature=temperature)
            outs.append({k: v for k, v in out.items() if k != "results"}
                        | {"file": str(evaluate.eval_path(run_, s, iteration))})
    if json_:
        display.print_json(outs[0] if len(outs) == 1 else outs)
        return
    for o in outs:
        who = "base" if iteration is None else f"iteration {iteration}"
        display.out.print(display.kv_table(f"{o['suite']} · {who}", result_rows(o)))


def result_rows(o: dict[str, Any]) -> dict[str, Any]:
    """The rows of one suite's result table: the score, pass@k, by kind, format, where it is saved."""
    rows: dict[str, Any] = {"score": f"{o['score']:.1%}", "items": o["items"]}
    if o.get("samples", 1) > 1:
        rows["samples"] = f"{o['samples']} at T={o['temperature']}"
        rows |= {f"pass@{k}": f"{v:.1%}" for k, v in o["pass_at_k"].items()}
    if "score_base" in o:
        rows["score (base tests only)"] = f"{o['score_base']:.1%}"
    rows |= {f"score/{k}": f"{v:.1%}" for k, v in o["by_kind"].items()}
    rows |= {"strict (format too)": f"{o['score_strict']:.1%}", "format ok": f"{o['format_ok']:.1%}",
             "repetitions stopped": o["repetitions"], "template": f"{o['template']['suite']} + "
             f"{o['template']['prompt_format']}", "seconds": o["seconds"], "file": o["file"]}
    return rows


def data_files(data: list[str] | None, suites: list[str]) -> dict[str, Path]:
    """--data values: SUITE=FILE for one suite, a bare FILE for every suite evaluated."""
    from stages.errors import EvalError
    from stages.evaluation.suites import SPECS

    out: dict[str, Path] = {}
    for value in data or []:
        name, sep, path = value.partition("=")
        if sep and name in SPECS:
            if name not in suites:
                raise EvalError(f"--data {value}: suite '{name}' is not evaluated (add --suite {name})")
            out[name] = Path(path)
        else:
            out |= {s: Path(value) for s in suites}
    return out


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


def paper_table(data: dict[str, Any], width: int | None = None) -> Table:
    """The paper's Table 1 layout (a model a row, a benchmark a column; turned on its side when the
    terminal is too narrow for 13 columns): percentages, one decimal; a missing suite is '—'."""
    cols = data["columns"]
    cells: dict[str, list[str]] = {}
    for row in data["rows"]:
        out = []
        for c in cols:
            v = row["scores"].get(c) if c in row["scores"] else row[c]
            cell = "—" if v is None else f"{100 * v:.1f}"
            for avg, group in (("code_avg", "code"), ("math_avg", "math")):
                n = row[f"{group}_suites"]
                if c == avg and v is not None and n < len(data[group]):
                    cell += f" ({n}/{len(data[group])})"
            out.append(cell)
        cells[row["model"]] = out
    title = "the paper's table: pass@1 (%); — = not evaluated; averages over the suites present"
    t = Table(title=title, title_justify="left")
    averages = ("code_avg", "math_avg", "overall")
    if (width or display.out.width) >= 14 + 9 * len(cols):
        t.add_column("model", style="bold")
        for c in cols:
            t.add_column(data["headings"][c], justify="right", style="bold" if c in averages else None)
        for model, row_cells in cells.items():
            t.add_row(model, *row_cells)
        return t
    t.add_column("benchmark", style="bold")
    for model in cells:
        t.add_column(model, justify="right")
    for i, c in enumerate(cols):
        t.add_row(data["headings"][c], *(row_cells[i] for row_cells in cells.values()),
                  style="bold" if c in averages else None)
    return t
