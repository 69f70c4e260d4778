"""Recommendations from hand-built trials, and the snippet executed against the schedules."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial
from torch import nn

from tuner.optim import OptimConfig
from tuner.recommend import NoCompletedTrialsError, build_recommendation, gain_over_baseline
from tuner.schedules import lr_multiplier
from tuner.snippet import render_snippet
from tuner.spec import JobSpec

SPEC = JobSpec.model_validate(
    {"workload": "digits_mlp", "budget": {"trials": 10, "steps_per_trial": 100, "eval_every": 50}}
)
SWEEP = {"lr_range": {"low": 1e-3, "suggested": 3e-3, "high": 3e-2}, "lrs": [1e-7]}
CONTRACT = {
    "optimizer",
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "schedule",
    "warmup_steps",
    "total_steps",
    "expected_objective",
    "baseline_objective",
    "lr_range",
    "final",
    "snippet",
}
EXTRA = {
    "importances",
    "lr_band",
    "diagnostics",
    "improvement",
    "amsgrad",
    "lr_floor",
    "trial_number",
}
DIST = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "beta1": FloatDistribution(0.8, 0.99),
    "schedule": CategoricalDistribution(("constant", "cosine")),
}


def trial(
    value: float | None,
    lr: float,
    *,
    role: str = "search",
    state: TrialState = TrialState.COMPLETE,
    beta1: float = 0.9,
    schedule: str = "cosine",
) -> FrozenTrial:
    cfg = OptimConfig(
        optimizer="adamw",
        lr=lr,
        beta1=beta1,
        beta2=0.98,
        weight_decay=0.01,
        warmup_steps=10,
        schedule=schedule,
        floor=0.1,
    )
    params = {} if role == "baseline" else {"lr": lr, "beta1": beta1, "schedule": schedule}
    return create_trial(
        state=state,
        value=value,
        params=params,
        distributions={k: DIST[k] for k in params},
        user_attrs={
            "role": role,
            "config": (OptimConfig() if role == "baseline" else cfg).to_dict(),
            "diagnostics": {"groups": {"decay": {"p10": 0.01, "p50": 0.1, "p90": 0.5}}},
        },
    )


def trials() -> list[FrozenTrial]:
    out = [
        trial(0.5, 1e-3, role="baseline"),
        trial(0.40, 3e-3, role="sweep_suggestion"),
        trial(0.30, 1e-2),
        trial(0.302, 2e-2),
        trial(0.35, 5e-2),
        trial(None, 9e-2, state=TrialState.PRUNED),
    ]
    for i, t in enumerate(out):
        t.number = i
    return out


def test_recommendation_has_every_contract_key() -> None:
    rec = build_recommendation(trials(), spec=SPEC, sweep=SWEEP, final=True)
    assert CONTRACT | EXTRA <= set(rec)
    assert rec["optimizer"] == "adamw" and rec["lr"] == 1e-2 and rec["betas"] == [0.9, 0.98]
    assert rec["expected_objective"] == 0.30 and rec["baseline_objective"] == 0.5
    assert rec["improvement"] == pytest.approx(0.4)
    assert rec["total_steps"] == 100 and rec["warmup_steps"] == 10 and rec["lr_floor"] == 0.1
    assert rec["lr_range"] == SWEEP["lr_range"] and rec["final"] is True
    assert rec["trial_number"] == 2 and rec["diagnostics"]["groups"]["decay"]["p50"] == 0.1
    assert rec["trials"]["complete"] == 5 and rec["trials"]["pruned"] == 1


def test_lr_band_spans_trials_within_one_percent() -> None:
    rec = build_recommendation(trials(), spec=SPEC, sweep=SWEEP["lr_range"], final=False)
    assert rec["lr_band"] == {"low": 1e-2, "high": 2e-2, "n_trials": 2}
    assert rec["lr_range"] == SWEEP["lr_range"] and rec["final"] is False


def test_importances_need_a_few_trials() -> None:
    assert (
        build_recommendation(trials()[:3], spec=SPEC, sweep=None, final=False)["importances"] == {}
    )
    many = [trial(0.9, 1e-3, role="baseline")]  # no params: left out of the importances
    for i in range(10):
        lr = 1e-4 * 2**i  # the loss depends on lr only; beta1 and schedule vary independently
        many.append(
            trial(
                abs(i - 5) * 0.1 + 0.3,
                lr,
                beta1=0.8 + 0.01 * (i % 3),
                schedule=("constant", "cosine")[(i // 2) % 2],
            )
        )
    imp = build_recommendation(many, spec=SPEC, sweep=None, final=True)["importances"]
    assert set(imp) == {"lr", "beta1", "schedule"}
    assert sum(imp.values()) == pytest.approx(1.0) and max(imp, key=imp.get) == "lr"


def test_nothing_completed_raises() -> None:
    with pytest.raises(NoCompletedTrialsError, match="no trial has completed yet"):
        build_recommendation(
            [trial(None, 1e-3, state=TrialState.PRUNED)], spec=SPEC, sweep=None, final=False
        )
    with pytest.raises(NoCompletedTrialsError):
        build_recommendation([], spec=SPEC, sweep=None, final=False)


def test_recommend_does_not_import_torch() -> None:
    code = "import sys, tuner.recommend, tuner.snippet; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("optimizer", "schedule", "warmup", "amsgrad"),
    [("adamw", "cosine", 10, False), ("adam", "linear", 0, True), ("adamw", "constant", 5, False)],
)
def test_snippet_runs_and_matches_the_recommendation(
    optimizer: str, schedule: str, warmup: int, amsgrad: bool
) -> None:
    rec = {
        "optimizer": optimizer,
        "lr": 3.3e-3,
        "betas": [0.87, 0.985],
        "eps": 1e-9,
        "weight_decay": 0.02,
        "amsgrad": amsgrad,
        "schedule": schedule,
        "warmup_steps": warmup,
        "total_steps": 50,
        "lr_floor": 0.05,
    }
    namespace: dict[str, object] = {}
    exec(compile(render_snippet(rec), "<snippet>", "exec"), namespace)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1))
    opt, sched = namespace["build_optimizer"](model)  # type: ignore[operator]
    assert type(opt) is {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.02 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    for g in opt.param_groups:
        assert g["betas"] == (0.87, 0.985) and g["eps"] == 1e-9 and g["amsgrad"] is amsgrad
    checkpoints = {0, max(warmup - 1, 0), warmup, (warmup + 49) // 2, 49}
    for step in range(50):
        want = 3.3e-3 * lr_multiplier(
            step, total_steps=50, warmup_steps=warmup, schedule=schedule, floor=0.05
        )
        if step in checkpoints:
            assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12)
        opt.step()
        sched.step()


def test_snippet_refuses_unknown_names() -> None:
    rec = {
        "optimizer": "sgd",
        "lr": 1e-3,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.0,
        "schedule": "constant",
        "warmup_steps": 0,
        "total_steps": 10,
    }
    with pytest.raises(ValueError, match="'adam' or 'adamw'"):
        render_snippet(rec)
    with pytest.raises(ValueError, match="constant, linear, cosine"):
        render_snippet({**rec, "optimizer": "adam", "schedule": "step"})


def test_the_gain_over_the_baseline_is_a_fraction_of_its_magnitude() -> None:
    assert gain_over_baseline(0.15, 0.2) == pytest.approx(0.25)
    assert gain_over_baseline(0.3, 0.2) == pytest.approx(-0.5)  # worse than untuned
    assert gain_over_baseline(-2.0, -1.0) == pytest.approx(1.0)  # a negative loss, lower still
    for objective, baseline in ((0.1, None), (None, 0.2), (0.1, 0.0), (0.1, math.nan)):
        assert gain_over_baseline(objective, baseline) is None


# ---------------------------------------------------------------- confirmed, honest numbers


def confirmation(value: float | None, of: FrozenTrial, seed: int, **extra: object) -> FrozenTrial:
    """A re-run of ``of`` on ``seed`` (a diverged one: value None, pruned)."""
    state = TrialState.COMPLETE if value is not None else TrialState.PRUNED
    attrs = {**of.user_attrs, "role": "confirm", "seed": seed, "of_trial": of.number,
             "of_role": of.user_attrs["role"], **extra}
    return create_trial(state=state, value=value, params=of.params,
                        distributions=of.distributions, user_attrs=attrs)


def reference(value: float, name: str) -> FrozenTrial:
    cfg = OptimConfig.reference(name).to_dict()
    return create_trial(state=TrialState.COMPLETE, value=value, params={}, distributions={},
                        user_attrs={"role": "reference", "reference": name, "config": cfg})


def confirmed_study() -> list[FrozenTrial]:
    """Trial 2 wins on the job's seed but not on others; trial 3 is steadier."""
    out = trials()  # 0 baseline 0.5, 1 sweep 0.40, 2 search 0.30, 3 search 0.302
    out += [reference(0.45, "schedulefree"), reference(0.35, "prodigy")]
    out += [confirmation(0.40, out[2], 11), confirmation(0.38, out[2], 12),
            confirmation(0.31, out[3], 11), confirmation(0.33, out[3], 12),
            confirmation(0.60, out[0], 11), confirmation(0.62, out[0], 12)]
    for i, t in enumerate(out):
        t.number = i
    return out


def test_the_recommendation_is_the_best_mean_and_its_objective_the_unseen_seeds_mean() -> None:
    rec = build_recommendation(confirmed_study(), spec=SPEC, sweep=SWEEP, final=True)
    assert rec["trial_number"] == 3 and rec["lr"] == 2e-2  # not trial 2, the luckiest
    assert rec["expected_objective"] == pytest.approx(0.32)  # the mean of 0.31 and 0.33
    assert rec["objective_seeds"] == [11, 12] and not rec["objective_selected_on_seed"]
    assert rec["objective_std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert rec["selection_objective"] == 0.302
    # the baseline on the same seeds: the gain is a difference of means
    assert rec["baseline_objective"] == pytest.approx(0.61)
    assert rec["baseline_std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert rec["improvement"] == pytest.approx((0.61 - 0.32) / 0.61)
    assert rec["lr_band"]["n_trials"] == 2  # single-seed runs only, confirmations left out


def test_references_are_compared_on_shared_seeds_and_the_verdict_says_who_won() -> None:
    rec = build_recommendation(confirmed_study(), spec=SPEC, sweep=SWEEP, final=True)
    prodigy = rec["references"]["prodigy"]
    # not confirmed: compared on the job's seed, against the pick's selection-seed loss
    assert prodigy["objective_seeds"] == [0] and prodigy["objective"] == 0.35
    assert prodigy["gain"] == pytest.approx((0.35 - 0.302) / 0.35)
    versus = rec["versus_references"]
    assert versus["best_reference"] == "prodigy" and versus["tuning_won"]
    assert versus["verdict"].startswith("tuning beat the best tuning-free optimizer (prodigy)")
    losing = [t for t in confirmed_study() if t.user_attrs.get("reference") != "prodigy"]
    losing.append(reference(0.1, "prodigy"))
    versus = build_recommendation(losing, spec=SPEC, sweep=SWEEP, final=True)["versus_references"]
    assert not versus["tuning_won"] and versus["verdict"].startswith("tuning did not beat")


def test_a_configuration_that_diverges_on_a_new_seed_is_not_recommended() -> None:
    study = confirmed_study()
    study[-3] = confirmation(None, study[3], 12)  # trial 3 diverges on seed 12
    for i, t in enumerate(study):
        t.number = i
    rec = build_recommendation(study, spec=SPEC, sweep=SWEEP, final=True)
    assert rec["trial_number"] == 2 and rec["expected_objective"] == pytest.approx(0.39)


def test_before_confirmation_the_numbers_say_they_are_the_selection_seeds() -> None:
    rec = build_recommendation(trials(), spec=SPEC, sweep=SWEEP, final=False)
    assert rec["objective_selected_on_seed"] and rec["objective_seeds"] == [SPEC.seed]
    assert rec["objective_std"] is None and rec["references"] == {}
    assert rec["versus_references"] is None
    only_baseline = [trial(0.5, 1e-3, role="baseline"), reference(0.3, "prodigy")]
    assert build_recommendation(only_baseline, spec=SPEC, sweep=None, final=False)[
        "trial_role"] == "baseline"  # a reference is never the recommendation
