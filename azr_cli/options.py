"""Option types shared by every command, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def _literal(value: Path | None) -> Path | None:
    """A path given on the command line is shown as typed, never read as Rich markup."""
    if value is not None:
        from azr_cli.display import literal

        literal(value)
    return value


RunOpt = Annotated[Path, typer.Option("--run", "-r", help="Run directory (e.g. runs/demo).", show_default=False,
                                      callback=_literal)]
IterOpt = Annotated[
    int | None,
    typer.Option("--iter", "-i", help="Iteration to work on; default: the first incomplete one.", show_default=False),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (see configs/).", show_default=False, callback=_literal),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config field: SECTION.FIELD=VALUE (YAML-typed, repeatable).",
                 show_default=False),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo a completed stage / replace an existing run.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts instead of tables.")]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Shortcut for --set run.seed=N.", show_default=False)
]
DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help="Shortcut for --set model.device=auto|cpu|cuda.", show_default=False),
]


def runtime_flags(seed: int | None = None, device: str | None = None) -> dict[str, Any]:
    """The config layer of the --seed and --device shortcuts (what they set, nothing when not given)."""
    flags: dict[str, Any] = {}
    if seed is not None:
        flags["run"] = {"seed": seed}
    if device:
        flags["model"] = {"device": device}
    return flags
