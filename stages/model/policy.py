"""The policy: a model and its tokenizer, and what the stages ask of it: prompts wrapped for it,
completions generated, its trainable parameters, its reference model, saving it.

The policy of iteration N is the base model plus the checkpoint that iteration N-1 saved (a peft
adapter, or full weights for ``adapter: full``); iteration 1 starts from the base model. One
:class:`Policy` object serves every stage of an iteration: generation here, token log-probs in the
update stage (which reads ``policy.model`` / ``policy.tokenizer`` and the sequences
``prompt_ids + token_ids`` that :meth:`Policy.generate` returns).

The policy owns the weights; a rollout engine (``model.engine``, :mod:`stages.model.engines`)
owns generation. :meth:`Policy.generate` does what every engine shares: it encodes the prompts,
gives request ``i`` its seed, and hands the call to the engine (to every rank's, under several
ranks: :class:`stages.model.engines.sharded.Sharded`). Sampling is seeded per request, so the same seed and
inputs give the same completions on CPU whatever the batch size (GPU kernels are not bitwise
deterministic). A completion ends at EOS or right after the first stop string; its ``token_ids``
are exactly the sampled tokens up to that point (the last one may run a few characters past the
stop string, which ``text`` leaves out), never padding.

Heavy imports (torch, transformers, peft, bitsandbytes) happen inside functions, so importing this
module stays cheap for the CLI.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.model import loading, templates
from stages.model.adapters import ADAPTERS, AdapterKind
from stages.model.engines import Engine, Requests, engine_class, make_engine
from stages.model.generation import GenerationResult, as_list, request_seed
from stages.model.names import pick_device, pick_dtype, resolve_model

if TYPE_CHECKING:
    import torch

    from stages.config.schema import ModelSection

DEFAULT_STOP: tuple[str, ...] = ("</answer>",)


@dataclass
class Policy:
    model: Any
    """The torch module: a peft model for lora/qlora, the plain causal LM for full."""
    tokenizer: Any
    device: torch.device
    kind: AdapterKind
    """What is trained (LoRA, QLoRA, full weights): it saves, merges and gives the reference."""
    base_path: str
    prompt_format: str = "chat"
    """How prompts are wrapped: ``r1``, ``chat`` or ``plain`` (resolved from model.prompt_format)."""
    compile_generation: bool = False
    compute_dtype: Any = None
    """Set when the weights are kept in a higher precision than they compute in (full fine-tuning
    in bf16: fp32 master weights, bf16 autocast): every forward pass runs under :meth:`compute`."""
    frozen_reference: Any = None
    """Full fine-tuning with a KL penalty: the frozen base, loaded once (see Full.reference)."""
    merge_for_generation: bool = False
    """Generate on a plain copy with the adapter folded in (:mod:`stages.model.merged`)."""
    dtype: Any = None
    """The compute dtype (what ``model.dtype`` resolved to)."""
    lora_rank: int = 16
    checkpoint: Path | None = None
    """The checkpoint the weights are (``checkpoints/<N-1>/`` for the policy of iteration N; None:
    the base, or a fresh adapter): what an engine other than HF loads to serve them."""
    engine: str = "hf"
    """Who generates: the name of a rollout engine (``model.engine``; :data:`stages.model.engines.ENGINES`)."""
    engine_options: Any = None
    """The settings of the rollout engine (its config section, :meth:`Config.engine_options`), or
    None for its defaults."""
    iteration: int | None = None
    """The iteration whose policy this is, when a session holds it: under several ranks its
    generation calls are shared out (:mod:`stages.parallel`); None: generate here alone."""
    sharded: bool = False
    """The weights are sharded across ranks by FSDP (:mod:`stages.training.sharding`): generation
    runs inside :meth:`full_weights`."""
    _merged: Any = None
    _stop_criteria: dict[tuple[str, ...], Any] = field(default_factory=dict)
    _engine: tuple[str, Engine] | None = None

    # --------------------------------------------------------------------- prompts

    @property
    def uses_chat_template(self) -> bool:
        return self.prompt_format == "chat"

    @property
    def answer_prefix(self) -> str:
        """What the prompt prefilled of every response (``<think>`` with the R1 template)."""
        return templates.answer_prefix(self.prompt_format)

    def wrap(self, user_text: str) -> str:
        """The text the model is given for one user message (see :mod:`stages.model.templates`)."""
        return self.wrap_turns([("user", user_text)])

    def wrap_turns(self, turns: Sequence[tuple[str, str]]) -> str:
        """The text the model is given for a prompt of (role, content) turns."""
        return templates.wrap(self.prompt_format, self.tokenizer, turns)

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
        seeds: Sequence[int] | None = None,
    ) -> GenerationResult:
        """Complete every prompt (already wrapped, see :meth:`wrap`); results in input order.
        Prompt ``i`` samples from its own stream, seeded ``seeds[i]`` (default: derived from
        ``seed`` and ``i``), so its completion does not depend on ``batch_size``, nor on how many
        ranks share the call (:meth:`rollout_engine`)."""
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError(
                f"batch_size and max_new_tokens must be >= 1 (got {batch_size}, {max_new_tokens})"
            )
        encoded = [self.encode(p) for p in prompts]
        requests = Requests(
            prompt_ids=encoded,
            seeds=list(seeds) if seeds is not None else [request_seed(seed, i) for i in range(len(encoded))],
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
            stop=tuple(s for s in (stop or ()) if s), batch_size=batch_size,
        )
        start = time.perf_counter()
        completions = self.rollout_engine().generate(self, requests, progress)
        return GenerationResult(completions, time.perf_counter() - start)

    @property
    def engine_impl(self) -> Engine:
        """The engine :attr:`engine` names (made on first use, and again when :attr:`engine` changes)."""
        if self._engine is None or self._engine[0] != self.engine:
            self._engine = (self.engine, make_engine(self.engine))
        return self._engine[1]

    def rollout_engine(self) -> Engine:
        """Who completes a call: :attr:`engine_impl`, or, for a session's policy on rank 0 of
        several ranks, that engine on every rank, each on its share (:class:`stages.model.engines.sharded.Sharded`)."""
        from stages import parallel
        from stages.model.engines.sharded import Sharded

        if self.iteration is not None and parallel.driving():
            return Sharded(self.engine_impl)
        return self.engine_impl

    def pause_engine(self) -> None:
        """Before the update: an engine that holds accelerator memory gives it back until the next
        generation (vLLM's sleep mode on a GPU; nothing for the HF engine or on a CPU)."""
        self.engine_impl.pause()

    def generation_model(self) -> Any:
        """The model to sample from: the policy, or its merged copy brought up to date."""
        return self.merged() if self.merge_for_generation else self.model

    def merged(self) -> Any:
        """A LoRA policy as a plain model, the adapter folded in (:mod:`stages.model.merged`):
        built on first use, refreshed to the current adapter on every call."""
        if self._merged is None:
            from stages.model.merged import MergedCopy

            self._merged = MergedCopy(self.model)
        return self._merged.refresh()

    def end_token_ids(self) -> list[int]:
        """The tokens that end a completion: the checkpoint's EOS ids, the tokenizer's EOS, and
        the end-of-turn tokens of its chat template."""
        eos = as_list(getattr(self._base_generation_config(), "eos_token_id", None))
        for token in [self.tokenizer.eos_token_id, *templates.end_token_ids(self.tokenizer)]:
            if token is not None and token not in eos:
                eos.append(token)
        return eos

    def generation_config(self, max_new_tokens: int, temperature: float, top_p: float) -> Any:
        """The transformers ``GenerationConfig`` of a call: the plain softmax at ``temperature``
        (0: greedy), nucleus ``top_p``, the end tokens (:meth:`end_token_ids`) and the pad token."""
        from transformers import GenerationConfig

        eos = self.end_token_ids()
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

    def stop_criterion(self, stop: tuple[str, ...]) -> Any:
        """A transformers stopping criterion for the stop strings ``stop`` (None for none), one
        per set of strings (building one scans the vocabulary)."""
        if not stop:
            return None
        if stop not in self._stop_criteria:
            from transformers import StopStringCriteria

            self._stop_criteria[stop] = StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(stop))
        return self._stop_criteria[stop]

    # --------------------------------------------------------------------- training helpers

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def full_weights(self) -> contextlib.AbstractContextManager[Any]:
        """The whole weights on this rank while open, when they are sharded (every rank enters it
        together: it gathers them); nothing otherwise, nor for an engine that does not generate on
        the policy's modules (vLLM serves the checkpoint, so it never needs them)."""
        if not self.sharded or not self.engine_impl.uses_live_weights:
            return contextlib.nullcontext()
        from stages.training.sharding import full_weights

        return full_weights(self.model)

    def shard(self) -> None:
        """Shard the weights across the ranks with FSDP (full fine-tuning on several ranks)."""
        from stages.training.sharding import shard

        shard(self.model, self.compute_dtype)
        self.sharded = True

    def compute(self) -> contextlib.AbstractContextManager[Any]:
        """The context forward passes run in: autocast to :attr:`compute_dtype`, or nothing."""
        import torch

        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    def reference(self) -> contextlib.AbstractContextManager[Any]:
        """The reference model (the base, for KL), as a context: see the adapter kind."""
        return self.kind.reference(self)

    def save(self, directory: str | Path, weights: dict[str, Any] | None = None) -> Path:
        """Write what the adapter kind keeps: a peft adapter (lora/qlora) or the full weights
        (``weights``: the whole state dict gathered from sharded ones)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.kind.save(self, directory, weights)
        return directory


def load_policy(model_cfg: ModelSection, adapter_dir: Path | None = None, trainable: bool = True,
                engine_options: Any = None) -> Policy:
    """Base model + adapter of the previous iteration (``adapter_dir``; None: a fresh adapter).

    ``adapter_dir`` holds what the adapter kind saves (a peft adapter for lora/qlora, full weights
    for full). ``trainable=False`` freezes everything (generation-only stages). ``engine_options``:
    the rollout engine's config section (:meth:`Config.engine_options`; its defaults when None).
    """
    import torch

    kind = ADAPTERS[model_cfg.adapter]
    loading.quiet_imports(with_peft=kind.uses_peft)
    path = resolve_model(model_cfg.name)
    device = pick_device(model_cfg.device)
    dtype = pick_dtype(model_cfg.dtype, device)
    adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
    if adapter_dir is not None:
        kind.check(adapter_dir)
    tokenizer = loading.load_tokenizer(path, model_cfg.name)
    weights = kind.weights_dtype(dtype)
    model = kind.build(model_cfg, path, weights, device, adapter_dir, trainable)
    loading.drop_sampling_defaults(model)
    model.train(trainable)
    return Policy(
        model=model,
        tokenizer=tokenizer,
        device=torch.device(device),
        kind=kind,
        base_path=path,
        prompt_format=templates.resolve_format(model_cfg.prompt_format, model_cfg.name, tokenizer),
        compile_generation=model_cfg.compile_generation,
        compute_dtype=dtype if weights != dtype else None,
        merge_for_generation=kind.merges_for_generation(model_cfg.merge_for_generation, device)
        and engine_class(model_cfg.engine).uses_live_weights,
        dtype=dtype,
        lora_rank=model_cfg.lora_rank,
        checkpoint=adapter_dir,
        engine=model_cfg.engine,
        engine_options=engine_options,
    )
