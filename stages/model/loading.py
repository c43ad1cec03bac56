"""Loading the policy: tokenizer, base weights (full precision or NF4 4-bit), a LoRA adapter, and
the settings that keep sampling to the plain softmax. The adapter kinds
(:mod:`stages.model.adapters`) build on these helpers.

Heavy imports (torch, transformers, peft, bitsandbytes) happen inside the functions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.errors import ModelError

if TYPE_CHECKING:
    import torch

    from stages.config.schema import ModelSection


def quiet_imports(with_peft: bool) -> None:
    """No per-file progress bars on stderr (the CLI draws its own progress), and no warning about
    bitsandbytes' optional CPU kernels (they come from a hub, and azr does not install them)."""
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


def drop_sampling_defaults(model: Any) -> None:
    """Keep only the special token ids of a checkpoint's generation_config: its sampling defaults
    (top_k, repetition penalty, ...) would otherwise leak into every ``generate`` call."""
    from transformers import GenerationConfig

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    old = getattr(base, "generation_config", None)
    if old is None:
        return
    keep = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
    base.generation_config = GenerationConfig(**{k: getattr(old, k, None) for k in keep})


def load_tokenizer(path: str, name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise ModelError(unloadable(name, e)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def from_pretrained(path: str, name: str, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as e:
        raise ModelError(unloadable(name, e)) from None


def unloadable(name: str, e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (
        f"cannot load model '{name}': not in the local hub cache and no network (HF_HUB_OFFLINE) or "
        f"not a model ({first[:160]}); download it first or use a local folder or a built-in"
    )


def load_4bit(path: str, name: str, dtype: torch.dtype, device: str) -> Any:
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
    model = from_pretrained(path, name, quantization_config=quant, dtype=dtype, device_map={"": device})
    if device == "cpu":
        disable_bnb_cpu_repack(model)
    # Gradient checkpointing is the update stage's choice (update.gradient_checkpointing).
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def disable_bnb_cpu_repack(model: Any) -> int:
    """A workaround found on these machines: on CPUs with avx512_bf16, bitsandbytes repacks 4-bit weights into a
    CPU-only layout when generating in eval mode, and training afterwards crashes or gets wrong
    LoRA gradients. Turning that path off on every Linear4bit fixes it. Returns the count."""
    import bitsandbytes as bnb

    count = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def attach_lora(model: Any, cfg: ModelSection, adapter_dir: Path | None, trainable: bool) -> Any:
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
