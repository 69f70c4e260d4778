"""A worker's partial recommendations: the best trial at once, importances refitted rarely."""

from __future__ import annotations

import threading
import types
from typing import Any

import optuna
import pytest
from test_recommend import SPEC, SWEEP, trial

from tuner import recommend
from tuner.recommend import build_recommendation
from workers import trials as worker_trials
from workers.context import JobContext
from workers.trials import TrialRunner


def study_trials(n: int) -> list[Any]:
    """A baseline and ``n`` searched trials whose loss falls with the trial number."""
    out = [trial(0.9, 1e-3, role="baseline")]
    for i in range(n):
        out.append(trial(0.8 - 0.01 * i, 1e-4 * 1.5**i, beta1=0.8 + 0.01 * (i % 4),
                         schedule=("constant", "cosine")[i % 2]))
    for number, t in enumerate(out):
        t.number = number
    return out


def runner_and_context() -> tuple[TrialRunner, JobContext]:
    runtime = types.SimpleNamespace(identity=types.SimpleNamespace(worker_id="w"))
    runner = TrialRunner(runtime, None, threading.Event())  # type: ignore[arg-type]
    ctx = JobContext("job", "study", SPEC, None, optuna.create_study(), None,  # type: ignore[arg-type]
                     SWEEP, SPEC.budget.trials)
    return runner, ctx


def test_known_importances_are_used_as_given() -> None:
    rec = build_recommendation(study_trials(8), spec=SPEC, sweep=SWEEP, final=False,
                               known_importances={"lr": 1.0})
    assert rec["importances"] == {"lr": 1.0} and rec["lr"] == pytest.approx(1e-4 * 1.5**7)


def test_a_new_best_shows_at_once_and_importances_are_refitted_at_most_every_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fits: list[int] = []
    real = recommend.importances

    def counting(completed: Any) -> dict[str, float]:
        fits.append(len(completed))
        return real(completed)

    monkeypatch.setattr(recommend, "importances", counting)
    clock = [1000.0]
    monkeypatch.setattr(worker_trials.time, "monotonic", lambda: clock[0])
    runner, ctx = runner_and_context()

    first = runner.partial_recommendation(ctx, study_trials(8))
    assert first is not None and first["trial_number"] == 8 and first["importances"]
    assert fits == [9]
    # Same best trial, soon after: nothing to write.
    clock[0] += 1
    assert runner.partial_recommendation(ctx, study_trials(8)) is None
    # A new best a second later: written at once, with the importances already fitted.
    clock[0] += 1
    second = runner.partial_recommendation(ctx, study_trials(9))
    assert second is not None and second["trial_number"] == 9
    assert second["importances"] == first["importances"] and fits == [9]
    # Once PARTIAL_REFRESH_S has passed, the next recommendation refits them.
    clock[0] += worker_trials.PARTIAL_REFRESH_S + 1
    third = runner.partial_recommendation(ctx, study_trials(10))
    assert third is not None and third["trial_number"] == 10 and fits == [9, 11]


def test_importances_are_fitted_as_soon_as_there_are_enough_trials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_trials.time, "monotonic", lambda: 5000.0)
    runner, ctx = runner_and_context()
    few = runner.partial_recommendation(ctx, study_trials(3))
    assert few is not None and few["importances"] == {}  # too few trials to say
    enough = runner.partial_recommendation(ctx, study_trials(8))
    assert enough is not None and enough["importances"]  # not held back by the empty ones
