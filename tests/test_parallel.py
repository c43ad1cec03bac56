"""Several ranks on one run (torchrun, gloo on the CPU, 2 ranks): the update's gradient sum, the
loop through the CLI, what the serving rank writes (nothing), and a rank killed mid-run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY

from stages import parallel

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
AUDITED = str(REPO / "tests" / "helpers" / "audited_azr.py")


def test_shards_take_every_item_once_and_merge_back_in_order():
    for n in (0, 1, 5, 8):
        for k in (1, 2, 3):
            shares = [parallel.shard(n, r, k) for r in range(k)]
            assert sorted(i for s in shares for i in s) == list(range(n))
            assert parallel.merge([[f"x{i}" for i in s] for s in shares], n) == [f"x{i}" for i in range(n)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _update(ranks=None):
    """One TRR++ step of the fp64 tiny LoRA model on a fixed batch of 7 samples (4 micro-batches)."""
    from test_training import make_batch, tiny_model, ucfg

    from stages.training.state import build_optimizer
    from stages.training.step import update_step

    model = tiny_model(dtype=torch.float64)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg = ucfg(entropy_coef=0.01)
    stats = update_step(model, make_batch(7), cfg, build_optimizer(model.parameters(), cfg), pad_id=0, ranks=ranks)
    after = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return before, after, stats


def _rank_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    sys.path.insert(0, str(REPO / "tests"))
    parallel.init()
    try:
        _, after, stats = _update(parallel.gradient_sum())
        torch.save({"after": after, "loss": stats.loss, "grad_norm": stats.grad_norm, "entropy": stats.entropy},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_the_update_on_two_ranks_equals_the_update_on_one(tmp_path):
    """Each rank backpropagates half the micro-batches; the summed gradient gives both ranks the
    step one process takes on the whole batch (fp64: only the order of the sums differs)."""
    import torch.multiprocessing as mp

    before, want, stats = _update()
    assert any(not torch.equal(want[n], before[n]) for n in want)  # the adapter moves
    mp.spawn(_rank_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r in range(2):
        for name, p in want.items():
            torch.testing.assert_close(got[r]["after"][name], p, rtol=1e-7, atol=1e-10)
        assert got[r]["loss"] == pytest.approx(stats.loss, rel=1e-9)
        assert got[r]["grad_norm"] == pytest.approx(stats.grad_norm, rel=1e-9)
        assert got[r]["entropy"] == pytest.approx(stats.entropy, rel=1e-9)
    assert all(torch.equal(got[0]["after"][n], got[1]["after"][n]) for n in want)  # the ranks agree exactly


def _torchrun(tmp_path: Path, *args: str, background: bool = False):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AZR_AUDIT_ROOT": str(tmp_path / "runs"),
           "AZR_AUDIT_DIR": str(tmp_path / "audit"), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [*TORCHRUN, "--", AUDITED, *map(str, args)]  # without "--" torchrun takes --run for its --run-path
    if background:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _records(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "iters").rglob("*.jsonl"))}


def test_two_ranks_run_the_loop_and_write_what_one_rank_writes(tmp_path, azr, tiny_model):
    """Two iterations on 2 ranks: the same records as on one rank (the same seeds, so here the same
    bytes), the serving rank writes nothing under the runs folder, a stage command runs too, and
    the adapter moves."""
    runs = tmp_path / "runs"
    r = _torchrun(tmp_path, "loop", "--run", runs / "two", "--config", TINY, "--iters", "2",
                  "--set", "update.lr=0.05")
    assert r.returncode == 0, r.stderr[-3000:]
    assert azr("loop", "--run", runs / "one", "--config", TINY, "--iters", "2", "--set", "update.lr=0.05").code == 0
    one, two = _records(runs / "one"), _records(runs / "two")
    assert one.keys() == two.keys() and len(one) == 10
    assert {k: v.count(b"\n") for k, v in one.items()} == {k: v.count(b"\n") for k, v in two.items()}
    assert one == two
    assert not (tmp_path / "audit" / "rank-1.txt").exists(), (tmp_path / "audit" / "rank-1.txt").read_text()
    r = _torchrun(tmp_path, "propose", "--run", runs / "two", "--iter", "2", "--force")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _records(runs / "two") == two  # the stage command reproduces its records on 2 ranks
    adapter = runs / "two" / "checkpoints" / "000002" / "adapter_model.safetensors"
    before = adapter.read_bytes()
    r = _torchrun(tmp_path, "update", "--run", runs / "two", "--iter", "2", "--force")  # the first request: an update
    assert r.returncode == 0, r.stderr[-3000:]
    assert adapter.read_bytes() == before
    assert not (tmp_path / "audit" / "rank-1.txt").exists()
    meta = json.loads((runs / "two" / "checkpoints" / "000002" / "meta.json").read_text())
    assert meta["stats"]["grad_norm"] > 0


def test_a_rank_killed_mid_run_stops_both_and_the_rerun_finishes(tmp_path, azr, tiny_model):
    runs = tmp_path / "runs"
    args = ("loop", "--run", runs / "r", "--config", TINY, "--iters", "3", "--set", "update.lr=0.05")
    proc = _torchrun(tmp_path, *args, background=True)
    deadline = time.monotonic() + 300
    while not (runs / "r" / "iters" / "000002").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.kill(int((tmp_path / "audit" / "pid-1").read_text()), signal.SIGKILL)
    proc.communicate(timeout=300)
    assert proc.returncode != 0  # torchrun stopped rank 0 too
    r = _torchrun(tmp_path, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    status = azr("status", "--run", runs / "r", "--json")
    assert status.code == 0 and json.loads(status.out)["completed_iterations"] == 3
    assert azr("loop", "--run", runs / "r", "--iters", "3").code == 0  # nothing left to do, nothing damaged


def test_gradient_buckets_keep_order_and_split_by_size_and_dtype(monkeypatch):
    monkeypatch.setattr(parallel, "BUCKET_BYTES", 64)
    params = [torch.zeros(n, dtype=d) for n, d in ((4, torch.float32), (8, torch.float32), (16, torch.float32),
                                                   (2, torch.float64), (2, torch.float32))]
    for p in params:
        p.grad = torch.zeros_like(p)
    buckets = parallel._buckets(params)
    assert [len(b) for b in buckets] == [2, 1, 1, 1]  # 16+32 bytes, then 64, then a new dtype, then back
    assert [p for b in buckets for p in b] == params
