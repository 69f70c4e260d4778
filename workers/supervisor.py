"""One command per node: a worker process per device, restarted when it dies.

``adamtune worker --devices ...`` runs a :class:`Supervisor`. Each child is an ordinary
``adamtune worker`` pinned to its device with ``CUDA_VISIBLE_DEVICES``, under a stable id
(``HOST-cuda2``), so a restarted child revives its row in the workers table. A child that
dies (a crash, ``kill -9``, out of memory) is started again after an exponential backoff,
logged; the trial it held is re-run by the store's stale-trial check like any dead
worker's. A child that exits 0 stopped on purpose (it was signalled) and is not restarted.

SIGTERM or SIGINT to the supervisor is passed on to every child, so each hands back its
trial; a second one is passed on too (each child then exits at once). The supervisor exits
once every child has stopped: 0 when all of them stopped cleanly.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

from workers.devices import DeviceSlot

log = logging.getLogger(__name__)

EXIT_USAGE = 2  # the child's command line is wrong: starting it again cannot help
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff before a dead child is started again: ``first_delay`` doubling up to
    ``max_delay``; a child that ran ``stable_after`` seconds starts the count afresh."""

    first_delay: float = 1.0
    max_delay: float = 60.0
    stable_after: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.first_delay * 2 ** max(failures - 1, 0), self.max_delay))


@dataclass
class Managed:
    """One device's worker: its slot, its current process, and its restart history."""

    slot: DeviceSlot
    worker_id: str
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0  # consecutive short-lived deaths
    restarts: int = 0
    restart_at: float | None = None  # when a dead child is due to start again
    done: bool = False  # stopped for good: not restarted
    exit_codes: list[int] = field(default_factory=list)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def preexec_die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGTERM the child when this process dies, however
    it dies: a ``kill -9`` of the parent then leaves no orphan.

    Linux only (elsewhere None: the parent's own stop is all there is). libc is loaded
    here, before the fork. The signal fires when the *thread* that started the child
    exits, so start children from the main thread. ``adamtune up`` uses it too.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class Supervisor:
    """Runs, watches and restarts the worker processes of one node."""

    def __init__(
        self,
        slots: Sequence[DeviceSlot],
        worker_id_prefix: str,
        command: Callable[[DeviceSlot, str], list[str]],
        env: Mapping[str, str] | None = None,
        policy: RestartPolicy | None = None,
        poll_interval: float = 0.2,
    ):
        if not slots:
            raise ValueError("a supervisor needs at least one device")
        self.command = command
        self.env = dict(os.environ if env is None else env)
        self.policy = policy or RestartPolicy()
        self.poll_interval = poll_interval
        self.managed = [Managed(slot, f"{worker_id_prefix}-{slot.label}") for slot in slots]
        self._cpu_threads = self._threads_per_cpu_worker(slots)
        self._preexec = preexec_die_with_parent()
        self._signals: list[int] = []
        self._forwarded = 0

    # ------------------------------------------------------------------ lifecycle
    def install_signal_handlers(self) -> None:
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)  # passed on by the loop, not inside the handler

    @property
    def stopping(self) -> bool:
        return bool(self._signals)

    def run(self) -> int:
        """Start every child, keep them running until a stop signal, then wait for them.

        Returns 0 when every child's last exit was clean (code 0), else 1.
        """
        for managed in self.managed:
            self._start(managed)
        while not all(m.done for m in self.managed):
            self._pass_signals_on()
            now = time.monotonic()
            for managed in self.managed:
                self._check(managed, now)
            time.sleep(self.poll_interval)
        clean = all(m.exit_codes and m.exit_codes[-1] == 0 for m in self.managed)
        log.info("every worker of this node has stopped%s", "" if clean else " (not all cleanly)")
        return 0 if clean else 1

    # ------------------------------------------------------------------ children
    def _threads_per_cpu_worker(self, slots: Sequence[DeviceSlot]) -> dict[str, str]:
        """CPU workers of one node share its cores instead of each spinning on all of them."""
        cpu_workers = sum(1 for s in slots if s.device == "cpu")
        if not cpu_workers or "OMP_NUM_THREADS" in self.env:
            return {}
        return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // cpu_workers))}

    def _start(self, managed: Managed) -> None:
        slot = managed.slot
        env = {**self.env, **slot.environment()}
        if slot.device == "cpu":
            env.update(self._cpu_threads)
        command = self.command(slot, managed.worker_id)
        managed.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches the supervisor only, which passes it on
            preexec_fn=self._preexec,  # only prctl and getppid: safe after fork
        )
        managed.started_at = time.monotonic()
        managed.restart_at = None
        visible = slot.visible or "none"
        log.info("started worker %s on %s (pid %d, CUDA_VISIBLE_DEVICES=%s)", managed.worker_id,
                 slot.label, managed.process.pid, visible)

    def _check(self, managed: Managed, now: float) -> None:
        if managed.done:
            return
        if managed.process is None:  # dead, waiting for its backoff
            if self.stopping:
                managed.done = True
                log.info("worker %s: not restarted, the node is stopping", managed.worker_id)
            elif managed.restart_at is not None and now >= managed.restart_at:
                managed.restarts += 1
                self._start(managed)
                assert managed.process is not None
                log.info("worker %s restarted (restart %d): new pid %d", managed.worker_id,
                         managed.restarts, managed.process.pid)
            return
        code = managed.process.poll()
        if code is None:
            return
        self._exited(managed, code, now)

    def _exited(self, managed: Managed, code: int, now: float) -> None:
        assert managed.process is not None
        pid, managed.process = managed.process.pid, None
        managed.exit_codes.append(code)
        what = f"worker {managed.worker_id} (pid {pid}) {describe_exit(code)}"
        if code == 0:
            managed.done = True
            log.info("%s: it stopped cleanly and is not restarted", what)
            return
        if self.stopping:
            managed.done = True
            log.warning("%s while the node was stopping", what)
            return
        if code == EXIT_USAGE:
            managed.done = True
            log.error("%s: its command line is wrong (see its message above); not restarted",
                      what)
            return
        lived = now - managed.started_at
        managed.failures = 1 if lived >= self.policy.stable_after else managed.failures + 1
        delay = self.policy.delay(managed.failures)
        managed.restart_at = now + delay
        log.warning("%s after %.1fs; restarting it in %.1fs (backoff after %d failure(s))",
                    what, lived, delay, managed.failures)

    def _pass_signals_on(self) -> None:
        """Send every stop signal received so far on to the running children, once each."""
        while self._forwarded < len(self._signals):
            signum = self._signals[self._forwarded]
            self._forwarded += 1
            name = signal.Signals(signum).name
            running = [m for m in self.managed if m.process is not None]
            log.warning("%s received: passing it on to %d worker(s)%s", name, len(running),
                        "" if self._forwarded == 1 else " (they now exit at once)")
            for managed in running:
                assert managed.process is not None
                try:
                    managed.process.send_signal(signum)
                except ProcessLookupError:
                    pass
