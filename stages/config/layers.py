"""How a run's configuration is made: layers merged in order, validated once.

Layers, lowest first: field defaults < ``--config FILE.yaml`` < ``--set a.b=value`` (repeatable,
values typed as YAML; ``a.b.c=value`` reaches into a field that holds a model, such as
``update.algorithm.lam``) < a few named CLI flags. Errors say what is wrong, why, and how to fix
it, in one line (:class:`~stages.errors.ConfigError`).
"""

from __future__ import annotations

import contextlib
import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from stages.config.schema import (
    PPO_FIELDS,
    Algorithm,
    Config,
    TRRConfig,
    config_sections,
    flatten,
    known_keys,
    runtime_fields,
)
from stages.errors import ConfigError


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(data: dict[str, Any], origin: str) -> None:
    """Refuse unknown sections/keys with a message that names them (before pydantic sees them)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the config must be a mapping of sections, got {type(data).__name__}")
    sections = config_sections()
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
    """`a.b=value` -> (['a', 'b'], value typed as YAML); `a.b.c=value` reaches one level deeper."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set run.batch_size=8")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) not in (2, 3):
        raise ConfigError(f"--set {item!r}: the key must be SECTION.FIELD (or SECTION.FIELD.SUB), e.g. model.adapter")
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
        parts, value = parse_set(item)
        node = out
        for p in parts[:-1]:
            if not isinstance(node.get(p, {}), dict):  # a bare name stands for {"name": name}
                node[p] = {"name": node[p]} if isinstance(node[p], str) else {}
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    check_keys(out, "--set")
    return out


def build_config(layers: list[tuple[str, dict[str, Any]]]) -> Config:
    """Merge (origin, mapping) layers in order and validate once."""
    merged: dict[str, Any] = {}
    for origin, data in layers:
        check_keys(data, origin)
        merged = deep_merge(merged, data)
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_explain(e)) from None
    for key, value in flatten(cfg.to_dict()).items():
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ConfigError(f"invalid config: {key}: {value:.3g} is out of range (at most 2**63 - 1); "
                              f"fix it in the config file or with --set {key}=...")
    return cfg


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


def upgrade_saved(data: dict[str, Any]) -> dict[str, Any]:
    """A config.yaml written before the algorithm became a type (``update.algorithm: ppo`` beside
    flat ``value_lr``/``value_coef``/``gamma``/``lam``), in today's shape: those fields move into
    ``update.algorithm`` when the algorithm takes them; otherwise (TRR++) they never had an effect
    and are dropped."""
    update = data.get("update") if isinstance(data, dict) else None
    if not isinstance(update, dict) or not any(k in update for k in PPO_FIELDS):
        return data
    update = dict(update)
    flat = {k: update.pop(k) for k in PPO_FIELDS if k in update}
    algorithm = update.get("algorithm", TRRConfig().name)
    candidate = {**({"name": algorithm} if isinstance(algorithm, str) else algorithm), **flat}
    with contextlib.suppress(ValidationError):  # an algorithm without these fields keeps its own
        TypeAdapter(Algorithm).validate_python(candidate)
        update["algorithm"] = candidate
    return {**data, "update": update}
