"""The devices of a node: what ``adamtune worker --devices`` means, and what each device is.

``parse_devices`` turns ``all``, ``cuda:0,cuda:2``, ``cpu*2`` or ``cpu`` into one
:class:`DeviceSlot` per worker process, each with the ``CUDA_VISIBLE_DEVICES`` that pins it.
:class:`DeviceProbe` reads a device's facts for the workers table: name, memory and
utilisation, from NVML (``nvidia-ml-py``, imported lazily) on CUDA, and from ``/proc`` on
CPU. A probe never raises: a fact it cannot read is ``None``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CPU, CUDA = "cpu", "cuda"
DEVICES_HELP = "all (every CUDA device, or one cpu), cuda:0,cuda:2, cpu*2 or cpu"
_ITEM = re.compile(r"^(?:cpu(?:\*(?P<copies>\d+))?|cuda:(?P<index>\d+))$")


@dataclass(frozen=True)
class DeviceSlot:
    """One worker process of a node: the device it trains on and how it is pinned.

    ``device`` is what the worker is given (``cpu``, or ``cuda:0``: the one GPU it sees);
    ``label`` names the slot in worker ids (``cpu1``, ``cuda2``); ``visible`` is the
    ``CUDA_VISIBLE_DEVICES`` of its process (empty on CPU: it sees no GPU at all).
    """

    device: str
    label: str
    visible: str

    def environment(self) -> dict[str, str]:
        """The variables that pin the worker process to this slot's device."""
        # NVML and nvidia-smi number GPUs in PCI bus order; CUDA by default puts the fastest
        # first. Bus order makes "cuda:2" the GPU that nvidia-smi calls 2.
        return {"CUDA_VISIBLE_DEVICES": self.visible, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def visible_entries() -> list[str] | None:
    """The entries of this process's ``CUDA_VISIBLE_DEVICES`` (None when it is unset)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def cuda_device_count() -> int:
    """How many CUDA devices this process may use: NVML's count, narrowed by
    ``CUDA_VISIBLE_DEVICES``; torch's count where NVML cannot be loaded."""
    entries = visible_entries()
    if entries is not None:
        return len(entries)
    count = _nvml_device_count()
    if count is not None:
        return count
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count())


def parse_devices(spec: str, cuda_count: int | None = None) -> list[DeviceSlot]:
    """The slots of ``--devices SPEC``; raises ValueError saying what to pass instead.

    ``cuda_count`` is how many CUDA devices there are (default: :func:`cuda_device_count`).
    """
    text = spec.strip().lower()
    if not text:
        raise ValueError(f"--devices is empty; pass {DEVICES_HELP}")
    count = cuda_device_count() if cuda_count is None else cuda_count
    if text == "all":
        if count == 0:
            log.info("--devices all: no CUDA device found; running one cpu worker")
            return [DeviceSlot(CPU, "cpu0", "")]
        return [_cuda_slot(i) for i in range(count)]
    slots: list[DeviceSlot] = []
    cpus = 0
    seen: set[int] = set()
    for item in (part.strip() for part in text.split(",")):
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"--devices: cannot read {item!r}; pass {DEVICES_HELP}")
        if match["index"] is not None:
            index = int(match["index"])
            _check_cuda_index(index, count, seen)
            seen.add(index)
            slots.append(_cuda_slot(index))
            continue
        copies = int(match["copies"] or 1)
        if copies < 1:
            raise ValueError(f"--devices: {item!r} asks for no worker; use cpu*1 or more")
        slots.extend(DeviceSlot(CPU, f"cpu{cpus + i}", "") for i in range(copies))
        cpus += copies
    return slots


def _check_cuda_index(index: int, count: int, seen: set[int]) -> None:
    if index in seen:
        raise ValueError(f"--devices: cuda:{index} is named twice; name each GPU once")
    if count == 0:
        raise ValueError(
            f"--devices: cuda:{index} asked for, but this machine has no CUDA device; "
            "use --devices cpu"
        )
    if index >= count:
        raise ValueError(
            f"--devices: cuda:{index} asked for, but this machine has {count} CUDA "
            f"device(s); use cuda:0 to cuda:{count - 1}, or all"
        )


def _cuda_slot(index: int) -> DeviceSlot:
    """The slot of the ``index``-th usable GPU, pinned to the GPU that index means here."""
    entries = visible_entries()
    physical = entries[index] if entries is not None else str(index)
    return DeviceSlot("cuda:0", f"cuda{index}", physical)


# ---------------------------------------------------------------------------- NVML


def _nvml() -> Any | None:
    """The initialised ``pynvml`` module, or None (not installed, or no NVIDIA driver)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()  # reference counted: cheap after the first call
    except pynvml.NVMLError as exc:
        log.debug("NVML unavailable: %s", exc)
        return None
    return pynvml


def _nvml_device_count() -> int | None:
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        return int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as exc:
        log.warning("NVML cannot count the GPUs: %s", exc)
        return None
    finally:
        nvml.nvmlShutdown()


def _nvml_handle(nvml: Any, device: str) -> Any:
    """NVML's handle of the GPU that torch calls ``device`` in this process.

    NVML ignores ``CUDA_VISIBLE_DEVICES``, so ``cuda:N`` is looked up through its N-th
    entry: an index, or a ``GPU-...``/``MIG-...`` UUID.
    """
    index = int(device.partition(":")[2] or 0)
    entries = visible_entries()
    entry = entries[index] if entries is not None and index < len(entries) else str(index)
    if entry.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(entry))
    return nvml.nvmlDeviceGetHandleByUUID(entry)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------- CPU


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's model name (``/proc/cpuinfo``), or ``cpu`` where it says none."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return "cpu"


def process_rss_bytes(status: Path = Path("/proc/self/status")) -> int | None:
    """This process's resident memory (``VmRSS``), or None where /proc cannot tell."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def total_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------- the probe


class DeviceProbe:
    """Reads one worker's device facts, as the ``device_info`` JSON of its workers row.

    Keys: ``kind`` (cpu/cuda), ``name``, ``memory_total_bytes``, ``memory_used_bytes``,
    ``utilisation_percent``; on CUDA also ``uuid`` and ``index`` (the GPU's number in
    nvidia-smi: the worker itself sees only ``cuda:0``). On CPU the memory used is this
    process's resident memory and the utilisation its CPU time since the previous reading,
    as a share of the cores it may run on.
    """

    def __init__(self, device: str):
        self.device = device
        self.kind = CUDA if device.startswith(CUDA) else CPU
        self._cpu_name: str | None = None
        self._last_cpu: tuple[float, float] | None = None  # (wall, process CPU seconds)
        self._nvml: Any | None = None
        self._nvml_tried = False

    def read(self) -> dict[str, Any]:
        """The facts now; never raises (what cannot be read is None)."""
        try:
            return self._read_cuda() if self.kind == CUDA else self._read_cpu()
        except Exception:  # a probe must never stop a heartbeat
            log.exception("cannot read the facts of device %s", self.device)
            return self._empty()

    def _empty(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": None, "memory_total_bytes": None,
                "memory_used_bytes": None, "utilisation_percent": None}

    def _read_cpu(self) -> dict[str, Any]:
        if self._cpu_name is None:
            self._cpu_name = cpu_name()
        return {**self._empty(), "name": self._cpu_name,
                "memory_total_bytes": total_memory_bytes(),
                "memory_used_bytes": process_rss_bytes(),
                "utilisation_percent": self._cpu_utilisation()}

    def _cpu_utilisation(self) -> float | None:
        times = os.times()
        now = (time.monotonic(), times.user + times.system)
        last, self._last_cpu = self._last_cpu, now
        if last is None or now[0] <= last[0]:
            return None
        share = (now[1] - last[1]) / ((now[0] - last[0]) * usable_cpus())
        return round(min(max(share, 0.0), 1.0) * 100.0, 1)

    def _read_cuda(self) -> dict[str, Any]:
        facts = self._empty()
        if not self._nvml_tried:  # once per process: nvmlInit enumerates every GPU
            self._nvml, self._nvml_tried = _nvml(), True
        nvml = self._nvml
        if nvml is None:
            return facts
        try:
            handle = _nvml_handle(nvml, self.device)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            facts.update(name=_text(nvml.nvmlDeviceGetName(handle)),
                         uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                         index=int(nvml.nvmlDeviceGetIndex(handle)),
                         memory_total_bytes=int(memory.total),
                         memory_used_bytes=int(memory.used))
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            facts["utilisation_percent"] = float(rates.gpu)
        except nvml.NVMLError as exc:  # e.g. utilisation is not supported on a MIG slice
            log.debug("NVML: %s for %s", exc, self.device)
        return facts
