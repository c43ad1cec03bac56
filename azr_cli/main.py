"""The `azr` command: wiring only. Each command lives in a module of its group and calls the
library (`stages`, `sandbox`); exceptions become one line and an exit code in :func:`main`."""

from __future__ import annotations

import os
import sys

import typer

from azr_cli import config_cmds, eval_cmds, loop_cmds, report_cmds, run_cmds, sandbox_cmds, stage_cmds
from sandbox.errors import SandboxUnavailable
from stages import parallel
from stages.errors import AzrError
from stages.rundir.layout import STAGE_HELP

app = typer.Typer(
    name="azr",
    help="Absolute Zero self-play for code LMs: propose tasks, validate them in nsjail, solve, learn.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command("seed")(run_cmds.seed)
app.command("status")(run_cmds.status)
for _stage, _help in STAGE_HELP.items():
    app.command(_stage)(stage_cmds.stage_command(_stage, _help))
app.command("loop")(loop_cmds.loop)
app.command("export")(stage_cmds.export)
app.command("eval")(eval_cmds.eval_cmd)
app.command("report")(report_cmds.report)
app.command("inspect")(report_cmds.inspect)
app.command("exec")(sandbox_cmds.exec_cmd)
app.command("doctor")(sandbox_cmds.doctor_cmd)
app.add_typer(config_cmds.app, name="config")

USER_ERRORS = (AzrError, SandboxUnavailable)
"""Exceptions whose message is meant for the user: one line, exit 1 (importing them is free)."""


def _quiet_libraries() -> None:
    """Library chatter (deprecation notices, bitsandbytes' note about optional hub kernels) is
    not for users; AZR_DEBUG=1 shows it."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*requires_grad=True to a scalar.*")
    for name in ("bitsandbytes", "transformers", "peft", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main() -> None:
    try:
        _main()
    except SystemExit as e:  # what rank 0 tells the other ranks when it is over (several ranks)
        _exit_code[0] = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        parallel.stop(_exit_code[0])
        raise


def _main() -> None:
    from azr_cli.display import error_line

    debug = os.environ.get("AZR_DEBUG") == "1"
    if not debug:
        _quiet_libraries()
    if parallel.active():  # one of several ranks (torchrun, accelerate launch)
        _several_ranks(debug)
    try:
        app()
    except KeyboardInterrupt:
        error_line("interrupted; completed stages are kept, rerun the same command to continue")
        sys.exit(130)
    except Exception as e:
        if debug:
            raise
        if isinstance(e, USER_ERRORS):
            error_line(str(e).splitlines()[0] if str(e) else type(e).__name__)
            sys.exit(1)
        if isinstance(e, OSError) and e.strerror:  # read-only filesystem, disk full, not a directory ...
            where = f"{e.filename}: " if e.filename else ""
            error_line(f"{where}{e.strerror}; check the path, its permissions and free space")
            sys.exit(1)
        error_line(f"internal error: {type(e).__name__}: {e} (rerun with AZR_DEBUG=1 for the traceback)")
        sys.exit(1)


def _several_ranks(debug: bool) -> None:
    """Under torchrun / accelerate launch: join the group; rank 0 goes on to run the command (and
    tells the others when it is over), every other rank serves it (:mod:`stages.parallel`)."""
    import atexit

    parallel.init()
    if parallel.rank() == 0:
        atexit.register(lambda: parallel.stop(_exit_code[0]))
        return
    from stages.serve import serve

    try:
        code = serve()
    except Exception as e:
        if debug:
            raise
        from azr_cli.display import error_line

        error_line(f"rank {parallel.rank()}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        code = 1
    sys.exit(code)


_exit_code = [0]


if __name__ == "__main__":
    main()
