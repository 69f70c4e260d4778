"""The program runner end to end: real child processes running examples/programs/train.py.

A sweep yields a curve and suggestions; a trial completes with its curve; the pruner prunes
one (its process is gone); a crashing program fails its trial with the stderr tail as the
reason; a program past its time limit is killed, the trial failed with the reason.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.processes import group_members
from tuner.optim import OptimConfig
from tuner.spec import SweepSpec
from tuner.train import TrainSettings, TrialInterrupted
from workers.program_runner import ProgramFailed, ProgramRunner
from workers.programs import Program

ROOT = Path(__file__).resolve().parents[2]
TRAIN = str(ROOT / "examples" / "programs" / "train.py")
FAST_ENV = {"OMP_NUM_THREADS": "1"}


def _gone(pid: int, wait_s: float = 5.0) -> bool:
    """The process has exited (a zombie nobody reaped yet counts: it runs nothing)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _program(*command: str, time_limit: float | None = 120.0, grace: float = 2.0) -> Program:
    return Program(
        name="digits", command=command, environment=FAST_ENV, time_limit=time_limit, grace=grace
    )


@pytest.fixture()
def runner(tmp_path: Path) -> ProgramRunner:
    return ProgramRunner(device="cpu", log_dir=tmp_path / "logs")


def test_a_sweep_gives_a_curve_and_suggestions(runner: ProgramRunner) -> None:
    spec = SweepSpec(lr_min=1e-5, lr_max=10.0, steps=40)
    result = runner.run_sweep(_program(sys.executable, TRAIN), spec, seed=0)
    assert 3 <= len(result.lrs) <= 40
    assert result.lrs[0] == pytest.approx(1e-5)
    assert result.lr_range["low"] < result.lr_range["suggested"] < result.lr_range["high"]
    assert result.stop_reason  # diverged (x4 its minimum) or reached lr_max
    assert runner.last_run is not None and _gone(runner.last_run.pid)


def test_a_trial_completes_with_its_curve(runner: ProgramRunner) -> None:
    cfg = OptimConfig(lr=3e-3, warmup_steps=5, schedule="cosine")
    settings = TrainSettings(total_steps=30, eval_every=10, seed=0)
    reports: list[tuple[int, float]] = []

    def report(step: int, value: float) -> bool:
        reports.append((step, value))
        return False

    result = runner.run_trial(
        _program(sys.executable, TRAIN), cfg, settings, number=3, report=report
    )
    assert result.state == "complete", result.reason
    assert [s for s, _ in result.curve] == [10, 20, 30]
    assert result.value == pytest.approx(result.curve[-1][1])
    # every evaluation after warmup is reported, the last too (as in process): the
    # dashboard shows the whole curve; the pruner's answer there is ignored
    assert [s for s, _ in reports] == [10, 20, 30]
    assert result.steps == 30
    assert (runner.log_dir / "digits-trial-3.log").exists()


def test_the_pruner_prunes_a_trial_and_its_process_is_gone(runner: ProgramRunner) -> None:
    settings = TrainSettings(total_steps=40, eval_every=10, seed=0)
    result = runner.run_trial(
        _program(sys.executable, TRAIN), OptimConfig(), settings, report=lambda s, v: s >= 20
    )
    assert result.state == "pruned"
    assert result.reason == "pruned at step 20"
    assert [s for s, _ in result.curve] == [10, 20]
    assert runner.last_run is not None and _gone(runner.last_run.pid)


def test_a_crashing_program_fails_its_trial_with_the_stderr_tail(
    runner: ProgramRunner, tmp_path: Path
) -> None:
    script = tmp_path / "crash.py"
    script.write_text("print('loading data')\nraise SystemExit('cannot open /data/train.bin')\n")
    settings = TrainSettings(total_steps=10, eval_every=5, seed=0)
    result = runner.run_trial(_program(sys.executable, str(script)), OptimConfig(), settings)
    assert result.state == "failed"
    assert result.reason is not None
    assert "exited with code 1" in result.reason
    assert "cannot open /data/train.bin" in result.reason
    log = (runner.log_dir / "digits-trial.log").read_text()
    assert "loading data" in log and "cannot open /data/train.bin" in log


def test_a_program_past_its_time_limit_is_killed(runner: ProgramRunner, tmp_path: Path) -> None:
    script = tmp_path / "hang.py"
    script.write_text(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # ignores SIGTERM: needs the kill
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    program = _program(sys.executable, str(script), time_limit=2.0, grace=0.5)
    result = runner.run_trial(program, OptimConfig(), TrainSettings(10, 5, 0))
    assert result.state == "failed"
    assert "exceeded its time limit of 2s" in (result.reason or "")
    assert runner.last_run is not None and _gone(runner.last_run.pid)
    grandchild = int((runner.log_dir / "digits-trial.log").read_text().split()[0])
    assert _gone(grandchild)  # the whole process group was killed


def test_a_program_that_never_reports_fails_the_sweep(runner: ProgramRunner) -> None:
    program = _program(sys.executable, "-c", "print('nothing to see')")
    with pytest.raises(ProgramFailed, match="reported no training loss"):
        runner.run_sweep(program, SweepSpec(steps=20), seed=0)


def test_a_stopping_worker_hands_the_trial_back(runner: ProgramRunner, tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text("import time\ntime.sleep(600)\n")
    program = _program(sys.executable, str(script), grace=0.5)
    with pytest.raises(TrialInterrupted):
        runner.run_trial(program, OptimConfig(), TrainSettings(10, 5, 0), should_stop=lambda: True)
    assert runner.last_run is not None and _gone(runner.last_run.pid)


def _group_gone(pgid: int) -> bool:
    """No live process is left in process group ``pgid``."""
    deadline = time.monotonic() + 5.0
    while True:
        alive = group_members(pgid)
        if not alive or time.monotonic() > deadline:
            return not alive
        time.sleep(0.1)


def test_torchrun_two_ranks_get_the_same_decision(runner: ProgramRunner) -> None:
    """Only rank 0 reports; the pruner's decision reaches rank 1 through torch.distributed."""
    command = (sys.executable, "-m", "torch.distributed.run", "--standalone")
    program = _program(*command, "--nproc-per-node", "2", TRAIN, time_limit=240.0)
    asked: list[int] = []

    def prune_at_20(step: int, value: float) -> bool:
        asked.append(step)
        return step >= 20

    settings = TrainSettings(total_steps=40, eval_every=10, seed=0)
    result = runner.run_trial(program, OptimConfig(), settings, report=prune_at_20)
    assert result.state == "pruned", result.reason
    assert asked == [10, 20]  # one report per evaluation: rank 1 never talks to the worker
    assert runner.last_run is not None and _group_gone(runner.last_run.pid)
    log = runner.last_run.log_path.read_text()
    assert log.count("adamtune pruned this trial") == 2, log[-2000:]


def test_a_program_that_exits_without_finishing_fails_its_trial(runner: ProgramRunner) -> None:
    program = _program(sys.executable, "-c", "print('done, or so I think')")
    result = runner.run_trial(program, OptimConfig(), TrainSettings(10, 5, 0))
    assert result.state == "failed"
    assert result.reason == "program 'digits' exited without calling trial.finish()"


def test_an_asked_trial_is_trained_by_the_program_and_recorded(runner: ProgramRunner) -> None:
    """The search's vocabulary end to end: ask the baseline, run it as a program, tell."""
    from optuna.trial import TrialState

    from tuner.search import open_study
    from tuner.space import resolve_space
    from tuner.spec import JobSpec
    from workers.program_trials import ProgramTrainer

    spec = JobSpec.model_validate(
        {"workload": "digits_mlp", "budget": {"trials": 2, "steps_per_trial": 20, "eval_every": 10}}
    )
    study = open_study(None, "program-test", spec, None, create=True)
    trial = study.ask()
    settings = TrainSettings.from_spec(spec)
    train = ProgramTrainer(runner, _program(sys.executable, TRAIN))
    [outcome] = train([trial], None, settings, resolve_space(spec, None))
    study.tell(trial, outcome.value, state=outcome.state)
    done = study.trials[0]
    assert done.state == TrialState.COMPLETE and done.value is not None
    assert done.user_attrs["role"] == "baseline"
    assert done.user_attrs["config"]["lr"] == 1e-3
    assert [s for s, _ in done.user_attrs["curve"]] == [10, 20]
    assert Path(done.user_attrs["log"]).name == "digits-trial-0.log"
    assert done.user_attrs["pid"] == runner.last_run.pid and _gone(done.user_attrs["pid"])


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--crash-at", "RuntimeError: --crash-at 5: crashing on purpose"),
        ("--hang-at", "--hang-at 5: hanging on purpose"),
    ],
)
def test_the_example_crashing_or_hanging_fails_its_trial_with_the_tail(
    runner: ProgramRunner, option: str, expected: str
) -> None:
    """train.py's fault options: the trial fails with the reason and stderr tail, pid gone."""
    limit = 120.0 if option == "--crash-at" else 30.0  # the import of torch takes seconds
    program = _program(sys.executable, TRAIN, option, "5", time_limit=limit, grace=0.5)
    result = runner.run_trial(program, OptimConfig(), TrainSettings(20, 10, 0), number=1)
    assert result.state == "failed"
    reason = result.reason or ""
    assert ("exited with code 1" if option == "--crash-at" else "time limit of 30s") in reason
    assert "stderr tail:" in reason and expected in reason
    assert runner.last_run is not None and _gone(runner.last_run.pid)
