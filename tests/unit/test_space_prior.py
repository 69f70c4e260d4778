"""The sweep as a prior, not a fence: the lr range holds the optimum when the sweep is 40x off."""

from __future__ import annotations

import math

import optuna
import pytest

from tuner.search import ROLE_LADDER, ROLE_SCHEDULE, ROLE_SWEEP, open_study, seeded_trials
from tuner.space import COMMON_LR, LR_LIMITS, ladder_params, prior_lr_interval, resolve_space
from tuner.spec import JobSpec

SPEC = JobSpec.model_validate(
    {"workload": "regression_mlp", "budget": {"trials": 30, "steps_per_trial": 30,
                                              "eval_every": 10}}
)


def sweep_around(suggested: float) -> dict[str, float]:
    """What the range test hands over: 1.5 decades around its suggestion."""
    return {"low": suggested * 10**-0.75, "suggested": suggested, "high": suggested * 10**0.75}


@pytest.mark.parametrize("optimum", [1e-4, 3.2e-4, 3e-3, 3e-2, 1e-1])
@pytest.mark.parametrize("off", [1 / 40, 40.0])
def test_a_sweep_40x_off_either_way_leaves_the_optimum_inside(optimum: float, off: float) -> None:
    space = resolve_space(SPEC, sweep_around(optimum * off))
    assert space.lr[0] <= optimum <= space.lr[1]
    # not just barely: at least a quarter decade of room on either side of the optimum
    assert math.log10(optimum / space.lr[0]) >= 0.25 and math.log10(space.lr[1] / optimum) >= 0.25


def test_the_issue_12_tabular_case_is_reachable() -> None:
    """The sweep suggested 1.3e-2, 41x the grid-best 3.2e-4; the old range stopped at 2.3e-3."""
    space = resolve_space(SPEC, {"low": 2.3e-3, "suggested": 1.3e-2, "high": 7.4e-2})
    assert space.lr[0] < 3.2e-4 / 2


def test_the_range_is_clipped_to_sane_limits_and_holds_the_sweeps_own_range() -> None:
    assert prior_lr_interval(sweep_around(1.0)) == (COMMON_LR[0], LR_LIMITS[1])
    assert prior_lr_interval(sweep_around(1e-7)) == (LR_LIMITS[0], COMMON_LR[1])
    wide = {"low": 1e-6, "suggested": 1e-3, "high": 2.0}
    assert prior_lr_interval(wide) == (1e-6, 2.0)
    assert prior_lr_interval({"low": 10.0, "suggested": 50.0, "high": 100.0}) == (
        COMMON_LR[0], LR_LIMITS[1])


def test_a_sweep_1000x_off_still_leaves_the_common_adam_range() -> None:
    """deep_narrow_gelu's sweep suggested 1e-5; Adam's optimum there is near 1e-2."""
    space = resolve_space(SPEC, {"low": 1.8e-6, "suggested": 1e-5, "high": 5.7e-5})
    assert space.lr[0] <= 1e-5 and space.lr[1] >= 1e-2 * 10**0.25


def test_a_jobs_own_lr_range_still_wins() -> None:
    spec = JobSpec.model_validate(
        {**SPEC.model_dump(), "search": {**SPEC.search.model_dump(),
                                         "lr": {"low": 1e-3, "high": 2e-3}}})
    assert resolve_space(spec, sweep_around(1e-2)).lr == (1e-3, 2e-3)


def test_the_ladder_hedges_at_the_default_lr_and_goes_below_the_suggestion() -> None:
    for suggested in (1e-4, 3e-3, 1e-2, 0.3):
        space = resolve_space(SPEC, sweep_around(suggested))
        anchor, below = ladder_params(space, suggested)
        assert anchor["optimizer"] == "adamw" and anchor["lr"] == pytest.approx(2e-3)
        assert anchor["wd_times_lr"] == pytest.approx(0.1 * anchor["lr"])  # weight decay 0.1
        assert below["lr"] < 2 * suggested and below["schedule"] == "cosine"
        assert abs(math.log10(below["lr"] / anchor["lr"])) >= 0.25  # two distinct points
        for params in (anchor, below):
            assert space.lr[0] <= params["lr"] <= space.lr[1]
    constant = resolve_space(
        JobSpec.model_validate({**SPEC.model_dump(), "search": {"schedules": ["constant"]}}),
        sweep_around(1e-2),
    )
    assert ladder_params(constant, 1e-2) == []


def test_a_suggestion_below_the_common_range_sends_the_rung_above_the_anchor() -> None:
    """deep_narrow_gelu: the sweep said 1e-5, Adam's optimum is near 1e-2. The sweep's own two
    trials probe the low side; the rung probes the other, and the anchor keeps its decay."""
    suggested = 1e-5
    space = resolve_space(SPEC, sweep_around(suggested))
    anchor, rung = ladder_params(space, suggested)
    assert anchor["wd_times_lr"] == pytest.approx(0.1 * anchor["lr"])  # not fenced by the sweep
    assert rung["lr"] == pytest.approx(2e-2) and rung["schedule"] == "cosine"


@pytest.mark.parametrize("suggested", [1e-5, 1e-3, 3e-2])
def test_the_sweep_does_not_fence_the_weight_decay(suggested: float) -> None:
    """At the anchor's lr and at the sweep's, a weight decay of 0.1 (and 1e-5) is reachable."""
    space = resolve_space(SPEC, sweep_around(suggested))
    low, high = space.wd_times_lr
    for lr in (2e-3, suggested):
        assert low <= 1e-5 * lr * (1 + 1e-9) and 0.1 * lr <= high * (1 + 1e-9)


def test_the_sweep_seeds_the_first_trials_and_five_trials_are_all_seeded() -> None:
    five = JobSpec.model_validate({**SPEC.model_dump(), "budget": {
        "trials": 5, "steps_per_trial": 30, "eval_every": 10}})
    space = resolve_space(five, sweep_around(1e-2))
    roles = [a["role"] for _, a in seeded_trials(five, space, sweep_around(1e-2))]
    assert roles == ["baseline", ROLE_SWEEP, ROLE_SCHEDULE, ROLE_LADDER, ROLE_LADDER]
    study = open_study(None, "five", five, sweep_around(1e-2), create=True)
    lrs = sorted(t.system_attrs.get("fixed_params", {}).get("lr", 1e-3)  # enqueued, not run
                 for t in study.get_trials(deepcopy=False))
    assert lrs[0] < 1e-2 / 10 and lrs[-1] >= 2e-2  # a decade and more of lr covered
    assert len({round(math.log10(v), 3) for v in lrs}) == 5
    assert isinstance(study.sampler, optuna.samplers.TPESampler)
