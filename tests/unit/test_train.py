"""The trial loop: evaluation, reporting after warmup, divergence, failures, interruption."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tuner.divergence import DivergenceMonitor
from tuner.optim import OptimConfig
from tuner.spec import JobSpec
from tuner.train import TrainSettings, TrialInterrupted, run_trial, validation_loss
from tuner.workloads import get

Batch = tuple[torch.Tensor, torch.Tensor]


class LinearWorkload:
    """y = 3x on 1-D data; ``poison_at`` makes the loss NaN from that step, ``broken`` raises."""

    name = "linear_test"
    description = "test"
    vmappable = True

    def __init__(self, poison_at: int | None = None, broken: bool = False):
        self.poison_at = poison_at
        self.broken = broken

    def make_model(self, seed: int) -> nn.Module:
        if self.broken:
            raise RuntimeError("model factory exploded")
        torch.manual_seed(seed)
        return nn.Linear(1, 1)

    def train_batches(self, seed: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(seed)
        step = 0
        while True:
            x = torch.randn(16, 1, generator=gen)
            y = 3 * x
            if self.poison_at is not None and step >= self.poison_at:
                y = y * float("nan")
            step += 1
            yield x, y

    def val_batches(self) -> list[Batch]:
        x = torch.linspace(-1, 1, 10).unsqueeze(1)
        return [(x[:4], 3 * x[:4]), (x[4:], 3 * x[4:])]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, targets)


def test_complete_trial_records_curve_and_diagnostics() -> None:
    w = get("regression_mlp")
    result = run_trial(w, OptimConfig(lr=3e-3), TrainSettings(45, 20, seed=0))
    assert result.state == "complete" and result.reason is None and result.steps == 45
    assert [s for s, _ in result.curve] == [20, 40, 45]  # every eval_every steps, and the last step
    assert result.value == result.curve[-1][1]
    assert result.curve[-1][1] < result.curve[0][1]
    diag = result.diagnostics
    assert diag is not None
    assert set(diag["groups"]) == {"decay", "no_decay"}
    assert set(diag["modules"]) == {"0 (Linear)", "2 (Linear)", "4 (Linear)"}  # a Sequential
    for q in [*diag["groups"].values(), *diag["modules"].values()]:
        assert 0 <= q["p10"] <= q["p50"] <= q["p90"]


def test_same_seed_same_result() -> None:
    w = get("regression_mlp")
    runs = [run_trial(w, OptimConfig(), TrainSettings(20, 10, seed=3)) for _ in range(2)]
    assert runs[0].curve == runs[1].curve


def test_report_is_never_called_before_warmup_ends() -> None:
    seen: list[int] = []

    def report(step: int, value: float) -> bool:
        seen.append(step)
        return False

    cfg = OptimConfig(warmup_steps=25, schedule="cosine")
    result = run_trial(LinearWorkload(), cfg, TrainSettings(60, 10, seed=0), report=report)
    assert result.state == "complete"
    assert seen == [30, 40, 50, 60]
    assert [s for s, _ in result.curve] == [10, 20, 30, 40, 50, 60]


def test_report_returning_true_prunes() -> None:
    cfg = OptimConfig(warmup_steps=20)
    result = run_trial(
        LinearWorkload(), cfg, TrainSettings(60, 10, seed=0), report=lambda s, v: True
    )
    assert result.state == "pruned" and result.steps == 20 and result.value == result.curve[-1][1]


def test_non_finite_loss_diverges_without_raising() -> None:
    result = run_trial(LinearWorkload(poison_at=7), OptimConfig(), TrainSettings(30, 10, seed=0))
    assert result.state == "diverged" and result.value is None
    assert "non-finite training loss" in (result.reason or "") and "step 7" in (result.reason or "")


def test_exploding_loss_diverges() -> None:
    result = run_trial(get("regression_mlp"), OptimConfig(lr=30.0), TrainSettings(60, 20, seed=0))
    assert result.state == "diverged"
    assert result.reason and ("exceeded 10x" in result.reason or "non-finite" in result.reason)


def test_workload_exception_fails_the_trial_with_its_repr() -> None:
    result = run_trial(LinearWorkload(broken=True), OptimConfig(), TrainSettings(10, 5, seed=0))
    assert result.state == "failed" and result.reason == repr(
        RuntimeError("model factory exploded")
    )


def test_should_stop_raises_trial_interrupted() -> None:
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(TrialInterrupted) as info:
        run_trial(
            LinearWorkload(),
            OptimConfig(),
            TrainSettings(100, 10, seed=0),
            should_stop=should_stop,
        )
    assert info.value.step == 10  # checked every 5 steps: 0, 5, then stop at 10


def test_monitor_ignores_blowups_during_warmup() -> None:
    monitor = DivergenceMonitor(warmup_steps=5, beta=0.0)
    assert monitor.update(0, 1.0) is None
    assert monitor.update(1, 50.0) is None  # 50x the minimum, but still warming up
    assert monitor.update(5, 9.0) is None
    assert "exceeded 10x" in (monitor.update(6, 11.0) or "")
    assert "non-finite" in (DivergenceMonitor(0).update(0, math.inf) or "")


def test_validation_loss_is_the_sample_weighted_mean() -> None:
    w = LinearWorkload()
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(0.0)
    x = torch.linspace(-1, 1, 10)
    assert validation_loss(model, w, "cpu") == pytest.approx(float(((3 * x) ** 2).mean()), rel=1e-6)
    assert model.training  # evaluation restores train mode


def test_a_spike_near_zero_loss_is_not_divergence_but_giving_back_progress_is() -> None:
    # Measured on tiny_transformer: smoothed loss 2.3 -> 6.5e-4, a spike to 7.4e-3 (11x its
    # minimum), then 3.5e-4 by the end. Only a spike that gives back half the progress counts.
    monitor = DivergenceMonitor(warmup_steps=0, beta=0.0)
    assert monitor.update(0, 2.3) is None
    assert monitor.update(1, 6.5e-4) is None
    assert monitor.update(2, 7.4e-3) is None  # 11x the minimum, 0.3% of the way back
    assert monitor.update(3, 3.5e-4) is None
    assert monitor.update(4, 1.0) is None  # 2857x the minimum, 43% of the way back
    reason = monitor.update(5, 1.5)  # 65% of the way back to where it started
    assert reason is not None and "exceeded 10x its minimum" in reason
    assert "first loss 2.3" in reason
    # A loss that never went down diverges on the ratio alone.
    flat = DivergenceMonitor(warmup_steps=0, beta=0.0)
    assert flat.update(0, 1.0) is None and flat.update(1, 10.5) is not None


def test_single_trials_and_population_members_share_the_divergence_test() -> None:
    from tuner.population import trainer

    assert trainer.DivergenceMonitor is DivergenceMonitor


def test_settings_are_built_once_from_the_job_and_refuse_nonsense() -> None:
    spec = JobSpec.model_validate(
        {
            "workload": "regression_mlp",
            "seed": 4,
            "budget": {"steps_per_trial": 40, "eval_every": 10},
            "grad_clip": 1.5,
            "lr_floor": 0.1,
        }
    )
    settings = TrainSettings.from_spec(spec, torch.device("cpu"))
    assert settings == TrainSettings(40, 10, seed=4, device="cpu", grad_clip=1.5, lr_floor=0.1)
    with pytest.raises(ValueError, match="eval_every"):
        TrainSettings(10, 0, seed=0)
    with pytest.raises(ValueError, match="grad_clip"):
        TrainSettings(10, 5, seed=0, grad_clip=0.0)


def test_a_result_carries_the_config_it_was_trained_with() -> None:
    cfg = OptimConfig(lr=2e-3)
    result = run_trial(LinearWorkload(), cfg, TrainSettings(10, 5, seed=0))
    assert result.state == "complete" and result.config == cfg
