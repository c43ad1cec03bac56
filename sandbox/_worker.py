"""The long-lived worker that runs inside one jail (stdlib only; never imported by the host).

The host reads this file as text and starts it with `python -I -S -c <source>`, so it cannot
import anything from `sandbox`. Protocol on fds 0/1: 4-byte big-endian length + a JSON object.
The worker first sends a hello; then each request frame carries the limits and a batch of jobs
(`{"limits": {...}, "jobs": [[source, args], ...]}`), and the worker answers every job with one
reply frame, in order; the replies of quick jobs are written together (at the end of the request
frame, or 5 ms after the first of them at the latest), so the host wakes once for several.

Who decides what. For each job the worker (the parent) parses the argument list (literals only)
and compiles the source, then forks a child that lowers its own rlimits and runs the program.
The *status* of a job is decided here, in the parent, from what only the parent observes: the
child's exit status or signal, the parent's own wall-clock timer, its own caps on stdout, stderr
and the result channel, and the child's result frame. User code runs only in the child, a
separate process it cannot leave: no ptrace (seccomp), no /proc, and the worker is pid 1 of the
jail's pid namespace, so the child's signals cannot reach it.

The result frame. The child reports on fd 3 one frame: a per-job random nonce (16 bytes from
os.urandom), a kind byte (value, error, memory, system exit, not-literal, too-long), a 4-byte
length and UTF-8 text. It never carries a status. The epilogue that writes it is a closure that
the parent builds before the fork, in a process where user code never runs: the nonce and every
builtin it uses (type, repr, len, os.write, os._exit, ...) are captured in its cells, so patching
module globals, `builtins` or this worker's own functions from the child changes nothing it does,
and no frame of the child holds the nonce (the parent takes its own copy after the fork). A
frame that is missing, malformed, of the wrong length, with a wrong nonce, or preceded or
followed by anything else (bytes the program wrote to fd 3, say) makes the job an `error`. The
parent checks a value text again itself (length cap, `ast.literal_eval`, nesting depth), so a
value that reaches the host is always a literal within the caps.

The limit, honestly: a value is necessarily reported by the process that computed it, and that
process holds its own nonce (in the epilogue's closure cells). A program without the
introspection the static checks forbid (frames, closures, gc, the `sys` and `os` modules) cannot
produce a frame at all. A program that has it (a static-check bypass, or the tests, which run
programs with no static check) can read its nonce and report a literal of its choice (within the
caps) as its value: it can lie about its own return value, and that is all. It can never turn a
timeout, a crash, a signal or an output over its caps into `ok`, get a text that is not a literal
or is too long past the parent, reach the host's pipes (the child holds none of them), or touch
another job: see "The OS boundary" below.

The OS boundary. Right after the fork the child drops every other job's source, input and reply
that the worker's memory held (the request's job list, the replies not yet sent): what its frames
can still reach is its own job. The jail's seccomp policy refuses every call that acts on another
process by pid (prlimit64, setpriority, sched_set*, ioprio_set for any pid but 0, i.e. itself;
pidfd_getfd, kcmp, process_madvise and friends always), so a program cannot lower its worker's
limits or priority for the programs after it. A program's signals do not reach the worker (pid 1 of
its pid namespace, where the kernel drops signals without a handler; SIGINT is ignored). And the worker checks its own
rlimits, nice value, scheduling policy and CPU set before each program and after it: a change
(a backend without seccomp, or a hole in the policy) makes the job that did it an `error` and the
worker exits, to be replaced by the pool; so does a child that could not set its limits (kind
`S`, the worker is not fit to run programs): the job then runs again on another worker.

After each job the worker kills every other process in the jail: the worker is pid 1 in its pid
namespace, so `kill(-1, SIGKILL)` reaches exactly the jail's other processes. Outside a pid
namespace (the unsafe-local backend) it only kills the child's session, never `kill(-1)`.
"""

import ast
import contextlib
import gc
import json
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback
import warnings

_NONCE_BYTES = 16
_HEAD = _NONCE_BYTES + 1 + 4  # nonce, kind, payload length
_KINDS = b"VEMXLGS"  # value, error, memory, system exit, not a literal, too long, setup failed
_ERROR_CHARS = 500
_COALESCE_S = 0.005  # longest a finished job's reply waits for the next ones to go with it
_EMPTY_STDIN = None  # the read end of a pipe whose write end is closed: an empty stdin for every child


def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _recv():
    head = _read_exact(0, 4)
    if head is None:
        return None
    body = _read_exact(0, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def _send(obj):
    _send_all([obj])


_PENDING = []  # finished jobs' replies not sent yet
_PENDING_UNTIL = [0.0]  # when they must go at the latest
_BATCH = []  # the job list of the request frame being served (a child clears it: other jobs' data)
_BASELINE = []  # the worker's own limits and priority at start (see _own_state)
_RLIMITS = tuple(getattr(resource, name) for name in sorted(dir(resource)) if name.startswith("RLIMIT_"))


def _flush_replies():
    _send_all(_PENDING)
    _PENDING.clear()


def _send_all(objs):
    chunks = []
    for obj in objs:
        for key, text in obj.items():  # only valid text goes to the host (no lone surrogates)
            if type(text) is str and not text.isascii():
                obj[key] = text.encode("utf-8", "replace").decode("utf-8")
        body = json.dumps(obj).encode()
        chunks += (struct.pack(">I", len(body)), body)
    data = b"".join(chunks)
    while data:
        data = data[os.write(1, data):]


# --- the parent's own checks (user code never runs in this process) ------------------------------
def _bracket_depth(text):
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    return deepest


def _parse_args(text, limits):
    """Parse an argument list like `1, [2, 3]` into values: literals only, same rule as the host."""
    if len(text) > limits["max_input_chars"] or "\x00" in text or _bracket_depth(text) > limits["max_nesting"]:
        raise ValueError("input over the size or nesting caps")
    call = ast.parse("f(" + text + "\n)", mode="eval").body
    func = getattr(call, "func", None)
    if not isinstance(call, ast.Call) or call.keywords or not isinstance(func, ast.Name) or func.col_offset:
        raise ValueError("input is not a plain argument list")
    return [ast.literal_eval(arg) for arg in call.args]


def _literal_depth(value, max_depth):
    """Depth of a value made only of exact builtin literal types, or None when it is not one."""
    atoms = (type(None), bool, int, float, complex, str, bytes)
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        kind = type(item)
        if depth > max_depth:
            return None
        if kind in atoms:
            continue
        if kind is dict:
            stack.extend((child, depth + 1) for pair in item.items() for child in pair)
        elif kind is list or kind is tuple or kind is set:
            stack.extend((child, depth + 1) for child in item)
        else:
            return None
    return deepest


def _value_problem(text, limits):
    """Why a value text reported by a child is not acceptable, as (status, detail); None if it is."""
    if len(text) > limits["max_value_chars"]:
        return "output_too_long", f"repr has {len(text)} chars"
    if text.isdigit() and len(text) < 4000:
        return None  # a non-negative int: the common case, no parse needed
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return "output_not_literal", "the value's repr is not a Python literal"
    if _literal_depth(value, limits["max_depth"]) is None:
        return "output_not_literal", "the value nests deeper than the cap"
    return None


# --- the child ------------------------------------------------------------------------------------
def _rlimits(limits):
    """The (resource, value) pairs a child sets on itself, computed once per request frame."""
    mb = 1024 * 1024
    values = [
        (resource.RLIMIT_CPU, int(limits["timeout"]) + 1),
        (resource.RLIMIT_NOFILE, limits["nofile"]),
        (resource.RLIMIT_FSIZE, limits["fsize_mb"] * mb),
        (resource.RLIMIT_CORE, 0),
    ]
    if limits["memory_mb"] > 0:
        values.append((resource.RLIMIT_AS, limits["memory_mb"] * mb))
    if limits["nproc"] > 0:
        values.append((resource.RLIMIT_NPROC, limits["nproc"]))
    return tuple((which, (value, value)) for which, value in values)


def _literal_checker():
    """The epilogue's literal test, built at start-up: the builtins it uses are captured in its
    closure cells, so patching them from the child changes nothing it does."""
    _type, _id, _set = type, id, set
    _dict_items = dict.items
    _none, _bool, _int, _float, _complex, _str, _bytes = type(None), bool, int, float, complex, str, bytes
    _list, _tuple, _set_type, _dict = list, tuple, set, dict

    def is_literal(value, max_depth):
        # Identity tests only: a metaclass with a lying __eq__ cannot pass for a builtin type.
        stack = [(value, 0)]
        seen = _set()
        while stack:
            item, depth = stack.pop()
            kind = _type(item)
            if depth > max_depth:
                return False
            if kind is _str or kind is _int or kind is _bool or kind is _none or kind is _float \
                    or kind is _complex or kind is _bytes:
                continue
            if kind is _list or kind is _tuple or kind is _set_type or kind is _dict:
                if _id(item) in seen:
                    return False
                seen.add(_id(item))
                if kind is _dict:
                    for key, val in _dict_items(item):
                        stack.append((key, depth + 1))
                        stack.append((val, depth + 1))
                else:
                    for child in item:
                        stack.append((child, depth + 1))
                continue
            return False
        return True

    return is_literal


def _stream_flusher():
    """The epilogue's flush of the program's stdout and stderr, its streams captured at start-up."""
    _stdout, _stderr = sys.stdout, sys.stderr
    _base_exception = BaseException

    def flush():
        for stream in (_stdout, _stderr):
            try:  # noqa: SIM105 (contextlib.suppress would be looked up at call time: patchable)
                stream.flush()
            except _base_exception:
                pass

    return flush


def _epilogue_factory():
    """Build, once at start-up (before any program runs), the maker of per-job epilogues.

    The epilogue is the only code that writes a result frame. Every builtin it uses is captured
    here (and in :func:`_literal_checker`, :func:`_stream_flusher`) in closure cells (shared by all
    jobs), and each job's nonce in cells of its own, so patching module globals, `builtins` or this
    worker's functions from the child changes nothing it does (see the module docstring)."""
    _type, _len, _repr = type, len, repr
    _str_encode, _int_to_bytes = str.encode, int.to_bytes
    _urandom, _write, _exit = os.urandom, os.write, os._exit
    _gc_disable, _settrace, _setprofile = gc.disable, sys.settrace, sys.setprofile
    _base_exception = BaseException
    is_literal, flush = _literal_checker(), _stream_flusher()

    def make(limits, want_value):
        """A fresh nonce and the two ways a program ends (`returned(value)`, `failed(kind, text,
        code)`), plus `nonce_of()` for the parent: made in the parent before the fork, so that no
        frame of the parent holds the nonce while the child is forked."""
        nonce = _urandom(_NONCE_BYTES)
        max_depth, max_chars = limits["max_depth"], limits["max_value_chars"]

        def send(kind, text, code):
            try:
                payload = _str_encode(text, "utf-8", "replace")
                data = nonce + kind + _int_to_bytes(_len(payload), 4, "big") + payload
                while data:
                    data = data[_write(3, data):]
            except _base_exception:
                code = 71
            _exit(code)

        def returned(value):
            flush()
            try:
                _gc_disable()  # no finalizer of the program may run between the check and the repr
                _settrace(None)
                _setprofile(None)
                if not want_value:
                    send(b"V", "", 0)
                if not is_literal(value, max_depth):
                    send(b"L", "value of type " + _type(value).__name__, 1)
                text = _repr(value)
                if _len(text) > max_chars:
                    send(b"G", "repr has " + _repr(_len(text)) + " chars", 1)
                send(b"V", text, 0)
            except _base_exception:
                send(b"E", "the value could not be reported", 1)

        def failed(kind, text, code):
            flush()
            send(kind, text[:_ERROR_CHARS], code)

        def nonce_of():
            return nonce

        return returned, failed, nonce_of

    return make


_make_epilogue = _epilogue_factory()


def _run_program(code, args, returned, failed):
    """Run user code; always ends in `returned` or `failed` (which exit the process)."""
    try:
        namespace = {"__name__": "__main__" if args is None else "__program__"}
        exec(code, namespace)
        if args is None:
            returned(None)
        entry = namespace.get("f")
        if not callable(entry):
            raise NameError("the program defines no function f")
        value = entry(*args)
    except SystemExit as exc:
        exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            with contextlib.suppress(BaseException):
                print(exc.code, file=sys.stderr)
        failed(b"X", f"SystemExit: {exc.code}", exit_code & 0xFF)
    except MemoryError:
        failed(b"M", "MemoryError", 1)
    except RecursionError:
        failed(b"E", "RecursionError: maximum recursion depth exceeded", 1)
    except BaseException as exc:
        try:
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
            text = traceback.format_exception_only(type(exc), exc)[-1].strip()
        except BaseException:
            text = type(exc).__name__
        failed(b"E", text, 1)
    returned(value)


def _child(limits, code, args, notes, fds, returned, failed, setrlimit=resource.setrlimit):
    """Run one program in the forked child; never returns."""
    out_w, err_w, res_w = fds
    os.setsid()
    os.dup2(_EMPTY_STDIN, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.dup2(res_w, 3)
    os.closerange(4, 1 << 16)
    try:
        for which, pair in limits["rlimits"]:
            setrlimit(which, pair)
    except (OSError, ValueError) as exc:
        failed(b"S", f"cannot set the limits: {exc}", 1)
    if notes:
        os.write(2, notes.encode("utf-8", "replace"))
    _run_program(code, args, returned, failed)


# --- the parent -----------------------------------------------------------------------------------
def _reply(status, seconds=0.0, exit_code=None, value=None, error=None, detail=None, stdout="", stderr=""):
    return {"status": status, "value": value, "stdout": stdout, "stderr": stderr, "seconds": seconds,
            "exit_code": exit_code, "error": error, "detail": detail}


_NOTES = []  # compile warnings of the program being prepared, shown on its stderr


def _note_warning(message, category, filename, lineno, file=None, line=None):
    _NOTES.append(warnings.formatwarning(message, category, filename, lineno, line))


def _prepare(limits, source, args_text):
    """Parse the arguments and compile the program here, before the fork: both run nothing of
    the program, and the child then has less to do. Returns (code, args, notes) or a reply."""
    args = None
    if args_text is not None:
        try:
            args = _parse_args(args_text, limits)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
            what = exc.msg if isinstance(exc, SyntaxError) else str(exc) or type(exc).__name__
            return _reply("error", error=f"bad input: {what}"[:_ERROR_CHARS])
    shown, warnings.showwarning = warnings.showwarning, _note_warning  # cheaper than catch_warnings
    try:
        code = compile(source, "<program>", "exec", dont_inherit=True)
    except MemoryError:
        return _reply("memory", error="MemoryError while compiling the program")
    except (SyntaxError, ValueError, RecursionError) as exc:
        lines = traceback.format_exception_only(type(exc), exc)
        return _reply("error", exit_code=1, error=lines[-1].strip()[:_ERROR_CHARS],
                      stderr="".join(lines)[: limits["max_stderr"]])
    finally:
        warnings.showwarning = shown
        notes = "".join(_NOTES)
        _NOTES.clear()
    return code, args, notes


_CLOCK_VARIABLES = ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC", "NO_FAKE_STAT")


def _hide_clock_shift():
    """A shifted worker's libfaketime settings stay in the C environment (libfaketime reads them
    again now and then) but leave os.environ, so a program never sees them there."""
    data = getattr(os.environ, "_data", None)
    for name in _CLOCK_VARIABLES:
        key = os.environ.encodekey(name) if hasattr(os.environ, "encodekey") else name
        if isinstance(data, dict):
            data.pop(key, None)


def _own_state():
    """What a program must never change about its worker, since the next program inherits it:
    every rlimit, the nice value, the scheduling policy and priority, the CPU set."""
    state = [resource.getrlimit(which) for which in _RLIMITS]
    state += [os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0), os.sched_getparam(0).sched_priority,
              sorted(os.sched_getaffinity(0))]
    return state


def _retire():
    """Send what is finished and exit: the pool replaces this worker, and runs again elsewhere the
    jobs of the frame it has not answered."""
    _flush_replies()
    os._exit(0)


def _forget_others():
    """In a fresh child: drop every other job's source, input and reply that this process holds
    (its frames and the worker's globals still reach them otherwise)."""
    for jobs in _BATCH:
        for job in jobs:
            if type(job) is list:
                job.clear()
        jobs.clear()
    _BATCH.clear()
    for reply in _PENDING:
        reply.clear()
    _PENDING.clear()


def _reap_all(child):
    """Kill what the program left behind and reap it, so nothing survives into the next program."""
    if os.getpid() == 1:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child, signal.SIGKILL)


def _decide(limits, want_value, nonce, frame, wstatus):
    """The job's status from the exit status and the result frame (see the module docstring)."""
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        if sig == signal.SIGXCPU:
            return {"status": "timeout", "exit_code": -sig, "detail": "cpu time limit"}
        if sig == signal.SIGXFSZ:
            return {"status": "error", "exit_code": -sig, "error": "file size limit exceeded"}
        return {"status": "killed", "exit_code": -sig, "detail": f"killed by signal {signal.Signals(sig).name}"}
    code = os.WEXITSTATUS(wstatus)
    if not frame:
        return {"status": "error", "exit_code": code, "error": f"the program exited (code {code}) without a result"}
    size = int.from_bytes(frame[_HEAD - 4:_HEAD], "big") if len(frame) >= _HEAD else -1
    kind = frame[_NONCE_BYTES:_NONCE_BYTES + 1]
    try:
        text = frame[_HEAD:].decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if frame[:_NONCE_BYTES] != nonce or size != len(frame) - _HEAD or kind not in _KINDS or not kind or text is None:
        return {"status": "error", "exit_code": code, "error": "the program wrote to the result channel"}
    expected_code = {b"V": 0, b"X": code}.get(kind, 1)
    if code != expected_code:
        return {"status": "error", "exit_code": code, "error": f"the program exited with code {code} after its result"}
    if kind == b"V":
        if not want_value:
            return {"status": "ok", "exit_code": 0} if not text else \
                {"status": "error", "exit_code": 0, "error": "the program wrote to the result channel"}
        problem = _value_problem(text, limits)
        if problem:
            return {"status": problem[0], "exit_code": 0, "detail": problem[1]}
        return {"status": "ok", "exit_code": 0, "value": text}
    text = text[:_ERROR_CHARS]
    if kind == b"X":
        if code == 0 and not want_value:
            return {"status": "ok", "exit_code": 0}
        return {"status": "error", "exit_code": code,
                "error": text + (" (f exited instead of returning)" if want_value else "")}
    if kind == b"M":
        return {"status": "memory", "exit_code": code, "error": "MemoryError"}
    if kind == b"L":
        return {"status": "output_not_literal", "exit_code": code, "detail": text}
    if kind == b"G":
        return {"status": "output_too_long", "exit_code": code, "detail": text}
    if kind == b"S":
        return {"status": "sandbox_error", "exit_code": code, "detail": text}
    return {"status": "error", "exit_code": code, "error": text}


def _handle(limits, source, args_text):
    """Run one job in a forked child and decide its reply (see the module docstring)."""
    prepared = _prepare(limits, source, args_text)
    if isinstance(prepared, dict):
        return prepared
    code, args, notes = prepared
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    returned, failed, nonce_of = _make_epilogue(limits, args_text is not None)
    _exit = os._exit
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            _forget_others()
            os.close(out_r)
            os.close(err_r)
            os.close(res_r)
            _child(limits, code, args, notes, (out_w, err_w, res_w), returned, failed)
        finally:
            _exit(70)
    nonce = nonce_of()  # taken after the fork: the child's copy of this frame never holds it
    del returned, failed, nonce_of, code, args
    for fd in (out_w, err_w, res_w):
        os.close(fd)
    bufs, stopped, seconds, wstatus = _watch(limits, pid, (out_r, err_r, res_r), start)
    resp = _reply("error", seconds=seconds, stdout=bufs[0].decode("utf-8", "replace"),
                  stderr=bufs[1].decode("utf-8", "replace"))
    if stopped == "timeout":
        resp.update(status="timeout", detail="wall clock over {:g}s".format(limits["timeout"]))
    elif stopped == "result":
        resp.update(status="error", error="the program wrote to the result channel (over its cap)")
    elif stopped is not None:
        resp.update(status="output_limit", detail=stopped + " over its cap")
    else:
        resp.update(_decide(limits, args_text is not None, nonce, bytes(bufs[2]), wstatus))
    return resp


def _watch(limits, pid, fds, start):
    """Read the child's stdout, stderr and result channel (`fds`) until it exits and they close,
    stopping it at the wall-clock deadline or when one goes over its cap; then reap it and close
    the pipes. Returns (the three buffers, what stopped it or None, seconds, wait status)."""
    out_r, err_r, res_r = fds
    pidfd = os.pidfd_open(pid)
    caps = {out_r: limits["max_stdout"], err_r: limits["max_stderr"],
            res_r: _HEAD + 4 * limits["max_value_chars"] + 4 * _ERROR_CHARS + 64}
    bufs = {out_r: bytearray(), err_r: bytearray(), res_r: bytearray()}
    open_fds = {out_r, err_r, res_r}
    deadline = start + limits["timeout"]
    poller = select.poll()
    for fd in (out_r, err_r, res_r, pidfd):
        poller.register(fd, select.POLLIN)
    stopped = None
    exited = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stopped = "timeout"
            break
        if exited and not open_fds:
            break
        if _PENDING and not exited:  # a slow job: send the quick ones' replies before waiting on
            remaining = min(remaining, _PENDING_UNTIL[0] - time.monotonic())
            if remaining <= 0:
                _flush_replies()
                continue
        ready = poller.poll(0 if exited else max(1, int(remaining * 1000 + 0.999)))
        if exited and not ready:
            break
        for fd, _ in ready:
            if fd == pidfd:
                exited = True
                poller.unregister(pidfd)
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                poller.unregister(fd)
                continue
            bufs[fd] += chunk
            if len(bufs[fd]) > caps[fd]:
                stopped = {out_r: "stdout", err_r: "stderr", res_r: "result"}[fd]
                del bufs[fd][caps[fd]:]
                break
        if stopped:
            break
    seconds = time.monotonic() - start
    if stopped is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, wstatus = os.waitpid(pid, 0)
    _reap_all(pid)
    for fd in (out_r, err_r, res_r, pidfd):
        os.close(fd)
    return (bufs[out_r], bufs[err_r], bufs[res_r]), stopped, seconds, wstatus


def main():
    global _EMPTY_STDIN
    once = "--once" in sys.argv
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # no handler: a program's kill(1, SIGINT) does nothing
    _EMPTY_STDIN, stdin_w = os.pipe()
    os.close(stdin_w)
    _BASELINE[:] = _own_state()
    gc.freeze()  # the worker's own objects: a collection in a child never walks (and copies) them
    _hide_clock_shift()
    _send({"hello": True, "hash_probe": hash("azr-hash-probe"), "pid": os.getpid(), "wall": time.time()})
    while True:
        req = _recv()
        if req is None:
            return
        limits = req["limits"]
        limits["rlimits"] = _rlimits(limits)
        _BATCH[:] = [req.pop("jobs")]
        del req
        # Replies of quick jobs travel together (one write, one wake-up of the host): they wait for
        # the end of the frame, or _COALESCE_S at most (the wait for a slow job sends them then).
        for source, args_text in _BATCH[0]:
            if _PENDING and time.monotonic() > _PENDING_UNTIL[0]:
                _flush_replies()
            if _own_state() != _BASELINE:
                _retire()  # changed by nothing this worker ran: not fit to run this job
            if not _PENDING:
                _PENDING_UNTIL[0] = time.monotonic() + _COALESCE_S
            _PENDING.append(_serve(limits, source, args_text))
        _BATCH.clear()
        _flush_replies()
        if once:
            return


def _serve(limits, source, args_text):
    """One job's reply; retires the worker when the job left it changed or it failed to run it."""
    try:
        reply = _handle(limits, source, args_text)
    except MemoryError:
        reply = _reply("sandbox_error", detail="the worker ran out of memory")
    if _own_state() != _BASELINE:
        reply.update(status="error", value=None, error="the program changed its worker's limits or priority "
                     "(the worker is replaced)")
        _PENDING.append(reply)
        _retire()
    if reply["status"] == "sandbox_error":
        _retire()  # not the program's fault: it runs again on another worker
    return reply


main()
