"""The search phase as one worker lives it: take trials within budget, train them, tell them.

Handing out trials happens under the job's search lock (``tuner.db.claims``): fail the
stale trials of dead workers (re-enqueued with the same parameters), count the study
against its budget (``tuner.driver.BudgetCount``), and ask only the trials that are owed,
through the search's one :class:`tuner.driver.SearchDriver` (as ``adamtune tune`` does). Training
runs outside the lock, one trial at a time or K at once as a population. After each batch
the worker writes the job's progress and a partial recommendation; the worker that sees the
budget spent finalises the job, exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner import confirm, recommend
from tuner.batch import train_trials
from tuner.db import claims, events
from tuner.db.claims import LockGrant, LockRefused, Progress
from tuner.db.engine import transaction
from tuner.db.optuna_store import running_trials_without_heartbeat, trial_id
from tuner.db.status import JobStatus
from tuner.db.trials import REASON_ATTR
from tuner.driver import BudgetCount, SearchDriver, TrialOutcome, best_trial, best_value
from tuner.population import train_population
from tuner.population.sizing import PROGRAM_POPULATION, PopulationChoice, population_for
from tuner.train import TrainSettings, TrialInterrupted
from workers.context import ContextCache, JobContext
from workers.errors import TRANSIENT_ERRORS, describe
from workers.heartbeat import HeartbeatThread
from workers.program_trials import ProgramTrainer
from workers.runtime import Runtime

log = logging.getLogger(__name__)

RAN, FINALISED, NOTHING, BUSY = "ran", "finalised", "nothing", "busy"
PARTIAL_REFRESH_S = 30.0
HAND_BACK_WAIT_S = 5.0  # the search lock is held for milliseconds; wait that long at most

class TrialRunner:
    """Runs the trials of searching jobs for one worker."""

    def __init__(self, runtime: Runtime, cache: ContextCache, stopping: threading.Event):
        self.runtime = runtime
        self.cache = cache
        self.stopping = stopping
        self.heartbeat: HeartbeatThread | None = None
        self.owner = runtime.identity.worker_id
        self.populations: dict[str, PopulationChoice] = {}  # job id -> this device's choice

    # ------------------------------------------------------------------ one step
    def work_on(self, ctx: JobContext) -> str:
        """Run trials of the job if any are owed: RAN, FINALISED, NOTHING (none owed) or BUSY."""
        asked = self.hand_out(ctx, self.batch_size(ctx))
        if isinstance(asked, str):
            return asked
        self.run(ctx, asked)
        return RAN

    def batch_size(self, ctx: JobContext) -> int:
        """Trials trained at once: ``--population`` if given, else the job's ``population``
        (for ``auto``: measured on this worker's device once per job, and recorded)."""
        return max(1, self.population(ctx).size)

    def population(self, ctx: JobContext) -> PopulationChoice:
        """The job's population on this device; an ``auto`` choice becomes a job event."""
        if ctx.program is not None:
            return PROGRAM_POPULATION
        if self.runtime.population:
            return PopulationChoice(self.runtime.population, "set by the worker's --population")
        choice = self.populations.get(ctx.job_id)
        if choice is None:
            settings = TrainSettings.from_spec(ctx.spec, self.runtime.identity.device)
            choice = self.populations[ctx.job_id] = population_for(ctx.spec, ctx.workload, settings)
            if choice.timings:
                with transaction(self.runtime.sessions) as s:
                    events.add_event(s, ctx.job_id, "population", choice.reason, self.owner)
        return choice

    def hand_out(self, ctx: JobContext, most: int) -> list[optuna.Trial] | str:
        """Under the search lock: reap stale trials, count, ask up to ``most`` owed trials.

        Stale trials are reaped when nothing else is owed, or once per heartbeat interval:
        an unreaped stale trial only makes the count conservative (it still counts as
        running), never exceeds the budget, and saves a query per trial.
        """
        with self.search_lock(ctx.job_id, self.owner) as grant:
            if isinstance(grant, LockRefused):
                return BUSY if grant.searching else NOTHING
            trials, count = self._count(ctx)
            if count.done or count.exhausted:
                ctx.progress_pending = False
                return FINALISED if self.finalise(ctx, trials, count) else NOTHING
            driver = self.driver(ctx)  # owed() enqueues the confirmations, once, under the lock
            asked = driver.ask(min(most, driver.owed(trials, count)))
        if ctx.progress_pending:  # the trials this worker told last, recorded outside the lock
            self.record_progress(ctx, trials, count)
        if not asked:
            return NOTHING
        numbers = ", ".join(str(t.number) for t in asked)
        log.info("job %s: trial %s started (%d/%d finished)", ctx.job_id, numbers,
                 count.finished, ctx.total)
        return asked

    def driver(self, ctx: JobContext) -> SearchDriver:
        """The search loop's ask/tell/count for this job, as this worker: every asked trial
        gets a heartbeat at once and this worker's id and device."""
        identity = self.runtime.identity
        settings = TrainSettings.from_spec(ctx.spec, identity.device)
        tags = {"worker_id": identity.worker_id, "device": identity.device,
                **self.population(ctx).trial_attrs(settings)}  # precision, population_reason
        return SearchDriver(
            ctx.study, ctx.total, tags=tags,
            on_ask=self._first_heartbeat, label=f"job {ctx.job_id}: ",
            plan=confirm.plan_for(ctx.spec),
        )

    def _count(self, ctx: JobContext) -> tuple[list[FrozenTrial], BudgetCount]:
        """The study's trials and budget, after reaping stale trials when due."""
        reap_due = time.monotonic() - ctx.reaped_at > self.runtime.timing.heartbeat_interval
        if reap_due:
            self._reap(ctx)
        trials, count = self.driver(ctx).count()
        if count.owed == 0 and count.running > 0 and not reap_due:
            self._reap(ctx)
            trials, count = self.driver(ctx).count()
        ctx.finished_seen = count.finished
        return trials, count

    def _reap(self, ctx: JobContext) -> None:
        """Fail the job's stale trials (re-enqueued by the storage's retry callback), after
        giving a heartbeat to any trial asked but never heartbeated (:meth:`_adopt_orphans`)."""
        self._adopt_orphans(ctx)
        optuna.storages.fail_stale_trials(ctx.study)
        ctx.reaped_at = time.monotonic()

    def _first_heartbeat(self, trial: optuna.Trial) -> None:
        self.runtime.storage.record_heartbeat(trial_id(trial))

    @contextmanager
    def search_lock(self, job_id: str, owner: str) -> Iterator[LockGrant | LockRefused]:
        """Hold the job's search lock for the block, if granted (``grant.held``)."""
        with transaction(self.runtime.sessions) as s:
            grant = claims.acquire_search_lock(s, job_id, owner, self.runtime.timing.lock_ttl)
        if not grant.held:
            yield grant
            return
        try:
            yield grant
        finally:
            self._release(job_id, owner)

    def _release(self, job_id: str, owner: str) -> None:
        try:
            with transaction(self.runtime.sessions) as s:
                held = claims.release_search_lock(s, job_id, owner)
        except TRANSIENT_ERRORS as exc:
            log.warning("could not release the search lock of job %s (%s); it expires by itself",
                        job_id, exc)
            return
        if not held:
            log.warning("the search lock of job %s expired while held by %s; "
                        "the job may get one trial more than its budget", job_id, owner)

    def _adopt_orphans(self, ctx: JobContext) -> None:
        """Give a heartbeat to trials that were asked but never heartbeated.

        Trials are asked under the search lock and get their first heartbeat there, so a
        RUNNING trial without one, seen under the lock, was left by an ask that failed half
        way: its worker died, or lost the database between creating the trial and beating
        for it (and carried on with other trials). Optuna only fails stale trials that have
        a heartbeat; with one, such a trial is failed and re-enqueued after the grace period
        like any other trial of a dead worker, instead of holding the job's budget forever.
        """
        with transaction(self.runtime.sessions) as s:
            orphans = running_trials_without_heartbeat(s, ctx.study_name)
        for orphan in orphans:
            log.warning("job %s: trial id %d has no heartbeat (its worker died or lost the "
                        "database while asking it); it will be re-run after the grace period",
                        ctx.job_id, orphan)
            self.runtime.storage.record_heartbeat(orphan)

    def reap_stale(self, job_id: str) -> None:
        """Fail (and re-enqueue) the stale trials of a job; called by the heartbeat thread."""
        ctx = self.cache.peek(job_id)
        if ctx is None:
            return
        with self.search_lock(job_id, f"{self.owner}#heartbeat") as grant:
            if grant.held:
                optuna.storages.fail_stale_trials(ctx.study)

    # ------------------------------------------------------------------ training
    def should_stop(self) -> bool:
        """Polled by the training loop: stop on SIGTERM or when the job left ``searching``."""
        hb = self.heartbeat
        return self.stopping.is_set() or (hb is not None and hb.job_stopped.is_set())

    def run(self, ctx: JobContext, trials: list[optuna.Trial]) -> None:
        """Train the trials, tell their outcomes, record progress (or hand them back)."""
        assert self.heartbeat is not None
        self.heartbeat.watch(ctx.job_id, trial_ids=tuple(trial_id(t) for t in trials))
        try:
            outcomes = self._train(ctx, trials)
        except TrialInterrupted as exc:
            self._interrupted(ctx, trials, exc.step)
            return
        except TRANSIENT_ERRORS as exc:
            log.warning("job %s: database error during trials %s (%s); handing them back",
                        ctx.job_id, [t.number for t in trials], describe(exc))
            self.hand_back(ctx, trials, "handed back: its worker lost the database connection")
            return
        except Exception as exc:  # a workload bug must cost these trials, never the worker
            log.exception("job %s: trials %s raised", ctx.job_id, [t.number for t in trials])
            for trial in trials:
                self._fail(ctx, trial, f"{type(exc).__name__}: {exc}")
        else:
            driver = self.driver(ctx)
            for trial, outcome in zip(trials, outcomes, strict=True):
                driver.tell(trial, outcome)
        finally:
            self.heartbeat.watch(ctx.job_id)
        ctx.progress_pending = True
        if self.stopping.is_set() or ctx.finished_seen + len(trials) >= ctx.total:
            self.after_trials(ctx)  # no next hand-out to carry it, or the budget may be spent

    def _train(self, ctx: JobContext, trials: list[optuna.Trial]) -> list[TrialOutcome]:
        """One at a time, or as a population (which falls back itself where it cannot vmap)."""
        settings = TrainSettings.from_spec(ctx.spec, self.runtime.identity.device)
        if ctx.program is not None and ctx.runner is not None:  # the user's script, a child each
            programs = ProgramTrainer(ctx.runner, ctx.program)
            return programs(trials, None, settings, ctx.space, self.should_stop)
        assert ctx.workload is not None
        train = train_population if len(trials) > 1 else train_trials
        return train(trials, ctx.workload, settings, ctx.space, self.should_stop)

    def _fail(self, ctx: JobContext, trial: optuna.Trial, reason: str) -> None:
        trial.set_user_attr(REASON_ATTR, reason)
        ctx.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)

    def _interrupted(self, ctx: JobContext, trials: list[optuna.Trial], step: int) -> None:
        if self.stopping.is_set():
            self.hand_back(ctx, trials, f"handed back at step {step}: its worker was stopping")
            return
        log.info("job %s: trials %s stopped at step %d: the job is no longer searching",
                 ctx.job_id, [t.number for t in trials], step)
        for trial in trials:
            self._fail(ctx, trial, f"stopped at step {step}: the job was cancelled")

    def hand_back(self, ctx: JobContext, trials: Sequence[optuna.Trial], reason: str) -> None:
        """Fail the trials and re-enqueue each with the same parameters, as for a dead worker.

        Done under the search lock so that no worker counts the study between the two writes;
        a trial this worker already told (a finished population member) is left as it is.
        """
        callback = self.runtime.storage.get_heartbeat_stale_trial_callback()
        deadline = time.monotonic() + HAND_BACK_WAIT_S
        while True:
            with self.search_lock(ctx.job_id, self.owner) as grant:
                if grant.held:
                    self._fail_and_requeue(ctx, trials, reason, callback)
                    return
            if isinstance(grant, LockRefused) and not grant.searching:
                log.info("job %s left searching; its trials %s stay as they are", ctx.job_id,
                         [t.number for t in trials])
                return
            if time.monotonic() > deadline:
                log.warning("job %s: search lock busy; trials %s will be re-run after the grace "
                            "period instead", ctx.job_id, [t.number for t in trials])
                return
            time.sleep(0.05)

    def _fail_and_requeue(
        self, ctx: JobContext, trials: Sequence[optuna.Trial], reason: str, callback: Any
    ) -> None:
        """Under the lock: FAIL each still-running trial, then enqueue its retry."""
        for trial in trials:
            if self.runtime.storage.get_trial(trial_id(trial)).state != TrialState.RUNNING:
                continue
            self._fail(ctx, trial, reason)
            if callback is not None:
                callback(ctx.study, self.runtime.storage.get_trial(trial_id(trial)))
            log.info("job %s: trial %d %s", ctx.job_id, trial.number, reason)

    # ------------------------------------------------------------------ progress
    def after_trials(self, ctx: JobContext) -> None:
        """Record progress and a partial recommendation, or finalise when the budget is spent.

        Usually the worker's next hand-out does this with the trials it reads anyway (one
        read of the study fewer per trial); this is for when there is no next hand-out.
        """
        trials, count = self.driver(ctx).count()
        if count.done or count.exhausted:
            ctx.progress_pending = False
            self.finalise(ctx, trials, count)
            return
        self.record_progress(ctx, trials, count)

    def record_progress(
        self, ctx: JobContext, trials: Sequence[FrozenTrial], count: BudgetCount
    ) -> None:
        """Write the job's progress and, when it changed, a partial recommendation."""
        ctx.progress_pending = False
        partial = self.partial_recommendation(ctx, trials)
        progress = progress_of(ctx, trials, count)
        with transaction(self.runtime.sessions) as s:
            claims.record_progress(s, ctx.job_id, progress, partial)

    def partial_recommendation(
        self, ctx: JobContext, trials: Sequence[FrozenTrial]
    ) -> dict[str, Any] | None:
        """A fresh partial recommendation when the best trial changed, else now and then.

        Fitting parameter importances (a random forest: 0.2 s at 30 trials, 2.5 s at 300 on
        one CPU core) is most of a recommendation's cost, so a partial one is rebuilt when the
        best trial changes or every ``PARTIAL_REFRESH_S`` seconds, and its importances are
        refitted at most that often: the best configuration shows at once, importances
        within ``PARTIAL_REFRESH_S``.
        Progress counters are written after every trial regardless.
        """
        best = best_trial(trials)
        now = time.monotonic()
        if best is None or (
            best.number == ctx.partial_best and now - ctx.partial_at <= PARTIAL_REFRESH_S
        ):
            return None
        refit = not ctx.importances or now - ctx.importances_at > PARTIAL_REFRESH_S
        partial = recommendation(
            ctx, trials, final=False, known_importances=None if refit else ctx.importances
        )
        if partial is not None:
            ctx.partial_best, ctx.partial_at = best.number, now
            if refit:
                ctx.importances, ctx.importances_at = partial["importances"], now
        return partial

    def finalise(
        self, ctx: JobContext, trials: Sequence[FrozenTrial], count: BudgetCount
    ) -> bool:
        """``searching`` → ``completed`` with the final recommendation; True for the one winner.

        A job whose trials all failed (or none completed) is failed with the reason instead.
        """
        worker_id = self.runtime.identity.worker_id
        body = recommendation(ctx, trials, final=True) if count.done else None
        with transaction(self.runtime.sessions) as s:
            if body is None:
                error = no_result_error(ctx, trials)
                won = claims.fail_job(s, ctx.job_id, (JobStatus.SEARCHING,), error, worker_id)
            else:
                progress = progress_of(ctx, trials, count)
                won = claims.finalise(s, ctx.job_id, progress, body, worker_id)
        if won:
            log.info("job %s %s: %d trials finished", ctx.job_id,
                     "completed" if body is not None else "failed", count.finished)
        return won


def recommendation(
    ctx: JobContext,
    trials: Sequence[FrozenTrial],
    *,
    final: bool,
    known_importances: dict[str, float] | None = None,
) -> dict[str, Any] | None:
    """The recommendation so far; None while no trial has completed."""
    try:
        return recommend.build_recommendation(
            trials, spec=ctx.spec, sweep=ctx.sweep, final=final,
            known_importances=known_importances,
        )
    except recommend.NoCompletedTrialsError:
        return None


def no_result_error(ctx: JobContext, trials: Sequence[FrozenTrial]) -> str:
    """Why a job ends without a recommendation, with the last failed trial's reason."""
    reasons = [t.user_attrs.get(REASON_ATTR) for t in trials if t.state == TrialState.FAIL]
    last = next((r for r in reversed(reasons) if r), None)
    detail = f"; last failure: {last}" if last else ""
    return (f"no trial completed ({len(trials)} trials){detail}; "
            f"see GET /v1/jobs/{ctx.job_id}/trials for each trial's reason")


def progress_of(
    ctx: JobContext, trials: Sequence[FrozenTrial], count: BudgetCount
) -> Progress:
    """Finished trials (COMPLETE + PRUNED), the best objective so far and the untuned
    baseline's objective."""
    return Progress(count.finished, best_value(trials), recommend.baseline_objective(trials))
