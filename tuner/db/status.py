"""The job state machine: the statuses, the allowed transitions, written once.

::

    queued ──► sweeping ──► searching ──► completed
      │          │ ▲            │
      │          └─┘ lease      │
      │          takeover       │
      └──────────┴──────────────┴──► failed | cancelled

A job leaves ``queued`` when a worker claims its LR range test (``sweeping``); a sweep
whose lease expired is claimed again by another worker (``sweeping`` → ``sweeping``). The
finished sweep opens the search (``searching``); the finaliser writes ``completed`` exactly
once. ``failed`` and ``cancelled`` are reachable from every active status. Finished
statuses are final. :func:`tuner.db.jobs.transition` is the only writer of a job's status
and refuses an edge that is not in :data:`TRANSITIONS`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class JobStatus(enum.StrEnum):
    """A job's status; a ``str``, so ``JobStatus.QUEUED == "queued"`` in JSON and SQL."""

    QUEUED = "queued"
    SWEEPING = "sweeping"
    SEARCHING = "searching"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_ENDINGS = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})

TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.SWEEPING}) | _ENDINGS,
    JobStatus.SWEEPING: frozenset({JobStatus.SWEEPING, JobStatus.SEARCHING}) | _ENDINGS,
    JobStatus.SEARCHING: frozenset({JobStatus.COMPLETED}) | _ENDINGS,
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

JOB_STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)
ACTIVE_JOB_STATUSES: tuple[JobStatus, ...] = tuple(s for s in JobStatus if TRANSITIONS[s])
FINISHED_JOB_STATUSES: tuple[JobStatus, ...] = tuple(s for s in JobStatus if not TRANSITIONS[s])


class IllegalTransition(ValueError):
    """A status change that the state machine does not allow (a bug in the caller)."""

    def __init__(self, old: str, new: str):
        old, new = str(old), str(new)
        allowed = ", ".join(sorted(TRANSITIONS.get(JobStatus(old), ()))) or "nothing (final)"
        super().__init__(
            f"a job cannot move from {old!r} to {new!r}; from {old!r} it may move to: {allowed}"
        )


def parse(value: str) -> JobStatus:
    """The status named ``value``; a ValueError listing the statuses otherwise."""
    try:
        return JobStatus(value)
    except ValueError:
        names = ", ".join(JOB_STATUSES)
        raise ValueError(f"unknown job status {value!r}; statuses: {names}") from None


def check_edges(expected: Iterable[str], new: str) -> tuple[JobStatus, ...]:
    """Validate every edge ``expected[i]`` → ``new``; returns ``expected`` as statuses."""
    target = parse(new)
    sources = tuple(parse(old) for old in expected)
    if not sources:
        raise ValueError("a transition needs at least one expected status")
    for old in sources:
        if target not in TRANSITIONS[old]:
            raise IllegalTransition(old, target)
    return sources
