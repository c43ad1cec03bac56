"""What `azr status` shows of a run, as data (:func:`status_data`, also printed by `azr seed` and
`azr loop`) and as tables (:func:`print_status`)."""

from __future__ import annotations

from typing import Any

from azr_cli import display


def status_data(run: Any) -> dict[str, Any]:
    """What `azr status --json` prints. ``next`` is ``{"iteration": 0, "stage": "seed"}`` while the
    seeding phase keeps iteration 1 waiting (``seeding.state`` pending or stopped)."""
    from stages.method.levers import run_markers
    from stages.rundir.buffers import load_buffers
    from stages.rundir.layout import STAGE_NAMES
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

    from stages.method.kinds import KINDS
    from stages.rundir.layout import STAGE_NAMES

    seeding = info["seeding"]
    if seeding["state"] == "pending":
        nxt = f"seeding round {seeding['rounds'] + 1} (of at most {seeding['max_rounds']})"
    elif seeding["state"] == "stopped":
        nxt = "nothing: the seeding phase stopped short (see below)"
    else:
        nxt = f"iteration {info['next']['iteration']}, stage {info['next']['stage']}"
    rounds = (f"{seeding['rounds']} round(s) complete, {seeding['state']}; seed tasks "
              + " ".join(f"{KINDS[t].short} {n}/{seeding['target']}" for t, n in seeding["buffers"].items()))
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
