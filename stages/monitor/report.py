"""`azr report`: a run's stage summaries turned into PNG figures and a short Markdown summary.

Data flows one way: :func:`~stages.monitor.report_data.collect` reads the completed stages' and
seeding rounds' ``summary.json`` files, the seed buffer and any ``eval/*.json`` results into a
:class:`~stages.monitor.report_data.RunData` (:mod:`stages.monitor.report_data`, whose names are
importable from here too); each ``plot_*`` function turns a `RunData` into one matplotlib figure
(or None when the run holds nothing for it); :func:`build` writes the figures and ``README.md``
into ``<run>/report/``. Each file is written to a temporary name and renamed into place, so a
reader never sees half a PNG; figures from an earlier report that no longer apply are removed.
Only completed stages (and seeding rounds) are read (the folder is the mark).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.method.tasks import ROLES, TASK_TYPES
from stages.monitor.report_data import GENERATING_STAGE_NAMES, RunData, buffer_sizes, collect
from stages.monitor.report_data import EvalResult as EvalResult
from stages.monitor.report_data import read_evals as read_evals
from stages.rundir.atomic import atomic_file
from stages.rundir.layout import STAGE_NAMES
from stages.rundir.run import Run

# ----------------------------------------------------------------------------- figures


def _figure(ncols: int = 1, title: str = "") -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False)
    if title:
        fig.suptitle(title)
    return fig, list(axes[0])


def _finish(ax: Any, ylabel: str, title: str = "", legend: bool = True) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    fmt = ax.yaxis.get_major_formatter()
    if hasattr(fmt, "set_useOffset"):  # "1e-5+8.3046" offsets hide the values; print them whole
        fmt.set_useOffset(False)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def _lines(ax: Any, data: RunData, stage: str, keys: dict[str, str]) -> bool:
    """One line per (label -> metric key); markers so that a single iteration still shows."""
    drawn = False
    for i, (label, key) in enumerate(keys.items()):
        xs, ys = data.series(stage, key)
        if xs:  # marker and dash vary so that equal curves (all -1 early on) stay distinguishable
            ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], linestyle=DASHES[i % len(DASHES)],
                    markersize=7 - i, label=label)
            drawn = True
    return drawn


MARKERS = ("o", "s", "^", "D")
DASHES = ("-", "--", ":", "-.")


def plot_rewards(data: RunData) -> Any | None:
    fig, axes = _figure(len(ROLES), "mean reward per task type")
    drawn = False
    for ax, role in zip(axes, ROLES, strict=True):
        drawn |= _lines(ax, data, "reward", {t: f"reward/{role}/{t}" for t in TASK_TYPES})
        _finish(ax, "mean reward", role)
        # default rewards live in [-1, 1]: show that whole range (wider if the config's rewards are)
        lo, hi = ax.get_ylim()
        ax.set_ylim(min(lo, -1.1), max(hi, 1.1))
    return fig if drawn else _discard(fig)


def plot_accuracy(data: RunData) -> Any | None:
    fig, axes = _figure(2)
    drawn = _lines(axes[0], data, "solve", {t: f"train/accuracy/{t}" for t in TASK_TYPES})
    _finish(axes[0], "accuracy", "solver accuracy (training batch)")
    drawn |= _lines(axes[1], data, "validate", {t: f"valid/{t}" for t in TASK_TYPES})
    _finish(axes[1], "share of proposals valid", "proposal validity")
    for ax in axes:
        ax.set_ylim(-0.05, 1.05)
    return fig if drawn else _discard(fig)


def plot_rejections(data: RunData) -> Any | None:
    """Rejections per reason and iteration; the seeding phase's rounds (summed) stand beside them
    as iteration 0."""
    reasons = {**({0: data.seed_reasons} if data.seed_rounds else {}), **data.reasons}
    iters = [n for n in ([0] if data.seed_rounds else []) + data.iterations if n in reasons]
    names = sorted({r for n in iters for r in reasons[n]})
    if not iters:
        return None
    title = "rejected proposals by reason"
    if data.seed_rounds:
        title += f" (iteration 0 = the seeding phase, {data.seed_rounds} rounds)"
    fig, (ax,) = _figure(1, title)
    bottom = [0] * len(iters)
    for name in names:
        counts = [reasons[n].get(name, 0) for n in iters]
        ax.bar(iters, counts, bottom=bottom, label=name)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    if not names:
        ax.text(0.5, 0.5, "no proposal was rejected", ha="center", va="center", transform=ax.transAxes)
    _finish(ax, "proposals rejected")
    return fig


def plot_buffers(data: RunData) -> Any | None:
    if not data.iterations:
        return None
    fig, (ax,) = _figure(1, f"task buffer size per type (cap {data.buffer_cap}; iteration 0 = seeds)")
    sizes = buffer_sizes(data)
    for i, (t, (xs, ys)) in enumerate(sizes.items()):
        ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], linestyle=DASHES[i % len(DASHES)], label=t)
    if max(max(ys) for _, ys in sizes.values()) >= data.buffer_cap / 2:  # else it would flatten the curves
        ax.axhline(data.buffer_cap, color="grey", linestyle="--", linewidth=1, label="cap")
    _finish(ax, "tasks")
    return fig


def plot_throughput(data: RunData) -> Any | None:
    fig, (ax,) = _figure(1, "generation throughput")
    drawn = False
    for stage in GENERATING_STAGE_NAMES:
        drawn |= _lines(ax, data, stage, {stage: "tokens_per_s"})
    _finish(ax, "tokens / s")
    return fig if drawn else _discard(fig)


def plot_truncation(data: RunData) -> Any | None:
    """The share of responses cut at max_new_tokens (they lose their closing tags)."""
    fig, (ax,) = _figure(1, "responses cut at max_new_tokens")
    drawn = False
    for stage in GENERATING_STAGE_NAMES:
        drawn |= _lines(ax, data, stage, {stage: "truncated"})
    _finish(ax, "share truncated")
    ax.set_ylim(-0.05, 1.05)
    return fig if drawn else _discard(fig)


def plot_update(data: RunData) -> Any | None:
    fig, axes = _figure(3, "policy update")
    drawn = _lines(axes[0], data, "update", {"loss": "loss", "pg_loss": "pg_loss"})
    _finish(axes[0], "loss", "loss")
    drawn |= _lines(axes[1], data, "update", {"grad_norm": "grad_norm"})
    _finish(axes[1], "gradient norm", "grad norm")
    drawn |= _lines(axes[2], data, "update", {"entropy": "entropy", "kl": "kl"})
    _finish(axes[2], "nats / token", "entropy and KL")
    return fig if drawn else _discard(fig)


def plot_time(data: RunData) -> Any | None:
    iters = data.iterations
    if not iters:
        return None
    fig, (ax,) = _figure(1, "wall time per stage")
    bottom = [0.0] * len(iters)
    for stage in STAGE_NAMES:
        secs = [float(data.metrics[n].get(stage, {}).get("seconds", 0.0)) for n in iters]
        ax.bar(iters, secs, bottom=bottom, label=stage)
        bottom = [b + s for b, s in zip(bottom, secs, strict=True)]
    _finish(ax, "seconds")
    return fig


def plot_eval(data: RunData) -> Any | None:
    if not data.evals:
        return None
    import matplotlib

    fig, (ax,) = _figure(1, "evaluation score")
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, suite in enumerate(sorted({e.suite for e in data.evals})):
        color = colors[i % len(colors)]
        pts = sorted((e.iteration, e.score) for e in data.evals if e.suite == suite and e.iteration is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=color, label=suite)
        for e in data.evals:
            if e.suite == suite and e.iteration is None:
                ax.axhline(e.score, color=color, linestyle="--", linewidth=1, label=f"{suite} (base model)")
    _finish(ax, "score")
    return fig


def plot_passk(data: RunData) -> Any | None:
    """pass@k against k, one panel per suite evaluated with several samples per item: the base
    model (dashed) against each evaluated iteration."""
    suites = sorted({e.suite for e in data.evals if len(e.pass_at_k) > 1})
    if not suites:
        return None
    fig, axes = _figure(len(suites), "pass@k (unbiased estimate): base model vs iterations")
    for ax, suite in zip(axes, suites, strict=True):
        runs = sorted((e for e in data.evals if e.suite == suite and len(e.pass_at_k) > 1),
                      key=lambda e: -1 if e.iteration is None else e.iteration)
        for i, e in enumerate(runs):
            ks = sorted(e.pass_at_k)
            base = e.iteration is None
            ax.plot(ks, [e.pass_at_k[k] for k in ks], marker=MARKERS[i % len(MARKERS)],
                    linestyle="--" if base else "-", label="base model" if base else f"iteration {e.iteration}")
        _finish(ax, "pass@k", suite)
        ax.set_xlabel("k (samples)")
        ax.set_ylim(-0.05, 1.05)
    return fig


def _discard(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)
    return None


FIGURES: dict[str, tuple[str, Callable[[RunData], Any | None]]] = {
    "rewards.png": ("Rewards per task type and role", plot_rewards),
    "accuracy.png": ("Solver accuracy and proposal validity per type", plot_accuracy),
    "rejections.png": ("Rejection reasons", plot_rejections),
    "buffers.png": ("Buffer sizes", plot_buffers),
    "throughput.png": ("Tokens per second", plot_throughput),
    "truncation.png": ("Responses cut at max_new_tokens", plot_truncation),
    "update.png": ("Loss, gradient norm, entropy", plot_update),
    "time.png": ("Time per stage", plot_time),
    "eval.png": ("Evaluation scores", plot_eval),
    "passk.png": ("pass@k: base model vs iterations", plot_passk),
}
"""Every figure a report can hold: file name -> (caption, plot function)."""


# ----------------------------------------------------------------------------- summary


def key_metrics(data: RunData) -> list[tuple[str, str, str]]:
    """(metric, first value, last value) rows for the README, each with its iteration."""
    keys: list[tuple[str, str, str]] = [("validate", "valid", "proposals valid")]
    keys += [("solve", f"train/accuracy/{t}", f"solver accuracy {t}") for t in TASK_TYPES]
    keys += [("reward", f"reward/{r}/{t}", f"reward {r} {t}") for r in ROLES for t in TASK_TYPES]
    keys += [("update", "loss", "loss"), ("update", "grad_norm", "grad norm"), ("update", "entropy", "entropy")]
    keys += [(s, "tokens_per_s", f"{s} tokens/s") for s in GENERATING_STAGE_NAMES]
    keys += [(s, "truncated", f"{s} truncated") for s in GENERATING_STAGE_NAMES]
    rows = []
    for stage, key, label in keys:
        xs, ys = data.series(stage, key)
        if xs:
            rows.append((label, f"{_fmt(ys[0])} (iter {xs[0]})", f"{_fmt(ys[-1])} (iter {xs[-1]})"))
    return rows


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def readme(data: RunData, figures: list[str]) -> str:
    iters = data.iterations
    lines = [
        f"# azr report: `{data.path.name}`",
        "",
        f"- run: `{data.path}`",
        f"- base model: `{data.base_model}` · config `{data.config_digest}`",
        f"- iterations: {data.completed_iterations} complete"
        + (f" (stages present for {iters[0]}–{iters[-1]})" if iters else ""),
    ]
    if data.seed_rounds:
        rejected = ", ".join(f"{r} {c}" for r, c in sorted(data.seed_reasons.items(), key=lambda kv: -kv[1]))
        lines.append(f"- seeding phase: {data.seed_rounds} rounds, {data.seed_proposals} proposals, "
                     f"{data.seed_valid} valid; rejected: {rejected or 'none'}; seed tasks: "
                     + ", ".join(f"{t} {data.seed_counts.get(t, 0)}" for t in TASK_TYPES))
    if iters:
        new = {t: int(sum(data.series("validate", f"new_tasks/{t}")[1])) for t in TASK_TYPES}
        lines.append("- new tasks: " + ", ".join(f"{t} {c}" for t, c in new.items()))
        sizes = {t: ys[-1] for t, (_, ys) in buffer_sizes(data).items()}
        lines.append("- buffer now: " + ", ".join(f"{t} {c}" for t, c in sizes.items()))
        total_s = sum(float(m.get("seconds", 0.0)) for n in iters for m in data.metrics[n].values())
        lines.append(f"- wall time in stages: {total_s:.1f} s")
    lines.append("")
    lines.extend(f"> {n}" for n in data.notes)
    if data.notes:
        lines.append("")
    rows = key_metrics(data)
    if rows:
        lines += ["| metric | first | last |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
        lines.append("")
    if data.evals:
        lines += ["| eval suite | iteration | score |", "|---|---|---|"]
        for e in sorted(data.evals, key=lambda e: (e.suite, -1 if e.iteration is None else e.iteration)):
            lines.append(f"| {e.suite} | {'base' if e.iteration is None else e.iteration} | {_fmt(e.score)} |")
        lines.append("")
    for name in figures:
        caption = FIGURES[name][0]
        lines += [f"## {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- build


@dataclass
class Report:
    out: Path
    files: list[Path]
    """The PNGs and README.md written, README last."""
    notes: list[str]
    """What the reader should know: no data yet, a single iteration, skipped eval files."""
    iterations: int


def build(run: Run, out: Path | None = None) -> Report:
    """Write the figures and README.md into `out` (default ``<run>/report/``)."""
    out = Path(out) if out is not None else run.path / "report"
    data = collect(run)
    if not data.iterations:
        seeding = f" (only the seeding phase's {data.seed_rounds} rounds)" if data.seed_rounds else ""
        data.notes.insert(0, f"no stage has completed yet{seeding}; run `azr loop` and report again")
    elif len(data.iterations) == 1:
        data.notes.insert(0, "a single iteration so far: each curve is one point")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, (_, plot) in FIGURES.items():
        fig = plot(data)
        target = out / name
        if fig is None:
            target.unlink(missing_ok=True)  # a figure of an earlier report that no longer applies
            continue
        _save_figure(fig, target)
        written.append(target)
    text = readme(data, [p.name for p in written])
    _replace(out / "README.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    written.append(out / "README.md")
    return Report(out=out, files=written, notes=data.notes, iterations=len(data.iterations))


def _save_figure(fig: Any, target: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        _replace(target, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)


def _replace(target: Path, write: Callable[[Path], Any]) -> None:
    with atomic_file(target) as tmp:
        write(tmp)
