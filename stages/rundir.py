"""The run directory: versioned, append-only, crash-safe.

```
runs/<name>/
  manifest.json  config.yaml  buffer/seed.jsonl  metrics.jsonl
  iters/000001/{propose,validate,solve,reward,update}/   records (*.jsonl) + summary.json
  checkpoints/000001/
```
A stage writes into ``iters/N/.<stage>.tmp-<pid>`` and renames it into place when complete: the
folder's existence is the completion mark. Leftover temporary folders (a crash, a kill -9) are
never read, and are removed when the stage is written again. Nothing is edited in place.

Every write happens under the run lock (:mod:`stages.runlock`): one writing process per run, so a
temporary folder found by the writer always belongs to a dead process and is safe to remove.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from stages import __version__, runlock
from stages.config import Config, ConfigError, flatten, load_config, meaning_changes, runtime_changes, to_yaml

FORMAT_VERSION = 1
STAGES: tuple[str, ...] = ("propose", "validate", "solve", "reward", "update")

M = TypeVar("M", bound=BaseModel)


class RunError(Exception):
    """A run directory is missing, damaged, of another format, or in the wrong state (one line)."""


# ----------------------------------------------------------------------------- JSONL I/O


def write_jsonl(path: Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write records to a new file (inside a stage's temporary folder); returns the count."""
    n = 0
    with open(path, "wb") as fh:
        for r in records:
            data = r.model_dump(mode="json") if isinstance(r, BaseModel) else r
            fh.write(orjson.dumps(data) + b"\n")
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    return n


def read_jsonl(path: Path, model: type[M]) -> list[M]:
    """Read every record, or raise RunError('file:line: reason') — never drop or invent one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunError(f"{path}: missing (the stage that writes it has not completed)") from None
    out: list[M] = []
    if not raw:
        return out
    lines = raw.split(b"\n")
    truncated = lines[-1] != b""
    if not truncated:
        lines.pop()
    for i, line in enumerate(lines, start=1):
        where = f"{path}:{i}"
        if truncated and i == len(lines):
            raise RunError(
                f"{where}: truncated last line (no newline; the writer was interrupted); "
                "delete the stage folder and rerun the stage"
            )
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RunError(f"{where}: invalid UTF-8 at byte {e.start}") from None
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise RunError(f"{where}: not valid JSON ({e})") from None
        try:
            out.append(model.model_validate(data))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "record"
            raise RunError(f"{where}: {model.__name__} record invalid at '{loc}': {err['msg']}") from None
    return out


def write_json(path: Path, data: Any) -> None:
    """Atomic small-file write (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except orjson.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e}); the file is damaged") from None


# ----------------------------------------------------------------------------- the run


def iter_name(n: int) -> str:
    return f"{n:06d}"


class Run:
    """An opened run directory. Construct with :func:`create_run` or :func:`open_run`."""

    def __init__(self, path: Path, config: Config, manifest: dict[str, Any],
                 overrides: dict[str, Any] | None = None):
        self.path = path
        self.config = config
        self.manifest = manifest
        self.overrides = overrides or {}
        """Runtime fields overridden for this invocation; recorded in each stage's summary."""

    # ---- layout
    @property
    def seed_file(self) -> Path:
        return self.path / "buffer" / "seed.jsonl"

    def iter_dir(self, n: int) -> Path:
        return self.path / "iters" / iter_name(n)

    def stage_dir(self, n: int, stage: str) -> Path:
        return self.iter_dir(n) / stage

    def checkpoint_dir(self, n: int) -> Path:
        return self.path / "checkpoints" / iter_name(n)

    def is_done(self, n: int, stage: str) -> bool:
        return self.stage_dir(n, stage).is_dir()

    # ---- progress
    def iterations(self) -> list[int]:
        root = self.path / "iters"
        if not root.is_dir():
            return []
        return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())

    def completed_iterations(self) -> int:
        """Iterations 1..k all fully complete: k."""
        k = 0
        while all(self.is_done(k + 1, s) for s in STAGES):
            k += 1
        return k

    def next_pending(self) -> tuple[int, str]:
        """The first incomplete (iteration, stage), in order."""
        n = self.completed_iterations() + 1
        for s in STAGES:
            if not self.is_done(n, s):
                return n, s
        raise AssertionError("unreachable")

    def resolve_iter(self, stage: str, requested: int | None, force: bool) -> int:
        """Which iteration a standalone stage command works on (default: the first incomplete
        iteration), checked against what exists."""
        n = requested if requested is not None else self.completed_iterations() + 1
        if n < 1:
            raise RunError(f"--iter must be 1 or more, got {n}")
        idx = STAGES.index(stage)
        for prev in STAGES[:idx]:
            if not self.is_done(n, prev):
                raise RunError(
                    f"iteration {n}: stage '{prev}' is not complete yet; run `azr {prev} --run {self.path}` first"
                )
        if n > 1 and not self.is_done(n - 1, STAGES[-1]):
            raise RunError(f"iteration {n - 1} is not complete; finish it before iteration {n}")
        if self.is_done(n, stage) and not force:
            raise RunError(
                f"iteration {n}: stage '{stage}' is already complete; pass --force to redo it "
                "(later stages of that iteration are then out of date)"
            )
        return n

    @contextmanager
    def writing(self) -> Iterator[Run]:
        """Hold the run lock for the block (re-entrant); raise RunLocked if another process writes."""
        with runlock.hold(self.path):
            yield self

    @contextmanager
    def stage_writer(self, n: int, stage: str, force: bool = False) -> Iterator[Path]:
        """Yield a temporary folder; on success it becomes ``iters/N/<stage>`` atomically."""
        with self.writing():
            final = self.stage_dir(n, stage)
            if final.exists() and not force:
                raise RunError(f"iteration {n}: stage '{stage}' is already complete (use --force)")
            final.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(final.parent, f".{stage}")  # under the lock: their writers are dead
            tmp = final.parent / f".{stage}.tmp-{os.getpid()}"
            tmp.mkdir()
            try:
                yield tmp
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            _fsync_dir(tmp)
            if final.exists():  # --force: move the old one aside, then drop it after the swap
                old = final.parent / f".{stage}.old-{os.getpid()}"
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
            _fsync_dir(final.parent)
            self.rebuild_metrics()

    def write_stage(self, n: int, stage: str, files: dict[str, list[Any]], summary: dict[str, Any],
                    force: bool = False, started: float | None = None) -> None:
        """Write a stage's record files and summary.json, all or nothing. `started` (a
        perf_counter reading) adds the stage's wall time to its metrics."""
        if started is not None:
            summary = {**summary, "metrics": {**summary.get("metrics", {}),
                                              "seconds": round(time.perf_counter() - started, 3)}}
        summary = {**summary, "overrides": self.overrides} if self.overrides else summary
        with self.stage_writer(n, stage, force=force) as tmp:
            for name, records in files.items():
                write_jsonl(tmp / name, records)
            write_json(tmp / "summary.json", summary)

    # ---- records
    def read(self, n: int, stage: str, filename: str, model: type[M]) -> list[M]:
        if not self.is_done(n, stage):
            raise RunError(f"iteration {n}: stage '{stage}' has not completed; run `azr {stage}` first")
        return read_jsonl(self.stage_dir(n, stage) / filename, model)

    def summary(self, n: int, stage: str) -> dict[str, Any]:
        data = read_json(self.stage_dir(n, stage) / "summary.json")
        if not isinstance(data, dict):
            raise RunError(f"{self.stage_dir(n, stage) / 'summary.json'}: not a JSON object; the file is damaged")
        return data

    def check_stages(self) -> None:
        """Every completed stage has a readable summary.json, or RunError naming the file."""
        for n in self.iterations():
            for s in STAGES:
                if self.is_done(n, s):
                    try:
                        self.summary(n, s)
                    except RunError as e:
                        raise RunError(f"{e}; delete {self.stage_dir(n, s)} and rerun `azr {s} --run {self.path} "
                                       f"--iter {n}`") from None

    def rebuild_metrics(self) -> None:
        """metrics.jsonl = one line per completed stage, derived from the summaries; rewritten
        atomically so it never holds a half line."""
        lines = []
        for n in self.iterations():
            for s in STAGES:
                if (self.stage_dir(n, s) / "summary.json").exists():
                    lines.append({"iteration": n, "stage": s, **self.summary(n, s).get("metrics", {})})
        tmp = self.path / f".metrics.jsonl.tmp-{os.getpid()}"
        tmp.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
        os.replace(tmp, self.path / "metrics.jsonl")

    def metrics(self) -> list[dict[str, Any]]:
        p = self.path / "metrics.jsonl"
        if not p.exists():
            return []
        return [orjson.loads(x) for x in p.read_bytes().splitlines() if x.strip()]


def remove_stale(folder: Path, stem: str) -> None:
    """Remove the ``<stem>.tmp-*`` and ``<stem>.old-*`` leftovers in ``folder`` (``stem`` may be a
    glob). Call it only while holding the run lock: then no live process owns them."""
    for pattern in (f"{stem}.tmp-*", f"{stem}.old-*"):
        for stale in folder.glob(pattern):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        with runlock.hold(path):  # never replace a run that another process is writing
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        if not _pid_alive(stale.name.rsplit("-", 1)[-1]):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for sub in ("buffer", "iters", "checkpoints"):
            (tmp / sub).mkdir()
        (tmp / "config.yaml").write_text(to_yaml(config), encoding="utf-8")
        manifest = {
            "format_version": FORMAT_VERSION,
            "azr_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "base_model": config.model.name,
            "config_digest": config.digest(),
            "config": config.to_dict(),
        }
        write_json(tmp / "manifest.json", manifest)
        if fill is not None:
            fill(Run(tmp, config, manifest))
        _fsync_dir(tmp)
        if path.is_dir() and force:
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, path)  # onto a missing or empty folder
        except OSError:
            raise RunError(f"{path} already holds a run (another `azr seed` made it just now)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
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
        saved = load_config(base=_read_saved_config(path))
    except ConfigError as e:
        raise RunError(f"{path / 'config.yaml'}: {e}") from None
    check_config_digest(path, saved, manifest)
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
    directories only, so it is cheap for multi-GB weights): RunError naming the damaged file."""
    import zipfile

    if not (folder / "meta.json").is_file():
        raise RunError(f"checkpoint {folder} is missing or incomplete (no meta.json); rerun that iteration's "
                       "update with `azr update --force`")
    read_json(folder / "meta.json")
    for f in sorted(folder.glob("*.safetensors")):
        if problem := _safetensors_problem(f):
            raise RunError(f"{f}: {problem}; the checkpoint is damaged (rerun that iteration's update with --force)")
    state = folder / "training_state.pt"
    if state.exists():
        try:
            with zipfile.ZipFile(state):
                pass
        except (zipfile.BadZipFile, OSError) as e:
            raise RunError(f"{state}: unreadable ({e}); the checkpoint is damaged (rerun that iteration's update "
                           "with --force)") from None


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a .safetensors file's header and size, or None."""
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
    return None


def check_config_digest(path: Path, saved: Config, manifest: dict[str, Any]) -> None:
    """config.yaml must still mean what the run was created with: a hand edit of a meaning field
    is refused by name (a runtime field may change)."""
    if manifest.get("config_digest") in (None, saved.digest()):
        return
    field = ""
    if isinstance(manifest.get("config"), dict):
        try:
            made = load_config(base=manifest["config"])
        except ConfigError:
            made = None
        changed = meaning_changes(made, saved) if made is not None else []
        if changed:
            was, now = flatten(made.to_dict()).get(changed[0]), flatten(saved.to_dict()).get(changed[0])
            field = f" ('{changed[0]}' was {was!r}, is {now!r})"
    raise RunError(
        f"{path / 'config.yaml'} was edited{field}: it no longer matches the config digest in manifest.json, "
        "and that field changes what the run means; restore it, or start a new run (runtime fields may be "
        "changed with --set)"
    )


def _read_saved_config(path: Path) -> dict[str, Any]:
    import yaml

    from stages.config import load_yaml

    try:
        data = load_yaml((path / "config.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path / 'config.yaml'}: missing; the run directory is damaged") from None
    except yaml.YAMLError as e:
        raise RunError(f"{path / 'config.yaml'}: not valid YAML ({str(e).splitlines()[0]})") from None
    return data or {}

