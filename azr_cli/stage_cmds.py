"""The six stage commands: `azr propose|validate|solve|reward|update` over a run directory.

Each opens the run (runtime-only overrides allowed), picks the iteration (default: the first
incomplete one), runs the stage function from `stages/` and prints its summary.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from azr_cli import display
from azr_cli.errors import interrupted
from azr_cli.loop_cmds import on_sigterm
from azr_cli.options import DeviceOpt, ForceOpt, IterOpt, JsonOpt, RunOpt, SetOpt


def _flags(device: str | None) -> dict[str, Any]:
    return {"model": {"device": device}} if device else {}


def run_stage(
    stage: str,
    run_path: Any,
    iter_: int | None,
    force: bool,
    sets: list[str] | None,
    device: str | None,
    json_: bool,
    body: Callable[[Any, int, Any, Any], dict[str, Any]],
) -> None:
    from stages.rundir import open_run
    from stages.session import Session

    run, overrides = open_run(run_path, None, sets, _flags(device))
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with run.writing():
            n = run.resolve_iter(stage, iter_, force)
            if overrides and not json_:
                display.info(f"runtime overrides: {overrides}")
            with Session(run) as session, display.progress(f"{stage} {n}") as bar:
                summary = body(run, n, session, bar)
    except KeyboardInterrupt:
        raise interrupted() from None
    if run.config.log.tensorboard or run.config.log.wandb:
        from stages.tracking import Tracker

        tracker = Tracker(run)
        tracker.log(n, stage, summary.get("metrics", {}))
        tracker.close()
    if json_:
        display.print_json({"iteration": n, "stage": stage, **summary})
    else:
        print_summary(stage, n, summary)


def print_summary(stage: str, n: int, summary: dict[str, Any]) -> None:
    rows = {k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in summary.get("metrics", {}).items()}
    if summary.get("reasons"):
        rows["rejections"] = ", ".join(f"{k} {v}" for k, v in summary["reasons"].items())
    display.out.print(display.kv_table(f"iteration {n} · {stage}", rows))


def propose(
    run: RunOpt,
    iter_: IterOpt = None,
    force: ForceOpt = False,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """The proposer writes B task proposals per type (deduction, abduction, induction)."""
    from stages import propose as stage

    run_stage(
        "propose",
        run,
        iter_,
        force,
        set_,
        device,
        json_,
        lambda r, n, s, bar: stage.run(r, n, s.policy_for(n), force=force, progress=bar),
    )


def validate(
    run: RunOpt, iter_: IterOpt = None, force: ForceOpt = False, set_: SetOpt = None, json_: JsonOpt = False
) -> None:
    """The sandbox validates every proposal; valid ones become tasks (rejections keep a reason)."""
    from stages import validate as stage

    run_stage(
        "validate",
        run,
        iter_,
        force,
        set_,
        None,
        json_,
        lambda r, n, s, bar: stage.run(r, n, s.sandbox(), force=force),
    )


def solve(
    run: RunOpt,
    iter_: IterOpt = None,
    force: ForceOpt = False,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """The solver answers n rollouts per new task and its training batch; the sandbox checks them."""
    from stages import solve as stage

    run_stage(
        "solve",
        run,
        iter_,
        force,
        set_,
        device,
        json_,
        lambda r, n, s, bar: stage.run(r, n, s.policy_for(n), s.sandbox(), force=force, progress=bar),
    )


def reward(run: RunOpt, iter_: IterOpt = None, force: ForceOpt = False, json_: JsonOpt = False) -> None:
    """Proposer (learnability) and solver rewards, and TRR++ advantages per (type, role)."""
    from stages import reward as stage

    run_stage(
        "reward", run, iter_, force, None, None, json_, lambda r, n, s, bar: stage.run(r, n, force=force)
    )


def update(
    run: RunOpt,
    iter_: IterOpt = None,
    force: ForceOpt = False,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """One optimizer step (TRR++ or PPO) on the iteration's samples, then a checkpoint."""
    from stages import update as stage

    run_stage(
        "update", run, iter_, force, set_, device, json_, lambda r, n, s, bar: stage.run(r, n, s, force=force)
    )


def export(run: RunOpt, out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the model to.")],
           iter_: Annotated[int | None, typer.Option("--iter", "-i", help="Iteration (default: the latest checkpoint).",
                                                     show_default=False)] = None,
           force: ForceOpt = False, json_: JsonOpt = False) -> None:
    """Write the policy after iteration N as a plain transformers folder (adapter merged)."""
    from stages import export as stage
    from stages.rundir import open_run

    info = stage.run(open_run(run)[0], iter_, out, force=force)
    if json_:
        display.print_json(info)
    else:
        display.info(f"exported iteration {info['iteration']} to [bold]{info['out']}[/] "
                     "(load it with AutoModelForCausalLM.from_pretrained)")
