"""Commands over a run directory: `azr seed` and `azr status`."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from azr_cli import display
from azr_cli.errors import interrupted, on_sigterm
from azr_cli.options import ConfigOpt, ForceOpt, JsonOpt, RunOpt, SeedOpt, SetOpt, runtime_flags
from azr_cli.status import print_status, status_data
from stages.hooks import Hooks

if TYPE_CHECKING:
    from azr_cli.loop_display import RoundsView


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
    from stages.seeding import seed_run

    flags = runtime_flags(seed=seed)
    if grow is not None or max_rounds is not None:
        flags["seed"] = {k: v for k, v in (("target", grow), ("max_rounds", max_rounds), ("grow", True)) if v}
    done = seed_run(run, config, set_, flags, force=force, hooks=SeedHooks(run, json_))
    st = done.standing
    if st.state == "short":
        display.warn(f"after {st.rounds} rounds the buffers hold {st.buffers}, short of {st.target}; iteration 1 "
                     "goes on with what there is (seed.when_short=go_on)")
    elif st.state == "stopped" and json_:  # else the status below says it
        display.warn(st.message(done.run.path))
    info = status_data(done.run)
    if json_:
        display.print_json({**info, "grow": done.grown} if done.grown else info)
    else:
        print_status(info)


class SeedHooks(Hooks):
    """`azr seed`'s view of :func:`stages.seeding.seed_run`: the new run's line, a line per round."""

    def __init__(self, run: Path, json_: bool) -> None:
        self.run, self.json_ = run, json_

    def opened(self, r: Any, overrides: dict[str, Any] | None) -> None:
        if overrides is None and not self.json_:
            display.info(f"created run [bold]{self.run}[/] (model {r.config.model.name}, config {r.config.digest()})")

    def starting(self, r: Any) -> None:
        signal.signal(signal.SIGTERM, on_sigterm)

    def view(self) -> RoundsView:
        from azr_cli.loop_display import RoundsView

        return RoundsView()

    def interrupted(self) -> BaseException:
        return interrupted()


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
