"""The training math of the update stage: token log-probs, the PPO-clip surrogate, TRR++ and PPO.

Model-agnostic: it takes a torch causal LM (a plain transformers model or a peft-wrapped one) and
token ids; the update stage does the run-directory I/O and the checkpoint files of the adapter.

One call of :func:`update_step` is one iteration's update:

1. right-pad the samples into micro-batches;
2. under ``no_grad``, the "old" token log-probs (the policy that generated the batch), the
   reference log-probs when a KL penalty is on (for a peft model: the same model with its adapter
   disabled, no second copy), and for PPO the old values;
3. the per-token advantages: TRR++ puts the sample's advantage on every response token; PPO puts
   the sequence reward on the last response token and runs GAE over the value head's estimates;
4. ``ppo_epochs`` times: accumulate gradients over the micro-batches, each micro-batch's loss
   scaled by the number of response tokens in the *whole* batch, so the accumulated gradient is
   the gradient of a full-batch token mean; clip the gradient norm; take one optimizer step.

Log-probs of a long batch over a large vocabulary are the largest activation of the step (fp32
logits of 1024 tokens × 49k vocabulary are 200 MB, and log-softmax, softmax and their gradients
each add as much). :func:`token_logprobs` runs the transformer body once, then applies the LM head
and the log-softmax to ``chunk`` response tokens at a time, each chunk under its own activation
checkpoint: only that chunk's logits live at a time, in forward and in backward. (One checkpoint
around the whole chunk loop does not help: backward would keep every chunk's log-softmax.)

Where this departs from the textbook:
- the PPO critic is a linear head on the policy's last hidden state, *detached*: the value loss
  trains the head only and never moves the policy's weights (no shared-trunk interference, and
  TRR++ and PPO update the policy identically given the same advantages);
- PPO advantages are whitened over all response tokens of the batch (mean 0, std 1), as common
  PPO implementations do; the value clip range reuses ``clip_ratio``.
"""

from __future__ import annotations

import contextlib
import math
import random
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

if TYPE_CHECKING:
    from stages.config import UpdateSection

TRAINING_STATE_FILE = "training_state.pt"
VALUE_HEAD_FILE = "value_head.safetensors"


# ----------------------------------------------------------------------------- data


@dataclass
class Sample:
    """One response to train on: the prompt and response token ids, and its scalar signals."""

    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float = 0.0
    """TRR++ advantage (the same on every response token)."""
    reward: float = 0.0
    """Sequence reward (PPO puts it on the last response token)."""


@dataclass
class UpdateStats:
    """What one :func:`update_step` did. Loss terms are token means, averaged over PPO epochs."""

    loss: float
    """Total loss minimised: pg_loss − entropy_coef·entropy + kl_coef·kl (+ value_coef·value_loss)."""
    pg_loss: float
    """PPO-clip surrogate loss."""
    entropy: float
    """Mean token entropy of the policy over the response tokens (nats)."""
    kl: float | None
    """Mean k3 KL estimate to the reference model; None when ``kl_coef`` is 0 (not computed)."""
    grad_norm: float
    """Policy gradient norm before clipping."""
    clip_frac: float
    """Share of response tokens whose ratio was clipped."""
    tokens: int
    """Response tokens in the batch."""
    seconds: float
    peak_memory: int
    """Bytes. CUDA: ``torch.cuda.max_memory_allocated`` during the step (weights included). CPU:
    the peak resident set size during the step minus the RSS at its start (Linux: the kernel's
    peak counter VmHWM is reset through /proc/self/clear_refs first; elsewhere the process-wide
    ``ru_maxrss``, which only shows the step's peak when it is the process's highest). On CPU the
    first step after loading also counts the memory-mapped weights it pages in, and later steps
    reuse memory glibc kept from earlier ones, so compare like with like (see bench/update.py)."""
    value_loss: float | None = None
    """PPO: clipped value loss; None for TRR++."""
    optimizer_steps: int = 1
    samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _MicroBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    samples: Sequence[Sample]
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None


def pad_batch(
    samples: Sequence[Sample], pad_id: int, device: torch.device | str = "cpu"
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


# ----------------------------------------------------------------------------- log-probs


def _causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM inside a peft wrapper. LoRA-type adapters are injected into its
    layers in place, so calling its decoder directly still runs them (prompt-learning adapters,
    which live in PeftModel.forward, are not supported)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits to fp32 for the softmax; fp32 and fp64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _chunk_logprobs(
    lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ``targets`` and entropy, from hidden states [N, H] -> ([N], [N]), at least fp32."""
    logits = _upcast(lm_head(hidden))
    logz = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz
    if not with_entropy:
        return logp, torch.zeros_like(logp)
    # H = log Z − Σ softmax·logits: one extra [N, V] tensor instead of log_softmax's two
    entropy = logz - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return logp, entropy


def _forward(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk: int,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logprobs [B,T], entropy [B,T], hidden states of the predicting positions [N,H])."""
    lm = _causal_lm(model)
    hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = hidden.last_hidden_state[:, :-1]  # position t predicts token t+1
    lm_head = lm.get_output_embeddings()
    target_mask = response_mask[:, 1:].bool()
    targets = input_ids[:, 1:][target_mask]

    if chunk <= 0:  # the plain path: full-vocabulary logits of every position at once
        logits = _upcast(lm_head(hidden))
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)[target_mask]
        ent = -(logp_all.exp() * logp_all).sum(-1)[target_mask] if with_entropy else torch.zeros_like(logp)
        selected = hidden[target_mask]
    else:
        selected = hidden[target_mask]  # [N, H], row-major over (b, t): the order masked_scatter fills
        pieces_lp, pieces_ent = [], []
        use_ckpt = torch.is_grad_enabled()
        for s in range(0, selected.shape[0], chunk):
            args = (lm_head, selected[s : s + chunk], targets[s : s + chunk], with_entropy)
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (and entropies) of the response tokens, aligned with ``input_ids``: [B, T] each.

    ``out[b, t]`` is log p(input_ids[b, t] | input_ids[b, :t]) where ``response_mask[b, t]`` is
    set, and 0 elsewhere. ``chunk`` > 0: the LM head runs on that many response tokens (flattened
    over the batch) at a time, each chunk under its own activation checkpoint; 0: the plain path,
    full-vocabulary logits of all positions at once. Both give the same values and gradients.
    Assumes logits = lm_head(last hidden state), true of Llama/Qwen/Mistral-style causal LMs.
    """
    logp, ent, _ = _forward(model, input_ids, attention_mask, response_mask, chunk, with_entropy)
    return logp, ent


# ----------------------------------------------------------------------------- pure losses


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO-clip loss −min(ρA, clip(ρ, 1−ε, 1+ε)A) and whether the clip was active."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    return -torch.minimum(unclipped, clipped), (clipped < unclipped)


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


# ----------------------------------------------------------------------------- value head


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
    lm = _causal_lm(model)
    head = ValueHead(lm.config.hidden_size)
    return head.to(next(lm.parameters()).device)


# ----------------------------------------------------------------------------- optimizer, state


def build_optimizer(
    params: Any, cfg: UpdateSection, value_head: nn.Module | None = None
) -> torch.optim.Optimizer:
    """AdamW or bitsandbytes AdamW8bit over the trainable ``params`` (lr ``cfg.lr``), plus the value
    head's parameters at ``cfg.value_lr`` when given."""
    groups = [{"params": [p for p in params if p.requires_grad], "lr": cfg.lr, "name": "policy"}]
    if not groups[0]["params"]:
        raise ValueError("no trainable parameters: with LoRA, build the optimizer on the peft model")
    if value_head is not None:
        groups.append({"params": list(value_head.parameters()), "lr": cfg.value_lr, "name": "value"})
    if cfg.optimizer == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _rng_state(rng: random.Random | None) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if rng is not None:
        state["rng"] = rng.getstate()
    with contextlib.suppress(ImportError):
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = (name, keys.tolist(), pos, has_gauss, cached)
    return state


def _set_rng_state(state: dict[str, Any], rng: random.Random | None) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if rng is not None and "rng" in state:
        rng.setstate(_as_tuple(state["rng"]))
    if "numpy" in state:
        with contextlib.suppress(ImportError):
            import numpy as np

            name, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def save_training_state(
    directory: str | Path,
    optimizer: torch.optim.Optimizer,
    value_head: nn.Module | None = None,
    rng: random.Random | None = None,
) -> None:
    """Write what an exact resume needs besides the model weights into ``directory``: the
    optimizer state, the RNG states (torch, CUDA, python's global and ``rng``, numpy) and the
    PPO value head (``value_head.safetensors``, beside the adapter)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"optimizer": optimizer.state_dict(), "rng": _rng_state(rng)}, directory / TRAINING_STATE_FILE)
    if value_head is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in value_head.state_dict().items()},
                  str(directory / VALUE_HEAD_FILE))


def load_training_state(
    directory: str | Path,
    optimizer: torch.optim.Optimizer,
    value_head: nn.Module | None = None,
    rng: random.Random | None = None,
) -> None:
    """Restore what :func:`save_training_state` wrote, in place. The optimizer must be built over
    the same parameters in the same order (e.g. by :func:`build_optimizer` on the reloaded model)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    state = torch.load(directory / TRAINING_STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    if value_head is not None:
        path = directory / VALUE_HEAD_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the checkpoint was not written by a PPO run")
        device = next(value_head.parameters()).device
        value_head.load_state_dict({k: v.to(device) for k, v in load_file(str(path)).items()})
    _set_rng_state(state["rng"], rng)


# ----------------------------------------------------------------------------- memory meter


def _read_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of a block: CUDA max allocated, or on CPU the peak RSS above the start RSS."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._hwm_reset = False
        try:  # "5" resets the kernel's peak-RSS counter (VmHWM) of this process
            Path("/proc/self/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError:
            pass
        rss = _read_status_kb("VmRSS")
        self._start_kb = rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
            return
        hwm = _read_status_kb("VmHWM") if self._hwm_reset else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak = max(0, hwm - self._start_kb) * 1024


# ----------------------------------------------------------------------------- the update


def _micro_batches(batch: Sequence[Sample], size: int, pad_id: int, device: torch.device) -> Iterator[_MicroBatch]:
    for i in range(0, len(batch), size):
        part = batch[i : i + size]
        ids, attn, resp = pad_batch(part, pad_id, device)
        yield _MicroBatch(ids, attn, resp, part)


def _body_checkpointed(model: nn.Module) -> bool:
    return any(getattr(m, "gradient_checkpointing", False) for m in _causal_lm(model).modules())


@contextlib.contextmanager
def _reference(model: nn.Module, ref_model: nn.Module | None) -> Iterator[nn.Module]:
    if ref_model is not None:
        yield ref_model
    elif hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        raise ValueError(
            "update.kl_coef > 0 needs a reference model: use a LoRA/QLoRA adapter (the reference is "
            "the base model with the adapter disabled) or pass ref_model for full fine-tuning"
        )


def update_step(
    model: nn.Module,
    batch: Sequence[Sample],
    cfg: UpdateSection,
    optimizer: torch.optim.Optimizer,
    value_head: ValueHead | None = None,
    pad_id: int = 0,
    ref_model: nn.Module | None = None,
) -> UpdateStats:
    """One iteration's update: ``cfg.ppo_epochs`` optimizer steps (default 1) over ``batch``."""
    if not batch:
        raise ValueError("update_step needs at least one sample")
    ppo = cfg.algorithm == "ppo"
    if ppo and value_head is None:
        raise ValueError("update.algorithm=ppo needs a value head (make_value_head(model))")
    if ppo:
        in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if any(id(p) not in in_optimizer for p in value_head.parameters()):
            raise ValueError("the value head's parameters are not in the optimizer: "
                             "build_optimizer(params, cfg, value_head=value_head)")
    device = next(model.parameters()).device
    policy_params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    if cfg.gradient_checkpointing and not _body_checkpointed(model):
        # non-reentrant: no need for the inputs to require grad (frozen embeddings under LoRA)
        _causal_lm(model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    want_kl = cfg.kl_coef > 0
    start = time.perf_counter()

    with PeakMemory(device) as meter:
        mbs = list(_micro_batches(batch, cfg.micro_batch_size, pad_id, device))
        total_tokens = int(sum(int(mb.response_mask.sum()) for mb in mbs))
        denom = max(total_tokens, 1)

        # -- the behaviour policy, the reference and the old values, before any step
        model.eval()
        with torch.no_grad():
            for mb in mbs:
                logp, _, hidden = _forward(model, mb.input_ids, mb.attention_mask, mb.response_mask,
                                           cfg.logprob_chunk, with_entropy=False)
                mb.old_logp = logp
                if ppo:
                    mb.old_values = _aligned_values(value_head, hidden, mb.response_mask)
                if want_kl:
                    with _reference(model, ref_model) as ref:
                        mb.ref_logp, _ = token_logprobs(ref, mb.input_ids, mb.attention_mask,
                                                        mb.response_mask, cfg.logprob_chunk)

        # -- per-token advantages
        for mb in mbs:
            if ppo:
                rewards = last_token_rewards(mb.response_mask, [s.reward for s in mb.samples])
                mb.advantages, mb.returns = gae(rewards, mb.old_values, mb.response_mask, cfg.gamma, cfg.lam)
            else:
                adv = torch.tensor([s.advantage for s in mb.samples], dtype=torch.float32, device=device)
                mb.advantages = adv[:, None] * mb.response_mask.float()
        if ppo:
            _whiten([mb.advantages for mb in mbs], [mb.response_mask for mb in mbs])

        # -- the steps
        model.train()
        sums: dict[str, float] = {"loss": 0.0, "pg": 0.0, "ent": 0.0, "kl": 0.0, "vf": 0.0, "clip": 0.0, "gn": 0.0}
        for _ in range(cfg.ppo_epochs):
            optimizer.zero_grad(set_to_none=True)
            for mb in mbs:
                if not mb.response_mask.any():
                    continue  # nothing to learn from (and no graph to backpropagate through)
                logp, ent, hidden = _forward(model, mb.input_ids, mb.attention_mask, mb.response_mask,
                                             cfg.logprob_chunk, with_entropy=True)
                mask = mb.response_mask.float()
                pg_tok, clipped = clipped_surrogate(logp, mb.old_logp, mb.advantages, cfg.clip_ratio)
                pg = (pg_tok * mask).sum() / denom
                entropy = (ent * mask).sum() / denom
                loss = pg - cfg.entropy_coef * entropy
                if want_kl:
                    kl = (kl_k3(logp, mb.ref_logp) * mask).sum() / denom
                    loss = loss + cfg.kl_coef * kl
                    sums["kl"] += float(kl)
                if ppo:
                    vf = _value_loss(value_head, hidden, mb, cfg.clip_ratio) / denom
                    loss = loss + cfg.value_coef * vf
                    sums["vf"] += float(vf)
                loss.backward()
                sums["loss"] += float(loss.detach())
                sums["pg"] += float(pg)
                sums["ent"] += float(entropy)
                sums["clip"] += float((clipped.float() * mask).sum()) / denom
            grad_norm = torch.nn.utils.clip_grad_norm_(policy_params, cfg.max_grad_norm)
            if ppo:
                torch.nn.utils.clip_grad_norm_(value_head.parameters(), cfg.max_grad_norm)
            if not (math.isfinite(sums["loss"]) and math.isfinite(float(grad_norm))):
                optimizer.zero_grad(set_to_none=True)
                raise FloatingPointError(
                    f"the loss ({sums['loss']:.4g}) or the gradient norm ({float(grad_norm):.4g}) is not "
                    "finite; no optimizer step was taken"
                )
            sums["gn"] += float(grad_norm)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train(was_training)
    e = cfg.ppo_epochs
    return UpdateStats(
        loss=sums["loss"] / e,
        pg_loss=sums["pg"] / e,
        entropy=sums["ent"] / e,
        kl=sums["kl"] / e if want_kl else None,
        grad_norm=sums["gn"] / e,
        clip_frac=sums["clip"] / e,
        tokens=total_tokens,
        seconds=time.perf_counter() - start,
        peak_memory=meter.peak,
        value_loss=sums["vf"] / e if ppo else None,
        optimizer_steps=e,
        samples=len(batch),
    )


def _aligned_values(head: nn.Module, hidden: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] values: V_t from the hidden state that predicts token t (detached from the policy)."""
    flat = head(hidden.detach())
    target_mask = response_mask[:, 1:].bool()
    body = torch.zeros(target_mask.shape, dtype=flat.dtype, device=flat.device).masked_scatter(target_mask, flat)
    return torch.cat([body.new_zeros(body.shape[0], 1), body], dim=1)


def _value_loss(head: nn.Module, hidden: torch.Tensor, mb: _MicroBatch, clip: float) -> torch.Tensor:
    """Summed (not averaged) clipped value loss ½·max((V−R)², (V_clip−R)²) over response tokens."""
    values = _aligned_values(head, hidden, mb.response_mask)
    v_clip = mb.old_values + torch.clamp(values - mb.old_values, -clip, clip)
    per_tok = 0.5 * torch.maximum((values - mb.returns) ** 2, (v_clip - mb.returns) ** 2)
    return (per_tok * mb.response_mask.float()).sum()


def _whiten(advantages: list[torch.Tensor], masks: list[torch.Tensor], eps: float = 1e-8) -> None:
    """In place: mean 0, std 1 over every masked token of every micro-batch."""
    flat = torch.cat([a[m.bool()] for a, m in zip(advantages, masks, strict=True)])
    if flat.numel() < 2:
        return
    mean, std = flat.mean(), flat.std(unbiased=False)
    for a, m in zip(advantages, masks, strict=True):
        a.copy_(torch.where(m.bool(), (a - mean) / (std + eps), torch.zeros_like(a)))
