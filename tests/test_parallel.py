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


def _full_model():
    """The fp64 tiny Qwen2 with tied embeddings, every weight trained (no adapter)."""
    import transformers
    from test_training import VOCAB

    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   tie_word_embeddings=True)
    return transformers.Qwen2ForCausalLM(cfg).to(torch.float64)


def _full_update(model, ranks=None):
    """Two TRR++ steps of full fine-tuning on 5 samples: 3 micro-batches, so on 2 ranks one rank
    makes a pass at zero weight."""
    from test_training import make_batch, ucfg

    from stages.training.state import build_optimizer
    from stages.training.step import update_step

    cfg = ucfg(entropy_coef=0.01)
    optimizer = build_optimizer(model.parameters(), cfg)
    stats = [update_step(model, make_batch(5, seed=s), cfg, optimizer, pad_id=0, ranks=ranks) for s in (1, 2)]
    return optimizer, stats


def _fsdp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    sys.path.insert(0, str(REPO / "tests"))
    from stages.training import sharding

    parallel.init()
    try:
        model = sharding.shard(_full_model())
        held = sharding.local_numel(model)
        optimizer, stats = _full_update(model, parallel.gradient_sum(sharded=True))
        held_state = sum(v.to_local().numel() for s in optimizer.state.values() for k, v in s.items() if k != "step")
        gathered = sharding.full_state(model, optimizer)
        if rank == 0:
            torch.save(gathered[1], f"{out}/optimizer.pt")
        dist.barrier()
        # resuming: the whole state (one process's layout) read back, each rank keeping its shard
        from test_training import ucfg

        from stages.training.state import build_optimizer

        again = build_optimizer(model.parameters(), ucfg())
        again.load_state_dict(sharding.local_optimizer_state(again, torch.load(f"{out}/optimizer.pt")))
        reloaded = all(torch.equal(v.to_local(), again.state[p][k].to_local())
                       for p, st in optimizer.state.items() for k, v in st.items() if k != "step")
        with sharding.full_weights(model), torch.no_grad():  # each rank alone, a different number of passes
            logits = [model(torch.tensor([[1, 2, 3]])).logits for _ in range(rank + 1)][-1]
        torch.save({"gathered": gathered, "held": held, "held_state": held_state, "logits": logits, "reloaded": reloaded,
                    "loss": [s.loss for s in stats], "grad_norm": [s.grad_norm for s in stats]}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_fsdp_shards_the_weights_and_its_update_equals_the_update_on_one_rank(tmp_path):
    """Full fine-tuning under FSDP on 2 ranks: each rank holds half the weights and half of AdamW's
    state; after two steps the gathered weights and optimizer state equal one process's (fp64),
    the gathered state loads back into each rank's shard (a resume on any number of ranks), and the
    whole weights, gathered for generation, give one process's logits on every rank."""
    import torch.multiprocessing as mp

    model = _full_model()
    total = sum(p.numel() for p in model.parameters())
    optimizer, stats = _full_update(model)
    want_weights, want_state = model.state_dict(), optimizer.state_dict()
    with torch.no_grad():
        want_logits = model(torch.tensor([[1, 2, 3]])).logits
    mp.spawn(_fsdp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert got[1]["gathered"] is None  # only rank 0 receives the whole state
    weights, state = got[0]["gathered"]
    assert weights.keys() == want_weights.keys()
    assert weights["lm_head.weight"] is weights["model.embed_tokens.weight"]  # tied stays tied
    moved = 0.0
    for name, p in want_weights.items():
        torch.testing.assert_close(weights[name], p, rtol=1e-7, atol=1e-10)
        moved = max(moved, float((p - _full_model().state_dict()[name]).abs().max()))
    assert moved > 1e-3  # the weights move
    assert state["param_groups"] == want_state["param_groups"]
    for i, s in want_state["state"].items():
        for k, v in s.items():
            torch.testing.assert_close(state["state"][i][k], v, rtol=1e-7, atol=1e-12)
    for r in range(2):
        assert got[r]["held"] == total // 2  # every tensor of the tiny model splits evenly
        assert got[r]["held_state"] == total  # exp_avg and exp_avg_sq: half of 2 × the weights
        assert got[r]["reloaded"]  # the saved whole state, cut to this rank's shard, is what it held
        torch.testing.assert_close(got[r]["logits"], want_logits, rtol=1e-7, atol=1e-10)
        assert got[r]["loss"] == pytest.approx([s.loss for s in stats], rel=1e-9)
        assert got[r]["grad_norm"] == pytest.approx([s.grad_norm for s in stats], rel=1e-9)


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


def _weights(run: Path, n: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "checkpoints" / f"{n:06d}" / "model.safetensors")


def test_full_fine_tuning_on_two_ranks_is_sharded_and_resumes_on_one(tmp_path, azr, tiny_model):
    """`model.adapter: full` on 2 ranks: FSDP (each rank holds half the weights), the records and
    checkpoints of one rank, nothing written by rank 1; the run then resumes on a single process
    from the checkpoint the 2 ranks wrote, as if it had run on one all along."""
    runs = tmp_path / "runs"
    full = ("--config", TINY, "--set", "model.adapter=full", "--set", "update.lr=0.001")
    r = _torchrun(tmp_path, "loop", "--run", runs / "two", "--iters", "2", *full)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (tmp_path / "audit" / "rank-1.txt").exists(), (tmp_path / "audit" / "rank-1.txt").read_text()
    summary = json.loads((runs / "two" / "iters" / "000002" / "update" / "summary.json").read_text())
    assert summary["metrics"]["weights_held"] == 0.5
    assert azr("loop", "--run", runs / "one", "--iters", "3", *full).code == 0
    one, two = _records(runs / "one"), _records(runs / "two")
    assert {k: v for k, v in one.items() if "000003" not in k} == two
    assert azr("loop", "--run", runs / "two", "--iters", "3").code == 0  # one process, from the 2 ranks' checkpoint
    assert _records(runs / "two") == one
    want, got, start = _weights(runs / "one", 3), _weights(runs / "two", 3), _weights(runs / "one", 2)
    assert want.keys() == got.keys()
    for name, w in want.items():
        torch.testing.assert_close(got[name], w, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(want[k], start[k]) for k in want)  # the weights move


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


def test_each_rank_runs_its_own_vllm_engine_and_the_records_are_one_ranks(tmp_path, azr, tiny_model):
    """`model.engine: vllm` on 2 ranks: one engine per rank on its share of the prompts (data
    parallel); the records are those of one process with one engine, byte for byte (per-request
    seeds), and rank 1, which saves its own copy of the merged weights for its engine, writes
    nothing under the runs folder."""
    pytest.importorskip("vllm")
    runs = tmp_path / "runs"
    args = ("--config", TINY, "--iters", "2", "--set", "model.engine=vllm")
    r = _torchrun(tmp_path, "loop", "--run", runs / "two", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (tmp_path / "audit" / "rank-1.txt").exists(), (tmp_path / "audit" / "rank-1.txt").read_text()
    assert azr("loop", "--run", runs / "one", *args).code == 0
    one = _records(runs / "one")
    assert len(one) == 10 and _records(runs / "two") == one


def test_a_ranks_vllm_engine_starts_on_the_ranks_card_alone(monkeypatch):
    """Under several GPU ranks the engine core (a spawned process) starts seeing one card, that of
    LOCAL_RANK among those visible, as a world of one; the rank's own environment comes back."""
    from stages.model.engines.vllm import _this_ranks_card

    monkeypatch.setattr(parallel, "active", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "6")
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    with _this_ranks_card(cpu=False):
        seen = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "LOCAL_RANK", "RANK", "WORLD_SIZE",
                                               "VLLM_ENABLE_V1_MULTIPROCESSING")}
    assert seen == {"CUDA_VISIBLE_DEVICES": "5", "LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1",
                    "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    assert (os.environ["CUDA_VISIBLE_DEVICES"], os.environ["LOCAL_RANK"], os.environ["RANK"]) == ("4,5,6", "1", "3")
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ
    with _this_ranks_card(cpu=True):  # a CPU: the engine core runs in this process, nothing changes
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5,6"
