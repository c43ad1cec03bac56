"""A serving rank's life under torchrun (:mod:`stages.parallel`): it opens rank 0's run read-only
and answers its requests (a session, generation calls, updates) until rank 0 says stop."""

from __future__ import annotations

from pathlib import Path

from stages import parallel
from stages.config.schema import Config
from stages.model.engines.sharded import share_of
from stages.rundir.run import Run
from stages.session import Session
from stages.update import train


def serve() -> int:
    """A serving rank's life: answer rank 0's requests until it says stop; returns its exit code."""
    session: Session | None = None
    try:
        while True:
            message = parallel.receive()
            kind = message[0]
            if kind == "stop":
                parallel.leave()
                return int(message[1])
            if kind == "session":
                if session is not None:
                    session.close()
                session = Session(Run(Path(message[1]), Config.model_validate(message[2]), {}))
            elif kind == "close":
                if session is not None:
                    session.close()
                session = None
            elif kind == "generate":
                _, n, prompts, seeds, options = message
                assert session is not None, "a generation request before a session"
                parallel.gather(share_of(session.policy_for(n), prompts, seeds, options))
            elif kind == "update":
                assert session is not None, "an update request before a session"
                train(session.run, message[1], session)  # rank 0 writes what it gathers
                session.advance(message[1])
            else:
                raise RuntimeError(f"rank {parallel.rank()}: unknown request {kind!r} from rank 0")
    finally:
        if session is not None:
            session.close()
