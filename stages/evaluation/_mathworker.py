"""The math answer checker's worker: a standalone script (stdlib, and the `math-verify` package when
it is installed), run by :mod:`stages.evaluation.mathcheck` in a process of its own, so that a
checker that hangs (symbolic simplification can) is killed from outside, never waited on.

Protocol: it prints one JSON line ``{"ready": true, "checker": NAME}`` once its imports are done,
then reads one JSON object per line, ``{"gold": TEXT, "pred": TEXT}``, and answers each with one
line ``{"ok": BOOL, "how": TEXT}``. It imports nothing from azr.

Equality, cheapest rule first:
1. the two answers are the same text after normalisation (``$``, ``\\boxed{}``, ``\\left``/``\\right``,
   ``\\dfrac``, ``\\text{}``, degrees, percent, spaces, a leading ``x =``, a trailing period);
2. both are plain numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, thousands commas) that are
   equal as exact fractions;
3. ``math_verify.verify`` (LaTeX parsed to sympy), when the package is there.
"""

from __future__ import annotations

import json
import re
import sys
from fractions import Fraction

_WRAPPERS = (r"\boxed", r"\fbox", r"\text", r"\textbf", r"\mathrm", r"\mbox")


def _strip_command(s: str, name: str) -> str:
    """Replace every ``name{X}`` by ``X`` (balanced braces)."""
    out = []
    i = 0
    while True:
        j = s.find(name + "{", i)
        if j < 0:
            out.append(s[i:])
            return "".join(out)
        out.append(s[i:j])
        k, depth = j + len(name) + 1, 1
        start = k
        while k < len(s) and depth:
            depth += {"{": 1, "}": -1}.get(s[k], 0)
            k += 1
        out.append(s[start : k - 1] if depth == 0 else s[start:])
        i = k


def normalize(text: str) -> str:
    s = str(text).strip()
    for a, b in (("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", ""), ("$", "")):
        s = s.replace(a, b)
    for name in _WRAPPERS:
        s = _strip_command(s, name)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""),
                 ("\\ ", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("^{\\circ}", ""),
                 ("^\\circ", ""), ("\\circ", ""), ("\\%", ""), ("%", ""), ("\\displaystyle", ""),
                 ("\\cdot", "*"), ("\\times", "*")):
        s = s.replace(a, b)
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"^[a-zA-Z]\w*=(?!=)", "", s)  # "x=5" -> "5"
    s = s.rstrip(".")
    return s


_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?")


def number(text: str) -> Fraction | None:
    """An exact value for a plain number: ``12``, ``-0.5``, ``3/4``, ``\\frac{3}{4}``, ``1,000``."""
    s = normalize(text)
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    m = re.fullmatch(r"([-+]?)\\frac\{([^{}]+)\}\{([^{}]+)\}", s) or re.fullmatch(r"([-+]?)\\frac(\d)(\d)", s)
    if m:
        num, den = number(m.group(2)), number(m.group(3))
        if num is None or den is None or den == 0:
            return None
        return -num / den if m.group(1) == "-" else num / den
    if "/" in s and s.count("/") == 1:
        a, b = s.split("/")
        num, den = number(a), number(b)
        if num is None or den is None or den == 0:
            return None
        return num / den
    if _NUMBER.fullmatch(s):
        try:
            return Fraction(s)
        except (ValueError, ZeroDivisionError):
            return None
    return None


def rule_equal(gold: str, pred: str) -> str | None:
    """The rule that makes them equal (``text``, ``number``), or None."""
    g, p = normalize(gold), normalize(pred)
    if g and g == p:
        return "text"
    a, b = number(gold), number(pred)
    if a is not None and b is not None and a == b:
        return "number"
    return None


def _dollars(s: str) -> str:
    s = s.strip()
    return s if s.startswith("$") or "\\boxed" in s else f"${s}$"


def main() -> None:
    try:
        from math_verify import parse, verify

        try:
            from importlib.metadata import version

            name = f"math-verify {version('math-verify')}"
        except Exception:
            name = "math-verify"
    except ImportError:
        parse = verify = None
        name = "azr-rules"
    print(json.dumps({"ready": True, "checker": name}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            gold, pred = str(req["gold"]), str(req["pred"])
            how = rule_equal(gold, pred)
            ok = how is not None
            if not ok and parse is not None and pred.strip():
                # the package's own alarm-based timeouts are off: the parent kills a hung worker
                ok = bool(verify(parse(_dollars(gold), parsing_timeout=None),
                                 parse(_dollars(pred), parsing_timeout=None), timeout_seconds=None))
                how = "math-verify" if ok else "different"
            reply = {"ok": ok, "how": how or "different"}
        except Exception as e:  # a checker failure is a wrong answer, said so
            reply = {"ok": False, "how": f"checker error: {type(e).__name__}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
