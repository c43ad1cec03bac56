"""Shared fixtures. Tests are offline: nothing here may download."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def azr(capsys, monkeypatch):
    """Run the real `azr` entry point in-process (error map and exit codes included)."""
    from azr_cli.main import main

    def invoke(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["azr", *map(str, args)])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """The `builtin:tiny` model folder, built once into the azr cache (seconds) and shared."""
    from stages.model import resolve_model

    return resolve_model("builtin:tiny")
