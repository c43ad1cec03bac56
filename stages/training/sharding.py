"""Full fine-tuning on several ranks with FSDP (PyTorch's ``fully_shard``): every rank keeps only
its 1/K of the weights, their gradients and AdamW's state, so a model whose training state does not
fit on one card trains on K of them.

- **Sharding.** Each decoder layer is one FSDP unit (the classes ``model._no_split_modules``
  names), the rest (embeddings, final norm, the head, tied or not) the root unit. A forward or
  backward pass gathers one unit's weights at a time and frees them after; gradients are
  reduce-scattered, summed (not averaged: the loss is already a token mean over the whole batch).
  The update's pass calls the decoder and the head directly, so it is registered as a forward
  method of the root unit (:data:`stages.training.logprobs.SCORED`).
- **Full weights for a while** (:func:`full_weights`): generation and the update's no-grad passes
  run on each rank independently, on different numbers of prompts, so they cannot take part in the
  per-unit collectives. Every rank gathers every unit once, works on its own, then frees them
  (what other trainers call summoning the full parameters).
- **One checkpoint format for any K.** Rank 0 writes the whole weights and an optimizer state in
  the layout of one process (:func:`full_state`); on load every rank cuts out its shard
  (:func:`local_optimizer_state`). A run started on 4 ranks resumes on 1, and the other way round.

Collectives: every function here that takes a sharded model must be called by every rank, in the
same order.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from stages.errors import ConfigError


def layer_classes(model: nn.Module) -> set[str]:
    names = getattr(model, "_no_split_modules", None) or []
    if not names:
        raise ConfigError(f"{type(model).__name__} names no decoder layer class (_no_split_modules), so FSDP "
                          "cannot split it into units: set update.sharding=replicate")
    return set(names)


def shard(model: nn.Module, compute_dtype: torch.dtype | None = None) -> nn.Module:
    """Shard ``model`` in place across the default process group: one FSDP unit per decoder layer
    and the root. With ``compute_dtype`` (fp32 master weights computing in bf16) the units are
    gathered in that dtype and gradients reduced in fp32."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    from stages.training.logprobs import SCORED, plain_forward

    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # inputs stay as they are: the sampling temperatures must not round to bf16 (autocast computes)
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32 if compute_dtype else None,
                                  cast_forward_inputs=False)
    wanted = layer_classes(model)
    layers = [m for m in model.modules() if type(m).__name__ in wanted]
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    setattr(model, SCORED, types.MethodType(plain_forward, model))
    register_fsdp_forward_method(model, SCORED)
    for unit in units(model):  # a plain sum (gloo has no pre-multiplied sum)
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)
    return model


def units(model: nn.Module) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def full_weights(model: nn.Module) -> Iterator[nn.Module]:
    """Every rank holds the whole weights inside (one all-gather per unit on entry); forward
    passes inside need no collective, so ranks may run different numbers of them. A model that is
    not sharded is yielded as it is."""
    parts = units(model)
    for unit in parts:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield model
    finally:
        for unit in parts:
            unit.reshard()
            unit.set_reshard_after_forward(True, recurse=False)


def local_numel(model: nn.Module) -> int:
    """Parameter elements this rank holds (its shards)."""
    return sum(_local(p).numel() for p in model.parameters())


def _local(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def _full_cpu(t: Any, keep: bool) -> Any:
    from torch.distributed.tensor import DTensor

    if isinstance(t, DTensor):
        t = t.full_tensor()
    if not isinstance(t, torch.Tensor):
        return t
    return t.detach().to("cpu", copy=True) if keep else None


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(model state dict, optimizer state dict), whole and on the CPU, on rank 0 (None on the
    others): the layout one process saves, gathered one tensor at a time (every rank calls it)."""
    import torch.distributed as dist

    keep = dist.get_rank() == 0
    weights: dict[str, Any] = {}
    seen: dict[Any, Any] = {}  # tied weights stay one tensor, so the save leaves out the tied key
    for name, t in model.state_dict().items():
        local = _local(t)
        key = (local.data_ptr(), tuple(t.shape), t.dtype) if local.numel() else id(t)
        if key not in seen:
            seen[key] = _full_cpu(t, keep)
        weights[name] = seen[key]
    opt = optimizer.state_dict()
    state = {i: {k: _full_cpu(v, keep) for k, v in s.items()} for i, s in opt["state"].items()}
    if not keep:
        return None
    return weights, {"state": state, "param_groups": opt["param_groups"]}


def local_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> dict[str, Any]:
    """A whole optimizer state (:func:`full_state`'s, or one process's) with each sharded
    parameter's state cut to this rank's shard: ready for ``optimizer.load_state_dict``."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not any(isinstance(p, DTensor) for p in params):
        return saved
    state = {}
    for i, s in saved["state"].items():
        p = params[int(i)]
        if not isinstance(p, DTensor):
            state[i] = s
            continue
        state[i] = {k: distribute_tensor(v.to(p.device), p.device_mesh, p.placements, src_data_rank=None)
                    if isinstance(v, torch.Tensor) and v.shape == p.shape else v for k, v in s.items()}
    return {"state": state, "param_groups": saved["param_groups"]}


def total_norm(norm: torch.Tensor) -> float:
    """A gradient norm from ``clip_grad_norm_`` as a float (over sharded gradients it is a DTensor)."""
    from torch.distributed.tensor import DTensor

    return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
