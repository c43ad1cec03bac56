"""`azr seed --grow`: the seeding phase on the real tiny model, and its bookkeeping with
completions written by hand (a scripted policy: the tiny model writes noise, so it never
yields a task)."""

import json
from dataclasses import dataclass

from conftest import TINY

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
    from stages.seed import pending, seeding_target

    cfg = load_config()
    assert cfg.seed.grow and seeding_target(cfg) == 4 * cfg.run.batch_size
    r = azr("loop", "--run", tmp_path / "r", "--config", TINY, "--set", "seed.grow=true",
            "--set", "seed.max_rounds=1", "--iters", "1")
    assert r.code == 1 and "seeding phase stopped after 1 rounds" in r.err and "seed.target" in r.err, r.err
    run = open_run(tmp_path / "r")[0]
    assert pending(run) and not run.iterations()
    r = azr("propose", "--run", run.path)
    assert r.code == 1 and "has not finished its seeding phase" in r.err
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
