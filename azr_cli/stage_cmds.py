"""The five stage commands, `azr propose|validate|solve|reward|update`, made from the stage table
(:data:`stages.pipeline.STAGES`), plus `azr export`.

Each command opens the run (runtime-only overrides allowed), takes the run lock, picks the
iteration (default: the first incomplete one), calls the stage from the table and prints its
summary. The loop calls the same table, so a stage command and the loop do the same work.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from azr_cli import display
from azr_cli.errors import interrupted, on_sigterm
from azr_cli.options import DeviceOpt, ForceOpt, IterOpt, JsonOpt, RunOpt, SetOpt, runtime_flags


def run_stage(stage: str, run_path: Path, iter_: int | None, force: bool, sets: list[str] | None,
              device: str | None, json_: bool) -> None:
    from stages import pipeline
    from stages import seed as seed_stage
    from stages.rundir.manifest import open_run
    from stages.session import Session

    run, overrides = open_run(run_path, None, sets, runtime_flags(device=device))
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with run.writing():
            n = run.resolve_iter(stage, iter_, force)
            seed_stage.ensure_ready(run)  # the loop asks the same before iteration 1
            if overrides and not json_:
                display.info(f"runtime overrides: {overrides}")
            with Session(run) as session, display.progress(f"{stage} {n}") as bar:
                summary = pipeline.STAGES[stage](run, n, session, force=force, progress=bar)
    except KeyboardInterrupt:
        raise interrupted() from None
    if run.config.log.tensorboard or run.config.log.wandb:
        from stages.monitor.tracking import Tracker

        tracker = Tracker(run)
        tracker.log(n, stage, summary.metrics)
        tracker.close()
    if json_:
        display.print_json({"iteration": n, "stage": stage, **summary.model_dump(mode="json")})
    else:
        print_summary(stage, n, summary)


def print_summary(stage: str, n: int, summary: Any) -> None:
    rows = {k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in summary.metrics.items()}
    if summary.reasons:
        rows["rejections"] = ", ".join(f"{k} {v}" for k, v in summary.reasons.items())
    display.out.print(display.kv_table(f"iteration {n} · {stage}", rows))


def stage_command(stage: str, help_text: str) -> Callable[..., None]:
    """The command of one stage of the table; every stage takes the same options."""

    def command(
        run: RunOpt,
        iter_: IterOpt = None,
        force: ForceOpt = False,
        set_: SetOpt = None,
        device: DeviceOpt = None,
        json_: JsonOpt = False,
    ) -> None:
        run_stage(stage, run, iter_, force, set_, device, json_)

    command.__name__ = stage
    command.__doc__ = help_text
    return command


def export(run: RunOpt, out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the model to.")],
           iter_: Annotated[int | None, typer.Option("--iter", "-i", help="Iteration (default: the latest checkpoint).",
                                                     show_default=False)] = None,
           force: ForceOpt = False, json_: JsonOpt = False) -> None:
    """Write the policy after iteration N as a plain transformers folder (adapter merged)."""
    from stages.model import export as stage
    from stages.rundir.manifest import open_run

    info = stage.run(open_run(run)[0], iter_, out, force=force)
    if json_:
        display.print_json(info)
    else:
        display.info(f"exported iteration {info['iteration']} to [bold]{info['out']}[/] "
                     "(load it with AutoModelForCausalLM.from_pretrained)")
