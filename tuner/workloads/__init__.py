"""Workloads: the protocol (``base``, imports torch) and the registry (``names`` imports nothing
heavy, so the API can validate workload names without loading torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner.workloads.registry import UnknownWorkloadError, describe, get, names

if TYPE_CHECKING:
    from tuner.workloads.base import Batch, Workload

__all__ = ["Batch", "Workload", "UnknownWorkloadError", "describe", "get", "names"]


def __getattr__(name: str) -> Any:
    """``Batch`` and ``Workload`` are loaded (with torch) on first use only."""
    if name in ("Batch", "Workload"):
        from tuner.workloads import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
