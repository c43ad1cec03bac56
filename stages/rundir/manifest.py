"""Creating and opening a run directory: the manifest (format version, config digest), the saved
config and the checks that run when a run is opened (a hand-edited config, a damaged checkpoint).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from stages import __version__
from stages.config.layers import (
    load_config,
    load_yaml,
    meaning_changes,
    runtime_changes,
    to_yaml,
    upgrade_saved,
)
from stages.config.schema import Config, flatten
from stages.errors import ConfigError, RunError
from stages.rundir import lock
from stages.rundir.atomic import atomic_folder
from stages.rundir.jsonl import read_json, write_json
from stages.rundir.run import Run

FORMAT_VERSION = 1


def create_run(path: Path, config: Config, force: bool = False,
               fill: Callable[[Run], None] | None = None) -> Run:
    """Create a run directory atomically: it is built (and ``fill`` writes its seed files) in a
    temporary folder beside it, which is renamed into place when complete. A killed `azr seed`
    leaves only that temporary folder, which the next attempt removes."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} is a file, not a run directory; choose another --run")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise RunError(f"{path} already holds a run; choose another --run or pass --force to replace it")
        if path.is_symlink() or not (path / "manifest.json").is_file() or (path / "manifest.json").is_symlink():
            raise RunError(f"refusing to replace {path}: it is not an azr run (no manifest.json), and --force only "
                           "replaces runs; choose another --run, or remove the folder yourself")
        with lock.hold(path):  # never replace a run that another process is writing
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        if not _pid_alive(stale.name.rsplit("-", 1)[-1]):
            shutil.rmtree(stale, ignore_errors=True)
    manifest = {
        "format_version": FORMAT_VERSION,
        "azr_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": config.model.name,
        "config_digest": config.digest(),
        "config": config.to_dict(),
    }
    try:
        with atomic_folder(path, replace=force) as tmp:
            for sub in ("buffer", "iters", "checkpoints"):
                (tmp / sub).mkdir()
            (tmp / "config.yaml").write_text(to_yaml(config), encoding="utf-8")
            write_json(tmp / "manifest.json", manifest)
            if fill is not None:
                fill(Run(tmp, config, manifest))
    except FileExistsError:
        raise RunError(f"{path} already holds a run (another `azr seed` made it just now)") from None
    return Run(path, config, manifest)


def _pid_alive(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def open_run(
    path: Path,
    config_file: Path | None = None,
    sets: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> tuple[Run, dict[str, Any]]:
    """Open an existing run, applying runtime-only overrides. Returns (run, overrides applied)."""
    path = Path(path)
    mpath = path / "manifest.json"
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} is a file, not a run directory")
    if not mpath.exists():
        hint = "create it with `azr seed --run DIR`" if not path.exists() else "it has no manifest.json"
        raise RunError(f"{path} is not an azr run directory ({hint})")
    manifest = read_json(mpath)
    if not isinstance(manifest, dict):
        raise RunError(f"{mpath}: not a JSON object; the manifest is damaged")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RunError(f"{mpath}: format_version is {version!r}, not an integer; the manifest is damaged")
    if version != FORMAT_VERSION:
        if version > FORMAT_VERSION:
            raise RunError(
                f"{path} was written by a newer azr (run format {version}, this azr reads {FORMAT_VERSION}); "
                "upgrade azr to open it"
            )
        raise RunError(
            f"{path} uses run format {version}, this azr reads format {FORMAT_VERSION}; "
            f"migrate it with an azr release that reads both, or start a new run"
        )
    try:
        saved = load_config(base=upgrade_saved(_read_saved_config(path)))
    except ConfigError as e:
        raise RunError(f"{path / 'config.yaml'}: {e}") from None
    check_config_unchanged(path, saved, manifest)
    run = Run(path, saved, manifest)
    if (k := run.completed_iterations()) >= 1:
        check_checkpoint(run.checkpoint_dir(k))
    if config_file is None and not sets and not flags:
        return run, {}
    new = load_config(config_file, sets, flags, base=saved.to_dict())
    changed = meaning_changes(saved, new)
    if changed:
        raise RunError(
            f"refusing to change '{changed[0]}' on an existing run (it changes what the run means); "
            "start a new run with --run NEW_DIR, or override only runtime fields"
        )
    overrides = runtime_changes(saved, new)
    return Run(path, new, manifest, overrides), overrides


def check_checkpoint(folder: Path) -> None:
    """The structure of a checkpoint's files, checked without loading them (headers and zip
    directories, so it is cheap for multi-GB weights), and the weights' values (no inf or NaN)
    when they are small enough (FINITE_CHECK_BYTES): RunError naming the damaged file."""
    import zipfile

    if not (folder / "meta.json").is_file():
        raise RunError(f"checkpoint {folder} is missing or incomplete (no meta.json); rerun that iteration's "
                       "update with `azr update --force`")
    read_json(folder / "meta.json")
    weights = sorted(folder.glob("*.safetensors"))
    check_values = sum(f.stat().st_size for f in weights) <= FINITE_CHECK_BYTES
    for f in weights:
        if problem := _safetensors_problem(f, check_values):
            raise RunError(f"{f}: {problem}; the checkpoint is damaged (rerun that iteration's update with --force)")
    state = folder / "training_state.pt"
    if state.exists():
        try:
            with zipfile.ZipFile(state):
                pass
        except (zipfile.BadZipFile, OSError) as e:
            raise RunError(f"{state}: unreadable ({e}); the checkpoint is damaged (rerun that iteration's update "
                           "with --force)") from None


# Float dtypes of safetensors, as (unsigned view, exponent mask): a value whose exponent bits are all
# set is inf or NaN. Checked on the raw bits, so bf16 needs no conversion.
_FLOAT_BITS = {"F16": ("<u2", 0x7C00), "BF16": ("<u2", 0x7F80), "F32": ("<u4", 0x7F800000),
               "F64": ("<u8", 0x7FF0000000000000)}
FINITE_CHECK_BYTES = 2 << 30
"""Checkpoints up to this size (all weight files together) have every float checked for inf and
NaN when the run is opened (LoRA adapters: always; full fine-tunes of small models: yes; larger
ones are left to the update's own finite check, reading them would make `azr status` slow)."""


def _nonfinite_tensor(path: Path, header: dict[str, Any], offset: int) -> str | None:
    """The name of the first tensor of a .safetensors file holding inf or NaN, or None."""
    import numpy as np

    data = np.memmap(path, dtype=np.uint8, mode="r")
    chunk = 1 << 26
    for name, meta in header.items():
        if name == "__metadata__" or not isinstance(meta, dict) or meta.get("dtype") not in _FLOAT_BITS:
            continue
        view, mask = _FLOAT_BITS[meta["dtype"]]
        begin, end = (offset + int(x) for x in meta["data_offsets"])
        width = np.dtype(view).itemsize
        for at in range(begin, end, chunk):
            part = data[at:min(end, at + chunk)]
            bits = part[:len(part) - len(part) % width].view(view)
            if np.any((bits & np.array(mask, dtype=view)) == mask):
                return name
    return None


def _safetensors_problem(path: Path, check_values: bool = False) -> str | None:
    """What is wrong with a .safetensors file's header and size (and, with `check_values`, its
    floats: inf or NaN), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return "truncated (no header)"
            n = int.from_bytes(head, "little")
            if n > min(size - 8, 100 * 2**20):
                return "truncated or not a safetensors file (header length past the end)"
            header = orjson.loads(fh.read(n))
    except (OSError, orjson.JSONDecodeError) as e:
        return f"unreadable header ({e})"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    if 8 + n + max(ends, default=0) > size:
        return f"truncated ({size} bytes, the header describes {8 + n + max(ends, default=0)})"
    if check_values:
        try:
            bad = _nonfinite_tensor(path, header, 8 + n)
        except (OSError, ValueError, TypeError, KeyError) as e:
            return f"unreadable values ({e})"
        if bad is not None:
            return f"tensor '{bad}' holds inf or NaN (the update that wrote it diverged)"
    return None


def check_config_unchanged(path: Path, saved: Config, manifest: dict[str, Any]) -> None:
    """config.yaml must still mean what the run was created with (the copy in manifest.json): a
    hand edit of a meaning field is refused by name; a runtime field may change. Both copies go
    through today's schema, so a field added by a later azr takes the same default on both sides."""
    if not isinstance(manifest.get("config"), dict):
        return  # a run from before manifests kept their config: nothing to compare with
    try:
        made = load_config(base=upgrade_saved(manifest["config"]))
    except ConfigError as e:
        raise RunError(f"{path / 'manifest.json'}: its config does not load ({e}); the manifest is damaged") from None
    changed = meaning_changes(made, saved)
    if changed:
        key = changed[0]
        was, now = flatten(made.to_dict()).get(key), flatten(saved.to_dict()).get(key)
        raise RunError(
            f"{path / 'config.yaml'} was edited: '{key}' was {was!r}, is {now!r}, and it changes what the run "
            "means; restore it, or start a new run (runtime fields may be changed, or given with --set)"
        )


def _read_saved_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = load_yaml((path / "config.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path / 'config.yaml'}: missing; the run directory is damaged") from None
    except yaml.YAMLError as e:
        raise RunError(f"{path / 'config.yaml'}: not valid YAML ({str(e).splitlines()[0]})") from None
    return data or {}

