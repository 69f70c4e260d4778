"""``population: auto``: size the population to the device it trains on.

A worker times a few training steps of populations of 1, 2, 4, 8, ... members of the job's
workload on its own device, and keeps doubling while throughput (member steps per second)
still grows by at least ``MIN_GAIN``, no further than the memory allows: on CUDA a
``MEMORY_FRACTION`` of the free memory (``torch.cuda.mem_get_info``) over the measured peak
memory per member; on CPU ``MEMBERS_PER_THREAD`` members per torch thread, and the available
RAM over the member's parameter, gradient and optimizer state. The choice is a pure function
of those measurements (:func:`choose_population`), so it is tested without a device.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tuner.optim import OptimConfig
from tuner.population.optimizer import MemberHyperparameters, VectorisedAdam
from tuner.population.stacked import StackedModel, can_vmap
from tuner.spec import MAX_POPULATION, JobSpec
from tuner.train import TrainSettings, autocast
from tuner.workloads.base import Workload

log = logging.getLogger(__name__)

MIN_GAIN = 0.10  # a doubling that adds less throughput than this is not worth its memory
MEMORY_FRACTION = 0.5  # of the device's free memory: room for other processes, fragmentation
MEMBERS_PER_THREAD = 16  # CPU: more members than this per thread only queue on the cores
STATE_COPIES = 6  # CPU memory per member: parameters, gradient, two moments, two scratch rows
WARMUP_STEPS = 2  # first steps pay for lazy initialisation: not timed
MIN_TIMED_STEPS = 3
MIN_TIMED_SECONDS = 0.2  # more steps are timed until this much time has passed (noise)
MAX_TIMED_STEPS = 50


@dataclass(frozen=True)
class SizeTiming:
    """One measured population size: seconds per training step, and peak device memory."""

    size: int
    seconds_per_step: float
    peak_bytes: int | None = None  # CUDA only: the peak memory allocated while training it

    @property
    def throughput(self) -> float:
        """Member steps per second: trials/second once multiplied by the steps per trial."""
        return self.size / self.seconds_per_step


@dataclass(frozen=True)
class PopulationChoice:
    """How many trials train at once, and why (what the job's events and trials record)."""

    size: int
    reason: str
    timings: tuple[SizeTiming, ...] = field(default=())

    def trial_attrs(self, settings: TrainSettings) -> dict[str, Any]:
        """User attrs for every trial trained so: its precision, and why this population size
        when it was measured (``population`` itself is set by the population trainer)."""
        attrs: dict[str, Any] = {"precision": settings.precision}
        if self.timings:
            attrs["population_reason"] = self.reason
        return attrs

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "reason": self.reason,
            "timings": [
                {"size": t.size, "seconds_per_step": t.seconds_per_step, "peak_bytes": t.peak_bytes}
                for t in self.timings
            ],
        }


PROGRAM_POPULATION = PopulationChoice(1, "a program trains one trial per child process")
"""A program job's: the user's script trains one trial per run (worker and ``adamtune tune``)."""


def member_bytes(timings: Sequence[SizeTiming]) -> int | None:
    """Peak memory per member: the steepest growth between measured sizes (the first size's
    whole peak when only one was measured); None without peak measurements."""
    measured = [(t.size, t.peak_bytes) for t in timings if t.peak_bytes is not None]
    if not measured:
        return None
    slopes = [
        (pb - pa) / (b - a)
        for (a, pa), (b, pb) in zip(measured, measured[1:], strict=False)
        if b > a
    ]
    per_member = max(slopes) if slopes else measured[0][1] / measured[0][0]
    return max(1, int(per_member))


def memory_limit(free_bytes: int | None, per_member: int | None, fraction: float) -> int | None:
    """Members that fit in ``fraction`` of ``free_bytes``; None when either is unknown."""
    if free_bytes is None or per_member is None:
        return None
    return max(1, int(free_bytes * fraction // per_member))


def choose_population(
    timings: Sequence[SizeTiming], *, limit: int, memory_cap: int | None, min_gain: float = MIN_GAIN
) -> PopulationChoice:
    """The largest measured size reached by steps that each gained ``min_gain`` throughput,
    within ``limit`` and ``memory_cap``; the smallest measured size is always allowed."""
    if not timings:
        raise ValueError("no population size was measured: time at least one size")
    ordered = sorted(timings, key=lambda t: t.size)
    best, reason = ordered[0], None
    for nxt in ordered[1:]:
        reason = _bound(nxt.size, limit, memory_cap)
        if reason is not None:
            break
        gain = nxt.throughput / best.throughput - 1.0
        if gain < min_gain:
            reason = (
                f"K={nxt.size} gained {gain:+.0%} throughput over K={best.size} "
                f"(less than {min_gain:.0%})"
            )
            break
        best = nxt
    if reason is None:
        reason = _bound(best.size * 2, limit, memory_cap) or (
            f"still gaining at K={best.size}, the largest size measured"
        )
    rate = f"{best.throughput:.0f} member steps/s at K={best.size}"
    return PopulationChoice(best.size, f"{reason}; {rate}", tuple(ordered))


def _bound(size: int, limit: int, memory_cap: int | None) -> str | None:
    """Why ``size`` members are not allowed, or None."""
    if size > limit:
        return f"K={size} is over the limit of {limit}"
    if memory_cap is not None and size > memory_cap:
        return f"K={size} does not fit: {memory_cap} fit in {MEMORY_FRACTION:.0%} of free memory"
    return None


def next_size(choice: PopulationChoice, limit: int, memory_cap: int | None) -> int | None:
    """The next size worth measuring: double the chosen one while it is the largest measured
    and the doubling fits; None when the choice is settled."""
    if not choice.timings or choice.size != max(t.size for t in choice.timings):
        return None
    candidate = choice.size * 2
    if candidate > limit or (memory_cap is not None and candidate > memory_cap):
        return None
    return candidate


def _available_ram() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: no RAM cap, the thread cap holds
        return None


def time_population(workload: Workload, settings: TrainSettings, size: int) -> SizeTiming:
    """Seconds per training step (forward, backward, optimizer) of ``size`` members on
    ``settings.device``, in ``settings.precision``; the peak memory it allocated on CUDA."""
    device = torch.device(settings.device)
    model = workload.make_model(settings.seed).to(device)
    stacked = StackedModel(model, size, workload.loss)
    hyper = MemberHyperparameters.from_configs([OptimConfig.baseline()] * size)
    optimizer = VectorisedAdam(stacked.flat, stacked.n_decay, hyper)
    batches = workload.train_batches(settings.seed)
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if on_cuda else 0
    times: list[float] = []
    while len(times) < MAX_TIMED_STEPS and (
        len(times) < WARMUP_STEPS + MIN_TIMED_STEPS or sum(times[WARMUP_STEPS:]) < MIN_TIMED_SECONDS
    ):
        x, y = (t.to(device) for t in next(batches))
        start = time.perf_counter()
        with autocast(device, settings.precision):
            _, grad = stacked.loss_and_grad(x, y)
        optimizer.step(grad, hyper.lr)
        if on_cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    timed = sorted(times[WARMUP_STEPS:])
    peak = torch.cuda.max_memory_allocated(device) - base if on_cuda else None
    return SizeTiming(size, timed[len(timed) // 2], peak)  # the median: robust to a busy core


def _device_limits(settings: TrainSettings, limit: int) -> tuple[int, int | None, str]:
    """The size limit, the free memory and what bounds them on ``settings.device``."""
    device = torch.device(settings.device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return limit, int(free), "cuda"
    threads = torch.get_num_threads()
    where = f"cpu, {threads} thread{'' if threads == 1 else 's'}"
    return min(limit, MEMBERS_PER_THREAD * threads), _available_ram(), where


def size_population(
    workload: Workload, settings: TrainSettings, limit: int = MAX_POPULATION
) -> PopulationChoice:
    """Measure populations of 1, 2, 4, ... members on the device and choose the size."""
    ok, why = can_vmap(workload)
    if not ok:
        return PopulationChoice(1, f"{workload.name} cannot be trained as a population ({why})")
    limit, free, where = _device_limits(settings, max(1, limit))
    state_bytes = None
    if where.startswith("cpu"):  # no allocator statistics on CPU: the member's state
        flat = StackedModel(workload.make_model(settings.seed), 1, workload.loss).flat
        state_bytes = flat.numel() * flat.element_size() * STATE_COPIES
    timings: list[SizeTiming] = []
    size: int | None = 1
    cap: int | None = None
    while size is not None:
        try:
            timings.append(time_population(workload, settings, size))
        except torch.cuda.OutOfMemoryError:
            limit = max(1, size // 2)  # the last size that ran
            break
        cap = memory_limit(free, state_bytes or member_bytes(timings), MEMORY_FRACTION)
        size = next_size(choose_population(timings, limit=limit, memory_cap=cap), limit, cap)
    choice = choose_population(timings, limit=limit, memory_cap=cap)
    reason = f"population auto on {settings.device} ({where}): K={choice.size}; {choice.reason}"
    log.info("%s", reason)
    return PopulationChoice(choice.size, reason, choice.timings)


def population_for(
    spec: JobSpec, workload: Workload, settings: TrainSettings, limit: int = MAX_POPULATION
) -> PopulationChoice:
    """The job's population: its number as given, or measured on this device for ``auto``
    (never more than the job's trials or ``limit``)."""
    if spec.population != "auto":
        return PopulationChoice(int(spec.population), "set by the job")
    return size_population(workload, settings, min(limit, spec.budget.trials))
