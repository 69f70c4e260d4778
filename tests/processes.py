"""Linux processes as tests see them, from /proc: alive or not, who is whose child, what is
left of a process group."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

GONE_STATES = ("Z", "X")  # a zombie or a dead process: nothing of it runs


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no such process, or it exited while we looked
        return None
    return text.rsplit(")", 1)[1].split()


def process_stats() -> Iterator[tuple[int, list[str]]]:
    """``(pid, fields)`` of every process (see :func:`stat_fields`)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None:
            yield int(entry.name), fields


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in GONE_STATES


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    return [child for child, fields in process_stats() if int(fields[1]) == pid]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren, ...)."""
    parents: dict[int, list[int]] = {}
    for child, fields in process_stats():
        if fields[0] not in GONE_STATES:
            parents.setdefault(int(fields[1]), []).append(child)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def group_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that still run (zombies and dead ones left out)."""
    return [
        pid for pid, fields in process_stats()
        if int(fields[2]) == pgid and fields[0] not in GONE_STATES
    ]
