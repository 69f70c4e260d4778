"""Workloads by name, from the entry-point group ``adamtune.workloads``.

A third party adds one by shipping a package whose ``pyproject.toml`` declares
``[project.entry-points."adamtune.workloads"] my_name = "my_pkg.module:MyWorkload"``;
the entry point is a class (or factory) called with no arguments.
"""

from __future__ import annotations

import logging
from functools import cache, lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuner.workloads.base import Workload

log = logging.getLogger(__name__)
GROUP = "adamtune.workloads"


class UnknownWorkloadError(KeyError):
    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown workload {self.name!r}; known workloads: {', '.join(self.known)}"


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    """The names of every installed workload, sorted. Imports nothing heavy."""
    return sorted(_entry_points())


@cache
def get(name: str) -> Workload:
    eps = _entry_points()
    if name not in eps:
        raise UnknownWorkloadError(name, names())
    factory = eps[name].load()
    workload = factory()
    from tuner.workloads.base import Workload  # torch: only once a workload is really loaded

    if not isinstance(workload, Workload):
        raise TypeError(f"entry point {name!r} did not produce a Workload (got {type(workload)!r})")
    return workload


def describe() -> list[dict[str, str]]:
    """Name and one-line description of every workload (loads them)."""
    out = []
    for name in names():
        try:
            out.append({"name": name, "description": get(name).description})
        except Exception as exc:  # a broken third-party plugin must not hide the others
            log.warning("workload %s failed to load: %s", name, exc)
    return out
