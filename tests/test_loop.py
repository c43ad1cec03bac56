"""`azr loop` end to end on the tiny config: it completes, it survives kill -9 mid-iteration, and
running the stage commands by hand gives the same records."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, TINY

from stages.pipeline import STAGES
from stages.rundir.jsonl import read_jsonl
from stages.rundir.manifest import open_run


def azr_proc(*args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "azr_cli.main", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def azr_run(*args):
    p = azr_proc(*args)
    out, err = p.communicate(timeout=900)
    return p.returncode, out, err


def records(run_path):
    """Every record file of every completed stage, as bytes, by relative path."""
    out = {}
    for f in sorted((run_path / "iters").rglob("*.jsonl")):
        out[str(f.relative_to(run_path))] = f.read_bytes()
    return out


def check_intact(run_path):
    run = open_run(run_path)[0]
    for n in run.iterations():
        for stage in STAGES:
            if run.is_done(n, stage):
                assert (run.stage_dir(n, stage) / "summary.json").exists()
                for name, model in STAGES[stage].records.items():
                    read_jsonl(run.stage_dir(n, stage) / name, model)  # raises on any damage
    return run


@pytest.fixture(scope="module")
def looped(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("loop") / "run"
    code, _, err = azr_run("loop", "--run", path, "--config", TINY, "--iters", 2, "--json")
    assert code == 0, err
    return path


def test_loop_completes_two_iterations(looped):
    run = check_intact(looped)
    assert run.completed_iterations() == 2
    assert (looped / "checkpoints" / "000002" / "adapter_model.safetensors").exists()
    lines = (looped / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(STAGES)


def test_finished_run_says_so(looped):
    code, _, err = azr_run("loop", "--run", looped, "--iters", 2)
    assert code == 0 and "nothing to do" in err


def test_loop_refuses_meaning_changes(looped):
    code, _, err = azr_run("loop", "--run", looped, "--iters", 3, "--set", "model.lora_rank=8")
    assert code == 1 and "model.lora_rank" in err


def test_stage_commands_equal_the_loop(looped, tmp_path):
    path = tmp_path / "by-hand"
    assert azr_run("seed", "--run", path, "--config", TINY)[0] == 0
    for _ in range(2):
        for stage in STAGES:
            code, _, err = azr_run(stage, "--run", path)
            assert code == 0, f"{stage}: {err}"
    assert records(path) == records(looped)
    from safetensors.torch import load_file

    a = load_file(str(looped / "checkpoints" / "000002" / "adapter_model.safetensors"))
    b = load_file(str(path / "checkpoints" / "000002" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_kill_9_mid_iteration_then_resume(looped, tmp_path):
    path = tmp_path / "killed"
    shutil.copytree(looped, path)
    proc = azr_proc("loop", "--run", path, "--iters", 3, start_new_session=True)
    deadline = time.time() + 600
    while not (path / "iters" / "000003" / "propose").is_dir():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = check_intact(path)
    assert run.completed_iterations() == 2  # iteration 3 was cut short
    code, _, err = azr_run("loop", "--run", path, "--iters", 3)
    assert code == 0, err
    run = check_intact(path)
    assert run.completed_iterations() == 3
    assert not list((path / "iters").rglob(".*.tmp-*"))
    # what completed before the kill was kept as it was
    assert {k: v for k, v in records(path).items() if "000003" not in k} == records(looped)


def test_sigterm_stops_cleanly(looped, tmp_path):
    path = tmp_path / "term"
    shutil.copytree(looped, path)
    proc = azr_proc("loop", "--run", path, "--iters", 3)
    deadline = time.time() + 600
    while not (path / "iters" / "000003").is_dir():
        assert proc.poll() is None
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "interrupted" in err
    check_intact(path)
    assert not list((path / "iters").rglob(".*.tmp-*"))  # the stage in progress cleaned up


def test_loop_evaluates_every_m_iterations(looped, tmp_path):
    path = tmp_path / "eval"
    shutil.copytree(looped, path)
    code, _, err = azr_run("loop", "--run", path, "--iters", 3, "--set", "eval.every=3", "--set", "eval.limit=2",
                           "--set", "eval.suites=[humaneval-io]")
    assert code == 0, err
    assert (path / "eval" / "humaneval-io-000003.json").exists()
    assert "eval" in err and "score" in err
