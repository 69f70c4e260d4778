"""``adamtune tune FILE``: sweep and search in this process, print the recommendation.

A workload job trains in this process; a program job runs the user's script as a child
process per phase (``--program NAME=CMD``, ``--programs FILE``; :mod:`adamtune.cli.tune_program`).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from adamtune.cli.render import render_recommendation
from tuner.spec import JobFileError, JobSpec, load_job_file, parse_job

log = logging.getLogger(__name__)

EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"adamtune tune: error: {message}", file=sys.stderr)
    return code


def _check_device(device: str) -> str | None:
    """A message if ``device`` cannot be used here, else None."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return f"--device {device!r} is not a device; use cpu or cuda:N"
    if dev.type == "cpu":
        return None
    if dev.type != "cuda":
        return f"--device {device!r} is not supported; use cpu or cuda:N"
    if not torch.cuda.is_available():
        return f"--device {device!r}: no CUDA device is available here; use --device cpu"
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        return f"--device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here"
    return None


class _ProgressPrinter:
    """One line per event on stderr: phase, trial i/N, best so far."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, phase: str, done: int, total: int, best: float | None, message: str) -> None:
        elapsed = time.monotonic() - self.start
        best_s = f" best {best:.4g}" if best is not None else ""
        if phase == "search":
            line = f"[{elapsed:6.1f}s] search {done}/{total}{best_s} | {message}"
        else:
            line = f"[{elapsed:6.1f}s] {phase}{best_s} {message}".rstrip()
        print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        spec = load_job_file(args.file)
        if args.population is not None:
            spec = parse_job({**spec.model_dump(), "population": args.population})
    except JobFileError as exc:
        return _fail(str(exc))
    if spec.program is not None:
        return _tune_program(spec, args)
    from tuner.workloads import UnknownWorkloadError, get

    try:
        get(spec.workload or "")
    except UnknownWorkloadError as exc:
        return _fail(f"{args.file}: workload: {exc}")
    problem = _check_device(args.device)
    if problem:
        return _fail(problem)
    return _tune(spec, args, nullcontext({}))


def _tune_program(spec: JobSpec, args: argparse.Namespace) -> int:
    """A program job: its script, given on the command line, runs once per phase."""
    from adamtune.cli.tune_program import default_log_dir, find_program, program_search
    from workers.programs import ProgramError

    try:
        program = find_program(spec, args.program, args.programs, args.file)
    except ProgramError as exc:
        return _fail(str(exc))
    problem = _check_device(args.device)
    if problem:
        return _fail(problem)
    log_dir = Path(args.log_dir) if args.log_dir else default_log_dir(spec)
    print(f"program {program.name}: {shlex.join(program.command)} (logs in {log_dir}/)",
          file=sys.stderr, flush=True)
    return _tune(spec, args, program_search(program, args.device, log_dir))


def _limit_cpu_threads(device: str) -> None:
    """One intra-op thread on CPU unless OMP_NUM_THREADS says otherwise.

    The built-in models are tiny: a second thread gains little, and on a shared machine
    torch's spinning worker threads made a trial 20x slower (measured on 2 busy cores).
    """
    import torch

    if device.startswith("cpu") and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def _tune(
    spec: JobSpec, args: argparse.Namespace, engine: AbstractContextManager[dict[str, Any]]
) -> int:
    """Run the search with ``engine``'s arguments (a program job's sweep and trainer)."""
    import optuna

    from adamtune.cli.tune_program import LocalTuneError
    from tuner.local_search import run_local_search
    from tuner.recommend import NoCompletedTrialsError
    from tuner.search import StudyConflictError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _limit_cpu_threads(args.device)
    try:
        with engine as runs:
            result = run_local_search(
                spec, device=args.device, storage=args.storage, progress=_ProgressPrinter(),
                **runs,
            )
    except LocalTuneError as exc:
        return _fail(str(exc), exc.code)
    except StudyConflictError as exc:
        return _fail(str(exc))
    except NoCompletedTrialsError:
        return _fail("no trial completed: every trial failed or diverged; see the reasons above", 1)
    print(render_recommendation(result.recommendation, "json" if args.json else "text"))
    return 0
