"""The update's algorithms as types: what differs between TRR++ and PPO, and nothing else.

An :class:`Algorithm` gives the per-token advantages of a batch, any extra loss, and any extra
parameters (with their optimizer group and their checkpoint file). The shared PPO-clip/KL step in
:mod:`stages.training.step` calls these hooks and never asks which algorithm it runs.

- :class:`TRR`: Task-Relative REINFORCE++ (the paper): the reward stage's advantage, normalised
  within its (task type, role) batch, on every response token. No critic.
- :class:`PPO`: a linear value head on the policy's last hidden state, each sequence's reward on
  its last token, GAE over the head's estimates (λ = 1 by default, veRL's: with λ < 1 and a
  critic that starts at zero, tokens far from the end get almost no advantage), advantages
  whitened within each (task type, role) group, so the six per-task baselines survive. The head
  sees the hidden states *detached*: the value loss trains the head only and never moves the
  policy's weights. A critic that shares the trunk would pull the policy's features toward value
  regression with a loss of another scale than the policy's; detached, the policy is moved by the
  PPO-clip loss alone, exactly as under TRR++ given the same advantages. The value clip range
  reuses ``clip_ratio``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from stages.config.schema import PPOConfig, TRRConfig
from stages.training.logprobs import causal_lm
from stages.training.losses import gae, last_token_rewards, whiten

if TYPE_CHECKING:
    from stages.training.batch import MicroBatch, TokenSample

VALUE_HEAD_FILE = "value_head.safetensors"


class Algorithm:
    """The hooks of the shared step; the defaults are those of an algorithm without a critic."""

    name = ""
    observes = False
    """Whether :meth:`observe` needs the behaviour policy's pass before any step."""

    def modules(self) -> list[nn.Module]:
        """Extra trained modules (besides the policy)."""
        return []

    def param_groups(self) -> list[dict[str, Any]]:
        """Their optimizer groups."""
        return []

    def contributes(self, sample: TokenSample, cfg: Any) -> bool:
        """Whether the sample needs to go through the model at all."""
        return True

    def observe(self, mb: MicroBatch, hidden: torch.Tensor) -> None:
        """Called once per micro-batch with the behaviour policy's hidden states, before any step."""

    def advantages(self, mbs: Sequence[MicroBatch]) -> None:
        """Set ``mb.advantages`` ([B, T], zero outside the response) on every micro-batch."""
        raise NotImplementedError

    def extra_loss(self, mb: MicroBatch, hidden: torch.Tensor) -> torch.Tensor | None:
        """A loss summed over the micro-batch's response tokens (the step divides it by the batch's
        token count and weighs it by :attr:`extra_weight`), or None."""
        return None

    @property
    def extra_weight(self) -> float:
        return 0.0

    def save(self, folder: Path) -> None:
        """Write the extra parameters beside the adapter."""

    def load(self, folder: Path) -> None:
        """Restore what :meth:`save` wrote."""


class TRR(Algorithm):
    name = "trr++"

    def __init__(self, cfg: TRRConfig | None = None):
        self.cfg = cfg or TRRConfig()

    def contributes(self, sample: TokenSample, cfg: Any) -> bool:
        """A zero advantage (every reward of its (type, role) batch equal) gives a zero policy
        gradient: with ``update.skip_zero_advantage`` such a sample is left out, and only its share
        of the entropy bonus is lost."""
        return not cfg.skip_zero_advantage or sample.advantage != 0.0

    def advantages(self, mbs: Sequence[MicroBatch]) -> None:
        for mb in mbs:
            adv = torch.tensor([s.advantage for s in mb.samples], dtype=torch.float32, device=mb.input_ids.device)
            mb.advantages = adv[:, None] * mb.response_mask.float()


class ValueHead(nn.Module):
    """PPO critic: a linear map of the policy's last hidden state to a value, in fp32."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def make_value_head(model: nn.Module) -> ValueHead:
    lm = causal_lm(model)
    head = ValueHead(lm.config.hidden_size)
    return head.to(next(lm.parameters()).device)


class PPO(Algorithm):
    name = "ppo"
    observes = True

    def __init__(self, cfg: PPOConfig, model: nn.Module, clip: float):
        self.cfg = cfg
        self.clip = clip
        self.value_head = make_value_head(model)

    def modules(self) -> list[nn.Module]:
        return [self.value_head]

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.value_head.parameters()), "lr": self.cfg.value_lr, "name": "value"}]

    def observe(self, mb: MicroBatch, hidden: torch.Tensor) -> None:
        mb.old_values = self._values(hidden, mb.response_mask)

    def advantages(self, mbs: Sequence[MicroBatch]) -> None:
        for mb in mbs:
            rewards = last_token_rewards(mb.response_mask, [s.reward for s in mb.samples])
            mb.advantages, mb.returns = gae(rewards, mb.old_values, mb.response_mask, self.cfg.gamma, self.cfg.lam)
        whiten([mb.advantages for mb in mbs], [mb.response_mask for mb in mbs],
               [[s.group for s in mb.samples] for mb in mbs])

    def extra_loss(self, mb: MicroBatch, hidden: torch.Tensor) -> torch.Tensor:
        """The clipped value loss ½·max((V−R)², (V_clip−R)²), summed over response tokens."""
        values = self._values(hidden, mb.response_mask)
        v_clip = mb.old_values + torch.clamp(values - mb.old_values, -self.clip, self.clip)
        per_tok = 0.5 * torch.maximum((values - mb.returns) ** 2, (v_clip - mb.returns) ** 2)
        return (per_tok * mb.response_mask.float()).sum()

    @property
    def extra_weight(self) -> float:
        return self.cfg.value_coef

    def _values(self, hidden: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] values: V_t from the hidden state that predicts token t (detached from the policy)."""
        flat = self.value_head(hidden.detach())
        target_mask = response_mask[:, 1:].bool()
        body = torch.zeros(target_mask.shape, dtype=flat.dtype, device=flat.device).masked_scatter(target_mask, flat)
        return torch.cat([body.new_zeros(body.shape[0], 1), body], dim=1)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()},
                  str(folder / VALUE_HEAD_FILE))

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        path = folder / VALUE_HEAD_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the checkpoint was not written by a PPO run")
        device = next(self.value_head.parameters()).device
        self.value_head.load_state_dict({k: v.to(device) for k, v in load_file(str(path)).items()})


def make_algorithm(cfg: Any, model: nn.Module) -> Algorithm:
    """The algorithm of ``update`` (an UpdateSection): TRR++ or PPO with a fresh value head."""
    algorithm = cfg.algorithm
    if isinstance(algorithm, PPOConfig):
        return PPO(algorithm, model, cfg.clip_ratio)
    return TRR(algorithm)
