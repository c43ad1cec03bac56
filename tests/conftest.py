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


def pytest_addoption(parser):
    parser.addoption("--reverse", action="store_true", help="run the collected tests in reverse order")


def pytest_collection_modifyitems(config, items):
    """`slow` tests (the real SmolLM2) run only with AZR_SLOW=1 or when selected with `-m slow`;
    `--reverse` runs the suite backwards, to show that no test relies on one that ran before it."""
    if config.getoption("--reverse"):
        items.reverse()
    if os.environ.get("AZR_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: set AZR_SLOW=1 or select with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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
    from stages.model.names import resolve_model

    return resolve_model("builtin:tiny")


@pytest.fixture(scope="module")
def sb(request):
    """A warm sandbox pool shared by a test module, opened with that module's ``CFG``."""
    from sandbox import open_sandbox

    with open_sandbox(request.module.CFG) as pool:
        yield pool
