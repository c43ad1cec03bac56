"""The pure losses and estimators of the update: the PPO-clip surrogate, the k3 KL estimate, GAE,
sequence rewards on the last token, whitening. Tensors in, tensors out."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip: float,
    clip_high: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO-clip loss −min(ρA, clip(ρ, 1−ε, 1+ε_high)A) and whether the clip was active;
    ε_high is ``clip_high`` (DAPO's decoupled upper clip), ε when None."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + (clip if clip_high is None else clip_high)) * advantages
    return -torch.minimum(unclipped, clipped), (clipped < unclipped)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, tokens: int, sequences: int) -> torch.Tensor:
    """A micro-batch's share of a batch loss from per-token terms [B, T] over ``mask``.
    ``token``: the sum over the masked tokens / ``tokens`` (the batch's response tokens), so the
    micro-batches add up to one mean over every token. ``sequence``: each row's mean over its own
    tokens, summed, / ``sequences`` (the batch's responses): the mean of the per-response means."""
    if mode == "token":
        return (per_token * mask).sum() / tokens
    lengths = mask.sum(dim=1).clamp(min=1)
    return ((per_token * mask).sum(dim=1) / lengths).sum() / sequences


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π ‖ π_ref) on tokens sampled from π: e^d − d − 1, d = ref − logp.
    Non-negative, 0 where the two agree."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the masked (response) tokens of each row, [B, T].

    δ_t = r_t + γ V_{t+1} − V_t with V = 0 after the last response token; A_t = δ_t + γλ A_{t+1};
    returns R_t = A_t + V_t. Positions outside ``mask`` get 0.
    """
    mask = mask.bool()
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    next_value = rewards.new_zeros(B)
    next_adv = rewards.new_zeros(B)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * next_adv
        adv[:, t] = torch.where(m, a, torch.zeros_like(a))
        next_value = torch.where(m, values[:, t], next_value)
        next_adv = torch.where(m, a, next_adv)
    returns = torch.where(mask, adv + values, torch.zeros_like(adv))
    return adv, returns


def last_token_rewards(response_mask: torch.Tensor, rewards: Sequence[float]) -> torch.Tensor:
    """[B, T] per-token rewards: each sequence's reward on its last response token."""
    out = torch.zeros(response_mask.shape, dtype=torch.float32, device=response_mask.device)
    positions = torch.arange(response_mask.shape[1], device=response_mask.device)
    last = torch.where(response_mask.bool(), positions, -1).max(dim=1).values
    for b, r in enumerate(rewards):
        if last[b] >= 0:
            out[b, last[b]] = float(r)
    return out


def whiten(advantages: list[torch.Tensor], masks: list[torch.Tensor], groups: list[list[str]] | None = None,
           eps: float = 1e-8) -> None:
    """In place: mean 0, std 1 over the masked tokens of every micro-batch, within each group
    (``groups[m][b]``: the group of row b of micro-batch m; None: one group)."""
    rows = [(m, b) for m, mask in enumerate(masks) for b in range(mask.shape[0])]
    keys = {(m, b): (groups[m][b] if groups is not None else "") for m, b in rows}
    for key in sorted(set(keys.values())):
        members = [(m, b) for m, b in rows if keys[(m, b)] == key]
        flat = torch.cat([advantages[m][b][masks[m][b].bool()] for m, b in members])
        if flat.numel() < 2:
            continue
        mean, std = flat.mean(), flat.std(unbiased=False)
        for m, b in members:
            row, mask = advantages[m][b], masks[m][b].bool()
            row.copy_(torch.where(mask, (row - mean) / (std + eps), torch.zeros_like(row)))
