"""Math answers: reading the final answer out of a completion (here, pure text work) and checking
it against the gold answer in a separate process under a hard time limit (symbolic checkers are
known to hang): :class:`MathChecker` runs ``_mathworker.py`` with this interpreter, gives each
check ``timeout_s`` seconds, and kills and restarts the worker when one runs over (the answer then
counts as wrong, with ``checker timeout`` as the reason).
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from stages.errors import EvalError
from stages.method.parsers import extract_answer

WORKER = Path(__file__).with_name("_mathworker.py")
CHECK_TIMEOUT_S = 10.0
"""Longest a single equality check may take before the worker is killed."""
START_TIMEOUT_S = 120.0
"""Longest the worker may take to import its checker (sympy and math-verify take ~1 s)."""


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces."""
    best = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, k = 1, m.end()
        while k < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            k += 1
        if depth == 0:
            best = text[m.end() : k - 1]
    return best.strip() if best is not None else None


def extract_math_answer(text: str) -> str | None:
    """The final answer: the last ``\\boxed{}`` inside the last ``<answer>``, else that answer's
    text (a bare value, as the paper's layout has it), else the last ``\\boxed{}`` anywhere."""
    answer = extract_answer(text)
    if answer is not None:
        boxed = last_boxed(answer)
        bare = answer.strip().strip("`").strip()
        return boxed if boxed is not None else (bare or None)
    return last_boxed(text)


def math_format_ok(text: str, strict: bool) -> tuple[bool, str | None]:
    """The answer layout: an ``<answer>`` (and, when strict, a closed ``<think>`` before it)."""
    if extract_answer(text) is None:
        return False, "no <answer> block" if last_boxed(text) is None else "boxed answer outside <answer>"
    if strict and not re.search(r"<think>.*?</think>", text, re.S):
        return False, "no <think> … </think>"
    return True, None


class MathChecker:
    """A checker process; use as a context manager. Not thread-safe."""

    def __init__(self, timeout_s: float = CHECK_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.name = "?"
        self._buf = b""

    def __enter__(self) -> MathChecker:
        self._start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self.proc = subprocess.Popen([sys.executable, "-I", str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self._buf = b""
        hello = self._line(START_TIMEOUT_S)
        if hello is None or not hello.get("ready"):
            self.close()
            raise EvalError(f"the math answer checker ({WORKER.name}) did not start; "
                            "is the math-verify package installed? (bash scripts/setup.sh)")
        self.name = str(hello.get("checker", "?"))

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    f.close()
            self.proc = None

    def _line(self, timeout_s: float) -> dict[str, Any] | None:
        """The worker's next line as JSON, or None when it took longer than `timeout_s` or died."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            out = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        return out if isinstance(out, dict) else None

    def check(self, gold: str, pred: str) -> tuple[bool, str]:
        """(equal, how) for one answer; a check over the time limit is (False, "checker timeout")."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(orjson.dumps({"gold": gold, "pred": pred}) + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            return False, "checker died"
        reply = self._line(self.timeout_s)
        if reply is None:
            self.close()  # hung or died: killed; the next check starts a fresh worker
            return False, "checker timeout"
        return bool(reply.get("ok")), str(reply.get("how", ""))

    def check_many(self, pairs: list[tuple[str, str]]) -> list[tuple[bool, str]]:
        return [self.check(g, p) for g, p in pairs]
