"""`azr loop`: the whole method, resumable. SIGTERM and Ctrl-C stop cleanly: the stage in
progress leaves only a temporary folder, which the next run discards and redoes."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from azr_cli import display
from azr_cli.errors import interrupted
from azr_cli.options import ConfigOpt, DeviceOpt, JsonOpt, RunOpt, SeedOpt, SetOpt


def on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def loop(
    run: RunOpt,
    iters: Annotated[int, typer.Option("--iters", "-n", min=1,
                                       help="Stop when the run has this many complete iterations.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Seed (if the run is new), then propose → validate → solve → reward → update per iteration,
    until the run has --iters complete iterations. Rerun the same command to resume."""
    from azr_cli.loop_display import LoopDisplay
    from stages import loop as loop_stage
    from stages import seed as seed_stage
    from stages.config.layers import load_config
    from stages.monitor.tracking import Tracker
    from stages.rundir.manifest import open_run
    from stages.session import Session

    flags: dict[str, Any] = {}
    if seed is not None:
        flags["run"] = {"seed": seed}
    if device:
        flags["model"] = {"device": device}
    if (run / "manifest.json").exists():
        r, overrides = open_run(run, config, set_, flags)
        if overrides:
            display.info(f"runtime overrides: {overrides}")
    else:
        r = seed_stage.run(run, load_config(config, set_, flags))
        display.info(f"created run {run} (model {r.config.model.name})")
    done = r.completed_iterations()
    if done >= iters:
        msg = f"run {run} already has {done} complete iterations (asked for {iters}); nothing to do"
        if json_:
            display.print_json({"run": str(run), "completed_iterations": done, "ran_stages": 0})
        else:
            display.info(msg)
        return
    signal.signal(signal.SIGTERM, on_sigterm)
    from azr_cli.run_cmds import status_data

    buffers = status_data(r)["buffers"]
    tracker = Tracker(r)
    try:
        with r.writing(), Session(r) as session, LoopDisplay(iters, buffers) as view:
            def on_event(e: dict[str, Any]) -> None:
                view.on_event(e)
                if e["event"] == "done":
                    tracker.log(e["iteration"], e["stage"], e["summary"].metrics)

            def after_iteration(n: int) -> None:
                from stages.evaluation.evaluate import maybe_evaluate

                for ev in maybe_evaluate(r, n, session):
                    tracker.log(n, f"eval/{ev.get('suite')}", {"score": ev.get("score")})
                    display.info(f"iter {n:>4} eval     {ev.get('suite')}: score {ev.get('score')}")

            ran = loop_stage.run(r, iters, session, on_event=on_event, progress_for=lambda n, s: view.progress,
                                 after_iteration=after_iteration)
    except KeyboardInterrupt:
        raise interrupted() from None
    finally:
        tracker.close()
    info = status_data(r)
    if json_:
        display.print_json({**info, "ran_stages": ran})
    else:
        display.info(f"run {run}: {info['completed_iterations']} complete iterations "
                     f"(buffers {info['buffers']}); `azr report --run {run}` plots it")
