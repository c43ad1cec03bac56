"""notebooks/quickstart.ipynb runs top to bottom (nbclient, a real kernel) on the tiny config in a
temporary folder: seed, one iteration, status, the report's figures, the evaluation of the base
model and the trained policy (math-synth, and two of the paper's suites on the small files in
tests/data/eval), the comparison and the paper's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, TINY

NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
DATA = Path(__file__).parent / "data" / "eval"


def _texts(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o.get("text", ""))
            elif "data" in o:
                out.append(o["data"].get("text/plain", ""))
    return "\n".join(out)


def test_the_quickstart_notebook_runs_on_the_tiny_config(tmp_path, tiny_model, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "configs/qwen2.5-coder-0.5b-cpu.yaml" in params[0].source  # the embedded default
    run = tmp_path / "run"
    for key, value in {
        "AZR_NOTEBOOK_CONFIG": str(TINY), "AZR_NOTEBOOK_RUN": str(run), "AZR_NOTEBOOK_ITERS": "1",
        "AZR_NOTEBOOK_EVAL_LIMIT": "2", "AZR_REPO": str(REPO),
        "AZR_NOTEBOOK_PAPER_SUITES": json.dumps({"math500": str(DATA / "math500.jsonl"),
                                                 "humaneval-plus": str(DATA / "HumanEvalPlus-mini.jsonl.gz")}),
    }.items():
        monkeypatch.setenv(key, value)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = _texts(nb)
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2, text[-2000:]
    assert (run / "checkpoints").is_dir() and (run / "report" / "README.md").is_file()
    for suite in ("math-synth", "math500", "humaneval-plus"):
        assert (run / "eval" / f"{suite}-base.json").is_file() and (run / "eval" / f"{suite}-000001.json").is_file()
    assert "completed iterations" in text and "MATH500" in text and "HEval+" in text
