"""Turn a study's trials (finished or still running) into a recommendation.

The keys of DESIGN.md's contract, plus what makes the result deployable: parameter
importances, a robust lr band, the best trial's effective-step diagnostics and the gain over
the untuned baseline. Imports no torch: the API builds recommendations too.

Honest numbers: once the best configurations have been confirmed on new seeds
(:mod:`tuner.confirm`), the recommendation is the one with the best mean over all its seeds,
and ``expected_objective`` is its mean over the confirmation seeds alone (``objective_seeds``;
``objective_std`` their spread), seeds no search trial was selected on. The baseline and the
references are compared on the same seeds: the gain is a difference of means. Before that (a
partial recommendation, or a budget too small to confirm) the numbers are the selection seed's,
and ``objective_selected_on_seed`` says so.
"""

from __future__ import annotations

import logging
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner import confirm
from tuner.driver import best_trial
from tuner.snippet import render_snippet
from tuner.spec import JobSpec, resolve_precision

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


_role = confirm.role_of


def baseline_objective(trials: Sequence[FrozenTrial]) -> float | None:
    """Final validation loss of the untuned default (Adam, lr 1e-3) on the job's seed, once
    it has completed (a job's progress shows it; the recommendation's is a mean, see below)."""
    for t in _completed(trials):
        if _role(t) == confirm.ROLE_BASELINE:
            return float(t.value)  # type: ignore[arg-type]
    return None


@dataclass(frozen=True)
class Estimate:
    """A configuration's mean final loss over ``seeds`` (``inf`` where one diverged)."""

    mean: float
    std: float | None  # sample standard deviation; None on one seed
    seeds: list[int]

    @classmethod
    def of(cls, runs: dict[int, float], seeds: Sequence[int]) -> Estimate | None:
        values = [runs[s] for s in seeds if s in runs]
        if not values:
            return None
        mean = sum(values) / len(values)
        std = statistics.stdev(values) if len(values) > 1 and math.isfinite(mean) else None
        return cls(mean, std, [s for s in seeds if s in runs])


@dataclass(frozen=True)
class Selection:
    """The recommended trial and its honest estimate (see the module doc)."""

    trial: FrozenTrial
    estimate: Estimate
    selected_on_seed: bool  # True: the estimate is the selection seed's, optimistic


def select(trials: Sequence[FrozenTrial], spec: JobSpec) -> Selection | None:
    """The best mean among the confirmed configurations (the untuned baseline among them:
    it is recommended where nothing beat it); before any confirmation, the best tuned or
    baseline trial on the job's seed (any complete trial while none of those has completed)."""
    completed = _completed(trials)
    recommendable = (*confirm.TUNED_ROLES, confirm.ROLE_BASELINE)
    tuned = [t for t in completed if _role(t) in recommendable]
    runs = confirm.seed_values(trials, spec.seed)
    confirmed = [t for t in tuned if len(runs.get(t.number, {})) > 1]
    if confirmed:
        def mean_all(t: FrozenTrial) -> tuple[float, int]:
            values = list(runs[t.number].values())
            return sum(values) / len(values), t.number

        pick = min(confirmed, key=mean_all)
        others = [s for s in runs[pick.number] if s != spec.seed]
        estimate = Estimate.of(runs[pick.number], others)
        assert estimate is not None
        return Selection(pick, estimate, False)
    best = best_trial(tuned) or best_trial(
        [t for t in completed if _role(t) != confirm.ROLE_CONFIRM]
    )
    if best is None:
        return None
    return Selection(best, Estimate(float(best.value), None, [spec.seed]), True)  # type: ignore[arg-type]


def _reference_trials(trials: Sequence[FrozenTrial]) -> dict[str, FrozenTrial]:
    return {
        str(t.user_attrs.get("reference")): t
        for t in _completed(trials)
        if _role(t) == confirm.ROLE_REFERENCE
    }


def compared(
    trials: Sequence[FrozenTrial], spec: JobSpec, selection: Selection
) -> dict[str, Any]:
    """The baseline's and the references' means on the recommendation's seeds (a reference
    not confirmed there: on the job's seed, beside the pick's selection-seed loss)."""
    runs = confirm.seed_values(trials, spec.seed)
    pick = runs.get(selection.trial.number, {})
    out: dict[str, Any] = {"baseline": None, "references": {}}
    for t in _completed(trials):
        if _role(t) == confirm.ROLE_BASELINE:
            out["baseline"] = Estimate.of(runs[t.number], selection.estimate.seeds)
            break
    for name, t in _reference_trials(trials).items():
        ref = Estimate.of(runs[t.number], selection.estimate.seeds)
        mine = selection.estimate
        if ref is None:  # not confirmed on those seeds: compare on the selection seed
            ref = Estimate.of(runs[t.number], [spec.seed])
            mine = Estimate.of(pick, [spec.seed]) or mine
        assert ref is not None
        out["references"][name] = {
            "objective": ref.mean, "objective_std": ref.std, "objective_seeds": ref.seeds,
            "gain": gain_over_baseline(mine.mean, ref.mean),
        }
    return out


def versus_references(references: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """How much tuning beat the best tuning-free reference (or that it did not)."""
    if not references:
        return None
    name, best = min(references.items(), key=lambda kv: kv[1]["objective"])
    gain = best["gain"]
    won = gain is not None and gain > 0
    verdict = (
        f"tuning beat the best tuning-free optimizer ({name}) by {100 * gain:.1f}%"
        if won
        else f"tuning did not beat the best tuning-free optimizer ({name})"
        + ("" if gain is None else f": {100 * -gain:.1f}% worse")
    )
    return {"best_reference": name, "gain": gain, "tuning_won": won, "verdict": verdict}


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
    selection = select(trials, spec)
    if selection is None:
        raise NoCompletedTrialsError(len(trials))
    best, estimate = selection.trial, selection.estimate
    cfg = best.user_attrs["config"]
    value = estimate.mean
    others = compared(trials, spec, selection)
    baseline = others["baseline"].mean if others["baseline"] is not None else None
    single = [  # one run per configuration, on the job's seed
        t for t in completed if _role(t) not in (confirm.ROLE_CONFIRM, confirm.ROLE_REFERENCE)
    ] or [best]
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
        "objective_std": estimate.std,
        "objective_seeds": estimate.seeds,
        "objective_selected_on_seed": selection.selected_on_seed,
        "selection_objective": float(best.value),  # type: ignore[arg-type]
        "baseline_objective": baseline,
        "baseline_std": others["baseline"].std if others["baseline"] is not None else None,
        "baseline_seeds": others["baseline"].seeds if others["baseline"] is not None else [],
        "improvement": gain_over_baseline(value, baseline),
        "references": others["references"],
        "versus_references": versus_references(others["references"]),
        "lr_range": _lr_range(sweep),
        "lr_band": lr_band(single, float(best.value)),  # type: ignore[arg-type]
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
    rec["precision"] = best.user_attrs.get("precision") or resolve_precision(  # as trained
        spec.precision, str(best.user_attrs.get("device", "cpu"))
    )
    rec["snippet"] = render_snippet(rec)
    return rec
