from tuner.workloads.base import Batch, Workload
from tuner.workloads.registry import UnknownWorkloadError, describe, get, names

__all__ = ["Batch", "Workload", "UnknownWorkloadError", "describe", "get", "names"]
