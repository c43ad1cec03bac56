"""`azr config …`: the resolved configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from azr_cli.options import ConfigOpt, JsonOpt, SetOpt

app = typer.Typer(help="Show the resolved configuration.", no_args_is_help=True)


@app.command("show")
def show(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    run: Annotated[Path | None, typer.Option("--run", "-r", help="Show a run's saved config (plus overrides).")] = None,
    json_: JsonOpt = False,
    docs: Annotated[bool, typer.Option("--docs", help="List every key with its docstring.")] = False,
) -> None:
    """Print the config after layering: defaults < --config < --set (< a run's config.yaml)."""
    from azr_cli import display
    from stages.config.layers import load_config, to_yaml
    from stages.config.schema import field_docs, flatten, runtime_fields

    if run is not None:
        from stages.rundir.manifest import open_run

        cfg = open_run(run, config, set_)[0].config
    else:
        cfg = load_config(config, set_)
    if docs:
        flat, rt, doc = flatten(cfg.to_dict()), runtime_fields(), field_docs()
        if json_:
            display.print_json({k: {"value": v, "runtime": k in rt, "doc": doc.get(k, "")} for k, v in flat.items()})
            return
        from rich.table import Table

        t = Table("key", "value", "runtime", "what it is")
        for k, v in flat.items():
            t.add_row(k, repr(v), "yes" if k in rt else "", doc.get(k, ""))
        display.out.print(t)
        return
    if json_:
        display.print_json(cfg.to_dict())
    else:
        typer.echo(to_yaml(cfg), nl=False)
