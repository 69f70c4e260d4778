"""The global trial budget: how many of a study's trials count, are running, or are owed.

The budget is the number of finished trials in the study (COMPLETE and PRUNED, as in
``tuner.search``), shared by every worker. A FAILED trial does not count: if its worker went
silent (or handed it back on SIGTERM), ``RetryHeartbeatStaleTrialCallback`` re-enqueued it
as a WAITING trial with the same parameters; if it failed on its own (the workload raised),
a new trial replaces it, and a job whose own failures reach the budget is given up. So a
worker that dies mid-trial costs a re-run, never a slot, and the study ends with exactly
``budget.trials`` finished trials. Handing out trials under the job's search lock
(``tuner.db.claims``) keeps the count exact with any number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState


def retried_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of the FAILED trials that a retry trial replaced (the last of each history)."""
    retried: set[int] = set()
    for t in trials:
        history = t.system_attrs.get("retry_history")
        if history:
            retried.add(int(history[-1]))
    return retried


@dataclass(frozen=True)
class BudgetCount:
    """The study measured against its budget ``total``."""

    total: int
    finished: int  # COMPLETE + PRUNED: what the budget counts
    failed: int  # FAILED for a reason of their own (not re-enqueued after a stale worker)
    running: int
    waiting: int  # enqueued (baseline, sweep suggestion) or re-enqueued after a stale worker

    @property
    def claimed(self) -> int:
        """Trials that count or will count: finished ones plus every trial already handed out."""
        return self.finished + self.running + self.waiting

    @property
    def done(self) -> bool:
        return self.finished >= self.total

    @property
    def exhausted(self) -> bool:
        """As many trials failed on their own as the budget allows: the job cannot succeed."""
        return not self.done and self.failed >= self.total

    @property
    def owed(self) -> int:
        """How many trials ``study.ask()`` may hand out now without exceeding the budget.

        A waiting trial is popped by ``ask`` before any new one is created, so it is owed too.
        """
        if self.done or self.exhausted:
            return 0
        return self.waiting + max(0, self.total - self.claimed)


def count(trials: Sequence[FrozenTrial], total: int) -> BudgetCount:
    """Measure ``trials`` (all of one study) against the budget ``total``."""
    retried = retried_numbers(trials)
    finished = failed = running = waiting = 0
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            finished += 1
        elif t.state == TrialState.FAIL and t.number not in retried:
            failed += 1
        elif t.state == TrialState.RUNNING:
            running += 1
        elif t.state == TrialState.WAITING:
            waiting += 1
    return BudgetCount(total, finished, failed, running, waiting)
