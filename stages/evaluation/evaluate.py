"""`azr eval`: held-out benchmarks for the base model or the policy of an iteration, and the
loop's periodic evaluation. Results go to ``<run>/eval/<suite>-<base|NNNNNN>.json``, atomically;
:func:`compare` reads them back into one table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stages.errors import EvalError
from stages.evaluation.scoring import score, summarize
from stages.evaluation.suites import Item, load_items
from stages.method.prompts import solver_turns
from stages.method.tasks import derive_seed, iteration_tag
from stages.rundir.jsonl import read_json, write_json
from stages.rundir.run import Run


def item_turns(item: Item, demonstrations: bool) -> list[tuple[str, str]]:
    """The item as the run's solver would be asked it: an output or input prediction shows the
    solver's worked example first when the run trains with ``solve.demonstrations``."""
    if demonstrations and item.kind in ("deduction", "abduction"):
        return solver_turns(item.kind, program=item.program, inputs=[item.input], outputs=[item.output])
    return [("user", item.prompt)]


def eval_path(run: Run, suite: str, iteration: int | None) -> Path:
    return run.path / "eval" / f"{suite}-{'base' if iteration is None else iteration_tag(iteration)}.json"


def evaluate(
    run: Run,
    policy: Any,
    sandbox: Any,
    suite: str,
    iteration: int | None,
    *,
    limit: int | None = None,
    data: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate `policy` (the base model when `iteration` is None) on `suite` with greedy
    decoding; write eval/<suite>-<base|iteration>.json atomically and return its content."""
    started = time.perf_counter()
    cfg = run.config
    items = load_items(suite, sandbox, cfg.sandbox, data, limit)
    gen = policy.generate(
        [policy.wrap_turns(item_turns(i, cfg.solve.demonstrations)) for i in items],
        max_new_tokens=cfg.eval.max_new_tokens, temperature=0.0, top_p=1.0,
        seed=derive_seed(cfg.run.seed, "eval", suite), batch_size=cfg.solve.generation_batch_size,
        progress=progress,
    )
    check_start = time.perf_counter()
    results = score(items, [policy.answer_prefix + t for t in gen.texts], sandbox, cfg.sandbox,
                    strict=cfg.reward.strict)
    out = {
        "suite": suite,
        "iteration": iteration,
        "model": cfg.model.name,
        "adapter_dir": None if iteration is None else str(run.checkpoint_dir(iteration)),
        "data": str(data) if data else None,
        "limit": limit,
        **summarize(results),
        "seconds": round(time.perf_counter() - started, 3),
        "generate_s": round(gen.seconds, 3),
        "check_s": round(time.perf_counter() - check_start, 3),
        "tokens": gen.tokens,
        "max_new_tokens": cfg.eval.max_new_tokens,
        "prompt_format": policy.prompt_format,
        "demonstrations": cfg.solve.demonstrations,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": results,
    }
    path = eval_path(run, suite, iteration)
    path.parent.mkdir(exist_ok=True)
    write_json(path, out)
    return out


def policy_of(run: Run, iteration: int | None) -> Any:
    """The base model (None), or the model after iteration N's update (its checkpoint)."""
    from stages.model.policy import load_policy

    if iteration is None:
        return load_policy(run.config.model, None, trainable=False, vllm=run.config.vllm)
    ckpt = run.checkpoint_dir(iteration)
    if not (ckpt / "meta.json").is_file():
        kept = run.checkpoints()
        raise EvalError(
            f"iteration {iteration} has no checkpoint in {run.path / 'checkpoints'}; "
            f"kept: {', '.join(map(str, kept)) or 'none'} (or use --base)"
        )
    return load_policy(run.config.model, adapter_dir=ckpt, trainable=False, vllm=run.config.vllm)


def maybe_evaluate(run: Run, n: int, session_or_policy: Any,
                   progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """The loop's hook, after iteration n's update: evaluate cfg.eval.suites (cfg.eval.limit
    items each) when cfg.eval.every divides n. Takes the loop's Session (its in-memory policy is
    used when it is the one after n's update, else n's checkpoint is loaded) or a Policy. Returns
    the summaries written (no per-item results); [] when it is not an evaluation iteration."""
    e = run.config.eval
    if not e.every or n % e.every:
        return []
    summaries = []

    def each(policy: Any, sandbox: Any) -> None:
        for suite in e.suites:
            out = evaluate(run, policy, sandbox, suite, n, limit=e.limit, progress=progress)
            summaries.append({k: v for k, v in out.items() if k != "results"})

    if hasattr(session_or_policy, "policy_for"):  # a Session
        s = session_or_policy
        policy = s.policy if s.policy is not None and s.policy_iter == n + 1 else policy_of(run, n)
        each(policy, s.sandbox())
    else:
        from sandbox.pool import open_sandbox

        with open_sandbox(run.config.sandbox) as sandbox:
            each(session_or_policy, sandbox)
    return summaries


# ----------------------------------------------------------------------------- comparing


def compare(run: Run, iterations: list[int] | None = None) -> dict[str, Any]:
    """Saved scores, {"columns": ["base", 1, 3], "suites": {suite: {"base"|"1": summary}}};
    `iterations` chooses the iteration columns (default: every one evaluated)."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted((run.path / "eval").glob("*.json")):
        if path.name.startswith("."):
            continue
        data = read_json(path)
        if not isinstance(data, dict) or "suite" not in data:
            continue
        it = data.get("iteration")
        if iterations is not None and it is not None and it not in iterations:
            continue
        keep = ("score", "score_strict", "format_ok", "items", "limit", "seconds", "by_kind", "created")
        table.setdefault(data["suite"], {})["base" if it is None else str(it)] = {k: data.get(k) for k in keep}
    if not table:
        raise EvalError(f"no evaluations in {run.path / 'eval'}; run `azr eval --run {run.path} --base` first")
    its = sorted(iterations) if iterations else sorted(
        {int(c) for cols in table.values() for c in cols if c != "base"})
    return {"columns": ["base", *its], "suites": table}
