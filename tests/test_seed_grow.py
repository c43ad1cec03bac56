"""`azr seed --grow`: the seeding phase on the real tiny model, and its bookkeeping with
completions written by hand (a scripted policy: the tiny model writes noise, so it never
yields a task)."""

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from conftest import REPO, TINY

from stages import seed as seed_stage
from stages.config.layers import load_config
from stages.rundir.jsonl import read_jsonl
from stages.rundir.manifest import open_run
from stages.rundir.records import Task
from stages.session import Session

DED = "<think> sum </think>\n<answer>\n```python\ndef f(x):\n    # add them up\n    return sum(x)  # total\n```\n```input\n[1, 2, 3]\n```\n</answer>"
IND = "<think> ok </think>\n<answer>\n```input\n1\n```\n```input\n'a'\n```\n```input\n[2]\n```\n```input\nNone\n```\n```message\nsame\n```\n</answer>"


@dataclass
class Done:
    text: str
    prompt_tokens: int = 1
    completion_tokens: int = 1
    token_ids: tuple = (1,)
    prompt_ids: tuple = (1,)
    finish: str = "stop"


@dataclass
class Gen:
    completions: list


class ScriptedPolicy:
    """Answers every proposer prompt with a well-formed completion for its type: the k-th program
    adds k to the sum (the first is the plain sum), unless `same` makes every one the same."""

    answer_prefix = ""

    def __init__(self, same: bool = False, completion: str = DED):
        self.same, self.completion, self.k = same, completion, 0

    def wrap_turns(self, turns):
        return turns[-1][1]

    def generate(self, prompts, **kw):
        out = []
        for p in prompts:
            if "inputs" in p and "message" in p and "```python" not in p.split("Write")[-1]:
                out.append(Done(IND))
                continue
            text = self.completion
            if self.k and not self.same:
                text = text.replace("return sum(x)", f"return sum(x) + {self.k}")
            self.k += 1
            out.append(Done(text))
        return Gen(out)


def test_grow_fills_buffers_with_validated_comment_free_tasks(tmp_path, tiny_model):
    run = seed_stage.run(tmp_path / "r", load_config(TINY))
    with Session(run) as s:
        summary = seed_stage.grow(run, 3, ScriptedPolicy(), s.sandbox(), max_rounds=5)
    tasks = read_jsonl(run.seed_file, Task)
    by_type = {t: [x for x in tasks if x.type == t] for t in ("deduction", "abduction", "induction")}
    assert summary["buffers"]["deduction"] == 3 and summary["buffers"]["abduction"] == 3
    ded = by_type["deduction"][1]
    assert ded.program == "def f(x):\n    return sum(x)" and ded.outputs == ["6"] and ded.iteration == 0
    assert len({t.task_id for t in tasks}) == len(tasks)


def test_grow_on_the_tiny_model_through_the_cli(azr, tmp_path, tiny_model):
    r = azr("seed", "--run", tmp_path / "r", "--config", TINY, "--grow", 3, "--max-rounds", 1, "--json")
    assert r.code == 0
    info = json.loads(r.out)
    assert info["grow"]["rounds"] == 1 and info["grow"]["proposed"] > 0
    assert not info["grow"]["reached"]  # a random 2-layer model writes no valid task


GLOBALS = ("<think> g </think>\n<answer>\n```python\nSCALE = 3\nprint('hi')\ndef f(x):\n    return len(x)\n"
           "if __name__ == '__main__':\n    print(f('ab'))\n```\n```input\n'abc'\n```\n</answer>")


def test_grow_adds_a_program_once_and_strips_globals(tmp_path, tiny_model):
    run = seed_stage.run(tmp_path / "r", load_config(TINY))
    with Session(run) as s:
        summary = seed_stage.grow(run, 3, ScriptedPolicy(same=True, completion=GLOBALS), s.sandbox(), max_rounds=3)
    tasks = [t for t in read_jsonl(run.seed_file, Task) if t.type == "deduction"]
    assert [t.program for t in tasks[1:]] == ["def f(x):\n    return len(x)"]  # once, globals and prints gone
    assert summary["rounds"] == 3 and not summary["reached"]


def test_a_new_run_seeds_by_default(tmp_path, azr, tiny_model, monkeypatch):
    """The default config turns the seeding phase on, to 4·B per type; the loop runs it before
    iteration 1 and stops with a clear message when the model cannot reach the target."""
    from stages.seed import seeding_target, standing

    cfg = load_config()
    assert cfg.seed.grow and seeding_target(cfg) == 4 * cfg.run.batch_size
    r = azr("loop", "--run", tmp_path / "r", "--config", TINY, "--set", "seed.grow=true",
            "--set", "seed.max_rounds=1", "--iters", "1")
    assert r.code == 1 and "seeding phase stopped after 1 rounds" in r.err and "seed.target" in r.err, r.err
    run = open_run(tmp_path / "r")[0]
    assert standing(run).state == "stopped" and not run.iterations()
    r = azr("propose", "--run", run.path)  # the stage commands refuse as the loop does, saying how to go on
    assert r.code == 1 and "seeding phase stopped after 1 rounds" in r.err and "seed.when_short=go_on" in r.err
    r = azr("propose", "--run", run.path, "--set", "seed.max_rounds=2")  # a round is left: `azr seed` runs it
    assert r.code == 1 and "has not finished its seeding phase" in r.err and "azr seed" in r.err
    r = azr("loop", "--run", run.path, "--iters", "1", "--set", "seed.grow=false")  # go on with what it has
    assert r.code == 0, r.err


def test_a_short_seeding_phase_can_go_on_into_the_loop(tmp_path, azr, tiny_model):
    """seed.when_short=go_on: the loop goes on into iteration 1 with the buffers it has, and the
    seeding event says it fell short (reached=0)."""
    r = azr("loop", "--run", tmp_path / "r", "--config", TINY, "--set", "seed.grow=true",
            "--set", "seed.max_rounds=1", "--set", "seed.when_short=go_on", "--iters", "1", "--json")
    assert r.code == 0, r.err
    run = open_run(tmp_path / "r")[0]
    assert run.completed_iterations() == 1
    assert "reached=0.000" in r.err and "fell short" in r.err, r.err


# ----------------------------------------------------------------------------- rounds, kept and resumed


def seed_records(run_path):
    """Every record file of the seeding phase and the seed file, as bytes, by relative path."""
    files = [*sorted((run_path / "seed").rglob("*.jsonl")), run_path / "buffer" / "seed.jsonl"]
    return {str(f.relative_to(run_path)): f.read_bytes() for f in files if ".tmp-" not in str(f)}


def test_each_round_is_written_like_a_stage_and_a_rerun_goes_on_after_it(tmp_path, tiny_model):
    from stages.rundir.buffers import seed_buffer
    from stages.rundir.records import Proposal, Validation

    run = seed_stage.run(tmp_path / "r", load_config(TINY))
    with Session(run) as s:
        first = seed_stage.grow(run, 3, ScriptedPolicy(), s.sandbox(), max_rounds=1)
        assert first["rounds"] == 1 and first["ran"] == 1
        one = run.round_dir(1)
        kept = (one.stat().st_ino, {p.name: p.read_bytes() for p in one.iterdir()})
        assert sorted(kept[1]) == ["proposals.jsonl", "summary.json", "tasks.jsonl", "validations.jsonl"]
        again = seed_stage.grow(run, 3, ScriptedPolicy(), s.sandbox(), max_rounds=1)  # max_rounds: all rounds
        assert again["rounds"] == 1 and again["ran"] == 0
        more = seed_stage.grow(run, 3, ScriptedPolicy(), s.sandbox(), max_rounds=3)
    assert more["rounds"] == 3 and more["ran"] == 2
    assert (one.stat().st_ino, {p.name: p.read_bytes() for p in one.iterdir()}) == kept  # round 1 untouched
    proposals = run.read_round(2, "proposals.jsonl", Proposal)
    assert proposals and all(p.proposal_id.startswith("seed-r002-") and p.iteration == 0 for p in proposals)
    validations = run.read_round(1, "validations.jsonl", Validation)
    assert [v.proposal_id for v in validations] == [p.proposal_id for p in run.read_round(1, "proposals.jsonl",
                                                                                           Proposal)]
    summary = run.round_summary(1)
    assert summary.metrics["round"] == 1 and summary.metrics["added/deduction"] == 2  # 1 identity seed + 2 = 3
    assert summary.metrics["over_target"] >= 2 and summary.count == len(validations) == 12
    # the seed file is the base plus the rounds' tasks, in order
    base = read_jsonl(run.seed_dir / "base.jsonl", Task)
    added = [t for k in (1, 2, 3) for t in run.read_round(k, "tasks.jsonl", Task)]
    assert read_jsonl(run.seed_file, Task) == seed_buffer(run) == base + added
    assert [m["round"] for m in run.metrics() if m["stage"] == "seed"] == [1, 2, 3]


def test_a_crash_between_a_round_and_the_seed_file_loses_nothing(tmp_path, tiny_model):
    from stages.rundir.buffers import load_buffers

    run = seed_stage.run(tmp_path / "r", load_config(TINY, ["seed.grow=true", "seed.target=3"]))
    with Session(run) as s:
        seed_stage.grow(run, 3, ScriptedPolicy(), s.sandbox(), max_rounds=1)
    grown = read_jsonl(run.seed_file, Task)
    from stages.rundir.jsonl import write_jsonl

    write_jsonl(run.seed_file, read_jsonl(run.seed_dir / "base.jsonl", Task))  # as if killed before the seed file
    assert sum(len(v) for v in load_buffers(run, 0).values()) == len(grown)  # readers count the round anyway
    st = seed_stage.standing(run)
    assert st.buffers["deduction"] == 3 and st.rounds == 1
    with run.writing():
        seed_stage.sync_seed_file(run)
    assert read_jsonl(run.seed_file, Task) == grown


def test_a_run_from_before_rounds_were_kept_still_works(tmp_path, tiny_model):
    """No seed/ folder: 0 rounds done (the seed file is the base the phase goes on from), or
    closed once an iteration exists."""
    from stages.rundir.jsonl import write_jsonl

    run = seed_stage.run(tmp_path / "r", load_config(TINY, ["seed.grow=true", "seed.target=3"]))
    old = [*read_jsonl(run.seed_file, Task), Task(task_id="seed-deduction-1", type="deduction",
                                                  program="def f(x):\n    return x * 2", inputs=["2"],
                                                  outputs=["4"], proposal_id="seed-r001-ded-000")]
    write_jsonl(run.seed_file, old)
    st = seed_stage.standing(run)
    assert (st.state, st.rounds, st.buffers["deduction"]) == ("pending", 0, 2)
    with Session(run) as s:
        seed_stage.grow(run, 3, ScriptedPolicy(), s.sandbox(), max_rounds=1)
    assert read_jsonl(run.seed_dir / "base.jsonl", Task) == old
    assert read_jsonl(run.seed_file, Task)[: len(old)] == old
    assert read_jsonl(run.seed_file, Task)[len(old)].task_id == "seed-deduction-2"
    closed = seed_stage.run(tmp_path / "c", load_config(TINY, ["seed.grow=true"]))
    closed.iter_dir(1).mkdir(parents=True)
    assert seed_stage.standing(closed).state == "closed" and not seed_stage.pending(closed)


def test_seeding_rounds_through_the_cli_status_inspect_report(azr, tmp_path, tiny_model):
    """`azr seed` prints a line per round (piped), keeps every proposal and verdict, which `azr
    inspect --stage seed`, `azr status` and `azr report` show; a rerun goes on after the last round."""
    path = tmp_path / "r"
    r = azr("seed", "--run", path, "--config", TINY, "--set", "seed.grow=true", "--set", "seed.max_rounds=2")
    assert r.code == 0, r.err
    assert [line.split()[2] for line in r.err.splitlines() if line.startswith("seed round")] == ["1/2", "2/2"]
    assert "proposals, valid" in r.err and "rejected: format" in r.err  # the tiny model writes noise
    info = json.loads(azr("status", "--run", path, "--json").out)
    assert info["seeding"]["rounds"] == 2 and info["seeding"]["state"] == "stopped"
    assert info["seeding"]["buffers"] == {"deduction": 1, "abduction": 1, "induction": 1}
    assert info["next"] == {"iteration": 0, "stage": "seed"} and "seed.when_short=go_on" in info["seeding"]["message"]

    records = json.loads(azr("inspect", "--run", path, "--stage", "seed", "--limit", "0", "--json").out)
    assert len(records) == 24 and [x["round"] for x in records] == [1] * 12 + [2] * 12
    assert all(x["reason"] and x["detail"] and "completion" in x and "prompt_ids" not in x
               for x in records if not x["valid"])
    ind = json.loads(azr("inspect", "--run", path, "--stage", "seed", "--round", "2", "--type", "induction",
                         "--json").out)
    assert [x["proposal_id"] for x in ind] == [f"seed-r002-ind-{k:03d}" for k in range(4)]
    table = azr("inspect", "--run", path, "--stage", "seed", "--type", "abduction")
    assert table.code == 0 and "seed-r001-abd-000" in table.out and "✗" in table.out and "rejected:" in table.err
    bad = azr("inspect", "--run", path, "--stage", "seed", "--round", "3")
    assert bad.code == 1 and "round 3 has not completed" in bad.err

    rep = json.loads(azr("report", "--run", path, "--json").out)
    assert any(f.endswith("rejections.png") for f in rep["files"])
    assert "seeding phase: 2 rounds, 24 proposals" in (path / "report" / "README.md").read_text()

    r = azr("seed", "--run", path)  # nothing left within max_rounds: says how to go on
    assert r.code == 1 and "stopped after 2 rounds" in r.err and len(r.err.strip().splitlines()) == 1
    r = azr("seed", "--run", path, "--max-rounds", "3")
    assert r.code == 0, r.err
    assert [line.split()[2] for line in r.err.splitlines() if line.startswith("seed round")] == ["3/3"]
    assert open_run(path)[0].seed_rounds() == 3


def test_when_short_go_on_the_stage_commands_go_on_as_the_loop_does(azr, tmp_path, tiny_model):
    """A short seeding phase with seed.when_short=go_on: `azr seed`, then the five stage commands,
    write byte for byte the records `azr loop --iters 1` writes on an identical run."""
    from stages.pipeline import STAGE_NAMES

    sets = ["--config", TINY, "--set", "seed.grow=true", "--set", "seed.max_rounds=2",
            "--set", "seed.when_short=go_on"]
    looped, by_hand = tmp_path / "loop", tmp_path / "hand"
    r = azr("loop", "--run", looped, *sets, "--iters", "1")
    assert r.code == 0, r.err
    assert "fell short" in r.err
    r = azr("seed", "--run", by_hand, *sets)
    assert r.code == 0 and "goes on with what there is" in r.err, r.err
    info = json.loads(azr("status", "--run", by_hand, "--json").out)
    assert info["seeding"]["state"] == "short" and info["next"] == {"iteration": 1, "stage": "propose"}
    for stage in STAGE_NAMES:
        r = azr(stage, "--run", by_hand)
        assert r.code == 0, f"{stage}: {r.err}"

    def everything(path):
        return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*.jsonl"))
                if "metrics" not in f.name and ".tmp-" not in str(f)}

    a, b = everything(looped), everything(by_hand)
    assert any(k.startswith("seed/round-000002/") for k in a) and any(k.startswith("iters/000001/") for k in a)
    assert a == b
    from safetensors.torch import load_file

    x = load_file(str(looped / "checkpoints" / "000001" / "adapter_model.safetensors"))
    y = load_file(str(by_hand / "checkpoints" / "000001" / "adapter_model.safetensors"))
    assert x.keys() == y.keys() and all((x[k] == y[k]).all() for k in x)


def _round_lines(err):
    return [line.split()[2] for line in err.splitlines() if line.startswith("seed round")]


def test_sigkill_during_round_3_then_a_rerun_goes_on_without_repeating_rounds(tmp_path, tiny_model):
    """`azr seed` is killed (SIGKILL) once round 2's line is out, i.e. in round 3; `azr loop` then
    runs only the rounds left, leaves rounds 1-2 as they were, and the seeding records equal those
    of an uninterrupted `azr seed`. (Whenever the kill lands, what completed is never redone.)"""
    sets = ["--config", TINY, "--set", "seed.grow=true", "--set", "seed.max_rounds=4",
            "--set", "seed.when_short=go_on"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def azr_sub(*args, **kw):
        return subprocess.Popen([sys.executable, "-m", "azr_cli.main", *map(str, args)], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)

    killed = tmp_path / "killed"
    proc = azr_sub("seed", "--run", killed, *sets, start_new_session=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("seed round") and line.split()[2] == "2/4":
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    run = open_run(killed)[0]
    done = run.seed_rounds()
    assert done >= 2 and not run.iterations()
    before = {k: (run.round_dir(k).stat().st_ino, {p.name: p.read_bytes() for p in run.round_dir(k).iterdir()})
              for k in range(1, done + 1)}

    resumed = azr_sub("loop", "--run", killed, "--iters", 1)
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    assert _round_lines(err) == [f"{k}/4" for k in range(done + 1, 5)]  # rounds 1..done are not run again
    run = open_run(killed)[0]
    assert run.seed_rounds() == 4 and run.completed_iterations() == 1
    assert {k: (run.round_dir(k).stat().st_ino, {p.name: p.read_bytes() for p in run.round_dir(k).iterdir()})
            for k in range(1, done + 1)} == before
    assert not [p for p in (killed / "seed").iterdir() if ".tmp-" in p.name]

    whole = tmp_path / "whole"
    once = azr_sub("seed", "--run", whole, *sets)
    _, err = once.communicate(timeout=900)
    assert once.returncode == 0, err
    assert _round_lines(err) == ["1/4", "2/4", "3/4", "4/4"]
    assert seed_records(killed) == seed_records(whole)  # the seeding phase reproduces exactly
