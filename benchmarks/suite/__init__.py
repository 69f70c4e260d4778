"""The benchmark suite's workloads: unseen by the project's tuning, registered only here.

Each implements ``tuner.workloads.Workload``; look one up by name with :func:`get`.
They are not entry points of the ``adamtune.workloads`` group, so no job can name them.
"""

from __future__ import annotations

from .registry import WORKLOADS, get, names

__all__ = ["WORKLOADS", "get", "names"]
