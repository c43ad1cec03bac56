"""Token log-probs of response tokens, the largest activation of an update, computed in chunks.

Log-probs of a long batch over a large vocabulary are the largest activation of the step (fp32
logits of 1024 tokens × 49k vocabulary are 200 MB, and log-softmax, softmax and their gradients
each add as much). :func:`token_logprobs` runs the transformer body once, then applies the LM head
and the log-softmax to ``chunk`` response tokens at a time, each chunk under its own activation
checkpoint: only that chunk's logits live at a time, in forward and in backward. (One checkpoint
around the whole chunk loop does not help: backward would keep every chunk's log-softmax.)

Each row is scored under the distribution it was sampled from: the logits are divided by the
row's sampling temperature before the softmax (``temperature``, [B]), as veRL does. Sampling with
``top_p < 1`` draws from a truncated, renormalised softmax; the update still scores the whole
tempered softmax (the usual approximation: the ratio old/new is of the untruncated distributions;
the paper samples with top_p = 1, where the two agree).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM inside a peft wrapper. LoRA-type adapters are injected into its
    layers in place, so calling its decoder directly still runs them (prompt-learning adapters,
    which live in PeftModel.forward, are not supported)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits to fp32 for the softmax; fp32 and fp64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _chunk_logprobs(
    lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, with_entropy: bool,
    temperature: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ``targets`` and entropy, from hidden states [N, H] -> ([N], [N]), at least fp32,
    under logits / temperature ([N], one per position; None: 1)."""
    logits = _upcast(lm_head(hidden))
    if temperature is not None:
        logits = logits / temperature.to(logits.dtype)[:, None]
    logz = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz
    if not with_entropy:
        return logp, torch.zeros_like(logp)
    # H = log Z − Σ softmax·logits: one extra [N, V] tensor instead of log_softmax's two
    entropy = logz - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return logp, entropy


SCORED = "azr_scored_forward"
"""The method a model sharded by FSDP carries for :func:`forward` (:mod:`stages.training.sharding`):
registered as one of its root unit's forward methods, so that the pass, which calls the decoder and
the LM head directly, runs between the root's gather and its gradient reduce-scatter."""


def forward(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk: int,
    with_entropy: bool,
    temperature: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logprobs [B,T], entropy [B,T], hidden states of the predicting positions [N,H]), each
    row's logits divided by ``temperature[b]`` (None: 1)."""
    lm = causal_lm(model)
    scored = getattr(lm, SCORED, None)
    if scored is not None:
        return scored(input_ids, attention_mask, response_mask, chunk, with_entropy, temperature)
    return plain_forward(lm, input_ids, attention_mask, response_mask, chunk, with_entropy, temperature)


def plain_forward(
    lm: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk: int,
    with_entropy: bool,
    temperature: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`forward` on the causal LM ``lm`` itself."""
    hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = hidden.last_hidden_state[:, :-1]  # position t predicts token t+1
    lm_head = lm.get_output_embeddings()
    target_mask = response_mask[:, 1:].bool()
    targets = input_ids[:, 1:][target_mask]
    temps = None if temperature is None else temperature[:, None].expand(target_mask.shape)

    if chunk <= 0:  # the plain path: full-vocabulary logits of every position at once
        logits = _upcast(lm_head(hidden))
        if temps is not None:
            logits = logits / temps.to(logits.dtype)[..., None]
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)[target_mask]
        ent = -(logp_all.exp() * logp_all).sum(-1)[target_mask] if with_entropy else torch.zeros_like(logp)
        selected = hidden[target_mask]
    else:
        selected = hidden[target_mask]  # [N, H], row-major over (b, t): the order masked_scatter fills
        flat_temps = None if temps is None else temps[target_mask]
        pieces_lp, pieces_ent = [], []
        use_ckpt = torch.is_grad_enabled()
        for s in range(0, selected.shape[0], chunk):
            t = None if flat_temps is None else flat_temps[s : s + chunk]
            args = (lm_head, selected[s : s + chunk], targets[s : s + chunk], with_entropy, t)
            if use_ckpt:
                lp, en = checkpoint(_chunk_logprobs, *args, use_reentrant=False)
            else:
                lp, en = _chunk_logprobs(*args)
            pieces_lp.append(lp)
            pieces_ent.append(en)
        empty = selected.new_zeros(0, dtype=_upcast(selected[:0]).dtype)
        logp = torch.cat(pieces_lp) if pieces_lp else empty
        ent = torch.cat(pieces_ent) if pieces_ent else empty

    def aligned(flat: torch.Tensor) -> torch.Tensor:
        B, T1 = target_mask.shape
        body = torch.zeros(B, T1, dtype=flat.dtype, device=flat.device).masked_scatter(target_mask, flat)
        return torch.cat([body.new_zeros(B, 1), body], dim=1)

    return aligned(logp), aligned(ent), selected


def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk: int = 128,
    with_entropy: bool = False,
    temperature: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (and entropies) of the response tokens, aligned with ``input_ids``: [B, T] each,
    under each row's logits / ``temperature[b]`` (None: the plain softmax).

    ``out[b, t]`` is log p(input_ids[b, t] | input_ids[b, :t]) where ``response_mask[b, t]`` is
    set, and 0 elsewhere. ``chunk`` > 0: the LM head runs on that many response tokens (flattened
    over the batch) at a time, each chunk under its own activation checkpoint; 0: the plain path,
    full-vocabulary logits of all positions at once. Both give the same values and gradients.
    Assumes logits = lm_head(last hidden state), true of Llama/Qwen/Mistral-style causal LMs.
    """
    logp, ent, _ = forward(model, input_ids, attention_mask, response_mask, chunk, with_entropy, temperature)
    return logp, ent


def body_checkpointed(model: nn.Module) -> bool:
    """Whether the transformer body recomputes its activations in backward."""
    return any(getattr(m, "gradient_checkpointing", False) for m in causal_lm(model).modules())
