"""The update's batch: samples with their tokens, right-padded into micro-batches that carry what
the step and the algorithm attach to them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass
class TokenSample:
    """One response to train on: a ``samples.jsonl`` record (:class:`~stages.rundir.records.Sample`)
    joined with its prompt and response tokens."""

    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float = 0.0
    """TRR++ advantage (the same on every response token)."""
    reward: float = 0.0
    """Sequence reward (PPO puts it on the last response token)."""
    temperature: float = 1.0
    """The temperature the response was sampled at: the update scores it under logits / T, the
    distribution it came from (0, greedy, is scored at 1)."""
    group: str = ""
    """Its (task type, role) batch, e.g. ``deduction/solver``: PPO whitens advantages within it
    (a reused learnability rollout: ``deduction/solver/learnability``)."""
    truncated: bool = False
    """Cut at max_new_tokens (finish ``length``): ``update.overlong: mask`` leaves it out."""

    @property
    def role(self) -> str:
        """proposer or solver (the second part of ``group``; empty when there is no group)."""
        parts = self.group.split("/")
        return parts[1] if len(parts) > 1 else ""


def pad_batch(
    samples: Sequence[TokenSample], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad prompt+response: (input_ids, attention_mask, response_mask), each [B, T]."""
    for s in samples:
        if not s.prompt_ids:
            raise ValueError("a sample needs at least one prompt token (the first response token is predicted from it)")
    T = max(len(s.prompt_ids) + len(s.response_ids) for s in samples)
    ids = torch.full((len(samples), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(samples), T), dtype=torch.long)
    resp = torch.zeros((len(samples), T), dtype=torch.bool)
    for b, s in enumerate(samples):
        p, n = len(s.prompt_ids), len(s.prompt_ids) + len(s.response_ids)
        ids[b, :n] = torch.tensor(s.prompt_ids + s.response_ids, dtype=torch.long)
        attn[b, :n] = 1
        resp[b, p:n] = True
    return ids.to(device), attn.to(device), resp.to(device)


@dataclass
class MicroBatch:
    """A right-padded slice of the batch, with what the step and the algorithm attach to it."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    samples: Sequence[TokenSample]
    temperature: torch.Tensor | None = None
    """[B]: each row's sampling temperature."""
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None


def micro_batches(batch: Sequence[TokenSample], size: int, pad_id: int, device: torch.device) -> Iterator[MicroBatch]:
    """Micro-batches of ``size`` samples, longest first: samples of similar length share one, so
    little of each is padding (the update's loss is a sum over tokens: the order changes nothing
    but the rounding of the sum)."""
    ordered = sorted(batch, key=lambda s: len(s.prompt_ids) + len(s.response_ids), reverse=True)
    for i in range(0, len(ordered), size):
        part = ordered[i : i + size]
        ids, attn, resp = pad_batch(part, pad_id, device)
        temps = torch.tensor([s.temperature if s.temperature > 0 else 1.0 for s in part], device=device)
        yield MicroBatch(ids, attn, resp, part, temperature=temps)
