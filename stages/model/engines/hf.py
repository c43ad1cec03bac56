"""The ``hf`` engine: transformers ``generate`` on the policy's own model (or its merged copy,
``model.merge_for_generation``), batched with left padding; prompts are sorted by length inside a
call (less padding) and returned in input order. Each row samples from its own stream seeded per
request (:class:`PerRequestSampler`), so the same seed and inputs give the same completions on a
CPU whatever the batch size (GPU kernels are not bitwise deterministic). A row ends at EOS or
right after a stop string, with a finish reason, and padding is never taken for output. On CUDA it
can use a static KV cache with a compiled decode step (``model.compile_generation``), with
bucketed shapes so that a run compiles a handful of graphs.

:func:`generate_batch` is the one place where this engine produces tokens. Heavy imports (torch,
transformers) happen inside the functions.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stages.model.engines.base import Engine, Progress, Requests, completion
from stages.model.generation import Completion, as_list

if TYPE_CHECKING:
    import torch


class HFEngine(Engine):
    """transformers ``generate`` on the policy's torch modules (see the module's docstring)."""

    uses_live_weights = True

    def generate(self, policy: Any, requests: Requests, progress: Progress | None = None) -> list[Completion]:
        import torch

        encoded = requests.prompt_ids
        order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
        config = policy.generation_config(requests.max_new_tokens, requests.temperature, requests.top_p)
        eos_ids = as_list(config.eos_token_id)
        out: list[Completion | None] = [None] * len(encoded)
        was_training = policy.model.training
        policy.model.eval()
        try:
            with torch.no_grad(), policy.compute():
                model = policy.generation_model()
                for first in range(0, len(order), requests.batch_size):
                    idx = order[first : first + requests.batch_size]
                    rows = generate_batch(
                        model,
                        [encoded[i] for i in idx],
                        config=config,
                        pad_id=config.pad_token_id,
                        eos_ids=eos_ids,
                        stop_criteria=policy.stop_criterion(requests.stop),
                        seeds=[requests.seeds[i] for i in idx],
                        device=policy.device,
                        static_cache=policy.compile_generation
                        and policy.device.type == "cuda"
                        and static_generation_supported(model),
                    )
                    for i, (ids, finish) in zip(idx, rows, strict=True):
                        out[i] = completion(policy.tokenizer, encoded[i], ids, finish, requests.stop)
                    if progress is not None:
                        progress(first + len(idx), len(order))
        finally:
            policy.model.train(was_training)
        return [c for c in out if c is not None]


# Static-cache generation compiles one decode graph per shape. Shapes are bucketed so that a run
# compiles a handful of graphs (each 40-70 s on an H100 for the 3B shape, see BENCHMARKS.md) and then reuses
# them: the batch is rounded up to a bucket with dummy rows (copies of the first prompt, reported
# finished from their first token and dropped), the left-padded prompt width to a multiple of
# LENGTH_MULTIPLE, and the cache length is that width + max_new_tokens (fixed per role).
BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LENGTH_MULTIPLE = 128
_static_failed: list[str] = []  # the first error of the static path in this process (then eager)
_compile_config: Any = None


def bucket_batch(rows: int, buckets: Sequence[int] = BATCH_BUCKETS) -> int:
    """The smallest bucket holding ``rows``; past the largest, the next multiple of the largest."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1 (got {rows})")
    for b in sorted(buckets):
        if b >= rows:
            return b
    top = max(buckets)
    return -(-rows // top) * top


def bucket_length(width: int, multiple: int = LENGTH_MULTIPLE) -> int:
    """``width`` rounded up to a multiple of ``multiple`` (at least one multiple)."""
    if width < 1 or multiple < 1:
        raise ValueError(f"width and multiple must be >= 1 (got {width}, {multiple})")
    return max(1, -(-width // multiple)) * multiple


def bucketed_rows(prompts: list[list[int]], buckets: Sequence[int] = BATCH_BUCKETS) -> list[list[int]]:
    """``prompts`` followed by dummy rows (copies of the first prompt) up to the batch bucket."""
    return list(prompts) + [list(prompts[0])] * (bucket_batch(len(prompts), buckets) - len(prompts))


def static_generation_supported(model: Any) -> bool:
    """Whether transformers can compile the decode step of this model: not for bitsandbytes 4-bit
    weights (its quantizer is not compileable), so a QLoRA policy generates eagerly."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    quantizer = getattr(base, "hf_quantizer", None)
    return not _static_failed and (quantizer is None or bool(getattr(quantizer, "is_compileable", False)))


def _static_generation_kwargs(
    config: Any, cache_len: int, compile_decode: bool, compile_all_devices: bool = False
) -> dict[str, Any]:
    global _compile_config
    import copy

    from transformers import CompileConfig

    if _compile_config is None:
        # One instance for the process: transformers recompiles when the config object differs.
        # dynamic=False keeps one static graph per bucket instead of a slower dynamic-shape graph.
        _compile_config = CompileConfig(fullgraph=False, dynamic=False, mode="reduce-overhead")
        _raise_recompile_limit(64)
    _compile_config._compile_all_devices = compile_all_devices or None
    config = copy.copy(config)
    config.cache_implementation = "static"
    config.max_cache_len = cache_len
    if compile_decode:  # else transformers warns that it cannot compile here (CPU)
        config.compile_config = _compile_config
    return {"generation_config": config}


def _raise_recompile_limit(limit: int) -> None:
    """Every (batch bucket, cache length) pair is its own graph: allow more than torch's 8."""
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(limit, getattr(torch._dynamo.config, name)))
            return


class PerRequestSampler:
    """Sampling with one random stream per row (the Gumbel-max trick): each row's scores are
    divided by the temperature, cut to the top-p nucleus, and perturbed by Gumbel noise drawn
    from that row's own generator; the greedy choice is then an exact sample of softmax(logits / T)
    within the nucleus. So a row's tokens depend on its seed, never on its batch neighbours."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: Any):
        import torch

        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            probs = torch.softmax(scores, dim=-1)
            sorted_p, order = probs.sort(dim=-1, descending=True)
            outside = sorted_p.cumsum(-1) - sorted_p > self.top_p  # the tokens after the nucleus
            scores = scores.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
        u = torch.stack([torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.generators])
        return scores - torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))


def generate_batch(
    model: Any,
    prompts: list[list[int]],
    *,
    config: Any,
    pad_id: int,
    eos_ids: list[int],
    stop_criteria: Any,
    seeds: list[int],
    device: torch.device,
    static_cache: bool = False,
    compile_all_devices: bool = False,
) -> list[tuple[list[int], str]]:
    """One left-padded batch through ``model.generate``: (sampled token ids, finish) per row,
    row ``i`` sampled from its own stream seeded ``seeds[i]`` (:class:`PerRequestSampler`).

    The one place where tokens are produced. ``static_cache``: a static KV cache with a compiled
    decode step (transformers compiles it on CUDA; ``compile_all_devices`` also elsewhere, for
    tests), with bucketed shapes (see :data:`BATCH_BUCKETS`); if that path fails it is logged
    once and this process generates eagerly from then on.
    """
    rows = functools.partial(_generate_rows, model, prompts, config=config, pad_id=pad_id, eos_ids=eos_ids,
                             stop_criteria=stop_criteria, seeds=seeds, device=device)
    if static_cache and not _static_failed:
        try:
            return rows(static=True, compile_all_devices=compile_all_devices)
        except Exception as e:  # any compile or runtime failure: eager is the fallback
            _static_failed.append(f"{type(e).__name__}: {e}")
            logging.getLogger(__name__).warning(
                "static-cache generation failed (%s); generating eagerly from now on",
                _static_failed[0].splitlines()[0][:200],
            )
    return rows(static=False)


def _generate_rows(
    model: Any,
    prompts: list[list[int]],
    *,
    config: Any,
    pad_id: int,
    eos_ids: list[int],
    stop_criteria: Any,
    seeds: list[int],
    device: torch.device,
    static: bool,
    compile_all_devices: bool = False,
) -> list[tuple[list[int], str]]:
    import copy

    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    real = len(prompts)
    width = max(len(p) for p in prompts)
    processors = LogitsProcessorList()
    if config.do_sample:  # sampled by our per-row streams: transformers only takes the argmax
        processors.append(PerRequestSampler(list(seeds) + [0] * (bucket_batch(real) - real if static else 0),
                                            config.temperature, config.top_p, device))
        config = copy.copy(config)
        config.do_sample, config.temperature, config.top_p, config.top_k = False, None, None, None
    kwargs: dict[str, Any] = {"generation_config": config}
    if static:
        prompts = bucketed_rows(prompts)
        width = bucket_length(width)
        compile_decode = device.type == "cuda" or compile_all_devices
        kwargs = _static_generation_kwargs(
            config, width + config.max_new_tokens, compile_decode, compile_all_devices
        )
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for b, p in enumerate(prompts):
        input_ids[b, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention[b, width - len(p) :] = 1
    recorder = _FinishRecorder(stop_criteria, eos_ids, width, len(prompts), device, real_rows=real)
    out = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        logits_processor=processors,
        stopping_criteria=StoppingCriteriaList([recorder]),
        **kwargs,
    )
    new = out[:real, width:].tolist()
    lengths = recorder.lengths[:real].tolist()
    reasons = recorder.reasons[:real].tolist()
    rows = []
    for ids, n, r in zip(new, lengths, reasons, strict=True):
        if n < 0:
            rows.append((ids, "length"))
        else:
            rows.append((ids[:n], "stop" if r == 1 else "eos"))
    return rows


class _FinishRecorder:
    """A stopping criterion that applies the stop strings and records, per row, how many tokens
    it had when it finished (by stop string or EOS), so that padding is never mistaken for output.
    Tensor ops only: no host sync per step."""

    def __init__(
        self,
        stop: Any,
        eos_ids: list[int],
        prompt_width: int,
        rows: int,
        device: Any,
        real_rows: int | None = None,
    ) -> None:
        import torch

        self.stop = stop
        self.eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
        self.prompt_width = prompt_width
        self.lengths = torch.full((rows,), -1, dtype=torch.long, device=device)
        self.reasons = torch.zeros((rows,), dtype=torch.long, device=device)  # 1 stop, 2 eos
        # Bucket-filling dummy rows (index >= real_rows) report done at once, so they never keep
        # the batch generating; their outputs are dropped.
        self.dummy = torch.arange(rows, device=device) >= (rows if real_rows is None else real_rows)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        n = input_ids.shape[1] - self.prompt_width
        if self.stop is not None:
            by_stop = self.stop(input_ids, scores)
        else:
            by_stop = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        by_eos = torch.isin(input_ids[:, -1], self.eos)
        new = (by_stop | by_eos) & (self.lengths < 0)
        self.lengths = torch.where(new, torch.full_like(self.lengths, n), self.lengths)
        reason = torch.where(by_stop, 1, 2)
        self.reasons = torch.where(new, reason, self.reasons)
        return by_stop | by_eos | self.dummy
