"""Linux processes as tests see them, from /proc: who is whose child, what is left of a group."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def process_stats() -> Iterator[tuple[int, list[str]]]:
    """``(pid, fields)`` of every live process: ``fields`` are /proc/PID/stat's after the
    command name (state, ppid, pgrp, ...)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited while we looked
            continue
        yield int(stat.parent.name), fields


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    return [child for child, fields in process_stats() if int(fields[1]) == pid]


def group_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that still run (zombies and dead ones left out)."""
    return [
        pid for pid, fields in process_stats()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X")
    ]
