"""The population training loop: same curves as single trials, isolation, pruning, compaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tuner.optim import OptimConfig, build_optimizer, build_scheduler
from tuner.population import can_vmap, run_population
from tuner.population.trainer import PopulationRun
from tuner.train import TrainSettings, TrialInterrupted, TrialResult
from tuner.workloads import get
from tuner.workloads.base import Batch, Workload

SEED = 7
CONFIGS = [
    OptimConfig(optimizer="adam", lr=3e-3),
    OptimConfig(optimizer="adamw", lr=2e-3, weight_decay=0.1, warmup_steps=4, schedule="cosine"),
    OptimConfig(optimizer="adam", lr=1e-3, amsgrad=True, schedule="linear", floor=0.2),
]
HUGE_LR = OptimConfig(optimizer="adam", lr=50.0)


def reference_curve(workload: Workload, cfg: OptimConfig, steps: int, every: int) -> list[float]:
    """Validation losses of one torch.optim trial, evaluated like every trial is."""
    model = workload.make_model(SEED)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps)
    batches = workload.train_batches(SEED)
    curve = []
    model.train()
    for step in range(steps):
        inputs, targets = next(batches)
        optimizer.zero_grad()
        workload.loss(model(inputs), targets).backward()
        optimizer.step()
        scheduler.step()
        if (step + 1) % every == 0:
            model.eval()
            with torch.no_grad():
                x, y = next(iter(workload.val_batches()))
                curve.append(workload.loss(model(x), y).item())
            model.train()
    return curve


def train_members(
    configs: list[OptimConfig], steps: int = 20, grad_clip: float | None = None, **kwargs: object
) -> list[TrialResult]:
    settings = TrainSettings(steps, 5, seed=SEED, grad_clip=grad_clip)
    return run_population(get("regression_mlp"), configs, settings, **kwargs)  # type: ignore[arg-type]


def test_curves_match_single_torch_optim_trials() -> None:
    workload = get("regression_mlp")
    results = train_members(CONFIGS, steps=20)
    for result, cfg in zip(results, CONFIGS, strict=True):
        assert result.state == "complete" and result.reason is None and result.steps == 20
        assert [s for s, _ in result.curve] == [5, 10, 15, 20]
        expected = reference_curve(workload, cfg, 20, 5)
        assert [v for _, v in result.curve] == pytest.approx(expected, rel=1e-5)
        assert result.value == result.curve[-1][1]
        assert result.config == cfg
        assert result.diagnostics is not None
        assert set(result.diagnostics["groups"]) == {"decay", "no_decay"}
        assert 0 < result.diagnostics["groups"]["decay"]["p50"] < 2


def test_diverging_member_is_stopped_and_changes_no_other_member() -> None:
    with_it = train_members([CONFIGS[0], HUGE_LR, CONFIGS[1], CONFIGS[2]])
    without = train_members(CONFIGS)
    diverged = with_it[1]
    assert diverged.state == "diverged" and diverged.value is None
    assert diverged.steps < 5 and "training loss" in (diverged.reason or "")
    for got, expected in zip([with_it[0], *with_it[2:]], without, strict=True):
        assert got.state == expected.state == "complete"
        assert got.curve == expected.curve  # identical, not merely close
        assert got.diagnostics == expected.diagnostics


def test_compaction_drops_pruned_rows_and_keeps_survivors_exact() -> None:
    workload = get("regression_mlp")
    settings = TrainSettings(20, 5, seed=SEED, collect_diagnostics=False)
    full = PopulationRun(workload, CONFIGS, settings, divergence_factor=10.0)
    full.run(lambda step, values: [step == 10 and i == 1 for i in range(3)], None)
    assert full.alive == [0, 2] and full.stacked.size == 2  # member 1 left the stack
    assert full.optimizer.exp_avg.shape[0] == 2 and len(full.optimizer.hyper.lr) == 2
    assert full.members[1].result is not None and full.members[1].result.state == "pruned"
    assert full.members[1].result.steps == 10
    alone = PopulationRun(workload, [CONFIGS[0], CONFIGS[2]], settings, divergence_factor=10.0)
    alone.run(None, None)
    assert torch.equal(full.stacked.flat, alone.stacked.flat)
    assert torch.equal(full.optimizer.max_exp_avg_sq, alone.optimizer.max_exp_avg_sq)


def test_pruning_the_last_amsgrad_member_drops_the_running_max() -> None:
    settings = TrainSettings(10, 5, seed=SEED, collect_diagnostics=False)
    run = PopulationRun(get("regression_mlp"), CONFIGS, settings, divergence_factor=10.0)
    assert run.optimizer.max_exp_avg_sq is not None
    run.run(lambda step, values: [i == 2 for i in range(3)], None)  # CONFIGS[2]: amsgrad
    assert run.alive == [0, 1] and run.optimizer.max_exp_avg_sq is None


def test_prune_waits_for_each_members_warmup_and_never_hits_the_last_step() -> None:
    seen: list[tuple[int, list[float | None]]] = []
    configs = [OptimConfig(lr=1e-3), OptimConfig(lr=1e-3, warmup_steps=12), OptimConfig(lr=2e-3)]

    def report(step: int, values: list[float | None]) -> list[bool]:
        seen.append((step, values))
        return [i != 2 for i in range(3)]  # prune 0 and 1 whenever allowed, never 2

    results = train_members(configs, steps=20, report=report)
    assert [r.state for r in results] == ["pruned", "pruned", "complete"]
    assert results[0].steps == 5 and results[1].steps == 15  # member 1: first report after warmup
    assert seen[0][1][1] is None and seen[1][1][1] is None  # not reported during its warmup
    assert results[1].curve[:2] == [(5, results[1].curve[0][1]), (10, results[1].curve[1][1])]
    assert seen[-1][0] == 20 and results[2].steps == 20


def test_should_stop_interrupts_the_whole_population() -> None:
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= 2

    with pytest.raises(TrialInterrupted) as info:
        train_members(CONFIGS, should_stop=should_stop)
    assert info.value.step == 5


def test_per_member_grad_clip_matches_single_trials_only_through_its_own_norm() -> None:
    clipped = train_members(CONFIGS[:2], steps=10, grad_clip=0.05)
    plain = train_members(CONFIGS[:2], steps=10)
    assert all(r.state == "complete" for r in clipped)
    assert clipped[0].curve != plain[0].curve  # a tiny max norm changes the trajectory


def test_bad_config_fails_every_member_with_the_reason() -> None:
    results = train_members([OptimConfig(), OptimConfig(optimizer="sgd")])
    assert [r.state for r in results] == ["failed", "failed"]
    assert "unknown optimizer 'sgd'" in (results[1].reason or "")


def test_argument_errors_are_raised() -> None:
    with pytest.raises(ValueError, match="configs is empty"):
        train_members([])
    with pytest.raises(ValueError, match="grad_clip must be > 0"):
        train_members(CONFIGS, grad_clip=0.0)


class _ScatterModel(nn.Module):
    """Writes member-dependent values into a tensor it creates: an unbatched in-place write."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 3)
        out[:, :] = self.linear(x)
        return out


class _BranchingModel(nn.Module):
    """Data-dependent control flow (``.item()`` on an activation)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return y * 2 if y.sum().item() > 0 else y


MODELS = {
    "plain": lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)),
    # no bias before BatchNorm: it would have an exactly-zero true gradient, and Adam turns
    # the round-off noise there into lr-sized steps that differ between any two matmuls
    "batchnorm": lambda: nn.Sequential(
        nn.Linear(8, 16, bias=False), nn.BatchNorm1d(16), nn.Linear(16, 3)
    ),
    "dropout": lambda: nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.1), nn.Linear(16, 3)),
    "scatter": _ScatterModel,
    "branching": _BranchingModel,
}


class _SmallWorkload:
    """A generated 8-feature, 3-class task around one of ``MODELS``."""

    description = "test workload"

    def __init__(self, name: str, vmappable: bool = True):
        self.name, self.vmappable = name, vmappable

    def make_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return MODELS[self.name]()

    def train_batches(self, seed: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(seed)
        while True:
            yield torch.randn(16, 8, generator=gen), torch.randint(0, 3, (16,), generator=gen)

    def val_batches(self) -> list[Batch]:
        return [next(self.train_batches(99))]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)


@pytest.mark.parametrize("name", ["digits_mlp", "regression_mlp", "tiny_transformer"])
def test_builtin_workloads_can_be_vmapped(name: str) -> None:
    assert can_vmap(get(name)) == (True, "ok")


@pytest.mark.parametrize(
    ("name", "vmappable", "reason"),
    [
        ("dropout", True, "randomness"),
        ("scatter", True, "inplace arithmetic"),
        ("branching", True, ".item()"),
        ("plain", False, "declares vmappable=False"),
    ],
)
def test_unvmappable_workloads_say_why(name: str, vmappable: bool, reason: str) -> None:
    ok, why = can_vmap(_SmallWorkload(name, vmappable))
    assert not ok and reason in why


def test_batchnorm_in_train_mode_works_with_per_member_running_stats() -> None:
    workload = _SmallWorkload("batchnorm")
    assert can_vmap(workload) == (True, "ok")
    cfgs = [OptimConfig(lr=1e-2), OptimConfig(optimizer="adamw", lr=3e-3, weight_decay=0.1)]
    results = run_population(workload, cfgs, TrainSettings(6, 3, seed=SEED))
    for result, cfg in zip(results, cfgs, strict=True):
        expected = reference_curve(workload, cfg, 6, 3)  # eval mode: the running stats count
        assert [v for _, v in result.curve] == pytest.approx(expected, rel=1e-5)


def test_a_workload_that_cannot_be_vmapped_fails_every_member_cleanly() -> None:
    cfgs = [OptimConfig(lr=1e-2), OptimConfig(lr=3e-3)]
    results = run_population(_SmallWorkload("dropout"), cfgs, TrainSettings(6, 3, seed=0))
    assert all(r.state == "failed" and "randomness" in (r.reason or "") for r in results)
