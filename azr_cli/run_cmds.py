"""Commands over a run directory: `azr seed`, `azr status`, and the stage commands."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from azr_cli import display
from azr_cli.options import ConfigOpt, ForceOpt, JsonOpt, RunOpt, SeedOpt, SetOpt


def _flags(seed: int | None = None) -> dict[str, Any]:
    return {"run": {"seed": seed}} if seed is not None else {}


def seed(
    run: RunOpt,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    force: ForceOpt = False,
    grow: Annotated[int | None, typer.Option(
        "--grow", help="Seeding phase target: the base model proposes until each buffer holds M tasks "
        "(default: seed.target, 4·B).", show_default=False)] = None,
    max_rounds: Annotated[int | None, typer.Option(
        "--max-rounds", help="Stop growing after this many rounds (default: seed.max_rounds).",
        show_default=False)] = None,
    json_: JsonOpt = False,
) -> None:
    """Create a run directory with the seed tasks (the identity triplet), then run the seeding
    phase (seed.grow, on by default): the base model proposes until each buffer holds the target.
    On an existing run, resume its seeding phase."""
    from stages import seed as seed_stage
    from stages.config.layers import load_config
    from stages.errors import RunError
    from stages.rundir.manifest import open_run

    flags = _flags(seed)
    if grow is not None or max_rounds is not None:
        flags["seed"] = {k: v for k, v in (("target", grow), ("max_rounds", max_rounds), ("grow", True)) if v}
    if (run / "manifest.json").exists() and not force:
        r = open_run(run, config, set_, flags)[0]
        with r.writing():
            if not seed_stage.pending(r):  # nothing to resume
                raise RunError(f"{run} already holds a run; choose another --run or pass --force to replace it")
    else:
        cfg = load_config(config, set_, flags)
        r = seed_stage.run(run, cfg, force=force)
        if not json_:
            display.info(f"created run [bold]{run}[/] (model {cfg.model.name}, config {cfg.digest()})")
    grown = None
    if r.config.seed.grow:
        from stages.session import Session

        target = seed_stage.seeding_target(r.config)
        with r.writing():
            if r.iterations():
                raise RunError(f"{run} already has iterations; its seed buffer can no longer change")
            with Session(r) as session, display.progress("seeding phase") as bar:
                grown = seed_stage.grow(r, target, session.policy_for(1), session.sandbox(),
                                        r.config.seed.max_rounds, bar)
        if not grown["reached"]:
            display.warn(f"after {grown['rounds']} rounds the buffers hold {grown['buffers']}, short of {target}; "
                         "rerun the same command to go on, or start the loop with what there is "
                         "(--set seed.grow=false)")
    info = status_data(r)
    if json_:
        display.print_json({**info, "grow": grown} if grown else info)
    else:
        print_status(info)


def status(run: RunOpt, json_: JsonOpt = False) -> None:
    """Iterations, which stages are done, buffer sizes, the last metrics."""
    from stages.rundir.manifest import open_run

    r = open_run(run)[0]
    r.check_stages()
    info = status_data(r)
    if json_:
        display.print_json(info)
    else:
        print_status(info)


def status_data(run: Any) -> dict[str, Any]:
    from stages.pipeline import STAGE_NAMES
    from stages.rundir.buffers import load_buffers

    iters = run.iterations()
    upto = max((n for n in iters if run.is_done(n, "validate")), default=0)
    buffers = load_buffers(run, upto)
    nxt_iter, nxt_stage = run.next_pending()
    metrics = run.metrics()
    return {
        "run": str(run.path),
        "format_version": run.manifest.get("format_version"),
        "base_model": run.config.model.name,
        "config_digest": run.config.digest(),
        "completed_iterations": run.completed_iterations(),
        "next": {"iteration": nxt_iter, "stage": nxt_stage},
        "iterations": [{"iteration": n, "stages": {s: run.is_done(n, s) for s in STAGE_NAMES}} for n in iters],
        "buffers": {t: len(v) for t, v in buffers.items()},
        "last_metrics": metrics[-1] if metrics else None,
    }


def print_status(info: dict[str, Any]) -> None:
    from rich.table import Table

    from stages.pipeline import STAGE_NAMES

    display.out.print(display.kv_table(
        f"run {info['run']}",
        {
            "base model": info["base_model"],
            "completed iterations": info["completed_iterations"],
            "next": f"iteration {info['next']['iteration']}, stage {info['next']['stage']}",
            **{f"buffer {t}": n for t, n in info["buffers"].items()},
        },
    ))
    if info["iterations"]:
        t = Table("iter", *STAGE_NAMES, title="stages", title_justify="left")
        for it in info["iterations"][-15:]:
            t.add_row(str(it["iteration"]), *("[green]✓[/]" if it["stages"][s] else "·" for s in STAGE_NAMES))
        display.out.print(t)
    if info["last_metrics"]:
        m = {k: v for k, v in info["last_metrics"].items() if not isinstance(v, dict | list)}
        display.out.print(display.kv_table("last metrics", m))
