"""What is trained, one object per kind: LoRA adapters, LoRA on a 4-bit base (QLoRA), or all the
weights. Each kind knows how to build its trainable model, what its checkpoint holds, how to save
it, how to give the reference model (for a KL penalty) and how to merge for export. Code above
this module asks the kind (``ADAPTERS[cfg.adapter]``); it never compares the kind's name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stages.errors import ModelError
from stages.model import loading

if TYPE_CHECKING:
    import torch

    from stages.config.schema import ModelSection


class Policy(Protocol):
    """What a kind needs of the policy it serves (:class:`stages.model.policy.Policy`)."""

    model: Any
    tokenizer: Any
    device: Any
    base_path: str
    frozen_reference: Any


class AdapterKind:
    """The interface; see :class:`LoRA`, :class:`QLoRA` and :class:`Full`."""

    name: str = ""
    marker: str = ""
    """The file a checkpoint of this kind must hold."""
    holds: str = ""
    """What a checkpoint of this kind holds, in words."""
    uses_peft: bool = True
    vllm_quantization: str | None = None
    """How the vLLM engine loads the base (``quantization=``); None: as it is."""

    def build(self, cfg: ModelSection, base: str, dtype: torch.dtype, device: str,
              checkpoint: Path | None, trainable: bool) -> Any:
        """The torch model: the base plus the checkpoint (None: a fresh adapter, or the base)."""
        raise NotImplementedError

    def weights_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype the weights are kept in when ``model.dtype`` asks to compute in ``dtype``.
        LoRA keeps its base there (peft keeps the adapter itself in fp32)."""
        return dtype

    def merges_for_generation(self, requested: Any, device: str) -> bool:
        """Whether to generate on a merged copy (``model.merge_for_generation``; auto: on a CPU)."""
        return False

    def check(self, checkpoint: Path) -> None:
        if not (checkpoint / self.marker).is_file():
            raise ModelError(f"checkpoint {checkpoint} has no {self.marker}: with model.adapter={self.name} "
                             f"it must hold {self.holds}")

    def save(self, policy: Policy, folder: Path, weights: dict[str, Any] | None = None) -> None:
        policy.model.save_pretrained(folder, state_dict=weights)

    @contextlib.contextmanager
    def reference(self, policy: Policy) -> Iterator[Any]:
        """The reference model (the base): for a peft model the same model with its adapter
        disabled, so no second copy lives in memory."""
        with policy.model.disable_adapter():
            yield policy.model

    def for_export(self, cfg: ModelSection) -> ModelSection:
        """The model settings to load a checkpoint with before merging it (see :meth:`merged`)."""
        return cfg

    def merged(self, policy: Policy) -> Any:
        """A plain transformers model with the adapter folded in."""
        return policy.model.merge_and_unload()


class LoRA(AdapterKind):
    name = "lora"
    marker = "adapter_config.json"
    holds = "a peft adapter"

    def merges_for_generation(self, requested: Any, device: str) -> bool:
        return device == "cpu" if requested == "auto" else bool(requested)

    def build(self, cfg: ModelSection, base: str, dtype: torch.dtype, device: str,
              checkpoint: Path | None, trainable: bool) -> Any:
        model = loading.from_pretrained(base, cfg.name, dtype=dtype).to(device)
        return self._attach(model, cfg, checkpoint, trainable)

    def _attach(self, model: Any, cfg: ModelSection, checkpoint: Path | None, trainable: bool) -> Any:
        model = loading.attach_lora(model, cfg, checkpoint, trainable)
        if not trainable:
            model.requires_grad_(False)
        return model


class QLoRA(LoRA):
    """LoRA on NF4 4-bit base weights (bitsandbytes). The export merges into the base loaded in
    full precision: merging into 4-bit weights would round the update away."""

    name = "qlora"
    vllm_quantization = "bitsandbytes"

    def build(self, cfg: ModelSection, base: str, dtype: torch.dtype, device: str,
              checkpoint: Path | None, trainable: bool) -> Any:
        return self._attach(loading.load_4bit(base, cfg.name, dtype, device), cfg, checkpoint, trainable)

    def for_export(self, cfg: ModelSection) -> ModelSection:
        return cfg.model_copy(update={"adapter": "lora", "dtype": "float32" if cfg.dtype == "auto" else cfg.dtype})

    def merges_for_generation(self, requested: Any, device: str) -> bool:
        """Never: folding the adapter into 4-bit weights would round it away."""
        return False


class Full(AdapterKind):
    """Every weight is trained; a checkpoint is a whole transformers folder (weights + tokenizer).

    With a half-precision ``model.dtype`` the weights (and so AdamW's state) stay fp32 master
    weights and every forward pass autocasts to that dtype: updated in place in bf16, a step at the
    paper's lr of 1e-6 rounds to nothing for almost every weight (bf16 keeps 8 bits of mantissa).
    Memory per parameter: 4 (weights) + 4 (gradient) + 8 (AdamW) = 16 bytes, about 49 GiB for a
    3B model before activations (an estimate from the parameter count; BENCHMARKS.md)."""

    name = "full"
    marker = "config.json"
    holds = "full weights"
    uses_peft = False

    def weights_dtype(self, dtype: torch.dtype) -> torch.dtype:
        import torch

        return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype

    def build(self, cfg: ModelSection, base: str, dtype: torch.dtype, device: str,
              checkpoint: Path | None, trainable: bool) -> Any:
        weights = str(checkpoint) if checkpoint is not None else base
        model = loading.from_pretrained(weights, cfg.name, dtype=dtype).to(device)
        return model.requires_grad_(trainable)

    def save(self, policy: Policy, folder: Path, weights: dict[str, Any] | None = None) -> None:
        policy.model.save_pretrained(folder, state_dict=weights)
        policy.tokenizer.save_pretrained(folder)

    @contextlib.contextmanager
    def reference(self, policy: Policy) -> Iterator[Any]:
        """A frozen copy of the base, loaded once and kept by the policy."""
        if policy.frozen_reference is None:
            dtype = next(policy.model.parameters()).dtype
            ref = loading.from_pretrained(policy.base_path, policy.base_path, dtype=dtype).to(policy.device)
            policy.frozen_reference = ref.eval().requires_grad_(False)
        yield policy.frozen_reference

    def merged(self, policy: Policy) -> Any:
        return policy.model


ADAPTERS: dict[str, AdapterKind] = {kind.name: kind for kind in (LoRA(), QLoRA(), Full())}
"""``model.adapter`` -> its kind."""
