"""Records on disk: JSON Lines through orjson, validated by pydantic schemas on the way back.

Readers report a damaged file as ``file:line: reason`` (a truncated last line, invalid UTF-8, bad
JSON, a schema violation) and never skip or invent a record.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from stages.errors import RunError
from stages.rundir.atomic import atomic_file

M = TypeVar("M", bound=BaseModel)


def write_jsonl(path: Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write records to ``path`` atomically; returns the count."""
    n = 0
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        for r in records:
            data = r.model_dump(mode="json") if isinstance(r, BaseModel) else r
            fh.write(orjson.dumps(data) + b"\n")
            n += 1
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
    """One JSON document, written atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except orjson.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e}); the file is damaged") from None
