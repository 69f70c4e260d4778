"""Turn a study's trials (finished or still running) into a recommendation.

The keys of DESIGN.md's contract, plus what makes the result deployable: parameter
importances, a robust lr band, the best trial's effective-step diagnostics and the gain over
the untuned baseline. Imports no torch: the API builds recommendations too.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.driver import best_trial
from tuner.snippet import render_snippet
from tuner.spec import JobSpec

log = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 5  # fewer complete searched (not seeded) trials: no importances
LR_BAND_TOLERANCE = 0.01  # trials within 1% of the best loss define the robust lr band


class NoCompletedTrialsError(LookupError):
    """No trial has completed yet, so there is nothing to recommend."""

    def __init__(self, n_trials: int):
        self.n_trials = n_trials
        super().__init__(
            f"no trial has completed yet ({n_trials} trials so far); "
            "a recommendation exists once the first trial finishes"
        )


def _completed(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and "config" in t.user_attrs
    ]


def _role(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get("role", "search"))


def baseline_objective(trials: Sequence[FrozenTrial]) -> float | None:
    """Final validation loss of the untuned default (Adam, lr 1e-3), once it has completed."""
    for t in _completed(trials):
        if _role(t) == "baseline":
            return float(t.value)  # type: ignore[arg-type]
    return None


def gain_over_baseline(objective: float | None, baseline: float | None) -> float | None:
    """How much lower ``objective`` is than the untuned baseline's, as a fraction of the
    baseline's magnitude (0.25: 25% lower); None without two finite numbers or at baseline 0."""
    if objective is None or baseline is None or baseline == 0:
        return None
    if not (math.isfinite(objective) and math.isfinite(baseline)):
        return None
    return (baseline - objective) / abs(baseline)


def lr_band(completed: Sequence[FrozenTrial], best: float) -> dict[str, Any]:
    """The lr span of the trials within 1% of the best loss: a wide band means a forgiving lr."""
    limit = best + LR_BAND_TOLERANCE * abs(best)
    lrs = [
        float(t.user_attrs["config"]["lr"])
        for t in completed
        if t.value is not None and t.value <= limit
    ]
    return {"low": min(lrs), "high": max(lrs), "n_trials": len(lrs)}


def importances(completed: Sequence[FrozenTrial]) -> dict[str, float]:
    """fANOVA importances of the searched parameters, or {} with too few trials to say."""
    searched = [t for t in completed if t.params and _role(t) == "search"]  # not seeded
    if len(searched) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    common = set.intersection(*(set(t.params) for t in searched))
    varied = sorted(
        name
        for name in common
        if not searched[0].distributions[name].single()
        and len({t.params[name] for t in searched}) > 1
    )
    if not varied:
        return {}
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.add_trials(searched)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=varied
            )
    except (ValueError, RuntimeError) as exc:  # degenerate trials: say nothing rather than fail
        log.info("parameter importances unavailable: %s", exc)
        return {}
    return {k: float(v) for k, v in result.items()}


def _counts(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    return {
        state.name.lower(): sum(1 for t in trials if t.state == state)
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    }


def _lr_range(sweep: dict[str, Any] | None) -> dict[str, float] | None:
    if not sweep:
        return None
    rng = sweep.get("lr_range", sweep)
    return {k: float(rng[k]) for k in ("low", "suggested", "high")}


def build_recommendation(
    trials: Sequence[FrozenTrial],
    *,
    spec: JobSpec,
    sweep: dict[str, Any] | None,
    final: bool,
    known_importances: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The recommendation JSON from the best complete trial (partial while ``final`` is False).

    ``sweep`` is the sweep's ``to_dict()`` or just its ``lr_range``. ``known_importances``,
    when given, are used instead of fitting them again (the slow part: a partial
    recommendation may reuse recent ones). Raises :class:`NoCompletedTrialsError` while no
    trial has completed.
    """
    completed = _completed(trials)
    best = best_trial(completed)
    if best is None:
        raise NoCompletedTrialsError(len(trials))
    cfg = best.user_attrs["config"]
    value = float(best.value)  # type: ignore[arg-type]
    baseline = baseline_objective(trials)
    rec: dict[str, Any] = {
        "optimizer": cfg["optimizer"],
        "lr": float(cfg["lr"]),
        "betas": [float(cfg["beta1"]), float(cfg["beta2"])],
        "eps": float(cfg["eps"]),
        "weight_decay": float(cfg["weight_decay"]),
        "amsgrad": bool(cfg.get("amsgrad", False)),
        "schedule": cfg["schedule"],
        "warmup_steps": int(cfg["warmup_steps"]),
        "total_steps": spec.budget.steps_per_trial,
        "lr_floor": float(cfg.get("floor", 0.0)),
        "expected_objective": value,
        "baseline_objective": baseline,
        "improvement": gain_over_baseline(value, baseline),
        "lr_range": _lr_range(sweep),
        "lr_band": lr_band(completed, value),
        "importances": (
            importances(completed) if known_importances is None else dict(known_importances)
        ),
        "diagnostics": best.user_attrs.get("diagnostics"),
        "trial_number": best.number,
        "trial_role": _role(best),
        "trials": _counts(trials),
        "workload": spec.workload,
        "final": bool(final),
    }
    rec["snippet"] = render_snippet(rec)
    return rec
