"""What `azr loop` shows: a Rich live panel on a terminal (iteration, stage, progress, tokens/s,
validity, accuracy and reward by type and role, buffer sizes, time per stage), and one plain line
per stage otherwise (RunPod logs, shell scripts). Seeding rounds get one line each, on a terminal
or not (`azr seed` prints the same lines)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from azr_cli.display import err
from stages.method.kinds import KINDS


def headline(stage: str) -> tuple[str, ...]:
    """The metrics a stage's line shows, per registered kind where they are per type."""
    first = next(iter(KINDS))
    return {
        "seed": ("rounds", "proposed", "reached", *(f"buffer/{t}" for t in KINDS)),
        "propose": ("format_ok", "tokens_per_s"),
        "validate": ("valid", *(f"new_tasks/{t}" for t in KINDS)),
        "solve": (*(f"train/accuracy/{t}" for t in KINDS), "tokens_per_s"),
        "reward": (f"reward/proposer/{first}", f"reward/solver/{first}"),
        "update": ("loss", "grad_norm", "entropy"),
    }.get(stage, ())


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def round_line(event: dict[str, Any]) -> str:
    """One seeding round: proposals, valid per type (and how many joined the buffer), the buffers
    against the target, the most frequent rejection reasons."""
    m, target = event["summary"].metrics, event["target"]
    valid = []
    for t in KINDS:
        n = int(m.get(f"proposals/{t}", 0))
        if n:
            valid.append(f"{KINDS[t].short} {round(m.get(f'valid/{t}', 0.0) * n)}/{n} (+{int(m.get(f'added/{t}', 0))})")
    buffers = " ".join(f"{KINDS[t].short} {int(m.get(f'buffer/{t}', 0))}/{target}" for t in KINDS)
    top = sorted(event["summary"].reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    rejected = ", ".join(f"{r} {c}" for r, c in top) or "none"
    return (f"seed round {event['round']:>3}/{event['max_rounds']} {event['seconds']:6.1f}s "
            f"{int(m.get('proposals', 0))} proposals, valid {' '.join(valid) or '-'} · buffers {buffers} · "
            f"rejected: {rejected}")


class RoundsView:
    """`azr seed`'s display: a progress bar per round on a terminal, and one line per round
    (:func:`round_line`) on stderr, on a terminal or not."""

    def __init__(self) -> None:
        self.bar = (Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=err, transient=True) if err.is_terminal else None)
        self.task: Any = None
        self.label = "seeding"

    def __enter__(self) -> RoundsView:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)

    def on_event(self, event: dict[str, Any]) -> None:
        if event["event"] == "round_start":
            self.label = f"seeding round {event['round']}/{event['max_rounds']}"
            if self.bar is not None and self.task is not None:
                self.bar.remove_task(self.task)
            self.task = None
        elif event["event"] == "round_done":
            err.print(round_line(event), soft_wrap=True, highlight=False, markup=False)

    def progress(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done, total=total)


def plain_line(event: dict[str, Any]) -> str:
    m = event["summary"].metrics
    keys = [k for k in headline(event["stage"]) if k in m]
    parts = " ".join(f"{k}={_fmt(m[k])}" for k in keys)
    return f"iter {event['iteration']:>4} {event['stage']:<8} {event['seconds']:7.1f}s {parts}"


class LoopDisplay:
    def __init__(self, target: int, buffers: dict[str, int]):
        self.target = target
        self.buffers = dict(buffers)
        self.current = ("-", "-")
        self.latest: dict[str, dict[str, Any]] = {}
        self.times: dict[str, float] = {}
        self.live: Live | None = None
        self.bar = Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err)
        self.task = None
        self.started = time.perf_counter()

    def __enter__(self) -> LoopDisplay:
        if err.is_terminal:
            self.live = Live(self.render(), console=err, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(None, None, None)

    def on_event(self, event: dict[str, Any]) -> None:
        if event["event"] in ("start", "round_start"):
            stage = f"seed round {event['round']}" if event["event"] == "round_start" else event["stage"]
            self.current = (event.get("iteration", 0), stage)
            if self.task is not None:
                self.bar.remove_task(self.task)
                self.task = None
        elif event["event"] == "round_done":
            m = event["summary"].metrics
            self.buffers.update({t: int(m.get(f"buffer/{t}", 0)) for t in KINDS})
            self.times["seed"] = self.times.get("seed", 0.0) + event["seconds"]
            err.print(round_line(event), soft_wrap=True, highlight=False, markup=False)
        else:
            self.latest[event["stage"]] = event["summary"].metrics
            self.times[event["stage"]] = event["seconds"]
            if event["stage"] == "seed":
                self.buffers.update({t: int(self.latest["seed"].get(f"buffer/{t}", 0)) for t in KINDS})
            if event["stage"] == "validate":
                for t in KINDS:
                    self.buffers[t] = self.buffers.get(t, 0) + int(self.latest["validate"].get(f"new_tasks/{t}", 0))
            if self.live is None:
                err.print(plain_line(event), soft_wrap=True, highlight=False)
            if event["stage"] == "seed" and event.get("standing") == "short":
                err.print(f"[yellow]warning:[/] the seeding phase fell short of seed.target (buffers "
                          f"{self.buffers}); going on with them (seed.when_short=go_on)",
                          soft_wrap=True, highlight=False)
        if self.live is not None:
            self.live.update(self.render())

    def progress(self, done: int, total: int) -> None:
        if self.live is None:
            return
        if self.task is None:
            n, stage = self.current
            self.task = self.bar.add_task(stage if stage.startswith("seed") else f"{stage} {n}", total=total)
        self.bar.update(self.task, completed=done, total=total)

    def render(self) -> Group:
        head = Table.grid(padding=(0, 2))
        head.add_row(f"[bold]iteration[/] {self.current[0]} / {self.target}", f"[bold]stage[/] {self.current[1]}",
                     f"[bold]elapsed[/] {time.perf_counter() - self.started:,.0f}s",
                     "[bold]buffers[/] " + " ".join(f"{KINDS[t].short} {self.buffers.get(t, 0)}" for t in KINDS))
        t = Table("", *KINDS, title="last iteration", title_justify="left")
        v, r, s = self.latest.get("validate", {}), self.latest.get("reward", {}), self.latest.get("solve", {})
        t.add_row("validity", *(_fmt(v.get(f"valid/{x}", "-")) for x in KINDS))
        t.add_row("solver accuracy", *(_fmt(s.get(f"train/accuracy/{x}", "-")) for x in KINDS))
        t.add_row("proposer reward", *(_fmt(r.get(f"reward/proposer/{x}", "-")) for x in KINDS))
        t.add_row("solver reward", *(_fmt(r.get(f"reward/solver/{x}", "-")) for x in KINDS))
        tps = self.latest.get("solve", {}).get("tokens_per_s") or self.latest.get("propose", {}).get("tokens_per_s")
        u = self.latest.get("update", {})
        foot = Table.grid(padding=(0, 2))
        foot.add_row(f"tokens/s {_fmt(tps) if tps else '-'}", f"loss {_fmt(u.get('loss', '-'))}",
                     "time " + " ".join(f"{k} {v:.0f}s" for k, v in self.times.items()))
        return Group(head, self.bar, t, foot)
