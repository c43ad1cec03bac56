"""`azr seed --grow`: the seeding phase on the real tiny model, and its bookkeeping with
completions written by hand (a scripted policy: the tiny model writes noise, so it never
yields a task)."""

import json
from dataclasses import dataclass

from conftest import TINY

from stages import seed as seed_stage
from stages.config.layers import load_config
from stages.rundir.jsonl import read_jsonl
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


@dataclass
class Gen:
    completions: list


class ScriptedPolicy:
    """Answers every proposer prompt with a fixed, well-formed completion for its type."""

    def wrap(self, text):
        return text

    def generate(self, prompts, **kw):
        out = []
        for p in prompts:
            if "inputs" in p and "message" in p and "```python" not in p.split("Write")[-1]:
                out.append(Done(IND))
            else:
                out.append(Done(DED))
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
