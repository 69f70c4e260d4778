"""The digits MLP written as a program trains as the built-in ``digits_mlp`` workload does.

``examples/programs/train.py`` run by the worker's :class:`ProgramRunner` (a child process,
the SDK over its socket) and :func:`tuner.train.run_trial` in this process share the data
split, the batches (same seed, same shuffle, the last partial batch of an epoch dropped),
the model's initialisation, the optimizer (fused Adam/AdamW, no decay on 1-D parameters),
the schedule and the evaluation (the whole validation set, one batch): the same
configuration and seed give the same validation curve, to the last bit when both run on
the same number of threads (here one: ``adamtune tune`` trains on one CPU thread, and
``OMP_NUM_THREADS=1`` reaches the child). What changes only the order of float sums keeps
the curve within rounding: gradient accumulation (``--accumulate 2``: two half batches of
the same 64 examples), or a child on two threads (its matmuls split differently).

The LR range test agrees up to the range it hands the search. Beyond it the two differ by
rounding only: the in-process test (:func:`tuner.lr_range.run_lr_range_test`) steps a plain
``torch.optim.Adam``, the SDK the trials' fused Adam over two parameter groups, and at
lr > 0.1 the training is chaotic enough to turn that rounding into a different divergence
point. Given the trials' optimizer, the in-process curve is the program's, bit for bit.

A whole job (a small one: the range test, the baseline, the sweep's suggestions and a few
searched trials, pruning on) run by :func:`tuner.local_search.run_local_search` with the
worker's program runner and trainer recommends what the built-in job does, field for field
(``benchmarks/program_parity.py`` runs bigger jobs through ``adamtune tune``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tuner.local_search import run_local_search
from tuner.lr_range import SweepResult, run_lr_range_test
from tuner.optim import OptimConfig, build_optimizer
from tuner.spec import JobSpec, SweepSpec, parse_job
from tuner.train import TrainSettings, TrialResult, run_trial
from tuner.workloads import get as get_workload
from workers.program_runner import ProgramRunner
from workers.program_trials import ProgramTrainer
from workers.programs import Program

ROOT = Path(__file__).resolve().parents[2]
TRAIN = str(ROOT / "examples" / "programs" / "train.py")
REL = 1e-6  # a trial's validation loss, program against in process
SWEEP_REL = 1e-5  # the range test's losses up to the top of the range it hands the search
TUNED = OptimConfig(
    optimizer="adamw", lr=3e-3, beta1=0.85, beta2=0.99, eps=1e-7, weight_decay=1e-2,
    warmup_steps=10, schedule="cosine", floor=0.1,
)


def _program(*args: str, threads: int = 1) -> Program:
    return Program(
        name="digits", command=(sys.executable, TRAIN, *args),
        environment={"OMP_NUM_THREADS": str(threads)}, time_limit=120.0, grace=2.0,
    )


@pytest.fixture()
def runner(tmp_path: Path) -> Iterator[ProgramRunner]:
    """The program runner, with this process's trials on one thread as the child's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield ProgramRunner(device="cpu", log_dir=tmp_path / "logs")
    finally:
        torch.set_num_threads(threads)


def _values(result: TrialResult) -> list[tuple[int, float]]:
    assert result.state == "complete", result.reason
    return result.curve


@pytest.mark.parametrize(
    ("cfg", "seed", "args", "threads", "exact"),
    [
        (OptimConfig.baseline(), 0, (), 1, True),
        (TUNED, 7, (), 1, True),
        (TUNED, 7, ("--accumulate", "2"), 1, False),
        (TUNED, 7, (), 2, False),
    ],
    ids=["baseline", "adamw-cosine", "accumulate-2", "child-on-2-threads"],
)
def test_a_trial_gives_the_same_validation_curve(
    runner: ProgramRunner,
    cfg: OptimConfig,
    seed: int,
    args: tuple[str, ...],
    threads: int,
    exact: bool,
) -> None:
    settings = TrainSettings(total_steps=60, eval_every=20, seed=seed)
    inside = _values(run_trial(get_workload("digits_mlp"), cfg, settings))
    child = _values(runner.run_trial(_program(*args, threads=threads), cfg, settings))
    assert [s for s, _ in child] == [s for s, _ in inside] == [20, 40, 60]
    for (step, ours), (_, theirs) in zip(child, inside, strict=True):
        assert ours == pytest.approx(theirs, rel=REL), f"step {step}"
    if exact:
        assert child == inside


def _sweep_in_process(spec: SweepSpec, trials_optimizer: bool) -> SweepResult:
    workload = get_workload("digits_mlp")
    if not trials_optimizer:
        return run_lr_range_test(workload, seed=0, spec=spec)
    torch.manual_seed(0)
    model = workload.make_model(0)
    optimizer = build_optimizer(model, OptimConfig(lr=spec.lr_min))  # what the SDK builds
    return run_lr_range_test(workload, seed=0, spec=spec, model=model, optimizer=optimizer)


def test_the_sweep_hands_the_search_the_same_range(runner: ProgramRunner) -> None:
    spec = SweepSpec()  # the job default: 1e-7 to 10 in 100 steps
    inside = _sweep_in_process(spec, trials_optimizer=False)
    child = runner.run_sweep(_program(), spec, seed=0)
    assert child.lr_range == inside.lr_range
    for key in ("steepest", "valley", "min_div10"):
        assert child.suggestions[key] == inside.suggestions[key], key
    top = inside.lr_range["high"]
    shared = [i for i, lr in enumerate(inside.lrs[: len(child.lrs)]) if lr <= top]
    assert len(shared) > 50
    for i in shared:
        assert child.lrs[i] == inside.lrs[i]
        assert child.losses[i] == pytest.approx(inside.losses[i], rel=SWEEP_REL), f"step {i}"


def test_with_the_trials_optimizer_the_sweep_curve_is_the_same(runner: ProgramRunner) -> None:
    spec = SweepSpec(steps=100)
    inside = _sweep_in_process(spec, trials_optimizer=True)
    child = runner.run_sweep(_program(), spec, seed=0)
    assert child.to_dict() == inside.to_dict()


def test_a_small_job_recommends_what_the_built_in_job_does(runner: ProgramRunner) -> None:
    body = {"name": "digits-parity", "seed": 3, "sweep": {"steps": 40},
            "budget": {"trials": 8, "steps_per_trial": 60, "eval_every": 20}}
    builtin = run_local_search(parse_job({**body, "workload": "digits_mlp"}))
    program = _program()

    def sweep(spec: JobSpec) -> SweepResult:
        return runner.run_sweep(program, spec.sweep, seed=spec.seed)

    as_program = run_local_search(
        parse_job({**body, "program": "digits"}), sweep=sweep,
        train=ProgramTrainer(runner, program),
    )
    searched = [t for t in as_program.study.trials if t.user_attrs.get("role") == "search"]
    assert len(searched) >= 3  # TPE's samples, beyond the seeded trials
    ours, theirs = as_program.recommendation, builtin.recommendation
    assert as_program.sweep is not None and builtin.sweep is not None
    assert as_program.sweep.lr_range == builtin.sweep.lr_range
    differing = {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
    assert differing <= {"diagnostics", "workload"}  # a program's trials report no Adam state
