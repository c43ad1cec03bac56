"""The harness scripts of the code suites with hidden tests (:mod:`stages.evaluation.codebench`).

Each is the text of a Python script that runs *in the sandbox* beside the answer: it reads the
item's data from ``__AZR_DATA__`` (:func:`stages.evaluation.codebench.fill` puts it there as a
string literal) and the answer's code from ``__AZR_CANDIDATE__``, runs the tests, and prints the
pass mark (and EvalPlus's base mark) when they pass. Plain text here: nothing of it runs on the
host.

- :data:`EVALPLUS_HARNESS`: HumanEval+ and MBPP+ (expected outputs from the canonical solution,
  each call under its own time limit, EvalPlus's comparisons and special oracles).
- :data:`LCB_HARNESS`: LiveCodeBench (stdin/stdout programs compared line by line, numbers as
  decimals, or a ``Solution`` method called on JSON arguments; the private tests are decoded here,
  in the sandbox, never on the host).
"""

EVALPLUS_HARNESS = r'''
import copy as _copy, json as _json, math as _math, signal as _signal, sys as _sys, time as _time

_D = _json.loads(__AZR_DATA__)
_OUT = _sys.stdout


class _Sink:
    def write(self, s):
        return len(s)

    def flush(self):
        pass


class _Late(Exception):
    pass


def _alarm(*_):
    raise _Late("time limit")


_signal.signal(_signal.SIGALRM, _alarm)


def _timed(fn, args, limit):
    _sys.stdout = _sys.stderr = _Sink()
    _signal.setitimer(_signal.ITIMER_REAL, limit)
    try:
        return fn(*args)
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        _sys.stdout, _sys.stderr = _OUT, _sys.__stderr__


def _tuples(x):
    return tuple(_tuples(i) for i in x) if isinstance(x, list) else x


def _mbpp_inputs(task, inputs):
    """EvalPlus's MBPP+ deserialization: what JSON cannot hold, rebuilt per task."""
    n = int(task.split("/")[-1])
    if n in (2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630,
             726, 740, 744, 809):
        return [[tuple(a) for a in inp] for inp in inputs]
    if n in (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780):
        return [[[tuple(b) for b in a] for a in inp] for inp in inputs]
    if n in (75, 413, 444, 753):
        return [[[tuple(b) for b in inp[0]], inp[1]] for inp in inputs]
    if n in (106, 750):
        return [[inp[0], tuple(inp[1])] for inp in inputs]
    if n == 115:
        return [[[set(i) if isinstance(i, list) and i else {} for i in inp[0]]] for inp in inputs]
    if n == 124:
        return [(float(inp[0]), complex(inp[1])) for inp in inputs]
    if n in (250, 405, 446, 617, 720, 763, 808):
        return [[tuple(inp[0]), inp[1]] for inp in inputs]
    if n in (259, 401, 445):
        return [[tuple(tuple(b) for b in a) for a in inp] for inp in inputs]
    if n == 278:
        return [[tuple(tuple(i) if isinstance(i, list) else i for i in inp[0])] for inp in inputs]
    if n == 307:
        return [[tuple(inp[0]), inp[1], inp[2]] for inp in inputs]
    if n == 722:
        return [[{k: tuple(v) for k, v in inp[0].items()}, *inp[1:]] for inp in inputs]
    if n == 252:
        return [[complex(inp[0])] for inp in inputs]
    if n in (580, 615, 791):
        return [_tuples(inp) for inp in inputs]
    return inputs


def _floats(x):
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(i, float) for i in x)


def _close(out, exp, atol):
    """numpy.allclose(out, exp, rtol=1e-07, atol=atol), for numbers and (nested) sequences."""
    if isinstance(exp, (list, tuple)):
        return (isinstance(out, (list, tuple)) and len(out) == len(exp)
                and all(_close(a, b, atol) for a, b in zip(out, exp)))
    try:
        return abs(out - exp) <= atol + 1e-07 * abs(exp)
    except Exception:
        return False


def _poly(xs, x):
    return sum(c * _math.pow(x, i) for i, c in enumerate(xs))


def _surface_area(base_edge, height):
    slant = _math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 4 * (base_edge * slant) / 2)


def _digit_distance(a, b):
    x, y = str(a), str(b)
    w = max(len(x), len(y))
    return sum(abs(int(p) - int(q)) for p, q in zip(x.zfill(w), y.zfill(w)))


_SET_EQ = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
           "intersection_array", "find_dissimilar", "Diff"}
_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}


def _same(out, exp, inp, atol):
    entry, mbpp = _D["entry_point"], _D["dataset"] == "mbpp"
    exact = out == exp
    if mbpp and entry == "are_equivalent":
        return True
    if mbpp and entry == "sum_div":
        exact = exact or out == 0
    elif mbpp and entry == "surface_Area":
        exact = exact or abs(out - _surface_area(*inp)) <= atol
    elif mbpp and entry == "digit_distance_nums":
        exact = exact or out == _digit_distance(*inp)
    elif mbpp and entry in _SET_EQ:
        exact = set(out) == set(exp)
    elif mbpp and entry in _NOT_NONE:
        exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    if not mbpp and entry == "find_zero":
        return abs(_poly(*inp, out)) <= atol
    if atol == 0 and _floats(exp):
        atol = 1e-6
    if not exact and atol != 0:
        return type(out) == type(exp) and _close(out, exp, atol)  # noqa: E721
    return bool(exact)


def _main():
    inputs = _D["base_input"] + _D["plus_input"]
    if _D["dataset"] == "mbpp":
        inputs = _mbpp_inputs(_D["task_id"], inputs)
    ref = {"__name__": "__reference__"}
    exec(compile(_D["reference"], "<reference>", "exec"), ref)
    expected, limits = [], []
    for inp in inputs:
        start = _time.perf_counter()
        expected.append(_timed(ref[_D["entry_point"]], _copy.deepcopy(inp), 60.0))
        limits.append(max(_D["min_call_s"], 4 * (_time.perf_counter() - start)))
    cand = {"__name__": "__candidate__"}
    try:
        _timed(lambda: exec(compile(__AZR_CANDIDATE__, "<answer>", "exec"), cand), (), 10.0)
    except BaseException as e:
        raise SystemExit(f"the answer does not run: {type(e).__name__}: {e}"[:300])
    fn = cand.get(_D["entry_point"])
    if not callable(fn):
        raise SystemExit(f"the answer defines no function {_D['entry_point']}")
    n_base = len(_D["base_input"])
    for i, (inp, exp, limit) in enumerate(zip(inputs, expected, limits)):
        if i == n_base:
            print(_D["base_mark"], file=_OUT, flush=True)
        which = "base" if i < n_base else "plus"
        try:
            out = _timed(fn, _copy.deepcopy(inp), limit)
        except BaseException as e:
            raise SystemExit(f"{which} test {i}: {type(e).__name__}: {e}"[:300])
        try:
            ok = _same(out, exp, inp, _D["atol"])
        except Exception:
            ok = False
        if not ok:
            raise SystemExit(f"{which} test {i}: expected {exp!r:.80} got {out!r:.80}")
    if n_base == len(inputs):
        print(_D["base_mark"], file=_OUT, flush=True)
    print(_D["pass_mark"], file=_OUT, flush=True)


_main()
'''


LCB_HARNESS = r'''
import base64 as _b64, io as _io, json as _json, signal as _signal, sys as _sys
from decimal import Decimal as _Dec, InvalidOperation as _Bad

_D = _json.loads(__AZR_DATA__)
_OUT, _IN = _sys.stdout, _sys.stdin


class _Late(Exception):
    pass


def _alarm(*_):
    raise _Late("time limit")


_signal.signal(_signal.SIGALRM, _alarm)


def _tests():
    tests = list(_D["public"])
    if _D["private"] is not None:
        tests += _D["private"]
    elif _D["private_blob"] is not None:  # decoded here, in the sandbox, never on the host
        import pickle, zlib

        raw = pickle.loads(zlib.decompress(_b64.b64decode(_D["private_blob"].encode("utf-8"))))
        tests += _json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return tests


def _same_lines(got, want):
    a, b = got.strip().split("\n"), want.strip().split("\n")
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        x, y = x.strip(), y.strip()
        if x == y:
            continue
        p, q = x.split(), y.split()
        if len(p) != len(q):
            return False
        try:
            if any(_Dec(s) != _Dec(t) for s, t in zip(p, q)):
                return False
        except (_Bad, ValueError):
            return False
    return True


class _Capture(_io.StringIO):
    def __init__(self, cap):
        super().__init__()
        self.cap = cap

    def write(self, s):
        if self.tell() + len(s) > self.cap:
            raise _Late("output too long")
        return super().write(s)


_HEADER = compile(
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n"
    "from random import *\nfrom statistics import *\nfrom itertools import *\nfrom functools import *\n"
    "from operator import *\nfrom io import *\nfrom sys import *\nfrom json import *\nfrom builtins import *\n"
    "from typing import *\nimport string, re, datetime, collections, heapq, bisect, copy, math, random\n"
    "import statistics, itertools, functools, operator, io, sys, json\n", "<imports>", "exec")


def _globals(given="", name="__main__"):
    """A fresh module namespace with the imports LiveCodeBench's runner gives every answer; exit
    and quit (the jail's interpreter runs without `site`) and open(0) (stdin) work as in `python`."""
    real_open = open

    def _open(file, mode="r", *args, **kwargs):
        if file == 0:
            raw = _io.BytesIO(given.encode("utf-8"))
            return raw if "b" in mode else _io.TextIOWrapper(raw, encoding="utf-8")
        return real_open(file, mode, *args, **kwargs)

    ns = {"__name__": name, "__builtins__": __builtins__}
    exec(_HEADER, ns)
    ns.update(exit=_sys.exit, quit=_sys.exit, open=_open)
    return ns


def _run_stdin(code, given, limit, cap):
    out = _Capture(cap)
    _sys.stdin = _io.TextIOWrapper(_io.BytesIO(given.encode("utf-8")), encoding="utf-8")
    _sys.stdout = out
    _signal.setitimer(_signal.ITIMER_REAL, limit)
    try:
        exec(code, _globals(given))
    except SystemExit:
        pass
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        _sys.stdin, _sys.stdout = _IN, _OUT
    return out.getvalue()


def _call(fn, args, limit):
    _signal.setitimer(_signal.ITIMER_REAL, limit)
    try:
        return fn(*args)
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)


def _main():
    source = __AZR_CANDIDATE__
    code = compile(source, "<answer>", "exec")
    tests = _tests()
    fn = None
    for i, t in enumerate(tests):
        kind = "public" if i < len(_D["public"]) else "private"
        try:
            if t.get("testtype") == "functional":
                if fn is None:
                    ns = _globals(name="__candidate__")
                    _call(lambda: exec(code, ns), (), _D["call_s"])
                    owner = ns["Solution"]() if "Solution" in ns else None
                    fn = getattr(owner, _D["func_name"]) if owner is not None else ns[_D["func_name"]]
                args = [_json.loads(line) for line in t["input"].split("\n")]
                got = _call(fn, args, _D["call_s"])
                if isinstance(got, tuple):
                    got = list(got)
                ok = got == _json.loads(t["output"])
                shown = repr(got)
            else:
                got = _run_stdin(code, t["input"], _D["call_s"], 2 * len(t["output"]) + 65536)
                ok = _same_lines(got, t["output"])
                shown = repr(got)
        except BaseException as e:
            raise SystemExit(f"{kind} test {i}: {type(e).__name__}: {e}"[:300])
        if not ok:
            raise SystemExit(f"{kind} test {i}: wrong output {shown:.80}")
    print(_D["pass_mark"], file=_OUT, flush=True)


_main()
'''
