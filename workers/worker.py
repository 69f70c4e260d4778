"""The worker loop: register, heartbeat, claim a sweep or help a search, shut down cleanly.

One worker per device. Each turn of the loop it first claims the LR range test of a queued
job (a sweep is short and starts a new job), else runs one trial of the oldest searching
job that still owes one, else sleeps ``poll_interval``. It never writes SQL itself: every
database operation is in ``tuner.db.claims`` and the other query modules.

Shutdown: the first SIGTERM (or SIGINT) hands the running trial back (re-enqueued with the
same parameters for another worker) or finishes the short sweep in hand, marks the worker
stopped and exits 0; a second one exits at once (its work is then recovered like a crash's).
A lost database connection is logged; the worker backs off, reconnects and carries on.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

from tuner.db import claims, workers
from tuner.db.engine import transaction
from tuner.db.models import Job
from tuner.db.status import JobStatus
from workers.context import ContextCache
from workers.errors import TRANSIENT_ERRORS, Backoff, describe
from workers.heartbeat import HeartbeatThread
from workers.runtime import Runtime
from workers.sweep import run_sweep
from workers.trials import BUSY, NOTHING, TrialRunner

log = logging.getLogger(__name__)

WORKED, IDLE = "worked", "idle"
BUSY_WAIT_S = 0.05  # another worker holds the search lock for a few milliseconds
EXIT_AT_ONCE = 128 + signal.SIGTERM


class Worker:
    """One worker process's loop over the shared store."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.stopping = threading.Event()
        self.cache = ContextCache(runtime)
        self.trials = TrialRunner(runtime, self.cache, self.stopping)
        self.heartbeat = HeartbeatThread(runtime, self.trials.reap_stale)
        self.trials.heartbeat = self.heartbeat
        self._signals = 0
        self._searching: list[Job] = []
        self._next_discovery = 0.0

    # ------------------------------------------------------------------ lifecycle
    def install_signal_handlers(self) -> None:
        """First SIGTERM/SIGINT: finish or hand back, then exit 0. Second: exit at once."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.warning("%s received: handing back the current trial and stopping "
                        "(send it again to exit at once)", name)
            self.stopping.set()
            return
        log.warning("second %s received: exiting at once", name)
        os._exit(EXIT_AT_ONCE)

    def run(self) -> int:
        """Run until asked to stop; returns the process exit code (0 after a clean stop)."""
        ident = self.runtime.identity
        if not self._register():
            return 0
        log.info("worker %s registered: device %s, workloads %s, programs %s", ident.worker_id,
                 ident.device, ", ".join(ident.workloads),
                 ", ".join(p.name for p in ident.programs) or "none")
        self.heartbeat.start()
        try:
            self._loop()
        finally:
            self.heartbeat.stop()
            self._mark_stopped()
            self.runtime.close()
        log.info("worker %s stopped", ident.worker_id)
        return 0

    def _register(self) -> bool:
        """Insert or revive the worker's row, retrying while the database is unreachable."""
        ident = self.runtime.identity
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                with transaction(self.runtime.sessions) as s:
                    workers.register_worker(
                        s, worker_id=ident.worker_id, hostname=ident.hostname, pid=ident.pid,
                        device=ident.device, workloads=list(ident.workloads),
                        device_info=self.heartbeat.probe.read(),
                        programs=[p.describe() for p in ident.programs],
                    )
                return True
            except TRANSIENT_ERRORS as exc:
                delay = backoff.next_delay()
                log.warning("cannot register (database unreachable?): %s; retrying in %.1fs",
                            describe(exc), delay)
                self.stopping.wait(delay)
        return False

    def _mark_stopped(self) -> None:
        try:
            with transaction(self.runtime.sessions) as s:
                workers.mark_stopped(s, self.runtime.identity.worker_id)
        except TRANSIENT_ERRORS as exc:
            log.warning("could not mark the worker stopped: %s", exc)

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                outcome = self.step()
            except TRANSIENT_ERRORS as exc:
                delay = backoff.next_delay()
                log.warning("database error: %s; reconnecting in %.1fs", describe(exc), delay)
                self.heartbeat.idle()
                self.stopping.wait(delay)
                continue
            if backoff.failures:
                log.info("database reachable again; carrying on")
                backoff.reset()
            if outcome == IDLE:
                self.stopping.wait(self.runtime.timing.poll_interval)
            elif outcome == BUSY:
                self.stopping.wait(BUSY_WAIT_S)

    def step(self) -> str:
        """One turn: sweep a queued job, or run one trial of a searching job, or nothing.

        While busy, the worker looks for new jobs (a sweep to claim, the searching jobs) at
        most once per poll interval, not before every trial: two queries fewer per trial.
        """
        if time.monotonic() >= self._next_discovery:
            job = self._claim_sweep()
            if job is not None:
                log.info("job %s: claimed its LR range test", job.id)
                run_sweep(self.runtime, self.heartbeat, job, self.stopping)
                return WORKED
            self._discover_searching()
        busy = False
        for job in self._searching:
            outcome = self._search_step(job)
            if outcome not in (NOTHING, BUSY):
                return WORKED
            busy = busy or outcome == BUSY
        self.heartbeat.idle()
        if not busy:
            self._next_discovery = 0.0  # nothing owed in the known jobs: look again next turn
        return BUSY if busy else IDLE

    def _claim_sweep(self) -> Job | None:
        ident = self.runtime.identity
        with transaction(self.runtime.sessions) as s:
            return claims.claim_sweep(s, ident.worker_id, ident.claimable(),
                                      self.runtime.timing.sweep_lease,
                                      self.runtime.timing.max_sweep_attempts)

    def _discover_searching(self) -> None:
        with transaction(self.runtime.sessions) as s:
            self._searching = claims.searching_jobs(s, self.runtime.identity.claimable())
        self.cache.keep_only({job.id for job in self._searching})
        self._next_discovery = time.monotonic() + self.runtime.timing.poll_interval

    def _search_step(self, job: Job) -> str:
        """One trial of ``job``; a job the worker cannot even load is failed with the reason."""
        try:
            ctx = self.cache.get(job)
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            log.exception("job %s: cannot load its study", job.id)
            error = f"worker {self.runtime.identity.worker_id} cannot load the job: {exc}"
            with transaction(self.runtime.sessions) as s:
                worker_id = self.runtime.identity.worker_id
                claims.fail_job(s, job.id, (JobStatus.SEARCHING,), error, worker_id)
            return NOTHING
        self.heartbeat.watch(job.id)
        return self.trials.work_on(ctx)
