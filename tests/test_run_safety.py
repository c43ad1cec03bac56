"""What a run directory survives: a second writer, kills during writes, damaged files, hand edits,
non-finite values and OS errors. Each one is a clear one-line error (exit 1) or is cleaned up, and
nothing already written is lost."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

from stages.config.layers import load_config
from stages.errors import RunError
from stages.pipeline import STAGES
from stages.rundir.jsonl import write_json
from stages.rundir.manifest import open_run
from stages.seed import run as seed_run


def _child(code: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def holder(tmp_path):
    """A run, and a second process that holds its lock (and a live temp folder) until killed."""
    run = seed_run(tmp_path / "r", load_config())
    proc = _child(f"""
        import os, time
        from stages.rundir.manifest import open_run
        run = open_run({str(run.path)!r})[0]
        with run.writing():
            live = run.iter_dir(1) / f".propose.tmp-{{os.getpid()}}"
            live.mkdir(parents=True)
            print("held", flush=True)
            time.sleep(120)
    """)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    yield run, proc
    proc.kill()
    proc.wait()


def test_a_second_writer_stops_at_once_naming_the_holder(holder, azr):
    run, proc = holder
    for args in (("propose", "--run", run.path), ("loop", "--run", run.path, "--iters", "1"),
                 ("seed", "--run", run.path, "--grow", "2")):
        r = azr(*args)
        assert r.code == 1, (args, r.err)
        assert f"pid {proc.pid}" in r.err and "being written" in r.err, r.err
        assert len(r.err.strip().splitlines()) == 1
    # the holder's temp folder is untouched, and readers still work
    assert (run.iter_dir(1) / f".propose.tmp-{proc.pid}").is_dir()
    assert azr("status", "--run", run.path).code == 0


def test_the_lock_dies_with_its_holder(holder, azr):
    run, proc = holder
    proc.kill()
    proc.wait()
    with run.writing():  # the kernel released it: the next writer gets it at once
        pass


def test_a_killed_seed_leaves_nothing_that_blocks_a_rerun(tmp_path, azr):
    target = tmp_path / "r"
    proc = _child(f"""
        import os, signal
        from stages.config.layers import load_config
        from stages.rundir.manifest import create_run
        def fill(run):
            (run.path / "buffer" / "seed.jsonl").write_text("half")
            os.kill(os.getpid(), signal.SIGKILL)
        create_run({str(target)!r}, load_config(), fill=fill)
    """)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists() and list(tmp_path.glob(".r.tmp-*"))
    r = azr("seed", "--run", target, "--set", "seed.grow=false")
    assert r.code == 0, r.err
    assert not list(tmp_path.glob(".r.tmp-*"))
    assert open_run(target)[0].seed_file.is_file()


class _Policy:
    """Stands in for the policy in a checkpoint write: writes a weights file, or dies mid-write."""

    def __init__(self, die: bool = False, fail: BaseException | None = None):
        self.die, self.fail = die, fail

    def save(self, folder, weights=None):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_model.safetensors").write_bytes(b"\0" * 100_000)
        if self.fail is not None:
            raise self.fail
        if self.die:
            os.kill(os.getpid(), signal.SIGKILL)
        return folder


def _session(policy):
    import torch

    class S:
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
        algorithm = None

    s = S()
    s.policy = policy
    return s


def test_a_kill_during_checkpoint_writing_leaves_no_litter_after_the_next_write(tmp_path):
    from stages.update import save_checkpoint

    run = seed_run(tmp_path / "r", load_config())
    proc = _child(f"""
        import sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from test_run_safety import _Policy, _session
        from stages.rundir.manifest import open_run
        from stages.update import save_checkpoint
        run = open_run({str(run.path)!r})[0]
        save_checkpoint(run, 1, _session(_Policy(die=True)), {{}})
    """)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    ckpts = run.path / "checkpoints"
    assert [p.name for p in ckpts.iterdir()] == [f".000001.tmp-{proc.pid}"]
    save_checkpoint(run, 1, _session(_Policy()), {})
    assert sorted(p.name for p in ckpts.iterdir()) == ["000001"]
    assert (ckpts / "000001" / "meta.json").is_file()


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_leaves_nothing(tmp_path):
    from stages.update import save_checkpoint

    run = seed_run(tmp_path / "r", load_config())
    for fail in (OSError(errno.ENOSPC, "No space left on device"),
                 RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")):
        with pytest.raises(RunError, match=r"cannot write checkpoint .*000001.*GiB free"):
            save_checkpoint(run, 1, _session(_Policy(fail=fail)), {})
        assert list((run.path / "checkpoints").iterdir()) == []


def _complete_iteration(run, n=1):
    for s in STAGES:
        with run.stage_writer(n, s) as tmp:
            write_json(tmp / "summary.json", {"metrics": {}})
            (tmp / "tasks.jsonl").write_text("")
    ckpt = run.checkpoint_dir(n)
    ckpt.mkdir(parents=True)
    write_json(ckpt / "meta.json", {"iteration": n})
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    (ckpt / "adapter_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    return ckpt


def test_a_damaged_checkpoint_is_named_when_the_run_is_opened(tmp_path, azr):
    run = seed_run(tmp_path / "r", load_config())
    ckpt = _complete_iteration(run)
    assert azr("status", "--run", run.path).code == 0
    weights = ckpt / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-5])  # truncated
    r = azr("status", "--run", run.path)
    assert r.code == 1 and "adapter_model.safetensors: truncated" in r.err, r.err
    (ckpt / "training_state.pt").write_bytes(b"PK\x03\x04 not a whole zip")
    weights.write_bytes(b"")
    for args in (("status", "--run", run.path), ("propose", "--run", run.path)):
        r = azr(*args)
        assert r.code == 1 and "checkpoints/000001/" in r.err and "damaged" in r.err, r.err


def test_a_damaged_summary_is_noticed_by_status(tmp_path, azr):
    run = seed_run(tmp_path / "r", load_config())
    _complete_iteration(run)
    (run.stage_dir(1, "solve") / "summary.json").write_text('{"metrics": ')
    r = azr("status", "--run", run.path)
    assert r.code == 1 and "000001/solve/summary.json: not valid JSON" in r.err, r.err
    (run.stage_dir(1, "solve") / "summary.json").unlink()
    r = azr("status", "--run", run.path)
    assert r.code == 1 and "solve/summary.json: missing" in r.err, r.err


def test_a_hand_edited_meaning_field_is_refused_by_name(tmp_path, azr):
    run = seed_run(tmp_path / "r", load_config())
    cfg = run.path / "config.yaml"
    original = cfg.read_text()
    cfg.write_text(original.replace("device: auto", "device: cpu"))  # runtime: allowed
    assert azr("status", "--run", run.path).code == 0
    cfg.write_text(original.replace("batch_size: 64", "batch_size: 8"))
    for args in (("status", "--run", run.path), ("propose", "--run", run.path)):
        r = azr(*args)
        assert r.code == 1 and "'run.batch_size' was 64, is 8" in r.err, r.err


def test_non_finite_and_absurd_config_values_are_refused(tmp_path, azr):
    for kv in ("update.lr=.inf", "update.lr=.nan", "solve.temperature=1e9", "reward.solver_wrong=-.inf"):
        r = azr("seed", "--run", tmp_path / "r", "--set", kv)
        assert r.code == 1 and kv.split("=")[0] in r.err, (kv, r.err)
    assert not (tmp_path / "r").exists()
    assert azr("loop", "--run", tmp_path / "r", "--iters", "-3").code == 2
    dup = tmp_path / "dup.yaml"
    dup.write_text("run:\n  seed: 1\n  seed: 2\n")
    r = azr("seed", "--run", tmp_path / "r", "--config", dup)
    assert r.code == 1 and "duplicate key 'seed'" in r.err, r.err


def test_a_non_finite_update_writes_no_checkpoint():
    import torch
    from test_training import tiny_model

    from stages.config.schema import UpdateSection
    from stages.training.batch import TokenSample
    from stages.training.state import build_optimizer
    from stages.training.step import update_step

    model = tiny_model()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n).fill_(float("nan"))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg = UpdateSection(lr=1e-2)
    opt = build_optimizer(model.parameters(), cfg)
    with pytest.raises(FloatingPointError, match="not finite"):
        update_step(model, [TokenSample([1, 2, 3], [4, 5], advantage=1.0)], cfg, opt)
    after = dict(model.named_parameters())
    assert all(torch.equal(torch.nan_to_num(after[n]), torch.nan_to_num(p)) for n, p in before.items())
    assert not opt.state  # no optimizer step was taken


def test_os_errors_and_bad_paths_are_one_line(tmp_path, azr, monkeypatch):
    afile = tmp_path / "file"
    afile.write_text("x")
    for args in (("seed", "--run", afile), ("status", "--run", afile)):
        r = azr(*args)
        assert r.code == 1 and "is a file, not a run directory" in r.err, r.err
    real_mkdir = os.mkdir

    def readonly(path, *a, **kw):
        if "ro" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *a, **kw)

    monkeypatch.setattr(os, "mkdir", readonly)
    r = azr("seed", "--run", tmp_path / "ro" / "r")
    assert r.code == 1 and "Read-only file system" in r.err and "internal error" not in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1


@pytest.mark.parametrize("version", ["1", [1], None, 1.0])
def test_a_bad_format_version_is_called_damaged(tmp_path, version):
    run = seed_run(tmp_path / "r", load_config())
    manifest = json.loads((run.path / "manifest.json").read_text())
    write_json(run.path / "manifest.json", {**manifest, "format_version": version})
    with pytest.raises(RunError, match=r"format_version is .*not an integer; the manifest is damaged"):
        open_run(run.path)


def test_the_lock_is_reentrant_and_shared_within_a_process(tmp_path):
    run = seed_run(tmp_path / "r", load_config())
    other = open_run(run.path)[0]
    with run.writing(), other.writing(), run.writing():
        pass
    proc = _child(f"""
        from stages.rundir.manifest import open_run
        with open_run({str(run.path)!r})[0].writing():
            print("got it")
    """)
    out, err = proc.communicate(timeout=60)
    assert out.strip() == "got it", err  # released when the outermost hold ended


# --- a run folder never deletes what is not a run; the screen never reads paths as markup ----------
def test_force_refuses_a_folder_that_is_not_a_run(tmp_path, azr):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    r = azr("seed", "--run", home, "--force", "--set", "seed.grow=false")
    assert r.code == 1 and "not an azr run" in r.err and "no manifest.json" in r.err, r.err
    assert (home / "thesis.tex").read_text() == "years of work" and sorted(p.name for p in home.iterdir()) == ["thesis.tex"]
    run = seed_run(tmp_path / "r", load_config())  # a real run is still replaced
    r = azr("seed", "--run", run.path, "--force", "--set", "seed.grow=false")
    assert r.code == 0, r.err


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
def test_a_planted_lock_file_is_refused_and_its_target_is_untouched(tmp_path, azr, kind):
    run = seed_run(tmp_path / "r", load_config())
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = run.path / ".lock"
    lock.unlink(missing_ok=True)
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "hardlink":
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    with pytest.raises(RunError, match=r"\.lock is not a regular file"), run.writing():
        pass
    r = azr("propose", "--run", run.path)
    assert r.code == 1 and ".lock is not a regular file" in r.err, r.err
    assert victim.read_text() == "precious"


def test_markup_in_a_run_path_is_shown_as_typed(tmp_path, azr):
    path = tmp_path / "a[/]b[bold red]c"
    r = azr("seed", "--run", path, "--set", "seed.grow=false")
    assert r.code == 0 and "internal error" not in r.err, r.err
    assert "a[/]b[bold red]c" in r.err.replace("\n", "")
    r = azr("status", "--run", path)
    assert r.code == 0 and "a[/]b[bold red]c" in r.out.replace("\n", ""), r.err


def test_kv_tables_show_values_as_they_are():
    from azr_cli.display import _Console, kv_table

    console = _Console(width=200, record=True, highlight=False)
    console.print(kv_table("run x[/]y", {"output": "'[bold green]ok[/]'", "[i]k": "[/]"}))
    text = console.export_text()
    assert "'[bold green]ok[/]'" in text and "run x[/]y" in text and "[i]k" in text


def test_redoing_a_stage_never_leaves_it_missing(tmp_path, monkeypatch):
    from stages.rundir import atomic

    run = seed_run(tmp_path / "r", load_config())
    with run.stage_writer(1, "propose") as tmp:
        (tmp / "summary.json").write_text('{"metrics": {"v": 1}}')
    seen = []
    real_rmtree = atomic.shutil.rmtree

    def watching_rmtree(path, *a, **kw):  # the old folder goes once the new one is in place
        seen.append(run.is_done(1, "propose"))
        return real_rmtree(path, *a, **kw)

    monkeypatch.setattr(atomic.shutil, "rmtree", watching_rmtree)
    real_replace = atomic.os.replace

    def no_folder_moves(src, dst):
        if os.path.isdir(src):
            pytest.fail("a two-step replace of a folder leaves a gap")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", no_folder_moves)
    with run.stage_writer(1, "propose", force=True) as tmp:
        (tmp / "summary.json").write_text('{"metrics": {"v": 2}}')
    assert seen and all(seen)
    assert json.loads((run.stage_dir(1, "propose") / "summary.json").read_text()) == {"metrics": {"v": 2}}


def test_a_damaged_metrics_file_is_named(tmp_path, azr):
    run = seed_run(tmp_path / "r", load_config())
    _complete_iteration(run)
    run.rebuild_metrics()
    (run.path / "metrics.jsonl").write_text('{"iteration": 1}\n{"iteration": ')
    r = azr("status", "--run", run.path)
    assert r.code == 1 and "metrics.jsonl:2: not valid JSON" in r.err and "internal error" not in r.err, r.err


def test_nan_weights_in_the_last_checkpoint_are_named_when_the_run_is_opened(tmp_path, azr):
    import struct

    run = seed_run(tmp_path / "r", load_config())
    ckpt = _complete_iteration(run)
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "w": {"dtype": "BF16", "shape": [4], "data_offsets": [8, 16]}}).encode()
    weights = ckpt / "adapter_model.safetensors"
    finite = struct.pack("<2f", 1.0, -2.0) + struct.pack("<4H", 0x3F80, 0, 0x8000, 0x4000)
    weights.write_bytes(len(header).to_bytes(8, "little") + header + finite)
    assert azr("status", "--run", run.path).code == 0
    weights.write_bytes(len(header).to_bytes(8, "little") + header + finite[:8] + struct.pack("<4H", 0x3F80, 0x7FC0, 0, 0))
    r = azr("status", "--run", run.path)
    assert r.code == 1 and "tensor 'w' holds inf or NaN" in r.err and "adapter_model.safetensors" in r.err, r.err


def test_an_integer_past_64_bits_is_a_config_error(tmp_path, azr):
    r = azr("seed", "--run", tmp_path / "r", "--set", "run.batch_size=10000000000000000000000")
    assert r.code == 1 and "run.batch_size" in r.err and "out of range" in r.err and "internal" not in r.err, r.err
    r = azr("seed", "--run", tmp_path / "r", "--set", "run.batch_size=1e22")
    assert r.code == 1 and "run.batch_size" in r.err and "internal" not in r.err, r.err
