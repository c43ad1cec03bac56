"""The long-lived worker that runs inside one jail (stdlib only; never imported by the host).

The host reads this file as text and starts it with `python -I -S -c <source>`, so it cannot
import anything from `sandbox`. Protocol on fds 0/1: 4-byte big-endian length + a JSON object.
The worker first sends a hello, then answers one request per program. For each program it forks
a child that lowers its own rlimits and runs the program; the worker keeps the wall-clock timer
and the output caps (the child cannot touch either), and after each program kills every other
process in the jail: the worker is pid 1 in its pid namespace, so `kill(-1, SIGKILL)` reaches
exactly the jail's other processes. Outside a pid namespace (the unsafe-local backend) it
only kills the child's session, never `kill(-1)`.
"""

import ast
import contextlib
import json
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback

_LITERAL_TYPES = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set)
_CONTAINERS = (list, tuple, set)
_repr = repr
_type = type
_len = len


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
    data = json.dumps(obj).encode()
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(1, data):]


def _is_literal_value(value, max_depth):
    """True when `value` is built only from exact builtin literal types, without cycles."""
    stack = [(value, 0)]
    seen = set()
    while stack:
        item, depth = stack.pop()
        if _type(item) not in _LITERAL_TYPES or depth > max_depth:
            return False
        if _type(item) in _CONTAINERS or _type(item) is dict:
            if id(item) in seen:
                return False
            seen.add(id(item))
            children = [*item.keys(), *item.values()] if _type(item) is dict else item
            stack.extend((child, depth + 1) for child in children)
    return True


def _parse_args(text):
    """Parse an argument list like `1, [2, 3]` into values (literals only, same rule as the host)."""
    call = ast.parse("f(" + text + "\n)", mode="eval").body
    func = getattr(call, "func", None)
    if not isinstance(call, ast.Call) or call.keywords or not isinstance(func, ast.Name) or func.col_offset:
        raise ValueError("input is not a plain argument list")
    return [ast.literal_eval(arg) for arg in call.args]


def _set_limits(req):
    mb = 1024 * 1024
    cpu = int(req["timeout"]) + 1
    limits = [
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_NOFILE, req["nofile"]),
        (resource.RLIMIT_FSIZE, req["fsize_mb"] * mb),
        (resource.RLIMIT_CORE, 0),
    ]
    if req["memory_mb"] > 0:
        limits.append((resource.RLIMIT_AS, req["memory_mb"] * mb))
    if req["nproc"] > 0:
        limits.append((resource.RLIMIT_NPROC, req["nproc"]))
    for which, value in limits:
        resource.setrlimit(which, (value, value))


def _child(req, out_w, err_w, res_w):
    """Run one program; never returns. Writes a JSON verdict on fd 3."""
    os.setsid()
    stdin_r, stdin_w = os.pipe()
    os.close(stdin_w)
    os.dup2(stdin_r, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.dup2(res_w, 3)
    os.closerange(4, 1 << 16)
    code = 0
    verdict = {"status": "ok"}
    try:
        _set_limits(req)
        namespace = {"__name__": "__main__" if req["args"] is None else "__program__"}
        program = compile(req["source"], "<program>", "exec")
        args = None if req["args"] is None else _parse_args(req["args"])
        exec(program, namespace)
        if args is not None:
            entry = namespace.get("f")
            if not callable(entry):
                raise NameError("the program defines no function f")
            value = entry(*args)
            if not _is_literal_value(value, req["max_depth"]):
                verdict = {"status": "output_not_literal", "detail": "value of type " + _type(value).__name__}
            else:
                text = _repr(value)
                if _len(text) > req["max_value_chars"]:
                    verdict = {"status": "output_too_long", "detail": f"repr has {_len(text)} chars"}
                else:
                    verdict = {"status": "ok", "value": text}
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code:
            verdict = {"status": "error", "error": f"SystemExit: {exc.code}"}
    except MemoryError:
        code = 1
        verdict = {"status": "memory", "error": "MemoryError"}
    except RecursionError:
        code = 1
        verdict = {"status": "error", "error": "RecursionError: maximum recursion depth exceeded"}
    except BaseException as exc:
        code = 1
        try:
            traceback.print_exception(_type(exc), exc, exc.__traceback__.tb_next)
            lines = traceback.format_exception_only(_type(exc), exc)
            verdict = {"status": "error", "error": lines[-1].strip()[:500]}
        except BaseException:
            verdict = {"status": "error", "error": _type(exc).__name__}
    verdict["exit_code"] = code
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    try:
        data = json.dumps(verdict).encode()
        while data:
            data = data[os.write(3, data):]
    except BaseException:
        pass
    os._exit(code & 0xFF)


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


def _handle(req):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(err_r)
        os.close(res_r)
        _child(req, out_w, err_w, res_w)
    for fd in (out_w, err_w, res_w):
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    caps = {out_r: req["max_stdout"], err_r: req["max_stderr"], res_r: 8 * req["max_value_chars"] + 4096}
    bufs = {out_r: bytearray(), err_r: bytearray(), res_r: bytearray()}
    open_fds = {out_r, err_r, res_r}
    deadline = start + req["timeout"]
    stopped = None
    exited = False
    while stopped is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stopped = "timeout"
            break
        watch = list(open_fds) if exited else [*open_fds, pidfd]
        if not watch:
            break
        ready = select.select(watch, [], [], 0 if exited else remaining)[0]
        if exited and not ready:
            break
        for fd in ready:
            if fd == pidfd:
                exited = True
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                continue
            bufs[fd] += chunk
            if len(bufs[fd]) > caps[fd]:
                stopped = "output_limit"
                which = {out_r: "stdout", err_r: "stderr", res_r: "value"}[fd]
                del bufs[fd][caps[fd]:]
                break
    seconds = time.monotonic() - start
    if stopped is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, wstatus = os.waitpid(pid, 0)
    _reap_all(pid)
    for fd in (out_r, err_r, res_r, pidfd):
        os.close(fd)
    resp = {
        "stdout": bufs[out_r].decode("utf-8", "replace"),
        "stderr": bufs[err_r].decode("utf-8", "replace"),
        "seconds": seconds,
        "exit_code": None,
        "value": None,
        "error": None,
        "detail": None,
    }
    if stopped == "timeout":
        resp.update(status="timeout", detail="wall clock over {:g}s".format(req["timeout"]))
        return resp
    if stopped == "output_limit":
        resp.update(status="output_limit", detail=which + " over its cap")
        return resp
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        resp["exit_code"] = -sig
        if sig == signal.SIGXCPU:
            resp.update(status="timeout", detail="cpu time limit")
        elif sig == signal.SIGXFSZ:
            resp.update(status="error", error="file size limit exceeded")
        else:
            resp.update(status="killed", detail=f"killed by signal {signal.Signals(sig).name}")
        return resp
    resp["exit_code"] = os.WEXITSTATUS(wstatus)
    try:
        verdict = json.loads(bytes(bufs[res_r]))
    except ValueError:
        verdict = {"status": "error", "error": "the program exited without a verdict"}
    resp.update(status=verdict.get("status", "error"), value=verdict.get("value"))
    resp.update(error=verdict.get("error"), detail=verdict.get("detail"))
    return resp


def main():
    once = "--once" in sys.argv
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    _send({"hello": True, "hash_probe": hash("azr-hash-probe"), "pid": os.getpid()})
    while True:
        req = _recv()
        if req is None:
            return
        _send(_handle(req))
        if once:
            return


main()
