"""Model service: resolve a model name, load the policy (base + adapter), wrap prompts, generate.

The policy of iteration N is the base model plus the checkpoint that iteration N-1 saved (a peft
adapter, or full weights for ``adapter: full``); iteration 1 starts from the base model. One
:class:`Policy` object serves every stage of an iteration: generation here, token log-probs in the
update stage (which reads ``policy.model`` / ``policy.tokenizer`` and the sequences
``prompt_ids + token_ids`` that :meth:`Policy.generate` returns).

Generation is batched with left padding; prompts are sorted by length inside a call (less
padding) and returned in input order. Sampling is seeded per batch, so the same seed, inputs and
``batch_size`` give the same completions on CPU (GPU kernels are not bitwise deterministic).
A completion ends at EOS or right after the first stop string; its ``token_ids`` are exactly the
sampled tokens up to that point (the last one may run a few characters past the stop string, which
``text`` leaves out), never padding.

Heavy imports (torch, transformers, peft, bitsandbytes) happen inside functions, so importing this
module stays cheap for the CLI.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from stages.config import ModelSection

DEFAULT_STOP: tuple[str, ...] = ("</answer>",)


class ModelError(Exception):
    """A model problem the user can fix (unknown name, missing package, bad checkpoint): one line."""


# ----------------------------------------------------------------------------- names and devices


def resolve_model(name: str) -> str:
    """A loadable location for ``name``: the cache folder of a built-in (built on first use), a
    local folder, or a hub id passed through (whether it loads offline is found out on loading)."""
    from stages import builtin_models

    if name.startswith("builtin:"):
        return str(builtin_models.ensure_builtin(name))
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local or path.exists():
        raise ModelError(
            f"model '{name}' is not a model folder; give a local folder with config.json, a hub id "
            f"(org/name), or a built-in ({', '.join(builtin_models.builtin_names())})"
        )
    return name


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device is 'cuda' but no CUDA GPU is visible; use --set model.device=cpu")
    return requested


def pick_dtype(requested: str, device: str) -> torch.dtype:
    import torch

    if requested == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, requested)


# ----------------------------------------------------------------------------- results


@dataclass
class Completion:
    text: str
    """The completion, cut right after the stop string (EOS and padding left out)."""
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int]
    """The sampled tokens, EOS included when one ended the completion; no padding."""
    prompt_ids: list[int]
    """The prompt's tokens, no padding: the sequence the model saw is ``prompt_ids + token_ids``."""
    finish: str = "length"
    """Why it ended: ``stop`` (a stop string), ``eos``, or ``length`` (max_new_tokens)."""


@dataclass
class GenerationResult:
    completions: list[Completion]
    seconds: float
    tokens: int = field(init=False)
    """Completion tokens generated, summed over prompts."""

    def __post_init__(self) -> None:
        self.tokens = sum(c.completion_tokens for c in self.completions)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]


# ----------------------------------------------------------------------------- the policy


@dataclass
class Policy:
    model: Any
    """The torch module: a peft model for lora/qlora, the plain causal LM for full."""
    tokenizer: Any
    device: torch.device
    adapter: str
    base_path: str
    prompt_format: str = "auto"
    compile_generation: bool = False
    _reference: Any = None
    _stop_criteria: dict[tuple[str, ...], Any] = field(default_factory=dict)

    # --------------------------------------------------------------------- prompts

    @property
    def uses_chat_template(self) -> bool:
        if self.prompt_format == "plain":
            return False
        if self.prompt_format == "chat":
            return True
        return bool(getattr(self.tokenizer, "chat_template", None))

    def wrap(self, user_text: str) -> str:
        """The text the model is given for a user message: chat template or plain text."""
        if not self.uses_chat_template:
            return user_text
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError(
                "model.prompt_format is 'chat' but the tokenizer has no chat template; "
                "use --set model.prompt_format=plain (or auto)"
            )
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
        )

    def encode(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        bos = self.tokenizer.bos_token_id
        # A chat template may already start with BOS; don't let the tokenizer add a second one.
        if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]
        if not ids:  # an empty plain prompt: start from a document boundary
            start = bos if bos is not None else self.tokenizer.eos_token_id
            ids = [start] if start is not None else [0]
        return ids

    # --------------------------------------------------------------------- generation

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        batch_size: int,
        stop: Sequence[str] | None = DEFAULT_STOP,
        progress: Callable[[int, int], None] | None = None,
    ) -> GenerationResult:
        """Complete every prompt (already wrapped, see :meth:`wrap`); results in input order."""
        import torch

        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError(
                f"batch_size and max_new_tokens must be >= 1 (got {batch_size}, {max_new_tokens})"
            )
        stop = tuple(s for s in (stop or ()) if s)
        encoded = [self.encode(p) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
        config = self._generation_config(max_new_tokens, temperature, top_p)
        eos_ids = _as_list(config.eos_token_id)
        out: list[Completion | None] = [None] * len(encoded)

        was_training = self.model.training
        self.model.eval()
        start = time.perf_counter()
        try:
            with torch.no_grad():
                for b, first in enumerate(range(0, len(order), batch_size)):
                    idx = order[first : first + batch_size]
                    rows = generate_batch(
                        self.model,
                        [encoded[i] for i in idx],
                        config=config,
                        pad_id=config.pad_token_id,
                        eos_ids=eos_ids,
                        stop_criteria=self._stop_criterion(stop),
                        seed=batch_seed(seed, b),
                        device=self.device,
                        static_cache=self.compile_generation
                        and self.device.type == "cuda"
                        and static_generation_supported(self.model),
                    )
                    for i, (ids, finish) in zip(idx, rows, strict=True):
                        out[i] = self._completion(encoded[i], ids, finish, stop)
                    if progress is not None:
                        progress(first + len(idx), len(order))
        finally:
            self.model.train(was_training)
        return GenerationResult([c for c in out if c is not None], time.perf_counter() - start)

    def _generation_config(self, max_new_tokens: int, temperature: float, top_p: float) -> Any:
        from transformers import GenerationConfig

        eos = _as_list(getattr(self._base_generation_config(), "eos_token_id", None))
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos[0]
        sample = temperature > 0
        # transformers fills every field left None from the checkpoint's generation_config, then
        # from its global defaults (top_k=50): set every field that shapes the distribution, so
        # the policy samples from its plain softmax, which the RL update assumes.
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=top_p if sample else None,
            top_k=0 if sample else None,
            min_p=None,
            typical_p=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            eos_token_id=eos,
            pad_token_id=pad,
        )

    def _base_generation_config(self) -> Any:
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return getattr(base, "generation_config", None)

    def _stop_criterion(self, stop: tuple[str, ...]) -> Any:
        if not stop:
            return None
        if stop not in self._stop_criteria:
            from transformers import StopStringCriteria

            self._stop_criteria[stop] = StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(stop))
        return self._stop_criteria[stop]

    def _completion(
        self, prompt_ids: list[int], ids: list[int], finish: str, stop: tuple[str, ...]
    ) -> Completion:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if finish == "stop":
            hits = [(text.find(s), len(s)) for s in stop if s in text]
            if hits:
                pos, length = min(hits)
                text = text[: pos + length]
        return Completion(text, len(prompt_ids), len(ids), ids, list(prompt_ids), finish)

    # --------------------------------------------------------------------- training helpers

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def collate(
        self, prompt_ids: Sequence[Sequence[int]], token_ids: Sequence[Sequence[int]]
    ) -> dict[str, Any]:
        """Right-padded ``prompt + completion`` sequences for a training forward pass.

        ``completion_mask[b, t]`` is 1 where ``input_ids[b, t]`` is a completion token; its
        log-prob comes from the logits at position ``t - 1``.
        """
        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        seqs = [list(p) + list(t) for p, t in zip(prompt_ids, token_ids, strict=True)]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        completion = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, (p, s) in enumerate(zip(prompt_ids, seqs, strict=True)):
            input_ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
            attention[b, : len(s)] = 1
            completion[b, len(p) : len(s)] = 1
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention.to(self.device),
            "completion_mask": completion.to(self.device),
        }

    @contextlib.contextmanager
    def reference(self) -> Iterator[Any]:
        """The reference model (the base, for KL): with LoRA the same model with its adapter
        disabled (no second copy in memory); with full weights a frozen copy loaded once."""
        if hasattr(self.model, "disable_adapter"):
            with self.model.disable_adapter():
                yield self.model
            return
        if self._reference is None:
            from transformers import AutoModelForCausalLM

            dtype = next(self.model.parameters()).dtype
            ref = AutoModelForCausalLM.from_pretrained(self.base_path, dtype=dtype).to(self.device)
            self._reference = ref.eval().requires_grad_(False)
        yield self._reference

    def save(self, directory: str | Path) -> Path:
        """Write the adapter in peft's own format (lora/qlora) or the full weights (full)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        if self.adapter == "full":
            self.tokenizer.save_pretrained(directory)
        return directory


# ----------------------------------------------------------------------------- generation core


def batch_seed(seed: int, batch_index: int) -> int:
    """A well-mixed seed per batch, so that calls with nearby seeds don't share random streams."""
    digest = hashlib.sha256(f"azr-generate:{seed}:{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


# Static-cache generation compiles one decode graph per shape. Shapes are bucketed so that a run
# compiles a handful of graphs (each 40-70 s on an H100 for the 3B shape, FACTS.md) and then reuses
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


def generate_batch(
    model: Any,
    prompts: list[list[int]],
    *,
    config: Any,
    pad_id: int,
    eos_ids: list[int],
    stop_criteria: Any,
    seed: int,
    device: torch.device,
    static_cache: bool = False,
    compile_all_devices: bool = False,
) -> list[tuple[list[int], str]]:
    """One left-padded batch through ``model.generate``: (sampled token ids, finish) per row.

    The one place where tokens are produced. ``static_cache``: a static KV cache with a compiled
    decode step (transformers compiles it on CUDA; ``compile_all_devices`` also elsewhere, for
    tests), with bucketed shapes (see :data:`BATCH_BUCKETS`); if that path fails it is logged
    once and this process generates eagerly from then on.
    """
    rows = functools.partial(_generate_rows, model, prompts, config=config, pad_id=pad_id, eos_ids=eos_ids,
                             stop_criteria=stop_criteria, seed=seed, device=device)
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
    seed: int,
    device: torch.device,
    static: bool,
    compile_all_devices: bool = False,
) -> list[tuple[list[int], str]]:
    import torch
    from transformers import StoppingCriteriaList

    real = len(prompts)
    width = max(len(p) for p in prompts)
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
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
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


def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    if isinstance(x, int):
        return [x]
    return [int(i) for i in x]


# ----------------------------------------------------------------------------- loading


def load_policy(model_cfg: ModelSection, adapter_dir: Path | None = None, trainable: bool = True) -> Policy:
    """Base model + adapter of the previous iteration (``adapter_dir``; None: a fresh adapter).

    ``adapter_dir`` holds a peft adapter (``adapter_config.json``) for lora/qlora, or full weights
    (``config.json``) for full. ``trainable=False`` freezes everything (generation-only stages).
    """
    import torch

    _quiet_imports(with_peft=model_cfg.adapter != "full")
    path = resolve_model(model_cfg.name)
    device = pick_device(model_cfg.device)
    dtype = pick_dtype(model_cfg.dtype, device)
    adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
    if adapter_dir is not None:
        _check_checkpoint(adapter_dir, model_cfg.adapter)

    tokenizer = _load_tokenizer(path, model_cfg.name)
    if model_cfg.adapter == "full":
        weights = str(adapter_dir) if adapter_dir is not None else path
        model = _from_pretrained(weights, model_cfg.name, dtype=dtype).to(device)
        model.requires_grad_(trainable)
    else:
        if model_cfg.adapter == "qlora":
            model = _load_4bit(path, model_cfg.name, dtype, device)
        else:
            model = _from_pretrained(path, model_cfg.name, dtype=dtype).to(device)
        model = _attach_lora(model, model_cfg, adapter_dir, trainable)
        if not trainable:
            model.requires_grad_(False)
    _drop_sampling_defaults(model)
    model.train(trainable)
    return Policy(
        model=model,
        tokenizer=tokenizer,
        device=torch.device(device),
        adapter=model_cfg.adapter,
        base_path=path,
        prompt_format=model_cfg.prompt_format,
        compile_generation=model_cfg.compile_generation,
    )


def _quiet_imports(with_peft: bool) -> None:
    """No per-file progress bars on stderr (the CLI draws its own progress), and no warning about
    bitsandbytes' optional CPU kernels (they come from a hub; FACTS.md: don't install them)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if with_peft:
        bnb_log = logging.getLogger("bitsandbytes")
        level = bnb_log.level
        bnb_log.setLevel(logging.ERROR)
        try:
            import peft  # noqa: F401  (it imports bitsandbytes when installed)
        finally:
            bnb_log.setLevel(level)


def _drop_sampling_defaults(model: Any) -> None:
    """Keep only the special token ids of a checkpoint's generation_config: its sampling defaults
    (top_k, repetition penalty, ...) would otherwise leak into every ``generate`` call."""
    from transformers import GenerationConfig

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    old = getattr(base, "generation_config", None)
    if old is None:
        return
    keep = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
    base.generation_config = GenerationConfig(**{k: getattr(old, k, None) for k in keep})


def _check_checkpoint(folder: Path, adapter: str) -> None:
    want = "config.json" if adapter == "full" else "adapter_config.json"
    if not (folder / want).is_file():
        what = "full weights" if adapter == "full" else "a peft adapter"
        raise ModelError(
            f"checkpoint {folder} has no {want}: with model.adapter={adapter} it must hold {what}"
        )


def _load_tokenizer(path: str, name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise ModelError(_unloadable(name, e)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _from_pretrained(path: str, name: str, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as e:
        raise ModelError(_unloadable(name, e)) from None


def _unloadable(name: str, e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (
        f"cannot load model '{name}': not in the local hub cache and no network (HF_HUB_OFFLINE) or "
        f"not a model ({first[:160]}); download it first or use a local folder or a built-in"
    )


def _load_4bit(path: str, name: str, dtype: torch.dtype, device: str) -> Any:
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError(
            "model.adapter=qlora needs the bitsandbytes package; install it or use model.adapter=lora"
        ) from None
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
    )
    model = _from_pretrained(path, name, quantization_config=quant, dtype=dtype, device_map={"": device})
    if device == "cpu":
        disable_bnb_cpu_repack(model)
    # Gradient checkpointing is the update stage's choice (update.gradient_checkpointing).
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def disable_bnb_cpu_repack(model: Any) -> int:
    """The FACTS.md workaround: on CPUs with avx512_bf16, bitsandbytes repacks 4-bit weights into a
    CPU-only layout when generating in eval mode, and training afterwards crashes or gets wrong
    LoRA gradients. Turning that path off on every Linear4bit fixes it. Returns the count."""
    import bitsandbytes as bnb

    count = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def _attach_lora(model: Any, cfg: ModelSection, adapter_dir: Path | None, trainable: bool) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_dir is not None:
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    targets = cfg.lora_target_modules
    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets if targets == "all-linear" else list(targets),
        task_type="CAUSAL_LM",
        bias="none",
    )
    return get_peft_model(model, lora)
