"""The benchmark suite's workloads: each builds, is deterministic per seed, and trains."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from benchmarks.suite import get, names
from benchmarks.suite.methods import ALGOPERF_NADAMW, algoperf_config, plain_adam_config
from benchmarks.suite.training import build, train_final
from tuner.workloads import Workload
from tuner.workloads.registry import names as project_names

BUILT_INS = {"digits_mlp", "regression_mlp", "tiny_transformer"}


def test_at_least_eight_distinct_workloads_none_registered_with_the_project() -> None:
    suite = names()
    assert len(suite) >= 8
    assert len({get(n).description for n in suite}) == len(suite)
    assert not set(suite) & (BUILT_INS | set(project_names()))


def test_unknown_name_says_what_is_known() -> None:
    with pytest.raises(KeyError, match="known: wine_logreg"):
        get("nope")


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", names())
def test_workload_is_deterministic_per_seed_and_one_step_stays_finite(name: str) -> None:
    workload = get(name)
    assert isinstance(workload, Workload)
    a, b, c = workload.make_model(0), workload.make_model(0), workload.make_model(1)
    assert all(torch.equal(x, y) for x, y in zip(_params(a), _params(b), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(_params(a), _params(c), strict=True))
    (x0, y0), (x1, y1) = next(workload.train_batches(0)), next(workload.train_batches(0))
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert not torch.equal(next(workload.train_batches(1))[0], x0)

    optimizer = torch.optim.Adam(a.parameters(), lr=1e-3)
    loss = workload.loss(a(x0), y0)
    loss.backward()
    optimizer.step()
    assert math.isfinite(float(loss.detach()))
    assert all(torch.isfinite(p).all() for p in a.parameters())
    inputs, targets = next(iter(workload.val_batches()))
    with torch.no_grad():
        assert math.isfinite(float(workload.loss(a(inputs), targets)))


def test_training_is_reproducible_and_a_huge_lr_reads_as_diverged_or_worse() -> None:
    workload = get("noisy_blobs_tanh")
    cfg = {"kind": "adam", "lr": 1e-3}
    first, again = train_final(workload, cfg, 20, 3), train_final(workload, cfg, 20, 3)
    assert first == again
    assert train_final(workload, {"kind": "adam", "lr": 1e3}, 20, 3) > first


@pytest.mark.parametrize("cfg", [
    {"kind": "schedulefree"}, {"kind": "prodigy", "schedule": "cosine"},
    algoperf_config(ALGOPERF_NADAMW[0], 20),
])
def test_every_peer_optimizer_builds_and_trains(cfg: dict) -> None:
    workload = get("wine_logreg")
    assert math.isfinite(train_final(workload, cfg, 20, 1))


def test_algoperf_points_are_distinct_with_warmup_and_decoupled_decay() -> None:
    assert len({tuple(sorted(p.items())) for p in ALGOPERF_NADAMW}) == len(ALGOPERF_NADAMW) == 4
    cfg = algoperf_config(ALGOPERF_NADAMW[0], 300)
    assert cfg["warmup_steps"] == 30 and cfg["beta1"] == pytest.approx(1 - 0.02686663061)
    built = build(cfg, get("wine_logreg").make_model(0), 300)
    assert isinstance(built.optimizer, torch.optim.NAdam)
    assert built.optimizer.defaults["decoupled_weight_decay"] is True


def test_unknown_optimizer_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="use one of"):
        build({"kind": "sgd"}, get("wine_logreg").make_model(0), 10)


@pytest.mark.parametrize(("kind", "cls"), [("nadamw", torch.optim.NAdam),
                                           ("radamw", torch.optim.RAdam)])
def test_the_family_ablation_searches_the_same_dimensions_with_decoupled_decay(
    kind: str, cls: type
) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    cfg = plain_adam_config(study.ask(), kind)
    adam = plain_adam_config(study.ask())
    assert cfg.keys() - {"schedule"} == adam.keys() and cfg["schedule"] == "constant"
    steps = 40
    built = build(cfg, get("wine_logreg").make_model(0), steps)
    assert isinstance(built.optimizer, cls) and built.optimizer.defaults["decoupled_weight_decay"]
    assert built.scheduler is not None
    for _ in range(steps):
        built.optimizer.step()
        built.scheduler.step()
    assert built.optimizer.param_groups[0]["lr"] == pytest.approx(cfg["lr"])  # constant
    dist = study.trials[0].distributions["weight_decay"]
    assert (dist.low, dist.high) == (1e-5, 1.0)  # AdamW's usual 1e-2..1e-1 inside
    assert math.isfinite(train_final(get("wine_logreg"), cfg, 20, 1))


def test_the_matrices_only_ablation_leaves_biases_undecayed() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    cfg = plain_adam_config(study.ask(), decay_1d=False)
    assert cfg["kind"] == "adam" and cfg["decay_1d"] is False
    built = build(cfg, get("breast_cancer_tanh").make_model(0), 10)
    by_name = {g["name"]: g for g in built.optimizer.param_groups}
    assert by_name["decay"]["weight_decay"] == cfg["weight_decay"]
    assert by_name["no_decay"]["weight_decay"] == 0.0
    assert all(p.dim() == 1 for p in by_name["no_decay"]["params"])
    everything = build(plain_adam_config(study.ask()), get("breast_cancer_tanh").make_model(0), 10)
    assert len(everything.optimizer.param_groups) == 1  # the plain peer decays every parameter
