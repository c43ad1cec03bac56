"""`azr loop`: the whole method, resumable. SIGTERM and Ctrl-C stop cleanly: the stage in
progress leaves only a temporary folder, which the next run discards and redoes."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from azr_cli import display
from azr_cli.errors import interrupted, on_sigterm
from azr_cli.options import ConfigOpt, DeviceOpt, JsonOpt, RunOpt, SeedOpt, SetOpt, runtime_flags
from azr_cli.status import status_data
from stages.hooks import Hooks

if TYPE_CHECKING:
    from azr_cli.loop_display import LoopDisplay


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
    from stages.loop import run_loop

    done = run_loop(run, iters, config, set_, runtime_flags(seed=seed, device=device), LoopHooks(run, iters))
    if done.ran is None:
        if json_:
            display.print_json({"run": str(run), "completed_iterations": done.completed_before, "ran_stages": 0})
        else:
            display.info(f"run {run} already has {done.completed_before} complete iterations (asked for {iters}); "
                         "nothing to do")
        return
    info = status_data(done.run)
    if json_:
        display.print_json({**info, "ran_stages": done.ran})
    else:
        display.info(f"run {run}: {info['completed_iterations']} complete iterations "
                     f"(buffers {info['buffers']}); `azr report --run {run}` plots it")


class LoopHooks(Hooks):
    """`azr loop`'s view of :func:`stages.loop.run_loop`: the live panel (or a line per stage)."""

    def __init__(self, run: Path, iters: int) -> None:
        self.run, self.iters = run, iters
        self.buffers: dict[str, int] = {}

    def opened(self, r: Any, overrides: dict[str, Any] | None) -> None:
        if overrides is None:
            display.info(f"created run {self.run} (model {r.config.model.name})")
        elif overrides:
            display.info(f"runtime overrides: {overrides}")

    def starting(self, r: Any) -> None:
        signal.signal(signal.SIGTERM, on_sigterm)
        self.buffers = status_data(r)["buffers"]

    def view(self) -> LoopDisplay:
        from azr_cli.loop_display import LoopDisplay

        return LoopDisplay(self.iters, self.buffers)

    def evaluated(self, iteration: int, result: dict[str, Any]) -> None:
        display.info(f"iter {iteration:>4} eval     {result.get('suite')}: score {result.get('score')}")

    def interrupted(self) -> BaseException:
        return interrupted()
