"""A test hook: kill this process at a named point of the output code, to test crash safety.

``CARABM_CRASH_AT="POINT:N"`` sends SIGKILL to the process the N-th time (1-based) it
reaches :func:`crash_point` ``(POINT)``: ``timeseries`` (half the columns of a flush
written), ``snapshot`` (fields written, agents not), ``checkpoint`` (state written to the
temp file), ``checkpoint_replace`` (temp file complete, not yet renamed). Unset, it costs
one dictionary look-up.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable

_seen: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """Die here (SIGKILL, no clean-up) when ``CARABM_CRASH_AT`` names this point and count."""
    wanted = os.environ.get("CARABM_CRASH_AT")
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    _seen[name] += 1
    if _seen[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def run_and_crash(crash_at: str, main: Callable[[list[str]], int], argv: list[str]) -> None:
    """Run ``main(argv)`` (the command line, :func:`carabm.cli.main`, passed in: io does not import the cli)
    with ``CARABM_CRASH_AT=crash_at``, output silenced (a target for a test's child process)."""
    os.environ["CARABM_CRASH_AT"] = crash_at
    _seen.clear()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    main(argv)
