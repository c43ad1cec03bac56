import pytest

from stages.config.layers import load_config
from stages.errors import RunError
from stages.rundir.buffers import cap_buffers, group_by_type, load_buffers, solver_batch
from stages.rundir.jsonl import read_jsonl, write_json, write_jsonl
from stages.rundir.manifest import FORMAT_VERSION, create_run, open_run
from stages.rundir.records import Task
from stages.seed import seed_tasks


def _task(i, typ="deduction", it=1):
    return Task(task_id=f"t{i}", type=typ, program="def f(a):\n    return a", inputs=["1"], outputs=["1"], iteration=it)


def test_jsonl_round_trip(tmp_path):
    p = tmp_path / "x.jsonl"
    assert write_jsonl(p, [_task(1), _task(2)]) == 2
    assert [t.task_id for t in read_jsonl(p, Task)] == ["t1", "t2"]


def test_truncated_last_line_is_reported_with_file_and_line(tmp_path):
    p = tmp_path / "x.jsonl"
    write_jsonl(p, [_task(1), _task(2)])
    data = p.read_bytes()
    p.write_bytes(data[:-10])
    with pytest.raises(RunError, match=r"x.jsonl:2: truncated last line"):
        read_jsonl(p, Task)


def test_invalid_utf8_and_json_and_schema(tmp_path):
    p = tmp_path / "x.jsonl"
    good = _task(1).model_dump_json().encode()
    p.write_bytes(good + b"\n\xff\xfe\n")
    with pytest.raises(RunError, match=r"x.jsonl:2: invalid UTF-8"):
        read_jsonl(p, Task)
    p.write_bytes(good + b"\n{not json}\n")
    with pytest.raises(RunError, match=r"x.jsonl:2: not valid JSON"):
        read_jsonl(p, Task)
    p.write_bytes(good + b'\n{"task_id": "x"}\n')
    with pytest.raises(RunError, match=r"x.jsonl:2: Task record invalid at 'type'"):
        read_jsonl(p, Task)


def test_stage_writer_is_atomic(tmp_path):
    run = create_run(tmp_path / "r", load_config())
    with pytest.raises(ZeroDivisionError), run.stage_writer(1, "propose") as tmp:
        (tmp / "a.jsonl").write_text("x")
        1 / 0  # noqa: B018
    assert not run.is_done(1, "propose")
    assert not list(run.iter_dir(1).glob(".propose.tmp-*"))
    with run.stage_writer(1, "propose") as tmp:
        write_json(tmp / "summary.json", {"metrics": {"n": 1}})
    assert run.is_done(1, "propose")
    assert run.metrics() == [{"iteration": 1, "stage": "propose", "n": 1}]
    with pytest.raises(RunError, match="already complete"), run.stage_writer(1, "propose"):
        pass


def test_a_leftover_temp_folder_is_not_trusted(tmp_path):
    run = create_run(tmp_path / "r", load_config())
    (run.iter_dir(1) / ".propose.tmp-999").mkdir(parents=True)
    assert not run.is_done(1, "propose")
    assert run.next_pending() == (1, "propose")
    with run.stage_writer(1, "propose"):
        pass
    assert not (run.iter_dir(1) / ".propose.tmp-999").exists()


def test_create_refuses_to_clobber(tmp_path):
    create_run(tmp_path / "r", load_config())
    with pytest.raises(RunError, match="already holds a run"):
        create_run(tmp_path / "r", load_config())
    create_run(tmp_path / "r", load_config(), force=True)


def test_format_version_mismatch_is_plain(tmp_path):
    run = create_run(tmp_path / "r", load_config())
    write_json(run.path / "manifest.json", {**run.manifest, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(RunError, match="newer azr"):
        open_run(run.path)
    write_json(run.path / "manifest.json", {**run.manifest, "format_version": 0})
    with pytest.raises(RunError, match="uses run format 0"):
        open_run(run.path)


def test_open_refuses_meaning_changes_allows_runtime(tmp_path):
    create_run(tmp_path / "r", load_config())
    with pytest.raises(RunError, match="'model.adapter'"):
        open_run(tmp_path / "r", sets=["model.adapter=full"])
    run, changed = open_run(tmp_path / "r", sets=["model.device=cpu"])
    assert changed == {"model.device": "cpu"} and run.config.model.device == "cpu"


def test_open_missing_run(tmp_path):
    with pytest.raises(RunError, match="not an azr run directory"):
        open_run(tmp_path / "nope")


def test_resolve_iter_order(tmp_path):
    run = create_run(tmp_path / "r", load_config())
    assert run.resolve_iter("propose", None, False) == 1
    with pytest.raises(RunError, match="stage 'propose' is not complete"):
        run.resolve_iter("validate", None, False)


def test_buffers_from_seeds_and_cap(tmp_path):
    cfg = load_config()
    run = create_run(tmp_path / "r", cfg)
    write_jsonl(run.seed_file, seed_tasks(cfg))
    sizes = {t: len(v) for t, v in load_buffers(run, 0).items()}
    assert sizes == {"deduction": 1, "abduction": 1, "induction": 1}
    tasks = [_task(0, it=0)] + [_task(i) for i in range(1, 6)]
    capped = cap_buffers(group_by_type(tasks), 3)["deduction"]
    assert [t.task_id for t in capped] == ["t0", "t4", "t5"]


def test_solver_batch_new_first_then_fill():
    import random

    new = [_task(i) for i in range(2)]
    pool = [_task(i) for i in range(10)]
    batch = solver_batch(new, pool, 5, random.Random(0))
    assert [t.task_id for t in batch[:2]] == ["t0", "t1"] and len(batch) == 5
    assert len(solver_batch([], pool[:1], 3, random.Random(0))) == 3
