"""`azr eval`: held-out benchmarks for the base model or the policy of an iteration, and the
loop's periodic evaluation. Results go to ``<run>/eval/<suite>-<base|NNNNNN>.json``, atomically;
:func:`compare` reads them back into one table, :func:`paper_table` into the paper's Table 1.

- Decoding: greedy by default; ``samples`` completions per item at ``temperature`` give pass@k
  for every k up to ``samples`` (the unbiased estimate, see :func:`scoring.pass_at_k`).
- Pinned templates: each suite's prompt wording is fixed and versioned (``suites.SPECS``), and the
  model's own prompt format (R1 frame for a base model, its chat template for an instruct one:
  ``model.prompt_format``, the same for the base model and every checkpoint of a run) wraps it.
  Both, and a digest of a wrapped placeholder prompt, are recorded as ``template`` in every result
  file; comparing results made with different templates is refused.
- Repetition guard: a completion cut at max_new_tokens that loops is stopped at the loop and
  counted (``repetitions``; ``repetition`` on its result).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stages.errors import EvalError
from stages.evaluation.scoring import score, stop_repetition, summarize
from stages.evaluation.suites import SPECS, Item, load_items, template_probe
from stages.method.kinds import KINDS, solver_turns
from stages.method.tasks import derive_seed, iteration_tag
from stages.rundir.jsonl import read_json, write_json
from stages.rundir.run import Run


def item_turns(item: Item, demonstrations: bool) -> list[tuple[str, str]]:
    """The item as the run's solver would be asked it: an output or input prediction shows the
    solver's worked example first when the run trains with ``solve.demonstrations``."""
    if demonstrations and item.kind in KINDS:
        return solver_turns(item.kind, program=item.program, inputs=[item.input], outputs=[item.output])
    return [("user", item.prompt)]


def eval_path(run: Run, suite: str, iteration: int | None) -> Path:
    return run.path / "eval" / f"{suite}-{'base' if iteration is None else iteration_tag(iteration)}.json"


def template_record(suite: str, policy: Any, demonstrations: bool) -> dict[str, Any]:
    """How `suite` is put to this model: the suite's pinned template, the model's prompt format,
    the demonstrations switch (output/input prediction only) and a digest of the wrapped text."""
    spec = SPECS[suite]
    demos = demonstrations and spec.domain == "io"
    wrapped = policy.wrap_turns(item_turns(template_probe(suite), demos))
    return {"suite": spec.template, "prompt_format": policy.prompt_format, "demonstrations": demos,
            "digest": hashlib.sha256(wrapped.encode()).hexdigest()[:16]}


def _template_text(t: dict[str, Any] | None) -> str:
    if not t:
        return "unrecorded"
    return f"{t.get('suite')}+{t.get('prompt_format')}" + ("+demos" if t.get("demonstrations") else "") + \
        f" ({t.get('digest')})"


class _OwnSandbox:
    """A pool with a longer time limit, started on its first program (an evaluation whose answers
    hold no code never starts it)."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self._pool: Any = None

    def run_many(self, jobs: Any) -> Any:
        if self._pool is None:
            from sandbox.pool import open_sandbox

            self._pool = open_sandbox(self.cfg)
        return self._pool.run_many(jobs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def scoring_sandbox(sandbox: Any, suite: str) -> Any:
    """`sandbox`, or a pool of its own when the suite's hidden tests need longer than the run's
    sandbox.timeout_s, or threads (the caller closes what it did not pass in)."""
    spec = SPECS[suite]
    cfg = getattr(sandbox, "cfg", None)
    if cfg is None:
        return sandbox
    update: dict[str, Any] = {}
    if spec.timeout_s > cfg.timeout_s:
        update |= {"timeout_s": spec.timeout_s, "memory_mb": max(cfg.memory_mb, 2048)}
    if spec.max_processes > cfg.max_processes:
        update["max_processes"] = spec.max_processes
    return _OwnSandbox(cfg.model_copy(update=update)) if update else sandbox


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
    samples: int = 1,
    temperature: float = 0.0,
) -> dict[str, Any]:
    """Evaluate `policy` (the base model when `iteration` is None) on `suite`: greedy, or `samples`
    completions per item at `temperature`; write eval/<suite>-<base|iteration>.json atomically and
    return its content."""
    if samples < 1:
        raise EvalError("--samples must be at least 1")
    if samples > 1 and temperature <= 0:
        raise EvalError(f"--samples {samples} with --temperature 0 gives {samples} equal completions; "
                        "set --temperature > 0 (e.g. 0.6)")
    started = time.perf_counter()
    cfg = run.config
    items = load_items(suite, sandbox, cfg.sandbox, data, limit)
    prompts = [policy.wrap_turns(item_turns(i, cfg.solve.demonstrations)) for i in items]
    gen = policy.generate(
        [p for p in prompts for _ in range(samples)],
        max_new_tokens=cfg.eval.max_new_tokens, temperature=temperature, top_p=1.0,
        seed=derive_seed(cfg.run.seed, "eval", suite), batch_size=cfg.solve.generation_batch_size,
        progress=progress,
    )
    texts, repeated = [], []
    for c in gen.completions:
        text, looped = stop_repetition(c.text, c.finish)
        texts.append(policy.answer_prefix + text)
        repeated.append(looped)
    check_start = time.perf_counter()
    expanded = [i for i in items for _ in range(samples)]
    results, checker_name = score_suite(suite, expanded, texts, sandbox, cfg)
    for k, (r, c, looped) in enumerate(zip(results, gen.completions, repeated, strict=True)):
        r["sample"] = k % samples
        r["finish"] = c.finish
        r["repetition"] = looped
    from stages.evaluation.data import source_of

    out = {
        "suite": suite,
        "domain": SPECS[suite].domain,
        "iteration": iteration,
        "model": cfg.model.name,
        "adapter_dir": None if iteration is None else str(run.checkpoint_dir(iteration)),
        "data": str(data) if data else None,
        "data_source": source_of(data),
        "limit": limit,
        "temperature": temperature,
        "template": template_record(suite, policy, cfg.solve.demonstrations),
        "checker": checker_name,
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


def score_suite(suite: str, items: list[Item], texts: list[str], sandbox: Any, cfg: Any
                ) -> tuple[list[dict[str, Any]], str | None]:
    """Each completion scored against its item (a maths suite through a maths checker, whose name
    is returned; the rest in the suite's scoring sandbox)."""
    scorer = scoring_sandbox(sandbox, suite)
    try:
        if SPECS[suite].domain != "math":
            return score(items, texts, scorer, cfg.sandbox, strict=cfg.reward.strict), None
        from stages.evaluation.mathcheck import MathChecker

        with MathChecker() as checker:
            return score(items, texts, scorer, cfg.sandbox, strict=cfg.reward.strict, checker=checker), checker.name
    finally:
        if scorer is not sandbox:
            scorer.close()


def policy_of(run: Run, iteration: int | None) -> Any:
    """The base model (None), or the model after iteration N's update (its checkpoint)."""
    from stages.model.policy import load_policy

    if iteration is None:
        return load_policy(run.config.model, None, trainable=False, engine_options=run.config.engine_options())
    ckpt = run.checkpoint_dir(iteration)
    if not (ckpt / "meta.json").is_file():
        kept = run.checkpoints()
        raise EvalError(
            f"iteration {iteration} has no checkpoint in {run.path / 'checkpoints'}; "
            f"kept: {', '.join(map(str, kept)) or 'none'} (or use --base)"
        )
    return load_policy(run.config.model, adapter_dir=ckpt, trainable=False,
                       engine_options=run.config.engine_options())


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

KEEP = ("score", "score_strict", "format_ok", "items", "samples", "temperature", "limit", "seconds", "by_kind",
        "pass_at_k", "score_base", "repetitions", "template", "created")


def saved(run: Run, iterations: list[int] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """{suite: {"base"|"N": summary}} from eval/*.json (`iterations` limits the iteration columns)."""
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
        table.setdefault(data["suite"], {})["base" if it is None else str(it)] = {k: data.get(k) for k in KEEP}
    return table


def check_templates(table: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Refuse to compare columns of a suite evaluated with different templates (one line)."""
    for suite, cols in table.items():
        seen: dict[str, str] = {}
        for col, summary in cols.items():
            seen.setdefault(_template_text(summary.get("template")), col)
        if len(seen) > 1:
            (a, ca), (b, cb) = list(seen.items())[:2]
            who = lambda c: "base" if c == "base" else f"iteration {c}"  # noqa: E731
            raise EvalError(f"{suite}: {who(ca)} was prompted with {a} but {who(cb)} with {b}; "
                            f"results made with different templates are not compared (re-evaluate one of them)")


def compare(run: Run, iterations: list[int] | None = None) -> dict[str, Any]:
    """Saved scores, {"columns": ["base", 1, 3], "suites": {suite: {"base"|"1": summary}}};
    `iterations` chooses the iteration columns (default: every one evaluated)."""
    table = saved(run, iterations)
    if not table:
        raise EvalError(f"no evaluations in {run.path / 'eval'}; run `azr eval --run {run.path} --base` first")
    check_templates(table)
    its = sorted(iterations) if iterations else sorted(
        {int(c) for cols in table.values() for c in cols if c != "base"})
    return {"columns": ["base", *its], "suites": table}


PAPER_CODE = ("humaneval-plus", "mbpp-plus", "livecodebench")
PAPER_MATH = ("aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench")
PAPER_HEADINGS = {"humaneval-plus": "HEval+", "mbpp-plus": "MBPP+", "livecodebench": "LCB", "aime24": "AIME24",
                  "aime25": "AIME25", "amc23": "AMC23", "math500": "MATH500", "minerva": "Minerva",
                  "olympiadbench": "Olympiad", "code_avg": "CAvg", "math_avg": "MAvg", "overall": "AVG"}
"""The paper's Table 1 columns (arXiv 2505.03335): code, math, their averages and the overall one."""


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def paper_table(run: Run, iterations: list[int] | None = None) -> dict[str, Any]:
    """The paper's table: per model (the base, then each evaluated iteration) the score of each
    code and math benchmark (pass@1: the mean over samples), the code average, the math average
    and the overall average (the mean of the two, as the paper's AVG). A suite without a result
    file is missing (null), never zero; an average is over the suites present (``*_suites``
    says how many) and null when none is."""
    table = saved(run, iterations)
    check_templates(table)
    its = sorted(iterations) if iterations else sorted(
        {int(c) for s in (*PAPER_CODE, *PAPER_MATH) for c in table.get(s, {}) if c != "base"})
    rows = []
    for col in ["base", *map(str, its)]:
        scores = {s: (table.get(s, {}).get(col) or {}).get("score") for s in (*PAPER_CODE, *PAPER_MATH)}
        code = [v for s, v in scores.items() if s in PAPER_CODE and v is not None]
        math_ = [v for s, v in scores.items() if s in PAPER_MATH and v is not None]
        code_avg, math_avg = _mean(code), _mean(math_)
        rows.append({
            "model": "base" if col == "base" else f"iteration {col}",
            "iteration": None if col == "base" else int(col),
            "scores": scores,
            "code_avg": code_avg, "code_suites": len(code),
            "math_avg": math_avg, "math_suites": len(math_),
            "overall": None if code_avg is None or math_avg is None else (code_avg + math_avg) / 2,
            "missing": [s for s, v in scores.items() if v is None],
        })
    if not any(r["code_suites"] or r["math_suites"] for r in rows):
        raise EvalError(f"no results for the paper's suites in {run.path / 'eval'} ("
                        f"{', '.join((*PAPER_CODE, *PAPER_MATH))}); run `azr eval --run {run.path} --base --suite math500` "
                        "(and the others) first")
    return {
        "table": "paper",
        "metric": "pass@1 (mean over samples), as a fraction",
        "columns": [*PAPER_CODE, *PAPER_MATH, "code_avg", "math_avg", "overall"],
        "headings": PAPER_HEADINGS,
        "code": list(PAPER_CODE),
        "math": list(PAPER_MATH),
        "rows": rows,
    }
