"""The heartbeat thread: proves the worker alive and watches the work it holds.

Every ``heartbeat_interval`` seconds it stamps the worker's row (database clock), records
the Optuna heartbeat of the running trial (``storage.record_heartbeat``: Optuna only does
this itself inside ``study.optimize``, and our workers use ask/tell), renews the sweep lease,
and notices when the job it works on was cancelled. Every grace period it also fails the
stale trials of that job (``fail_stale_trials``), so a dead worker's trial is re-enqueued
even while every live worker is busy, and marks silent workers ``lost``. A lost database
connection is logged, never fatal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tuner.db import claims, workers
from tuner.db.engine import transaction
from tuner.db.status import ACTIVE_JOB_STATUSES
from workers.devices import DeviceProbe
from workers.errors import TRANSIENT_ERRORS, describe
from workers.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Watch:
    """What the worker holds right now: a job, and in it a sweep lease or running trials."""

    job_id: str | None = None
    trial_ids: tuple[int, ...] = ()
    sweeping: bool = False


class HeartbeatThread(threading.Thread):
    """Background liveness for one worker; the loop tells it what to watch."""

    def __init__(self, runtime: Runtime, reap_stale: Callable[[str], None]):
        super().__init__(name="adamtune-heartbeat", daemon=True)
        self.runtime = runtime
        self.reap_stale = reap_stale
        self.probe = DeviceProbe(runtime.identity.device)  # memory, utilisation per beat
        self.job_stopped = threading.Event()  # the watched job was cancelled or finished
        self.lease_lost = threading.Event()  # another worker took the watched sweep over
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._watch = Watch()
        self._beats = 0
        self._failing = False

    # ------------------------------------------------------------------ what to watch
    def watch(
        self, job_id: str | None, *, trial_ids: tuple[int, ...] = (), sweeping: bool = False
    ) -> None:
        """Watch a job (and its running trials or sweep lease); clears the stop flags."""
        with self._lock:
            self._watch = Watch(job_id, trial_ids, sweeping)
            self.job_stopped.clear()
            self.lease_lost.clear()

    def idle(self) -> None:
        self.watch(None)

    @property
    def watching(self) -> Watch:
        with self._lock:
            return self._watch

    # ------------------------------------------------------------------ the thread
    def run(self) -> None:
        interval = self.runtime.timing.heartbeat_interval
        while not self._halt.wait(interval):
            self.beat()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=self.runtime.timing.heartbeat_interval + 5)

    def beat(self) -> None:
        """One heartbeat; every failure is logged and retried at the next beat."""
        watch = self.watching
        try:
            self._beat_store(watch)
            for trial_id in watch.trial_ids:
                self.runtime.storage.record_heartbeat(trial_id)
            self._beats += 1
            if self._reap_due():
                self._mark_lost_workers()
                if watch.job_id is not None and not watch.sweeping:
                    self.reap_stale(watch.job_id)
        except TRANSIENT_ERRORS as exc:
            if not self._failing:
                log.warning("heartbeat failed (database unreachable?): %s; retrying",
                            describe(exc))
            self._failing = True
            return
        except Exception:
            log.exception("heartbeat failed unexpectedly; retrying at the next beat")
            return
        if self._failing:
            log.info("heartbeat: database reachable again")
            self._failing = False

    def _reap_due(self) -> bool:
        timing = self.runtime.timing
        every = max(1, timing.grace_period // timing.heartbeat_interval)
        return self._beats % every == 0

    def _mark_lost_workers(self) -> None:
        """Mark workers silent for a grace period ``lost`` (what ``GET /v1/workers`` shows)."""
        with transaction(self.runtime.sessions) as s:
            lost = workers.mark_lost_workers(s, self.runtime.timing.grace_period)
        if lost:
            log.warning("workers silent for %ss, marked lost: %s", self.runtime.timing.grace_period,
                        ", ".join(lost))

    def _beat_store(self, watch: Watch) -> None:
        worker_id = self.runtime.identity.worker_id
        lease = self.runtime.timing.sweep_lease
        with transaction(self.runtime.sessions) as s:
            workers.heartbeat(s, worker_id, current_job_id=watch.job_id,
                              device_info=self.probe.read())
            if watch.job_id is None:
                return
            if watch.sweeping and not claims.renew_sweep_lease(s, watch.job_id, worker_id, lease):
                if not self.lease_lost.is_set():
                    log.warning("lost the sweep lease of job %s", watch.job_id)
                self.lease_lost.set()
            status = claims.job_status(s, watch.job_id)
        if status not in ACTIVE_JOB_STATUSES and self.watching.job_id == watch.job_id:
            if not self.job_stopped.is_set():
                log.info("job %s is %s: stopping its work", watch.job_id, status)
            self.job_stopped.set()
