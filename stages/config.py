"""The one configuration model of a run, and how it is layered and validated.

Layers, lowest first: field defaults < ``--config FILE.yaml`` < ``--set a.b=value`` (repeatable,
values typed as YAML) < a few named CLI flags. The merged mapping is validated once. Every field
has a docstring (shown by ``azr config show --docs``); defaults live here and nowhere else.

Fields marked *runtime* (device, dtype, micro-batch sizes, worker counts, logging) may be changed
on an existing run; every other field changes what the run means and is refused on a run that
already has a ``config.yaml`` (see :func:`meaning_changes`).
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sandbox.config import SandboxConfig

TaskType = Literal["deduction", "abduction", "induction"]
TASK_TYPES: tuple[TaskType, ...] = ("deduction", "abduction", "induction")
Role = Literal["proposer", "solver"]
ROLES: tuple[Role, ...] = ("proposer", "solver")


class ConfigError(Exception):
    """A configuration problem the user can fix; the message is one line: what, why, how."""


def _runtime(default: Any, **kw: Any) -> Any:
    """A field that may be overridden on an existing run without changing what the run means."""
    return Field(default, json_schema_extra={"runtime": True}, **kw)


class Section(BaseModel):
    # allow_inf_nan=False: `--set update.lr=.inf` (or nan) is refused here, not found in the weights.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True,
                              allow_inf_nan=False)


class RunSection(Section):
    seed: int = 0
    """Seed of every random choice (sampling, buffer draws); same seed and inputs, same records."""
    batch_size: int = Field(64, ge=1)
    """B: proposals per task type per iteration, and solver training tasks per type (paper: 64)."""


class ModelSection(Section):
    name: str = "builtin:smollm2-135m"
    """Base model: a local folder, a hub id, or a built-in (`builtin:tiny`, `builtin:smollm2-135m`)."""
    adapter: Literal["lora", "qlora", "full"] = "lora"
    """What is trained: LoRA adapters, LoRA on a 4-bit NF4 base (QLoRA), or all weights."""
    lora_rank: int = Field(16, ge=1)
    """LoRA rank r."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling alpha (effective scale alpha / r)."""
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA input (0 keeps updates deterministic)."""
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names LoRA attaches to, or `all-linear`."""
    prompt_format: Literal["auto", "chat", "plain"] = "auto"
    """`chat` wraps prompts in the tokenizer's chat template, `plain` sends raw text; `auto` uses
    the chat template when the tokenizer has one."""
    device: Literal["auto", "cpu", "cuda"] = _runtime("auto")
    """Where the model runs; `auto` picks CUDA when present."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _runtime("auto")
    """Compute dtype; `auto` is bfloat16 on CUDA and float32 on CPU."""
    compile_generation: bool = _runtime(False)
    """Use a static KV cache with a compiled decode step for generation (GPU; falls back to eager)."""


class GenerationSection(Section):
    max_new_tokens: int = Field(512, ge=1)
    """Longest completion, in tokens."""
    temperature: float = Field(1.0, ge=0.0, le=10.0)
    """Sampling temperature (paper: 1.0); 0 means greedy."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass (paper: 1.0)."""
    generation_batch_size: int = _runtime(16, ge=1)
    """Prompts generated together in one batch (a speed/memory knob; sampling is seeded per batch,
    so changing it changes which samples a run draws)."""


class ProposeSection(GenerationSection):
    references: int = Field(6, ge=0)
    """K: reference triplets shown to the deduction/abduction proposer (paper: 6)."""
    induction_inputs: int = Field(10, ge=2)
    """N: inputs an induction proposal must give (paper: 10); half are shown to the solver."""
    induction_shown: int | None = Field(None, ge=1)
    """How many of the N induction pairs the solver sees; default N // 2 (paper: 5 of 10)."""
    demonstrations: bool = False
    """Show the references as earlier answers of the model (chat turns in the asked-for layout)
    instead of a list in the prompt: small models copy a shown format far better."""

    @model_validator(mode="after")
    def _check_split(self) -> ProposeSection:
        if self.induction_shown is not None and self.induction_shown >= self.induction_inputs:
            raise ValueError(
                f"induction_shown ({self.induction_shown}) must be below induction_inputs "
                f"({self.induction_inputs}) so that some pairs stay hidden for checking"
            )
        return self

    @property
    def shown(self) -> int:
        return self.induction_shown if self.induction_shown is not None else self.induction_inputs // 2


class ValidateSection(Section):
    buffer_cap: int = Field(16384, ge=1)
    """Most tasks a buffer keeps; the oldest proposed tasks fall out first (seeds never)."""
    strip_seed_comments: bool = True
    """Strip comments from programs proposed during `azr seed --grow` (as the paper does)."""


class SolveSection(GenerationSection):
    rollouts: int = Field(8, ge=1)
    """n: solver rollouts per newly valid task, used to estimate its learnability (paper: 8)."""
    demonstrations: bool = False
    """Show one fixed worked example of the task type as an earlier exchange before the task."""


class RewardSection(Section):
    format: Literal["strict", "blocks"] = "strict"
    """What a well-formatted response is. `strict`: <think> … </think> <answer> … </answer> holding
    the asked-for fenced blocks (the paper). `blocks`: the tags are optional, the blocks are not
    (for small models that never emit the tags)."""
    solver_correct: float = 1.0
    """Solver reward for a correct answer."""
    solver_wrong: float = -0.5
    """Solver reward for a well-formatted wrong answer."""
    format_error: float = -1.0
    """Reward for a badly formatted response (either role)."""
    proposer_invalid: float = -1.0
    """Proposer reward for a proposal that fails validation."""
    trivial_task_reward: float = 0.0
    """Proposer reward when every or no rollout solves the task (paper formula: 0; official code: -0.5)."""
    advantage_eps: float = Field(1e-6, gt=0, le=1.0)
    """epsilon in A = (r - mean) / (std + epsilon), per (type, role) batch."""


class UpdateSection(Section):
    algorithm: Literal["trr++", "ppo"] = "trr++"
    """`trr++`: Task-Relative REINFORCE++ (six baselines, no critic); `ppo`: value head + GAE."""
    lr: float = Field(2e-5, gt=0, le=1.0)
    """Learning rate (constant). The paper's 1e-6 is for full fine-tuning; LoRA wants more."""
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"
    """AdamW, or bitsandbytes' 8-bit AdamW."""
    weight_decay: float = Field(0.0, ge=0, le=1.0)
    """AdamW weight decay."""
    clip_ratio: float = Field(0.2, gt=0, le=1.0)
    """PPO surrogate ratio clip."""
    entropy_coef: float = Field(0.001, ge=0, le=1.0)
    """Entropy bonus coefficient."""
    kl_coef: float = Field(0.0, ge=0, le=100.0)
    """KL penalty to the reference model (0 = off, the paper's default)."""
    max_grad_norm: float = Field(1.0, gt=0)
    """Gradient-norm clip."""
    ppo_epochs: int = Field(1, ge=1)
    """Optimizer steps per iteration over the same batch (paper: 1)."""
    value_lr: float = Field(1e-4, gt=0, le=1.0)
    """Learning rate of the PPO value head."""
    value_coef: float = Field(0.5, ge=0, le=100.0)
    """Weight of the value loss (PPO)."""
    gamma: float = Field(1.0, ge=0, le=1)
    """Discount for GAE (PPO)."""
    lam: float = Field(0.95, ge=0, le=1)
    """GAE lambda (PPO)."""
    micro_batch_size: int = _runtime(4, ge=1)
    """Samples per forward/backward pass; gradients accumulate to one step per iteration."""
    logprob_chunk: int = _runtime(128, ge=0)
    """Positions per chunk when computing token log-probs (0 = all at once: more memory)."""
    gradient_checkpointing: bool = _runtime(False)
    """Recompute activations in backward to save memory."""
    keep_last: int = _runtime(2, ge=1)
    """Checkpoints kept: the last k ..."""
    keep_every: int = _runtime(50, ge=0)
    """... and every m-th iteration (0 = none)."""


class EvalSection(Section):
    every: int = _runtime(0, ge=0)
    """`azr loop` evaluates every m iterations (0 = never)."""
    suites: list[str] = _runtime(["humaneval-io"])
    """Suites `azr loop` evaluates."""
    limit: int | None = _runtime(None)
    """Items per suite during the loop (None = all)."""
    max_new_tokens: int = _runtime(384, ge=1)
    """Longest answer during evaluation."""


class LogSection(Section):
    tensorboard: bool = _runtime(True)
    """Write TensorBoard event files under the run directory."""
    wandb: bool = _runtime(False)
    """Log to Weights & Biases (needs the `wandb` package and a login)."""
    wandb_project: str = _runtime("azr")
    """W&B project name."""


class Config(Section):
    run: RunSection = RunSection()
    model: ModelSection = ModelSection()
    propose: ProposeSection = ProposeSection()
    validate_: ValidateSection = Field(ValidateSection(), alias="validate")
    solve: SolveSection = SolveSection()
    reward: RewardSection = RewardSection()
    update: UpdateSection = UpdateSection()
    sandbox: SandboxConfig = SandboxConfig()
    eval: EvalSection = EvalSection()
    log: LogSection = LogSection()

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        """Short hash of the meaning-changing fields (runtime fields excluded)."""
        flat = {k: v for k, v in flatten(self.to_dict()).items() if k not in runtime_fields()}
        return hashlib.sha256(orjson.dumps(flat, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


# ----------------------------------------------------------------------------- helpers (pure)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _sections() -> dict[str, type[BaseModel]]:
    out: dict[str, type[BaseModel]] = {}
    for name, field in Config.model_fields.items():
        out[field.alias or name] = field.annotation  # type: ignore[assignment]
    return out


def known_keys() -> list[str]:
    keys = []
    for sec, model in _sections().items():
        keys.extend(f"{sec}.{f}" for f in model.model_fields)
    return keys


def runtime_fields() -> set[str]:
    out = set()
    for sec, model in _sections().items():
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and extra.get("runtime"):
                out.add(f"{sec}.{name}")
    # sandbox: worker count is a runtime knob; limits change what is valid and are not.
    out.add("sandbox.workers")
    return out


def field_docs() -> dict[str, str]:
    docs = {}
    for sec, model in _sections().items():
        for name, field in model.model_fields.items():
            docs[f"{sec}.{name}"] = " ".join((field.description or "").split())
    return docs


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(data: dict[str, Any], origin: str) -> None:
    """Refuse unknown sections/keys with a message that names them (before pydantic sees them)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the config must be a mapping of sections, got {type(data).__name__}")
    sections = _sections()
    for sec, body in data.items():
        if sec not in sections:
            name = f"{sec}.{next(iter(body))}" if isinstance(body, dict) and body else str(sec)
            raise ConfigError(
                f"{origin}: unknown config key '{name}'{_did_you_mean(name)}: no section '{sec}'; "
                f"sections are: {', '.join(sections)}"
            )
        if not isinstance(body, dict):
            raise ConfigError(f"{origin}: section '{sec}' must be a mapping of keys, got {body!r}")
        for key in body:
            if key not in sections[sec].model_fields:
                full = f"{sec}.{key}"
                raise ConfigError(
                    f"{origin}: unknown config key '{full}'{_did_you_mean(full)}; "
                    f"see `azr config show --docs` for the keys"
                )


def parse_set(item: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (['a', 'b'], value typed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set run.batch_size=8")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) != 2:
        raise ConfigError(f"--set {item!r}: the key must be SECTION.FIELD, e.g. model.adapter")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last one silently)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """YAML with the safe loader, duplicate keys refused."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; configs/ holds the shipped ones")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f":{line + 1}" if line is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections")
    return data


def overrides_from(sets: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in sets or []:
        (sec, key), value = parse_set(item)
        out.setdefault(sec, {})[key] = value
    check_keys(out, "--set")
    return out


def build_config(layers: list[tuple[str, dict[str, Any]]]) -> Config:
    """Merge (origin, mapping) layers in order and validate once."""
    merged: dict[str, Any] = {}
    for origin, data in layers:
        check_keys(data, origin)
        merged = deep_merge(merged, data)
    try:
        return Config.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_explain(e)) from None


def _explain(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
    got = err.get("input")
    got_s = "" if isinstance(got, dict) else f" (got {got!r})"
    more = f" [+{len(e.errors()) - 1} more]" if len(e.errors()) > 1 else ""
    fix = f"; fix it in the config file or with --set {loc}=..." if loc.count(".") == 1 else ""
    return f"invalid config: {loc}: {err['msg']}{got_s}{fix}{more}"


def load_config(
    config_file: Path | None = None,
    sets: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """The full layering. `base` (a run's saved config) replaces the field defaults when given."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if base is not None:
        layers.append(("config.yaml", base))
    if config_file is not None:
        layers.append((str(config_file), read_yaml(Path(config_file))))
    layers.append(("--set", overrides_from(sets)))
    if flags:
        layers.append(("flags", {s: v for s, v in flags.items() if v}))
    return build_config(layers)


def meaning_changes(saved: Config, new: Config) -> list[str]:
    """Keys whose values differ and that are not runtime-only."""
    a, b = flatten(saved.to_dict()), flatten(new.to_dict())
    rt = runtime_fields()
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in rt)


def runtime_changes(saved: Config, new: Config) -> dict[str, Any]:
    a, b = flatten(saved.to_dict()), flatten(new.to_dict())
    rt = runtime_fields()
    return {k: b.get(k) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k in rt}


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
