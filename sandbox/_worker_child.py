"""The child half of the jailed worker: what runs in the forked process that runs user code.

Not a module of its own at run time: :func:`sandbox.jail.worker_source` splices this file's text
into ``_worker.py`` where its ``@@CHILD@@`` line stands, and the worker runs as one script with
``python -I -S -c``. It relies on that script's imports and constants (``os``, ``resource``,
``_NONCE_BYTES``, ``_KINDS``, ...); see ``_worker.py`` for the protocol and who decides what.
"""

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


def _epilogue_factory():
    """Build, once at start-up (before any program runs), the maker of per-job epilogues.

    The epilogue is the only code that writes a result frame. Every builtin it uses is captured
    here in closure cells (shared by all jobs), and each job's nonce in cells of its own, so
    patching module globals, `builtins` or this worker's functions from the child changes nothing
    it does (see the module docstring)."""
    _type, _len, _repr, _id, _set = type, len, repr, id, set
    _str_encode, _int_to_bytes, _dict_items = str.encode, int.to_bytes, dict.items
    _urandom, _write, _exit = os.urandom, os.write, os._exit
    _gc_disable, _settrace, _setprofile = gc.disable, sys.settrace, sys.setprofile
    _stdout, _stderr = sys.stdout, sys.stderr
    _none, _bool, _int, _float, _complex, _str, _bytes = type(None), bool, int, float, complex, str, bytes
    _list, _tuple, _dict, _set_type = list, tuple, dict, set
    _base_exception = BaseException

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

    def flush():
        for stream in (_stdout, _stderr):
            try:  # noqa: SIM105 (contextlib.suppress would be looked up at call time: patchable)
                stream.flush()
            except _base_exception:
                pass

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
