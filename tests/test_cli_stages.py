"""The stage commands and the loop read one stage table (`stages.pipeline.STAGES`): a fake stage
put in the table receives exactly what the command was asked for, and the loop calls the same
entries in order with one session."""

import json

import pytest
from conftest import TINY

from stages import pipeline
from stages.config.layers import load_config
from stages.rundir.records import StageSummary
from stages.seed import run as seed_run


@pytest.fixture
def fakes(monkeypatch):
    """Every stage of the table replaced by a fake that records its call and writes an empty stage."""
    calls = []

    def fake(name):
        def run(run, n, session, *, force=False, progress=None):
            calls.append({"stage": name, "run": run.path, "n": n, "force": force, "overrides": dict(run.overrides),
                          "session": session, "progress": progress is not None})
            files = {f: [] for f in pipeline.STAGES_ORIGINAL[name].records}
            return run.write_stage(n, name, files, StageSummary(count=0, metrics={"fake": 1.0}), force=force)
        return run

    monkeypatch.setattr(pipeline, "STAGES_ORIGINAL", dict(pipeline.STAGES), raising=False)
    for name in pipeline.STAGE_NAMES:
        monkeypatch.setitem(pipeline.STAGES, name, fake(name))
    return calls


def test_a_stage_command_passes_what_it_was_asked_for(tmp_path, azr, fakes):
    run = seed_run(tmp_path / "r", load_config(TINY))
    r = azr("propose", "--run", run.path, "--set", "update.micro_batch_size=2", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["metrics"] == {"fake": 1.0}
    [call] = fakes
    assert (call["stage"], call["run"], call["n"], call["force"]) == ("propose", run.path, 1, False)
    assert call["overrides"] == {"update.micro_batch_size": 2} and call["progress"]
    assert azr("propose", "--run", run.path, "--force", "--iter", "1").code == 0
    assert fakes[-1]["force"] is True
    r = azr("validate", "--run", run.path, "--iter", "2")
    assert r.code == 1 and "stage 'propose' is not complete" in r.err


def test_the_loop_calls_the_same_table_in_order_with_one_session(tmp_path, azr, fakes):
    r = azr("loop", "--run", tmp_path / "r", "--config", TINY, "--iters", "2")
    assert r.code == 0, r.err
    assert [(c["n"], c["stage"]) for c in fakes] == [(n, s) for n in (1, 2) for s in pipeline.STAGE_NAMES]
    assert len({id(c["session"]) for c in fakes}) == 1
