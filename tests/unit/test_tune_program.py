"""``adamtune tune`` on a program job, without child processes: the seam between the search
(:func:`tuner.local_search.run_local_search`, given a sweep and a batch trainer) and the
programs of the command line (:mod:`adamtune.cli.tune_program`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from adamtune.cli.tune_program import default_log_dir, find_program
from tuner.driver import TrialOutcome
from tuner.local_search import run_local_search
from tuner.lr_range import RangeTestMonitor, SweepResult, ramp
from tuner.search import trial_config
from tuner.spec import JobSpec, parse_job
from workers.programs import ProgramError

JOB = {
    "name": "my job/1",
    "program": "digits",
    "budget": {"trials": 3, "steps_per_trial": 20, "eval_every": 10},
    "sweep": {"steps": 10},
}


def _spec(**changes: Any) -> JobSpec:
    return parse_job({**JOB, **changes})


def test_a_program_job_is_searched_with_the_given_sweep_and_trainer() -> None:
    swept: list[JobSpec] = []
    seen: list[tuple[int, Any]] = []

    def sweep(spec: JobSpec) -> SweepResult:  # a loss that falls, then rises
        swept.append(spec)
        monitor = RangeTestMonitor(spec.sweep)
        for i, lr in enumerate(ramp(spec.sweep)):
            monitor.update(lr, 2.0 - 0.1 * i if i < 6 else 1.4 + 0.5 * (i - 6))
        return monitor.result("reached lr_max")

    def train(trials: Sequence[optuna.Trial], workload: Any, settings: Any, space: Any,
              should_stop: Any = None) -> list[TrialOutcome]:
        outcomes = []
        for trial in trials:
            _, cfg = trial_config(trial, space, settings)
            seen.append((len(trials), workload))
            outcomes.append(TrialOutcome(TrialState.COMPLETE, abs(cfg.lr - 1e-3)))
        return outcomes

    result = run_local_search(_spec(), sweep=sweep, train=train)
    assert swept == [_spec()]
    assert seen == [(1, None)] * 3  # one trial per run, no workload
    assert result.recommendation["final"] is True
    assert result.study.study_name == "tune-my job/1-seed0"


def test_a_program_job_needs_a_sweep_and_a_trainer() -> None:
    with pytest.raises(ValueError, match="program job 'digits'"):
        run_local_search(_spec())


def test_the_program_must_be_given_and_the_error_lists_what_was(tmp_path: Path) -> None:
    programs = tmp_path / "programs.yaml"
    programs.write_text("programs:\n  bert: python train_hf.py\n")
    with pytest.raises(ProgramError) as caught:
        find_program(_spec(), ["gpt=python gpt.py"], [str(programs)], "job.yaml")
    message = str(caught.value)
    assert message.startswith("job.yaml: the job names program 'digits'")
    assert "(programs given: bert, gpt)" in message and "--program digits='" in message
    found = find_program(_spec(), ["digits=python train.py --data '/a b'"], [], "job.yaml")
    assert found.command == ("python", "train.py", "--data", "/a b")


def test_logs_default_to_a_folder_named_after_the_job() -> None:
    assert default_log_dir(_spec()) == Path("adamtune-logs/my-job-1")
    assert default_log_dir(_spec(name=None)) == Path("adamtune-logs/digits")
