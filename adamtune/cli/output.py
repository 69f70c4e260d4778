"""Output that survives a closed pipe: ``adamtune ... | head -1`` ends quietly.

Python ignores SIGPIPE, so a write to a pipe whose reader has gone raises
``BrokenPipeError``. A command that only prints lets it propagate to ``main()``, which
calls :func:`discard_closed_pipes` and exits 0 (the recipe of the Python docs' note on
SIGPIPE). A long-running supervisor (``adamtune up``) prints with :func:`say`, which
drops what cannot be written and keeps supervising.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO


def _to_devnull(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so what is buffered and what follows
    is dropped instead of raising again (also when the interpreter flushes it at exit)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (pytest's capture, a closed stream)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def discard_closed_pipes() -> None:
    """After a BrokenPipeError: stdout and stderr write to /dev/null from now on."""
    for stream in (sys.stdout, sys.stderr):
        _to_devnull(stream)


def say(text: str = "", *, err: bool = False) -> None:
    """Print a line to stdout (``err``: stderr) and flush; a closed pipe drops it silently."""
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        _to_devnull(stream)
