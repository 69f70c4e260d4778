"""The one search loop: the budget, ask, train, tell, and the best trial so far.

``adamtune tune`` (:func:`tuner.local_search.run_local_search`), the worker
(``workers/trials.py``, which asks under the job's search lock) and the benchmarks all count the
budget with :meth:`BudgetCount.of`, ask and tell through a :class:`SearchDriver` and read the
best trial with :func:`best_trial`. Every study minimises. Imports no torch: a batch trainer
(:data:`BatchTrainer`) is passed in.

Budget: a job's budget counts the trials that *finished*: COMPLETE and PRUNED (diverged trials
are pruned). FAILED trials do not count (a worker that died mid-trial must not eat the budget),
but a search gives up once as many trials have failed on their own as the budget allows, so a
broken workload cannot loop forever. With a :class:`tuner.confirm.ConfirmPlan`, the budget's
last ``plan.trials`` are confirmations: :meth:`SearchDriver.owed` hands out search trials up
to the search part, waits for them, then enqueues the confirmations, once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner import confirm

if TYPE_CHECKING:
    from tuner.space import ResolvedSpace
    from tuner.train import TrainSettings
    from tuner.workloads.base import Workload

log = logging.getLogger(__name__)

BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class TrialOutcome:
    """What to tell the study about one trial."""

    state: TrialState
    value: float | None
    reason: str | None = None


BatchTrainer = Callable[..., list[TrialOutcome]]
"""``(trials, workload, settings, space, should_stop=None) -> one outcome per trial``: trains
asked trials and records their results, without telling the study (:func:`tuner.batch.
train_trials` one at a time, :func:`tuner.population.train_population` as one population)."""

ProgressCallback = Callable[[str, int, int, "float | None", str], None]
"""``(phase, finished, total, best objective so far, message)``, called as a search advances."""


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
    """A study's trials measured against its budget ``total``, shared by every worker.

    ``finished`` counts COMPLETE and PRUNED trials (a diverged trial is pruned): it is what
    the budget counts and what a job's progress shows as ``trials_completed``. A FAILED trial
    does not count: if its worker went silent (or handed it back on SIGTERM), the storage's
    ``RetryHeartbeatStaleTrialCallback`` re-enqueued it as a WAITING trial with the same
    parameters; if it failed on its own (the workload raised), a new trial replaces it, and a
    job whose own failures reach the budget is given up (``exhausted``). So a worker that dies
    mid-trial costs a re-run, never a slot, and the study ends with exactly ``total`` finished
    trials. Handing out trials under the job's search lock keeps the count exact with any
    number of workers.
    """

    total: int
    finished: int  # COMPLETE + PRUNED: what the budget counts (progress' trials_completed)
    failed: int  # FAILED for a reason of their own (not re-enqueued after a stale worker)
    running: int
    waiting: int  # enqueued (baseline, sweep suggestion) or re-enqueued after a stale worker

    @classmethod
    def of(cls, trials: Sequence[FrozenTrial], total: int) -> BudgetCount:
        """Measure ``trials`` (all of one study) against the budget ``total``."""
        retried = retried_numbers(trials)
        finished = failed = running = waiting = 0
        for t in trials:
            if t.state in BUDGET_STATES:
                finished += 1
            elif t.state == TrialState.FAIL and t.number not in retried:
                failed += 1
            elif t.state == TrialState.RUNNING:
                running += 1
            elif t.state == TrialState.WAITING:
                waiting += 1
        return cls(total, finished, failed, running, waiting)

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


def best_trial(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The best complete trial (lowest finite value; ties: the earliest), None while none."""
    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    return min(done, key=lambda t: (float(t.value), t.number), default=None)  # type: ignore[arg-type]


def best_value(trials: Sequence[FrozenTrial]) -> float | None:
    """The best objective so far (see :func:`best_trial`)."""
    best = best_trial(trials)
    return None if best is None else float(best.value)  # type: ignore[arg-type]


def describe(trial: optuna.Trial, outcome: TrialOutcome) -> str:
    """One line on how a trial ended: ``trial 7 (search) pruned loss 0.31: pruned at step 50``."""
    role = trial.user_attrs.get("role", "search")
    detail = f"trial {trial.number} ({role}) {outcome.state.name.lower()}"
    if outcome.value is not None:
        detail += f" loss {outcome.value:.4g}"
    if outcome.reason and outcome.state != TrialState.COMPLETE:
        detail += f": {outcome.reason}"
    return detail


class SearchDriver:
    """Ask, tell and count one study against its budget; :meth:`run` is the whole loop.

    ``tags`` are user attrs every asked trial gets (a worker's id and device); ``on_ask`` is
    called with each trial as soon as it is asked (a worker records its first heartbeat).
    ``label`` prefixes the line logged per told trial (``"job 1f3c: "``), at ``log_level``
    (DEBUG where a progress callback shows the same line).
    """

    def __init__(
        self,
        study: optuna.Study,
        total: int,
        *,
        tags: Mapping[str, Any] | None = None,
        on_ask: Callable[[optuna.Trial], None] | None = None,
        label: str = "",
        log_level: int = logging.INFO,
        plan: confirm.ConfirmPlan | None = None,
    ):
        self.study, self.total, self.label, self.log_level = study, total, label, log_level
        self.tags = dict(tags or {})
        self.on_ask = on_ask
        self.plan = plan

    def owed(self, trials: Sequence[FrozenTrial], count: BudgetCount) -> int:
        """How many trials may be asked now. With a confirmation plan: search trials up to
        the search part; once those have all finished, the confirmations are enqueued (once:
        the caller holds the job's search lock) and owed; 0 while search trials still run."""
        if self.plan is None or not self.plan.trials or confirm.enqueued(self.study):
            return count.owed
        search_total = self.total - self.plan.trials
        owed = 0 if count.done or count.exhausted else count.waiting + max(
            0, search_total - count.claimed
        )
        if owed or count.running or count.finished < search_total:
            return owed
        confirm.enqueue_confirmations(self.study, trials, self.plan)
        return self.count()[1].owed

    def count(self) -> tuple[list[FrozenTrial], BudgetCount]:
        """The study's trials and its budget count, from one read."""
        trials = self.study.get_trials(deepcopy=False)
        return trials, BudgetCount.of(trials, self.total)

    def ask(self, n: int) -> list[optuna.Trial]:
        """Ask ``n`` trials, each tagged and passed to ``on_ask`` at once."""
        asked = []
        for _ in range(n):
            trial = self.study.ask()
            if self.on_ask is not None:
                self.on_ask(trial)
            for key, value in self.tags.items():
                trial.set_user_attr(key, value)
            asked.append(trial)
        return asked

    def tell(self, trial: optuna.Trial, outcome: TrialOutcome) -> str:
        """Finish the trial in the study (a no-op if e.g. a stale-trial sweep already did it);
        logs and returns one line on how it ended."""
        values = outcome.value if outcome.state == TrialState.COMPLETE else None
        self.study.tell(trial, values, state=outcome.state, skip_if_finished=True)
        detail = describe(trial, outcome)
        log.log(self.log_level, "%s%s", self.label, detail)
        return detail

    def run(
        self,
        train: BatchTrainer,
        workload: Workload | None,
        settings: TrainSettings,
        space: ResolvedSpace,
        *,
        batch: int = 1,
        progress: ProgressCallback | None = None,
    ) -> BudgetCount:
        """Ask up to ``batch`` owed trials, train them, tell them, until the budget is spent
        (or exhausted by failures); reports every told trial to ``progress``."""
        while True:
            told, count = self.count()
            if count.done or count.exhausted:
                if count.exhausted:
                    log.error("%sstopping: %d trials failed", self.label, count.failed)
                return count
            trials = self.ask(min(max(1, batch), self.owed(told, count)))
            outcomes = train(trials, workload, settings, space)
            for trial, outcome in zip(trials, outcomes, strict=True):
                detail = self.tell(trial, outcome)
                if progress is not None:
                    told, now = self.count()
                    progress("search", now.finished, self.total, best_value(told), detail)
