"""``adamtune tune`` for a program job: the user's script runs as a child process per phase.

:func:`tuner.local_search.run_local_search` runs the job as it runs a workload job (the same
driver, budget, confirmation and recommendation); this module gives it the LR range test and
the batch trainer of the worker (:class:`workers.program_runner.ProgramRunner`,
:class:`workers.program_trials.ProgramTrainer`), with the programs of the command line
(``--program NAME=CMD``, ``--programs FILE``) and the logs in a folder here. SIGINT and SIGTERM
end the running child (SIGTERM to its process group, SIGKILL after its grace), then the
command exits 130 or 143: no child outlives it.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import optuna
from optuna.trial import TrialState

from tuner.lr_range import SweepResult
from tuner.spec import JobSpec
from tuner.train import StopFn, TrialInterrupted
from workers.program_runner import ProgramFailed, ProgramRunner
from workers.program_trials import ProgramTrainer
from workers.programs import Program, ProgramError, collect_programs

DEFAULT_LOG_ROOT = Path("adamtune-logs")


class LocalTuneError(Exception):
    """The command's end with a message on stderr and an exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def find_program(
    spec: JobSpec, options: Sequence[str], files: Sequence[str], where: str
) -> Program:
    """The program ``spec`` names, from the command line's definitions (ProgramError if absent
    or if a definition is bad; the message says how to fix it)."""
    assert spec.program is not None
    programs = collect_programs(options, files)
    program = programs.get(spec.program)
    if program is None:
        given = ", ".join(sorted(programs)) or "none"
        raise ProgramError(
            f"{where}: the job names program {spec.program!r}, which is not given here "
            f"(programs given: {given}); add --program {spec.program}='python train.py ...' "
            f"or --programs FILE with a {spec.program!r} entry (docs/programs.md)"
        )
    return program


def default_log_dir(spec: JobSpec) -> Path:
    """``./adamtune-logs/<job name>/`` (the program's name for a job without one)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.name or spec.program or "job").strip("-.")
    return DEFAULT_LOG_ROOT / (name or "job")


class StopSignals:
    """While entered, SIGINT and SIGTERM set a flag (``stop()`` is True) instead of killing
    this process, so the running child is ended cleanly by its runner."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __call__(self) -> bool:
        return self.signum is not None


class LocalProgram:
    """A program job's range test and batch trainer, run here by the worker's runner."""

    def __init__(self, program: Program, device: str, log_dir: Path, stop: StopFn):
        self.program, self.stop = program, stop
        self.runner = ProgramRunner(device, log_dir)
        self.trainer = ProgramTrainer(self.runner, program, stop, self._fail_interrupted)

    def sweep(self, spec: JobSpec) -> SweepResult:
        return self.runner.run_sweep(
            self.program, spec.sweep, seed=spec.seed, should_stop=self.stop
        )

    @staticmethod
    def _fail_interrupted(trials: Sequence[optuna.Trial]) -> None:
        """Fail the trials a signal interrupted: a ``--storage`` run resumes without them."""
        for trial in trials:
            trial.set_user_attr("reason", "interrupted: adamtune tune was stopped")
            trial.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


@contextmanager
def program_search(
    program: Program, device: str, log_dir: Path
) -> Iterator[dict[str, Any]]:
    """The ``sweep`` and ``train`` arguments of ``run_local_search`` for ``program``; turns a
    failed range test and a stop by signal into :class:`LocalTuneError`."""
    with StopSignals() as stop:
        local = LocalProgram(program, device, log_dir, stop)
        try:
            yield {"sweep": local.sweep, "train": local.trainer}
        except ProgramFailed as exc:
            run = local.runner.last_run
            where = f"\n(log: {run.log_path})" if run is not None else ""
            raise LocalTuneError(f"the LR range test failed: {exc}{where}", 1) from exc
        except TrialInterrupted as exc:
            if stop.signum is None:
                raise
            name = signal.Signals(stop.signum).name
            raise LocalTuneError(
                f"stopped by {name}: the running program was ended; logs in {log_dir}/",
                128 + stop.signum,
            ) from exc
