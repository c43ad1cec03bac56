"""Metric sinks besides metrics.jsonl: TensorBoard event files (``<run>/tensorboard/``, on by
default) and Weights & Biases (when asked for and installed). Scalars are `stage/metric`, the
step is the iteration."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

from stages.rundir.run import Run


class Tracker:
    def __init__(self, run: Run):
        self.run = run
        self._tb: Any = None
        self._wandb: Any = None
        cfg = run.config.log
        if cfg.tensorboard:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(log_dir=str(run.path / "tensorboard"))
        if cfg.wandb:
            try:
                import wandb
            except ImportError:
                warnings.warn("log.wandb is true but the `wandb` package is not installed; "
                              "pip install wandb (W&B logging is off for this run)", stacklevel=2)
            else:
                self._wandb = wandb.init(project=cfg.wandb_project, name=run.path.name, resume="allow",
                                         config=run.config.to_dict(), dir=str(run.path))

    def log(self, iteration: int, stage: str, metrics: dict[str, Any]) -> None:
        scalars = {f"{stage}/{k}": float(v) for k, v in metrics.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, iteration)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({**scalars, "iteration": iteration})

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            with contextlib.suppress(Exception):
                self._wandb.finish()
