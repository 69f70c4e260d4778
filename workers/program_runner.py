"""Run a program for one phase of a job: launch it, serve its channel, end it, say how it went.

The child runs in its own process group (``torchrun`` and whatever the script spawns
belong to it), with the trial named in its environment (:mod:`adamtune.sdk.protocol`), the
worker's device in ``CUDA_VISIBLE_DEVICES``, stdout and stderr in the trial's log file.
It is ended, SIGTERM then SIGKILL after the program's grace, when its outcome is known
(pruned, diverged), when the worker stops (the trial is handed back) or at its time limit;
the group is killed on the way out whatever happened, so no child outlives its trial.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from adamtune.sdk import protocol
from tuner.lr_range import SweepResult
from tuner.optim import OptimConfig
from tuner.spec import SweepSpec
from tuner.train import ReportFn, StopFn, TrainSettings, TrialInterrupted, TrialResult
from workers.program_channel import ChannelServer
from workers.program_sessions import SweepSession, TrialSession
from workers.programs import Program

log = logging.getLogger(__name__)

POLL_S = 0.05
STDERR_TAIL_LINES = 40
REASON_TAIL_CHARS = 2000  # the stderr tail kept in a failed trial's reason


class Session(Protocol):
    """The worker's side of one run (:mod:`workers.program_sessions`)."""

    @property
    def ended(self) -> bool: ...

    def handle(self, message: dict[str, Any]) -> dict[str, Any]: ...


class ProgramFailed(RuntimeError):
    """The program's sweep produced no curve: crashed, timed out or reported too little."""


@dataclass
class ProgramRun:
    """One child process of a program: what a caller may inspect after the run."""

    pid: int
    log_path: Path
    returncode: int | None = None
    stderr_tail: str = ""


def device_environment(device: str) -> dict[str, str]:
    """``cuda:N`` -> the child sees only GPU N (as cuda:0); ``cpu`` -> it sees no GPU."""
    if device.startswith("cuda:"):
        return {"CUDA_VISIBLE_DEVICES": device.split(":", 1)[1]}
    if device == "cpu":
        return {"CUDA_VISIBLE_DEVICES": ""}
    return {}


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _drain(stream: IO[bytes], log_file: IO[bytes], tail: collections.deque[str]) -> None:
    """Copy the child's stderr into its log, keeping the last lines for a failure's reason."""
    for line in iter(stream.readline, b""):
        log_file.write(line)
        log_file.flush()
        tail.append(line.decode(errors="replace"))
    stream.close()


class ProgramRunner:
    """Runs a worker's programs; one phase at a time, each in a fresh child process."""

    def __init__(self, device: str = "cpu", log_dir: str | Path | None = None):
        self.device = device
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="adamtune-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.last_run: ProgramRun | None = None

    # ------------------------------------------------------------------ phases
    def run_sweep(
        self,
        program: Program,
        spec: SweepSpec,
        *,
        seed: int,
        should_stop: StopFn | None = None,
        log_name: str = "sweep",
    ) -> SweepResult:
        """The LR range test of ``program``: its curve and suggestions.

        Raises :class:`ProgramFailed` with the reason and stderr tail when the program
        crashed, ran past its time limit or reported too little to suggest anything, and
        TrialInterrupted when ``should_stop()`` turned True first (the sweep is handed back).
        """
        session = SweepSession(spec)
        env = {
            protocol.PHASE: "sweep",
            protocol.SWEEP_SPEC: spec.model_dump_json(),
            protocol.TOTAL_STEPS: str(spec.steps),
            protocol.SEED: str(seed),
        }
        stopped = threading.Event()

        def stopping() -> bool:
            if should_stop is not None and not session.ended and should_stop():
                stopped.set()
            return stopped.is_set()

        ending = self._run(program, env, session, stopping, log_name)
        if stopped.is_set():
            raise TrialInterrupted(session.last_step + 1)
        clean_exit = self.last_run is not None and self.last_run.returncode == 0
        if ending is not None and not clean_exit:
            raise ProgramFailed(f"sweep of program {program.name!r}: {ending}")
        try:
            return session.result()
        except ValueError as exc:
            raise ProgramFailed(f"sweep of program {program.name!r}: {exc}") from exc

    def run_trial(
        self,
        program: Program,
        cfg: OptimConfig,
        settings: TrainSettings,
        *,
        number: int | None = None,
        report: ReportFn | None = None,
        should_stop: StopFn | None = None,
        log_name: str | None = None,
        on_start: Callable[[ProgramRun], None] | None = None,
    ) -> TrialResult:
        """One trial of ``program`` with ``cfg``: a TrialResult, or TrialInterrupted.

        The log goes to ``log_dir/<program>-<log_name>.log`` (default ``trial-<number>``);
        ``on_start`` is called with the run (its pid and log) once the child has started.
        """
        session = TrialSession(cfg, settings.total_steps, report)
        env = {
            protocol.PHASE: "trial",
            protocol.TRIAL_CONFIG: json.dumps(cfg.to_dict()),
            protocol.TOTAL_STEPS: str(settings.total_steps),
            protocol.EVAL_EVERY: str(settings.eval_every),
            protocol.SEED: str(settings.seed),
        }
        if number is not None:
            env[protocol.TRIAL_NUMBER] = str(number)

        def stopping() -> bool:
            if should_stop is not None and not session.ended and should_stop():
                session.handed_back = True
            return session.handed_back

        name = log_name or (f"trial-{number}" if number is not None else "trial")
        ending = self._run(program, env, session, stopping, name, on_start)
        if session.handed_back and session.outcome is None:
            raise TrialInterrupted(session.steps)
        if session.outcome is not None:
            return session.outcome
        return TrialResult("failed", None, ending, session.steps, session.curve, config=cfg)

    # ------------------------------------------------------------------ one child
    def _environment(self, program: Program, phase_env: dict[str, str], path: str) -> dict:
        env = dict(os.environ)
        env.update(program.environment)
        env.update(device_environment(self.device))
        env.update(phase_env)
        env[protocol.SOCKET] = path
        env.setdefault("PYTHONUNBUFFERED", "1")  # the log reads in the order things happened
        env.pop(protocol.CONFIG_FILE, None)
        return env

    def _run(
        self,
        program: Program,
        phase_env: dict[str, str],
        session: Session,
        stopping: Callable[[], bool],
        log_name: str,
        on_start: Callable[[ProgramRun], None] | None = None,
    ) -> str | None:
        """Run the child to its end; None if it ended as the session decided, else why not."""
        self.last_run = None  # until this run's child has started
        server = ChannelServer(session.handle)
        log_path = self.log_dir / f"{program.name}-{log_name}.log"
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        with open(log_path, "ab") as log_file:
            try:
                child = subprocess.Popen(
                    program.command,
                    cwd=program.working_directory,
                    env=self._environment(program, phase_env, server.path),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # its own process group, ended as one
                )
            except OSError as exc:
                server.close()
                return f"program {program.name!r} could not start: {exc}"
            self.last_run = ProgramRun(child.pid, log_path)
            drain = threading.Thread(
                target=_drain, args=(child.stderr, log_file, tail), daemon=True
            )
            drain.start()
            try:
                if on_start is not None:
                    on_start(self.last_run)
                ending = self._watch(program, child, session, stopping)
            finally:
                self._end(child, program.grace)
                server.close()
                drain.join(timeout=5)
        stderr_tail = "".join(tail)[-REASON_TAIL_CHARS:]
        self.last_run.returncode, self.last_run.stderr_tail = child.returncode, stderr_tail
        if ending is None:
            return None
        return f"{ending}; stderr tail:\n{stderr_tail}" if stderr_tail.strip() else ending

    def _watch(
        self,
        program: Program,
        child: subprocess.Popen[bytes],
        session: Session,
        stopping: Callable[[], bool],
    ) -> str | None:
        start = time.monotonic()
        name, limit = program.name, program.time_limit
        while True:
            code = child.poll()
            if session.ended or stopping():
                return None
            if code is not None:
                if code == 0:
                    return f"program {name!r} exited without calling trial.finish()"
                return f"program {name!r} exited with code {code}"
            if limit is not None and time.monotonic() - start > limit:
                return f"program {name!r} exceeded its time limit of {limit:g}s: killed"
            time.sleep(POLL_S)

    @staticmethod
    def _end(child: subprocess.Popen[bytes], grace: float) -> None:
        """Let an ended child exit on its own for ``grace`` seconds, then SIGTERM, then kill."""
        try:
            child.wait(timeout=min(grace, 2.0))
        except subprocess.TimeoutExpired:
            _kill_group(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(child.pid, signal.SIGKILL)  # the leader's children too, whatever happened
        child.wait()
