"""What stays in memory across stages: the policy (and its optimizer and the update's algorithm,
with PPO's value head) and the sandbox pool. A standalone stage command opens a session for one stage; `azr loop` keeps one open
for the whole run, so the model is loaded once.

The policy of iteration N is the base model plus the checkpoint written by iteration N−1's update
(none for N = 1). After `update` of iteration N, the model in memory *is* the policy of N+1.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages import parallel
from stages.errors import ModelError, RunError
from stages.rundir.run import Run

if TYPE_CHECKING:
    from sandbox.pool import Sandbox
    from stages.model.policy import Policy
    from stages.training.algorithms import Algorithm


def damaged(ckpt: Path, e: BaseException, name: str | None = None) -> RunError:
    """A checkpoint that does not load, as one line naming the file (the first one the error names,
    else ``name``, else the folder)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    files = [p for p in sorted(ckpt.iterdir()) if p.name in text] if ckpt.is_dir() else []
    where = files[0] if files else (ckpt / name if name else ckpt)
    return RunError(f"{where}: cannot be loaded ({type(e).__name__}: {text[:160]}); the checkpoint is damaged, "
                    f"rerun that iteration's update with `azr update --run {ckpt.parent.parent} "
                    f"--iter {int(ckpt.name)} --force`")


class Session:
    def __init__(self, run: Run):
        self.run = run
        self.policy: Policy | None = None
        self.policy_iter: int | None = None
        self.optimizer: Any = None
        self.algorithm: Any = None
        self._sandbox: Sandbox | None = None
        self._stack = contextlib.ExitStack()

    # ---- the sandbox
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            from sandbox.pool import open_sandbox

            self._sandbox = self._stack.enter_context(open_sandbox(self.run.config.sandbox))
        return self._sandbox

    # ---- the policy
    def checkpoint_for(self, n: int) -> Path | None:
        """The checkpoint the policy of iteration n starts from (that of n−1), or None."""
        if n <= 1:
            return None
        ckpt = self.run.checkpoint_dir(n - 1)
        if not (ckpt / "meta.json").is_file():
            raise RunError(
                f"checkpoint {ckpt} is missing: the policy of iteration {n} starts from it "
                f"(rerun `azr update --run {self.run.path} --iter {n - 1} --force`)"
            )
        return ckpt

    def policy_for(self, n: int) -> Policy:
        if self.policy is not None and self.policy_iter == n:
            return self.policy
        import torch

        from stages.method.tasks import derive_seed
        from stages.model.policy import load_policy

        self.close_policy()
        # A fresh adapter's initial weights come from torch's RNG: seed it, so that every process
        # that builds the policy of iteration 1 builds the same one.
        torch.manual_seed(derive_seed(self.run.config.run.seed, "adapter-init"))
        ckpt = self.checkpoint_for(n)
        try:
            self.policy = load_policy(self.run.config.model, adapter_dir=ckpt, trainable=True,
                                      engine_options=self.run.config.engine_options())
        except Exception as e:
            if ckpt is None or isinstance(e, ModelError):
                raise
            raise damaged(ckpt, e) from None
        if parallel.sharding(self.run.config) == "fsdp":
            self.policy.shard()
        self.policy_iter = self.policy.iteration = n
        parallel.attach(self.run)
        return self.policy

    def trainer_for(self, n: int) -> tuple[Policy, Any, Algorithm]:
        """(policy, optimizer, algorithm) of iteration n, their state restored from n−1."""
        policy = self.policy_for(n)
        if self.optimizer is None:
            from stages.training.algorithms import make_algorithm
            from stages.training.state import TRAINING_STATE_FILE, build_optimizer, load_training_state

            cfg = self.run.config.update
            self.algorithm = make_algorithm(cfg, policy.model)
            self.optimizer = build_optimizer(policy.trainable_parameters(), cfg, self.algorithm)
            ckpt = self.checkpoint_for(n)
            if ckpt is not None:
                try:
                    load_training_state(ckpt, self.optimizer, self.algorithm)
                except Exception as e:
                    raise damaged(ckpt, e, TRAINING_STATE_FILE) from None
        return policy, self.optimizer, self.algorithm

    def advance(self, n: int) -> None:
        """After iteration n's update: the in-memory policy is the policy of n+1 (its weights are
        those of checkpoint n)."""
        self.policy_iter = n + 1
        if self.policy is not None:
            self.policy.checkpoint = self.run.checkpoint_dir(n)
            self.policy.iteration = n + 1

    def close_policy(self) -> None:
        self.policy = self.optimizer = self.algorithm = None
        self.policy_iter = None

    def close(self) -> None:
        self.close_policy()
        parallel.detach()
        self._stack.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
