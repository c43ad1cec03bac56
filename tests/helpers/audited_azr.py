"""`azr` under an audit hook, for the several-ranks tests (started by torchrun): a rank other than
0 records every file it opens for writing, creates, renames or removes under AZR_AUDIT_ROOT into
AZR_AUDIT_DIR/rank-<R>.txt, and writes its pid to AZR_AUDIT_DIR/pid-<R>."""

import os
import sys
from pathlib import Path

ROOT = os.path.realpath(os.environ["AZR_AUDIT_ROOT"])
OUT = Path(os.environ["AZR_AUDIT_DIR"])
RANK = int(os.environ.get("RANK", "0"))
WRITES = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree", "os.symlink",
          "os.link", "os.truncate", "os.chmod"}


def _under_root(path: object) -> bool:
    try:
        return os.path.realpath(os.fsdecode(path)).startswith(ROOT)
    except (TypeError, ValueError):
        return False


def _hook(event: str, args: tuple) -> None:
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1] if len(args) > 1 else "r", args[2] if len(args) > 2 else 0
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing and _under_root(args[0]):
            _log(f"open {args[0]} {mode!r}")
    elif event in WRITES and args and _under_root(args[0]):
        _log(f"{event} {args[0]}")


def _log(line: str) -> None:
    with open(OUT / f"rank-{RANK}.txt", "a") as f:  # outside ROOT: not audited
        f.write(line + "\n")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"pid-{RANK}").write_text(str(os.getpid()))
    if RANK != 0:
        sys.addaudithook(_hook)
    from azr_cli.main import main

    sys.argv = ["azr", *sys.argv[1:]]
    main()
