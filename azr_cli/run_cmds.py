"""Commands over a run directory: `azr seed`, `azr status`, and the stage commands."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from azr_cli import display
from azr_cli.errors import interrupted
from azr_cli.loop_cmds import on_sigterm
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
    phase (seed.grow, on by default): the base model proposes until each buffer holds the target,
    one line per round. On an existing run, resume its seeding phase after its last complete round
    (--max-rounds counts every round, earlier ones included)."""
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
            st = seed_stage.standing(r)
            if st.state == "stopped":
                raise RunError(st.message(r.path))
            if not st.pending:  # nothing to resume
                raise RunError(f"{run} already holds a run; choose another --run or pass --force to replace it")
    else:
        cfg = load_config(config, set_, flags)
        r = seed_stage.run(run, cfg, force=force)
        if not json_:
            display.info(f"created run [bold]{run}[/] (model {cfg.model.name}, config {cfg.digest()})")
    grown = None
    with r.writing():
        if seed_stage.pending(r):
            from azr_cli.loop_display import RoundsView
            from stages.session import Session

            signal.signal(signal.SIGTERM, on_sigterm)
            try:
                with Session(r) as session, RoundsView() as view:
                    grown = seed_stage.grow(r, seed_stage.seeding_target(r.config), session.policy_for(1),
                                            session.sandbox(), r.config.seed.max_rounds, view.progress,
                                            view.on_event)
            except KeyboardInterrupt:
                raise interrupted() from None
        st = seed_stage.standing(r)
    if st.state == "short":
        display.warn(f"after {st.rounds} rounds the buffers hold {st.buffers}, short of {st.target}; iteration 1 "
                     "goes on with what there is (seed.when_short=go_on)")
    elif st.state == "stopped" and json_:  # else the status below says it
        display.warn(st.message(r.path))
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
    """What `azr status --json` prints. ``next`` is ``{"iteration": 0, "stage": "seed"}`` while the
    seeding phase keeps iteration 1 waiting (``seeding.state`` pending or stopped)."""
    from stages.method.levers import run_markers
    from stages.pipeline import STAGE_NAMES
    from stages.rundir.buffers import load_buffers
    from stages.seed import standing

    iters = run.iterations()
    upto = max((n for n in iters if run.is_done(n, "validate")), default=0)
    buffers = load_buffers(run, upto)
    seeding = standing(run)
    nxt_iter, nxt_stage = (0, "seed") if seeding.blocks else run.next_pending()
    metrics = run.metrics()
    return {
        "run": str(run.path),
        "format_version": run.manifest.get("format_version"),
        "base_model": run.config.model.name,
        "config_digest": run.config.digest(),
        "markers": run_markers(run.config.reward.control),
        "completed_iterations": run.completed_iterations(),
        "next": {"iteration": nxt_iter, "stage": nxt_stage},
        "seeding": {**seeding.to_dict(), "grow": run.config.seed.grow,
                    **({"message": seeding.message(run.path)} if seeding.blocks else {})},
        "iterations": [{"iteration": n, "stages": {s: run.is_done(n, s) for s in STAGE_NAMES}} for n in iters],
        "buffers": {t: len(v) for t, v in buffers.items()},
        "last_metrics": metrics[-1] if metrics else None,
    }


def print_status(info: dict[str, Any]) -> None:
    from rich.table import Table

    from stages.pipeline import STAGE_NAMES

    seeding = info["seeding"]
    if seeding["state"] == "pending":
        nxt = f"seeding round {seeding['rounds'] + 1} (of at most {seeding['max_rounds']})"
    elif seeding["state"] == "stopped":
        nxt = "nothing: the seeding phase stopped short (see below)"
    else:
        nxt = f"iteration {info['next']['iteration']}, stage {info['next']['stage']}"
    rounds = (f"{seeding['rounds']} round(s) complete, {seeding['state']}; seed tasks "
              + " ".join(f"{t[:3]} {n}/{seeding['target']}" for t, n in seeding["buffers"].items()))
    for marker in info.get("markers", []):
        display.out.print(f"[bold red]{display.escape(marker)}[/]")
    display.out.print(display.kv_table(
        f"run {info['run']}",
        {
            "base model": info["base_model"],
            "completed iterations": info["completed_iterations"],
            **({"seeding phase": rounds} if seeding["grow"] or seeding["rounds"] else {}),
            "next": nxt,
            **{f"buffer {t}": n for t, n in info["buffers"].items()},
        },
    ))
    if seeding["state"] == "stopped":
        display.warn(seeding["message"])
    if info["iterations"]:
        t = Table("iter", *STAGE_NAMES, title="stages", title_justify="left")
        for it in info["iterations"][-15:]:
            t.add_row(str(it["iteration"]), *("[green]✓[/]" if it["stages"][s] else "·" for s in STAGE_NAMES))
        display.out.print(t)
    if info["last_metrics"]:
        m = {k: v for k, v in info["last_metrics"].items() if not isinstance(v, dict | list)}
        display.out.print(display.kv_table("last metrics", m))
