"""What a child process costs per trial, for ``benchmarks/overhead.py --programs-only``.

The same digits trial (the built-in ``digits_mlp`` workload: same configuration, seed, steps
and evaluation interval) two ways, one after the other, on one thread each:

- in process: :func:`tuner.train.run_trial`, what a worker runs for a workload job;
- as a program: :class:`workers.program_runner.ProgramRunner` running
  ``examples/programs/train.py`` (the same trial written as a plain PyTorch script), what a
  worker runs for a program job: a fresh child process per trial, talking to the worker over
  its Unix socket (a ``report`` and a ``should_stop`` round trip every step).

The child's time is split at the first and the last message it sends: start-up (process,
interpreter, imports, data, model, the first step), training (every other step, its reports
and evaluations) and the end (from ``finish`` until the runner has reaped the child). The
start-up is split further by timing bare children: ``python -c pass``, ``import torch``,
everything ``train.py`` imports and loads before its first step, and that plus one
``torch.optim`` optimizer (the first one built in a process imports ``torch._dynamo``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from tuner.optim import OptimConfig
from tuner.train import TrainSettings, run_trial
from tuner.workloads import get as get_workload
from workers import program_runner
from workers.program_sessions import TrialSession
from workers.programs import Program

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "programs" / "train.py"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CONFIG = OptimConfig(optimizer="adamw", lr=3e-3, weight_decay=1e-2, warmup_steps=10,
                     schedule="cosine")
EVAL_EVERY = 50
SEED = 0
# what train.py does before its first step, without training: its imports, its data, and
# its first torch.optim optimizer (whose construction imports torch._dynamo, once a process)
IMPORTS = ("import torch, torch.distributed, sklearn.datasets, adamtune, adamtune.sdk.optimizer;"
           " sklearn.datasets.load_digits(return_X_y=True)")
PRELUDE = {
    "interpreter": "pass",
    "import torch": "import torch",
    "train.py's imports + data": IMPORTS,
    "+ a first optimizer": f"{IMPORTS}; torch.optim.Adam([torch.zeros(1, requires_grad=True)])",
}


class _TimedSession(TrialSession):
    """A TrialSession that notes when the child's first message and its finish arrived."""

    first: float | None = None
    finished: float | None = None

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        if message.get("op") == "finish":
            self.finished = now
        return super().handle(message)


@contextmanager
def _timed_sessions() -> Iterator[list[_TimedSession]]:
    """The runner's trial sessions, timed, while the block runs."""
    made: list[_TimedSession] = []

    def factory(*args: Any, **kwargs: Any) -> _TimedSession:
        made.append(_TimedSession(*args, **kwargs))
        return made[-1]

    original = program_runner.TrialSession
    program_runner.TrialSession = factory  # type: ignore[assignment,misc]
    try:
        yield made
    finally:
        program_runner.TrialSession = original  # type: ignore[misc]


def in_process(settings: TrainSettings) -> dict[str, float]:
    """Seconds for one in-process trial (the workload's data already loaded), its value."""
    start = time.perf_counter()
    result = run_trial(get_workload("digits_mlp"), CONFIG, settings)
    elapsed = time.perf_counter() - start
    if result.state != "complete":
        raise RuntimeError(f"in-process trial {result.state}: {result.reason}")
    return {"total": elapsed, "value": float(result.value or 0.0)}


def as_program(runner: program_runner.ProgramRunner, settings: TrainSettings) -> dict[str, float]:
    """Seconds for one program trial, split into start-up, training and end."""
    program = Program(name="digits", command=(sys.executable, str(TRAIN)),
                      environment=ONE_THREAD, time_limit=600, grace=5)
    with _timed_sessions() as sessions:
        start = time.perf_counter()
        result = runner.run_trial(program, CONFIG, settings)
        end = time.perf_counter()
    if result.state != "complete":
        raise RuntimeError(f"program trial {result.state}: {result.reason}")
    session = sessions[-1]
    assert session.first is not None and session.finished is not None
    return {"total": end - start, "startup": session.first - start,
            "training": session.finished - session.first, "end": end - session.finished,
            "value": float(result.value or 0.0)}


def prelude(repeat: int) -> dict[str, dict[str, float]]:
    """Bare children, medians: seconds until each has run its code (the interpreter,
    torch's import, train.py's imports and data) and from then until it has exited."""
    env = {**os.environ, **ONE_THREAD}
    out = {}
    for label, code in PRELUDE.items():
        ready, exits = [], []
        for _ in range(repeat):
            start = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-c", f"{code}; print(flush=True)"],
                                     env=env, stdout=subprocess.PIPE)
            assert child.stdout is not None
            child.stdout.readline()
            ran = time.perf_counter()
            child.wait()
            ready.append(ran - start)
            exits.append(time.perf_counter() - ran)
        out[label] = {"ready": statistics.median(ready), "exit": statistics.median(exits)}
    return out


def program_overhead(steps: list[int], repeat: int) -> dict[str, Any]:
    """Interleaved rounds per step count: medians of the in-process and the program trial."""
    torch.set_num_threads(1)
    runner = program_runner.ProgramRunner(device="cpu", log_dir=tempfile.mkdtemp())
    in_process(TrainSettings(total_steps=10, eval_every=10, seed=SEED))  # loads the data once
    as_program(runner, TrainSettings(total_steps=10, eval_every=10, seed=SEED))  # warm caches
    rows = []
    for n in steps:
        settings = TrainSettings(total_steps=n, eval_every=EVAL_EVERY, seed=SEED)
        inside, child = [], []
        for _ in range(repeat):
            inside.append(in_process(settings))
            child.append(as_program(runner, settings))
        med = {k: statistics.median(c[k] for c in child) for k in child[0] if k != "value"}
        rows.append({"steps": n, "in_process_s": statistics.median(i["total"] for i in inside),
                     **{f"program_{k}_s": v for k, v in med.items()},
                     "same_value": all(c["value"] == i["value"] for c, i in zip(child, inside,
                                                                                strict=True))})
    return {"repeat": repeat, "rows": rows, "prelude_s": prelude(repeat)}


def print_program_overhead(result: dict[str, Any]) -> None:
    print(f"\nper-trial cost of a program (a child process) against the same trial in process "
          f"(digits_mlp, {CONFIG.optimizer} {CONFIG.schedule}, eval every {EVAL_EVERY}, "
          f"1 thread, seconds, median of {result['repeat']})")
    print(f"{'steps':>6s} {'in process':>10s} {'program':>8s} {'ratio':>6s} {'extra':>6s} "
          f"{'start-up':>8s} {'training':>8s} {'end':>6s} {'ms/step in':>10s} "
          f"{'ms/step child':>13s} {'same loss':>9s}")
    for r in result["rows"]:
        n, inside, total = r["steps"], r["in_process_s"], r["program_total_s"]
        print(f"{n:6d} {inside:10.2f} {total:8.2f} {total / inside:6.2f} "
              f"{total - inside:6.2f} {r['program_startup_s']:8.2f} "
              f"{r['program_training_s']:8.2f} {r['program_end_s']:6.2f} "
              f"{1000 * inside / n:10.2f} {1000 * r['program_training_s'] / max(n - 1, 1):13.2f} "
              f"{'yes' if r['same_value'] else 'NO':>9s}")
    parts = result["prelude_s"]
    print("bare children, median seconds until the code has run / then until the child exited:")
    for label, v in parts.items():
        print(f"  {label:27s} {v['ready']:5.2f} / {v['exit']:.2f}")
    print("start-up: from Popen to the child's first message (after its first step); "
          "training: the other steps, with a report and a should_stop round trip each; "
          "end: from finish() until the child is reaped")
