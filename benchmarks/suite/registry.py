"""The suite's own registry: name -> workload class (instances are made on lookup)."""

from __future__ import annotations

from tuner.workloads.base import Workload

from .generated import DeepNarrowGELU, MajorityGRU, PointerAttention
from .images import DigitsCNN
from .tabular import BreastCancerTanh, DiabetesWideReLU, NoisyBlobsTanh, WineLogistic

WORKLOADS: dict[str, type] = {
    cls.name: cls
    for cls in (
        WineLogistic, BreastCancerTanh, DiabetesWideReLU, NoisyBlobsTanh, DigitsCNN,
        DeepNarrowGELU, MajorityGRU, PointerAttention,
    )
}
_INSTANCES: dict[str, Workload] = {}


def names() -> list[str]:
    return list(WORKLOADS)


def get(name: str) -> Workload:
    """The suite workload ``name`` (one instance per name, so its data loads once)."""
    if name not in WORKLOADS:
        raise KeyError(f"no suite workload {name!r}; known: {', '.join(WORKLOADS)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = WORKLOADS[name]()
    return _INSTANCES[name]
