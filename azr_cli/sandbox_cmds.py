"""`azr exec` (run one program in the sandbox) and `azr doctor` (prove the isolation here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from azr_cli.errors import UserError
from azr_cli.options import ConfigOpt, JsonOpt, SetOpt

FileArg = Annotated[Path, typer.Argument(help="Python file to run (a script, or a program defining f).", show_default=False)]
InputOpt = Annotated[
    str | None,
    typer.Option("--input", help="Call f with this argument list, e.g. \"1, [2, 3]\"; without it FILE runs as a script.",
                 show_default=False),
]
ValidateOpt = Annotated[bool, typer.Option("--validate", help="Apply the full task validation (needs --input).")]
TimeoutOpt = Annotated[float | None, typer.Option("--timeout", help="Wall-clock limit in seconds.", show_default=False)]


def _sandbox_config(config: Path | None, sets: list[str] | None, timeout: float | None) -> Any:
    from sandbox.config import SandboxConfig
    from stages.config.layers import load_config

    cfg = load_config(config, sets).sandbox
    if timeout is not None:
        cfg = SandboxConfig.model_validate({**cfg.model_dump(), "timeout_s": timeout})
    return cfg


def exec_cmd(
    file: FileArg,
    input: InputOpt = None,
    validate: ValidateOpt = False,
    json: JsonOpt = False,
    timeout: TimeoutOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Run FILE in the sandbox and report the verdict (exit 0 whatever the verdict)."""
    from sandbox import open_sandbox, validate_task

    if validate and input is None:
        raise UserError("--validate needs --input: the task is f applied to that argument list")
    try:
        source = file.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UserError(f"cannot read {file}: {e.strerror}") from None
    cfg = _sandbox_config(config, sets, timeout)
    with open_sandbox(cfg) as sb:
        result = sb.run(source, input)
        verdict = validate_task(sb, source, [input], cfg) if validate and input is not None else None
    data: dict[str, Any] = {
        "status": result.status.value,
        "exit_code": result.exit_code,
        "seconds": round(result.seconds, 4),
        "stdout": result.stdout,
        "stderr": result.stderr,
        "error": result.error,
        "detail": result.detail,
    }
    if result.value_repr is not None:
        data["output"] = result.value_repr
    if verdict is not None:
        data.update(valid=verdict.valid, reason=verdict.reason, validation=verdict.detail)
    _show_exec(data, json)


def _show_exec(data: dict[str, Any], as_json: bool) -> None:
    from azr_cli.display import kv_table, out, print_json

    if as_json:
        print_json(data)
        return
    rows = {k: data[k] for k in ("status", "exit_code", "seconds", "error", "detail") if data.get(k) is not None}
    if "output" in data:
        rows["output"] = data["output"]
    if "valid" in data:
        rows["valid"] = data["valid"]
        rows["reason"] = data["reason"] or "-"
        rows["validation"] = data["validation"]
    out.print(kv_table("azr exec", rows))
    for stream in ("stdout", "stderr"):
        if data[stream]:
            out.rule(stream)
            out.print(data[stream], markup=False, highlight=False, end="" if data[stream].endswith("\n") else "\n")


RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Where runs (and checkpoints) go, for the free-disk check.")]
NoGpuOpt = Annotated[bool, typer.Option("--no-gpu", help="Skip the GPU/disk/cache section (no torch import).")]
_LEVEL_STYLE = {"ok": "[green]ok[/]", "info": "[cyan]info[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def doctor_cmd(
    json: JsonOpt = False,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    no_gpu: NoGpuOpt = False,
) -> None:
    """Prove the sandbox's isolation on this machine (network, files, uid, limits), then report the
    GPU side (CUDA, GPU memory, bitsandbytes kernels, free disk, model caches); exit 1 if a sandbox
    check fails or something is broken (no GPU is information, not a failure)."""
    from rich.table import Table

    from azr_cli.display import out, print_json
    from sandbox.doctor import doctor

    probes = doctor(_sandbox_config(config, sets, None))
    gpu: list[Any] = []
    if not no_gpu:
        from stages.monitor.gpu import gpu_checks

        gpu = gpu_checks(runs_dir)
    ok = all(p.passed for p in probes) and not any(c.level == "fail" for c in gpu)
    if json:
        data: dict[str, Any] = {"ok": ok, "checks": [p.model_dump() for p in probes]}
        if not no_gpu:
            data["gpu"] = [c.model_dump() for c in gpu]
        print_json(data)
    else:
        table = Table(title="azr doctor: sandbox isolation", title_justify="left")
        table.add_column("check", style="bold")
        table.add_column("result")
        table.add_column("detail")
        for p in probes:
            table.add_row(p.name, "[green]pass[/]" if p.passed else "[bold red]FAIL[/]", p.detail)
        out.print(table)
        if gpu:
            table = Table(title="azr doctor: GPU, disk and model cache", title_justify="left")
            table.add_column("check", style="bold")
            table.add_column("result")
            table.add_column("detail")
            for c in gpu:
                table.add_row(c.name, _LEVEL_STYLE[c.level], c.detail)
            out.print(table)
    if not ok:
        raise typer.Exit(1)
