"""One iteration's update: the shared PPO-clip step, whatever the algorithm.

Model-agnostic: it takes a torch causal LM (a plain transformers model or a peft-wrapped one) and
token ids; the update stage does the run-directory I/O and the checkpoint.

One call of :func:`update_step`:

1. right-pad the samples into micro-batches;
2. under ``no_grad``, the "old" token log-probs (the policy that generated the batch), the
   reference log-probs when a KL penalty is on, and what the algorithm observes (PPO: old values);
3. the algorithm's per-token advantages (:mod:`stages.training.algorithms`);
4. ``ppo_epochs`` times: accumulate gradients over the micro-batches, each micro-batch's loss
   scaled by the number of response tokens in the *whole* batch, so the accumulated gradient is
   the gradient of a full-batch token mean; clip the gradient norm; take one optimizer step, unless
   the loss or the gradient is not finite (then nothing is stepped and FloatingPointError says so).

The update's levers beyond the paper (off by default): ``clip_high`` (DAPO's decoupled upper
clip), ``loss_aggregation: sequence`` (the mean of per-response means instead of one token mean,
:func:`~stages.training.losses.aggregate`), ``overlong: mask`` (truncated responses left out of
the batch, its token and response counts included).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from stages.method.tasks import ROLES
from stages.training.algorithms import TRR, Algorithm
from stages.training.batch import TokenSample, micro_batches
from stages.training.logprobs import body_checkpointed, causal_lm, forward, token_logprobs
from stages.training.losses import aggregate, clipped_surrogate, kl_k3
from stages.training.memory import PeakMemory
from stages.training.sharding import full_weights, total_norm

if TYPE_CHECKING:
    from stages.config.schema import UpdateSection

Reference = Callable[[], contextlib.AbstractContextManager[nn.Module]]
"""A context that yields the reference model (for a KL penalty) while it is open."""
Compute = Callable[[], contextlib.AbstractContextManager[Any]]
"""A context every forward pass runs in (the policy's compute precision)."""


@dataclass
class UpdateStats:
    """What one :func:`update_step` did. Loss terms are token means (per-response means under
    ``update.loss_aggregation: sequence``), averaged over PPO epochs."""

    loss: float
    """Total loss minimised: pg_loss − entropy_coef·entropy + kl_coef·kl (+ weight·value_loss)."""
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
    """The algorithm's own loss, unweighted (PPO: the clipped value loss); None when it has none."""
    optimizer_steps: int = 1
    samples: int = 0
    trained_samples: int = 0
    """Samples that went through the model (the others contribute nothing: update.skip_zero_advantage)."""
    entropy_by_role: dict[str, float] = field(default_factory=dict)
    """Role -> mean token entropy over that role's trained response tokens (written as
    ``entropy/<role>``), whether or not the entropy bonus is on."""
    overlong_masked: int | None = None
    """``update.overlong: mask``: truncated responses left out of the loss; None otherwise."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["overlong_masked"] is None:  # a lever left off leaves no trace
            del out["overlong_masked"]
        out.update({f"entropy/{role}": v for role, v in out.pop("entropy_by_role").items()})
        return out


@contextlib.contextmanager
def _adapter_disabled(model: nn.Module) -> Iterator[nn.Module]:
    with model.disable_adapter():
        yield model


def _reference(model: nn.Module, reference: Reference | None) -> Reference:
    if reference is not None:
        return reference
    if hasattr(model, "disable_adapter"):  # a peft model: the base is the model with its adapter off
        return lambda: _adapter_disabled(model)
    raise ValueError(
        "update.kl_coef > 0 needs a reference model: use a LoRA/QLoRA adapter (the reference is "
        "the base model with the adapter disabled) or pass `reference` for full fine-tuning"
    )


def _algorithm(cfg: UpdateSection, algorithm: Algorithm | None, optimizer: torch.optim.Optimizer) -> Algorithm:
    if algorithm is None:
        if cfg.algorithm.name != TRR.name:
            raise ValueError(f"update.algorithm={cfg.algorithm.name} needs its algorithm object (with its value "
                             "head): make_algorithm(cfg, model)")
        algorithm = TRR(cfg.algorithm)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    if any(id(p) not in in_optimizer for m in algorithm.modules() for p in m.parameters()):
        raise ValueError("the algorithm's parameters (the value head) are not in the optimizer: "
                         "build_optimizer(params, cfg, algorithm)")
    return algorithm


def _zero_pass(model: nn.Module, mb: Any, cfg: UpdateSection, compute: Compute) -> None:
    """A forward and backward pass that adds nothing to any gradient: under FSDP a rank with no
    micro-batch left still takes part in every unit's gather and gradient reduce-scatter."""
    with compute():
        logp, _, _ = forward(model, mb.input_ids, mb.attention_mask, mb.response_mask, cfg.logprob_chunk, False,
                             mb.temperature)
    (logp.sum() * 0.0).backward()


def update_step(
    model: nn.Module,
    batch: Sequence[TokenSample],
    cfg: UpdateSection,
    optimizer: torch.optim.Optimizer,
    algorithm: Algorithm | None = None,
    pad_id: int = 0,
    reference: Reference | None = None,
    compute: Compute | None = None,
    old_pass: bool | None = None,
    ranks: Any = None,
) -> UpdateStats:
    """One iteration's update: ``cfg.ppo_epochs`` optimizer steps (default 1) over ``batch``.
    ``algorithm`` defaults to TRR++; ``reference`` to the peft model with its adapter disabled;
    ``compute`` (a context around every forward pass, e.g. bf16 autocast over fp32 master
    weights) to none. ``old_pass`` forces (True) or skips (False) the separate pass of the old
    log-probs; by default it runs only when needed (several epochs, or PPO's old values).
    ``ranks`` (:class:`stages.parallel.GradientSum`, several processes): this rank backpropagates
    its share of the micro-batches and the gradients are summed across ranks before clipping, so
    every rank takes the step one process would take on the whole batch; on a model sharded by FSDP
    (``ranks.sharded``, :mod:`stages.training.sharding`) FSDP sums the policy's gradients itself.

    The passes: :func:`_prepare` (micro-batches, this rank's share), :func:`_behaviour_pass` (old
    and reference log-probs, advantages), then per epoch :func:`_backward_epoch` (the loss over the
    micro-batches), :func:`_sum_across_ranks` and :func:`_clip_and_step`; :func:`_stats` at the end."""
    compute = compute or contextlib.nullcontext
    if not batch:
        raise ValueError("update_step needs at least one sample")
    algorithm = _algorithm(cfg, algorithm, optimizer)
    want_kl = cfg.kl_coef > 0
    ref = _reference(model, reference) if want_kl else None
    device = next(model.parameters()).device
    policy_params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    if cfg.gradient_checkpointing and not body_checkpointed(model):
        # non-reentrant: no need for the inputs to require grad (frozen embeddings under LoRA)
        causal_lm(model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    start = time.perf_counter()

    with PeakMemory(device) as meter:
        prep = _prepare(batch, cfg, algorithm, pad_id, device, ranks)
        # One on-policy epoch of an algorithm that observes nothing (TRR++) needs no pass of its
        # own: the weights that generated the batch are the ones about to be stepped, so the old
        # log-probs are the first forward pass's, detached (ratio 1, the same gradient): a third
        # of the update's forward work saved.
        separate_old = old_pass if old_pass is not None else (cfg.ppo_epochs > 1 or algorithm.observes)
        _behaviour_pass(model, prep, cfg, algorithm, ref, compute, separate_old)

        model.train()
        sums = dict.fromkeys(("loss", "pg", "ent", "kl", "extra", "clip", "gn",
                              *(f"{k}/{role}" for role in ROLES for k in ("ent", "tok"))), 0.0)
        has_extra = False
        for _ in range(cfg.ppo_epochs):
            before = dict(sums)
            optimizer.zero_grad(set_to_none=True)
            has_extra |= _backward_epoch(model, prep, cfg, algorithm, compute, separate_old, want_kl, sums)
            if ranks is not None:  # under FSDP the policy's gradients are already summed (reduce-scatter)
                _sum_across_ranks(ranks, prep.sharded, policy_params, algorithm, sums, before, device)
            _clip_and_step(optimizer, policy_params, algorithm, cfg, sums, step=bool(prep.kept))
        optimizer.zero_grad(set_to_none=True)

    model.train(was_training)
    return _stats(sums, cfg, prep, want_kl, has_extra, time.perf_counter() - start, meter.peak)


@dataclass
class _Prepared:
    """The batch as the passes see it: its counts, its micro-batches and this rank's share."""

    samples: int
    masked: int | None
    total_tokens: int
    denom: int
    """The token mean's denominator: the response tokens of the whole batch (at least 1)."""
    sequences: int
    kept: list[TokenSample]
    """The samples that go through the model (see ``Algorithm.contributes``)."""
    mbs: list[Any]
    """Every micro-batch of `kept`."""
    mine: list[Any]
    """This rank's micro-batches (all of them with one process); None: a zero-weight pass (FSDP)."""
    sharded: bool
    spare: Any
    """Under FSDP, a micro-batch with response tokens for the zero-weight passes; None otherwise."""


def _prepare(batch: Sequence[TokenSample], cfg: UpdateSection, algorithm: Algorithm, pad_id: int,
             device: torch.device, ranks: Any) -> _Prepared:
    """Right-pad the samples into micro-batches and count what the token means are over."""
    samples = len(batch)
    masked = None
    if cfg.overlong == "mask":  # DAPO's overlong filtering: truncated responses are not learned from
        masked = sum(s.truncated for s in batch)
        batch = [s for s in batch if not s.truncated]
    # The token mean is over the whole batch, so leaving out samples that contribute nothing
    # (update.skip_zero_advantage) keeps every other sample's gradient exactly as it was.
    total_tokens = sum(len(s.response_ids) for s in batch)
    sequences = max(sum(bool(s.response_ids) for s in batch), 1)
    kept = [s for s in batch if algorithm.contributes(s, cfg)]
    mbs = list(micro_batches(kept, cfg.micro_batch_size, pad_id, device))
    mine, sharded, spare = _rank_share(mbs, ranks)
    return _Prepared(samples=samples, masked=masked, total_tokens=total_tokens, denom=max(total_tokens, 1),
                     sequences=sequences, kept=kept, mbs=mbs, mine=mine, sharded=sharded, spare=spare)


def _rank_share(mbs: list[Any], ranks: Any) -> tuple[list[Any], bool, Any]:
    """This rank's micro-batches, whether the model is sharded by FSDP, and the spare micro-batch
    of the zero-weight passes (None unless sharded)."""
    mine: list[Any] = mbs if ranks is None else ranks.mine(mbs)
    sharded = ranks is not None and ranks.sharded
    if sharded:
        # FSDP gathers each unit's weights with every rank in every pass: every rank makes the
        # same number of passes, a missing one (None) at zero weight on a spare micro-batch
        mine += [None] * (ranks.passes(mbs) - len(mine))
    spare = next((mb for mb in mbs if mb.response_mask.any()), None) if sharded else None
    return mine, sharded, spare


def _behaviour_pass(model: nn.Module, prep: _Prepared, cfg: UpdateSection, algorithm: Algorithm,
                    ref: Reference | None, compute: Compute, separate_old: bool) -> None:
    """Under ``no_grad``, before any step: the behaviour policy's log-probs (when `separate_old`),
    the reference's (KL penalty), what the algorithm observes, then its advantages."""
    model.eval()
    with torch.no_grad(), full_weights(model) if prep.sharded else contextlib.nullcontext():
        # what the algorithm observes feeds advantages over the whole batch: every rank
        # computes it for every micro-batch; the rest only for its own share
        for mb in prep.mbs if algorithm.observes else prep.mine:
            if mb is None:
                continue
            if separate_old:
                with compute():
                    mb.old_logp, _, hidden = forward(model, mb.input_ids, mb.attention_mask, mb.response_mask,
                                                     cfg.logprob_chunk, False, mb.temperature)
                algorithm.observe(mb, hidden)
            if ref is not None:
                with ref() as ref_model, compute():
                    mb.ref_logp, _ = token_logprobs(ref_model, mb.input_ids, mb.attention_mask,
                                                    mb.response_mask, cfg.logprob_chunk, False, mb.temperature)
    algorithm.advantages(prep.mbs)


def _backward_epoch(model: nn.Module, prep: _Prepared, cfg: UpdateSection, algorithm: Algorithm,
                    compute: Compute, separate_old: bool, want_kl: bool, sums: dict[str, float]) -> bool:
    """Accumulate one epoch's gradients over this rank's micro-batches (each loss scaled to the
    whole batch's token mean), adding the loss terms to ``sums``. True when the algorithm added a
    loss of its own."""
    has_extra = False
    for mb in prep.mine:
        if mb is None or not mb.response_mask.any():
            if prep.spare is not None:
                _zero_pass(model, prep.spare, cfg, compute)
            continue  # nothing to learn from (and no graph to backpropagate through)
        with compute():
            logp, ent, hidden = forward(model, mb.input_ids, mb.attention_mask, mb.response_mask,
                                        cfg.logprob_chunk, True, mb.temperature)
        mask = mb.response_mask.float()
        if not separate_old:
            mb.old_logp = logp.detach()
        denom, sequences = prep.denom, prep.sequences
        pg_tok, clipped = clipped_surrogate(logp, mb.old_logp, mb.advantages, cfg.clip_ratio, cfg.clip_high)
        pg = aggregate(pg_tok, mask, cfg.loss_aggregation, denom, sequences)
        entropy = aggregate(ent, mask, cfg.loss_aggregation, denom, sequences)
        loss = pg - cfg.entropy_coef * entropy
        if want_kl:
            kl = aggregate(kl_k3(logp, mb.ref_logp), mask, cfg.loss_aggregation, denom, sequences)
            loss = loss + cfg.kl_coef * kl
            sums["kl"] += float(kl.detach())
        extra = algorithm.extra_loss(mb, hidden)
        if extra is not None:
            has_extra = True
            loss = loss + algorithm.extra_weight * extra / denom
            sums["extra"] += float(extra.detach()) / denom
        loss.backward()
        sums["loss"] += float(loss.detach())
        sums["pg"] += float(pg.detach())
        sums["ent"] += float(entropy.detach())
        sums["clip"] += float((clipped.float() * mask).sum()) / denom
        _add_role_entropy(sums, mb.samples, ent.detach(), mask)
    return has_extra


def _sum_across_ranks(ranks: Any, sharded: bool, policy_params: list[nn.Parameter], algorithm: Algorithm,
                      sums: dict[str, float], before: dict[str, float], device: torch.device) -> None:
    """Sum this epoch's gradients and loss terms over the ranks: the algorithm's parameters always,
    the policy's unless FSDP already summed them (its reduce-scatter)."""
    epoch = {k: sums[k] - before[k] for k in sums}
    ranks.all_reduce(([] if sharded else policy_params)
                     + [p for m in algorithm.modules() for p in m.parameters()], epoch, device)
    sums.update({k: before[k] + epoch[k] for k in sums})


def _clip_and_step(optimizer: torch.optim.Optimizer, policy_params: list[nn.Parameter], algorithm: Algorithm,
                   cfg: UpdateSection, sums: dict[str, float], step: bool) -> None:
    """Clip the gradient norms, refuse a loss or norm that is not finite (FloatingPointError, no
    step taken), add the norm to ``sums`` and take the optimizer step (when `step`)."""
    grad_norm = total_norm(torch.nn.utils.clip_grad_norm_(policy_params, cfg.max_grad_norm))
    for m in algorithm.modules():
        torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.max_grad_norm)
    if not (math.isfinite(sums["loss"]) and math.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        raise FloatingPointError(
            f"the loss ({sums['loss']:.4g}) or the gradient norm ({grad_norm:.4g}) is not "
            "finite; no optimizer step was taken"
        )
    sums["gn"] += grad_norm
    if step:
        optimizer.step()


def _stats(sums: dict[str, float], cfg: UpdateSection, prep: _Prepared, want_kl: bool, has_extra: bool,
           seconds: float, peak_memory: int) -> UpdateStats:
    """The step's :class:`UpdateStats` from its sums over the epochs."""
    e = cfg.ppo_epochs
    return UpdateStats(
        loss=sums["loss"] / e,
        pg_loss=sums["pg"] / e,
        entropy=sums["ent"] / e,
        kl=sums["kl"] / e if want_kl else None,
        grad_norm=sums["gn"] / e,
        clip_frac=sums["clip"] / e,
        tokens=prep.total_tokens,
        seconds=seconds,
        peak_memory=peak_memory,
        value_loss=sums["extra"] / e if has_extra else None,
        optimizer_steps=e if prep.kept else 0,
        samples=prep.samples,
        trained_samples=len(prep.kept),
        entropy_by_role={role: sums[f"ent/{role}"] / sums[f"tok/{role}"] for role in ROLES if sums[f"tok/{role}"]},
        overlong_masked=prep.masked,
    )


def _add_role_entropy(sums: dict[str, float], samples: Sequence[TokenSample], ent: torch.Tensor,
                      mask: torch.Tensor) -> None:
    """Add each row's entropy sum and token count to its role's totals in ``sums``."""
    rows_ent, rows_tok = (ent * mask).sum(dim=1).tolist(), mask.sum(dim=1).tolist()
    for s, e, t in zip(samples, rows_ent, rows_tok, strict=True):
        if f"tok/{s.role}" in sums:
            sums[f"ent/{s.role}"] += e
            sums[f"tok/{s.role}"] += t
