"""`azr report` and `azr inspect` on a real two-iteration run of the tiny config (built once per
module, ~30 s), copied per test when a test edits it; edge cases on hand-made records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ITERS = 2


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "azr_cli.main", "loop", "--run", str(path), "--config", str(TINY),
         "--iters", str(ITERS)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst)
    return dst


def write_eval(run: Path, suite: str, iteration: int | None, score: float, pass_at_k: dict | None = None) -> None:
    (run / "eval").mkdir(exist_ok=True)
    name = f"{suite}-{'base' if iteration is None else f'{iteration:06d}'}.json"
    (run / "eval" / name).write_text(json.dumps({"suite": suite, "iteration": iteration, "score": score,
                                                 **({"pass_at_k": pass_at_k} if pass_at_k else {})}))


def report_json(azr, *args) -> dict:
    res = azr("report", *args, "--json")
    assert res.code == 0, res.err
    return json.loads(res.out)


# ----------------------------------------------------------------------------- report


def test_report_writes_every_figure_and_the_readme(azr, run_copy):
    from stages.monitor.report import FIGURES

    write_eval(run_copy, "humaneval-io", None, 0.12)
    for n, score in ((1, 0.10), (2, 0.15)):
        write_eval(run_copy, "humaneval-io", n, score)
    for n, k in ((None, {"1": 0.1, "2": 0.18, "4": 0.3}), (2, {"1": 0.15, "2": 0.25, "4": 0.4})):
        write_eval(run_copy, "math-synth", n, k["1"], k)  # sampled: the pass@k figure
    info = report_json(azr, "--run", run_copy)
    out = run_copy / "report"
    assert info["out"] == str(out) and info["iterations"] == ITERS and info["notes"] == []
    assert sorted(Path(f).name for f in info["files"]) == sorted([*FIGURES, "README.md"])
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    readme = (out / "README.md").read_text()
    assert "builtin:tiny" in readme and f"{ITERS} complete" in readme
    assert all(f"]({name})" in readme for name in FIGURES)
    assert "| humaneval-io | base | 0.12 |" in readme and "| humaneval-io | 2 | 0.15 |" in readme
    assert "| reward solver deduction |" in readme and "| loss |" in readme
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"

    text = azr("report", "--run", run_copy)
    assert text.code == 0 and str(out / "rewards.png") in text.out


def test_report_drops_a_figure_that_no_longer_applies(azr, run_copy):
    write_eval(run_copy, "humaneval-io", 1, 0.2)
    report_json(azr, "--run", run_copy)
    assert (run_copy / "report" / "eval.png").exists()
    shutil.rmtree(run_copy / "eval")
    info = report_json(azr, "--run", run_copy)
    assert not (run_copy / "report" / "eval.png").exists()
    assert "eval.png" not in " ".join(info["files"])
    assert "eval.png" not in (run_copy / "report" / "README.md").read_text()


def test_report_skips_a_damaged_eval_file_and_says_so(azr, run_copy):
    write_eval(run_copy, "humaneval-io", 1, 0.2)
    (run_copy / "eval" / "broken-000002.json").write_text("{not json")
    (run_copy / "eval" / "other-000002.json").write_text(json.dumps({"suite": "x"}))
    info = report_json(azr, "--run", run_copy)
    assert len(info["notes"]) == 2 and all("skipped" in n for n in info["notes"])
    assert (run_copy / "report" / "eval.png").exists()


def test_report_of_a_single_iteration(azr, run_copy):
    shutil.rmtree(run_copy / "iters" / "000002")
    info = report_json(azr, "--run", run_copy)
    assert info["iterations"] == 1 and "single iteration" in info["notes"][0]
    assert any(f.endswith("rewards.png") for f in info["files"])


def test_report_of_a_run_without_iterations(azr, run_copy, tmp_path):
    shutil.rmtree(run_copy / "iters")
    (run_copy / "iters").mkdir()
    out = tmp_path / "elsewhere"
    res = azr("report", "--run", run_copy, "--out", out)
    assert res.code == 0, res.err
    assert "no stage has completed" in res.err
    assert [p.name for p in out.iterdir()] == ["README.md"]
    assert "no stage has completed" in (out / "README.md").read_text()


def test_report_on_a_missing_run_is_one_line(azr, tmp_path):
    res = azr("report", "--run", tmp_path / "nope")
    assert res.code == 1 and "not an azr run directory" in res.err and len(res.err.strip().splitlines()) == 1


def test_buffer_sizes_follow_the_cap(tmp_path):
    from stages.monitor.report import RunData, buffer_sizes

    data = RunData(
        path=tmp_path, base_model="m", config_digest="d", buffer_cap=4, completed_iterations=3,
        metrics={n: {"validate": {"new_tasks/deduction": k}} for n, k in ((1, 1), (2, 5), (3, 0))},
        reasons={}, seed_counts={"deduction": 2, "abduction": 1},
    )
    sizes = buffer_sizes(data)
    assert sizes["deduction"] == ([0, 1, 2, 3], [2, 3, 4, 4])
    assert sizes["abduction"] == ([0], [1])


# ----------------------------------------------------------------------------- inspect


RECORDS = {  # stage -> (id field, count in an iteration of the tiny config)
    "propose": ("proposal_id", 12),
    "validate": ("proposal_id", 12),
    "solve": ("rollout_id", None),
    "reward": ("sample_id", None),
}


@pytest.mark.parametrize("stage", list(RECORDS))
def test_inspect_json_and_table_for_each_stage(azr, tiny_run, stage):
    from stages.pipeline import STAGES

    id_field, count = RECORDS[stage]
    filename = next(iter(STAGES[stage].records))
    lines = (tiny_run / "iters" / f"{ITERS:06d}" / stage / filename).read_text().splitlines()
    if count is not None:
        assert len(lines) == count

    res = azr("inspect", "--run", tiny_run, "--stage", stage, "--limit", "0", "--json")
    assert res.code == 0, res.err
    records = json.loads(res.out)
    assert [r[id_field] for r in records] == [json.loads(x)[id_field] for x in lines]
    assert all("prompt_ids" not in r and "completion_ids" not in r for r in records)

    res = azr("inspect", "--run", tiny_run, "--stage", stage, "--limit", "3")
    assert res.code == 0, res.err
    assert f"iteration {ITERS} · {stage} · 3 of {len(lines)}" in res.out
    assert records[0][id_field] in res.out and records[3][id_field] not in res.out
    assert f"{len(lines) - 3} more" in res.err


def test_inspect_defaults_to_the_latest_iteration_and_validate(azr, tiny_run):
    res = azr("inspect", "--run", tiny_run, "--json")
    records = json.loads(res.out)
    assert len(records) == 12 and all(r["proposal_id"].startswith(f"{ITERS:06d}-") for r in records)
    assert {"valid", "reason"} <= set(records[0])
    one = json.loads(azr("inspect", "--run", tiny_run, "--iter", "1", "--json").out)
    assert all(r["proposal_id"].startswith("000001-") for r in one)


def test_inspect_filters_by_type_and_limits(azr, tiny_run):
    res = azr("inspect", "--run", tiny_run, "--stage", "reward", "--type", "induction", "--limit", "0", "--json")
    records = json.loads(res.out)
    assert records and all(r["type"] == "induction" for r in records)
    assert {r["role"] for r in records} == {"proposer", "solver"}
    two = json.loads(azr("inspect", "--run", tiny_run, "--stage", "reward", "--type", "induction",
                         "-n", "2", "--json").out)
    assert two == records[:2]
    table = azr("inspect", "--run", tiny_run, "--stage", "solve", "--type", "abduction")
    assert "abduction" in table.out and "deduction" not in table.out


def test_inspect_update_shows_its_summary(azr, tiny_run):
    res = azr("inspect", "--run", tiny_run, "--stage", "update", "--json")
    assert res.code == 0 and "loss" in json.loads(res.out)["metrics"]
    table = azr("inspect", "--run", tiny_run, "--stage", "update")
    assert "grad_norm" in table.out and "writes no records" in table.err


def test_inspect_errors_are_one_line(azr, run_copy, tmp_path):
    res = azr("inspect", "--run", run_copy, "--iter", "9")
    assert res.code == 1 and "iteration 9: stage 'validate' has not completed" in res.err
    assert "1–2" in res.err and len(res.err.strip().splitlines()) == 1
    for n in (1, 2):
        shutil.rmtree(run_copy / "iters" / f"{n:06d}" / "solve")
    res = azr("inspect", "--run", run_copy, "--stage", "solve")
    assert res.code == 1 and "no iteration" in res.err and "azr solve --run" in res.err
    assert azr("inspect", "--run", tmp_path / "nope").code == 1
    assert azr("inspect", "--run", run_copy, "--stage", "bogus").code == 2
    assert azr("inspect", "--run", run_copy, "--type", "bogus").code == 2


# ----------------------------------------------------------------------------- display helpers


def test_snippet_keeps_head_and_tail_on_one_line():
    from azr_cli.report_cmds import snippet

    assert snippet("a\nb\tc") == "a⏎b→c"
    s = snippet("start " + "x" * 200 + " the end", 30)
    assert len(s) == 30 and s.startswith("start") and s.endswith("the end") and "…" in s
    assert snippet(None) == ""


def test_table_shows_model_text_literally_and_verdicts():
    from rich.console import Console

    from azr_cli.report_cmds import records_table
    from stages.rundir.records import Rollout, Task, Validation

    task = Task(task_id="t1", type="induction", program="def f(x):\n    return [x]", inputs=["1"], outputs=["[1]"])
    rows = [
        Rollout(rollout_id="r1", task_id="t1", type="induction", purpose="train", prompt="p",
                completion="[bold]not markup[/bold]", format_ok=True, correct=False, fraction=0.5),
        Rollout(rollout_id="r2", task_id="t1", type="deduction", purpose="train", prompt="p",
                completion="x", format_ok=False, format_error="no <answer> tag"),
    ]
    console = Console(width=160, record=True)
    console.print(records_table("solve", rows, "t"))
    text = console.export_text()
    assert "[bold]not markup[/bold]" in text and "✗ wrong (50% hidden)" in text
    assert "✗ format: no <answer> tag" in text

    valid = [Validation(proposal_id="p1", type="induction", valid=True, task=task)]
    console = Console(width=100, record=True)
    console.print(records_table("validate", valid, "t", width=100))
    text = console.export_text()
    assert "✓" in text and "def f(x):⏎    return [x]" in text


def test_narrow_terminal_drops_the_prompt_before_the_completion():
    from rich.console import Console

    from azr_cli.report_cmds import records_table
    from stages.rundir.records import Rollout

    r = Rollout(rollout_id="000001-train-ded-000", task_id="seed-deduction-0", type="deduction",
                purpose="train", prompt="PROMPT " * 30, completion="COMPLETION " * 30, format_ok=True)
    console = Console(width=80, record=True)
    console.print(records_table("solve", [r], "t", width=80))
    text = console.export_text()
    assert "COMPLETION" in text and "PROMPT" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
