"""How many trials each number of a result rests on, and what is too thin to show.

A recommendation read at a small budget looks surer than it is: importances fitted on a
handful of trials, an lr "band" that is one trial, a best value that one trial found. The
page, the recommendation JSON and the dashboard's importances all take these counts and
this rule from here, so they agree with each other for the same study.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuner.recommend import MIN_TRIALS_FOR_IMPORTANCE

SEARCHED_ROLE = "search"
FINISHED_STATES = frozenset({"complete", "pruned"})  # what ``progress.trials_completed`` counts


def trial_counts(trials: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Trials by state, plus ``finished`` (complete + pruned, as the job's progress counts)
    and ``searched_complete`` (complete trials the sampler chose: seeded ones excluded)."""
    states = [str(t.get("state", "")).lower() for t in trials]
    counts = {s: states.count(s) for s in ("complete", "pruned", "fail", "running", "waiting")}
    counts["finished"] = sum(states.count(s) for s in FINISHED_STATES)
    counts["searched_complete"] = sum(
        1
        for t, state in zip(trials, states, strict=True)
        if state == "complete" and (t.get("role") or SEARCHED_ROLE) == SEARCHED_ROLE
    )
    counts["seeded_complete"] = counts["complete"] - counts["searched_complete"]
    return counts


def importances_hidden_reason(counts: Mapping[str, int]) -> str | None:
    """Why importances are not shown yet, or None when enough searched trials completed."""
    searched = counts.get("searched_complete", 0)
    if searched >= MIN_TRIALS_FOR_IMPORTANCE:
        return None
    seeded = counts.get("seeded_complete", 0)
    also = f" (and {seeded} seeded, which are not counted)" if seeded else ""
    return (
        f"hidden: importances need {MIN_TRIALS_FOR_IMPORTANCE} completed searched trials, "
        f"{searched} so far{also}; fewer are noise"
    )


def evidence(rec: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, Any]:
    """The trial counts behind a recommendation's numbers, for its ``evidence`` field."""
    band = rec.get("lr_band")
    if not isinstance(band, Mapping):
        band = {}
    hidden = importances_hidden_reason(counts)
    return {
        "trials_finished": counts.get("finished", 0),
        "trials_complete": counts.get("complete", 0),
        "searched_complete": counts.get("searched_complete", 0),
        "seeded_complete": counts.get("seeded_complete", 0),
        "expected_objective_trials": 1,
        "lr_band_trials": band.get("n_trials"),
        "importances_trials": None if hidden else counts.get("searched_complete", 0),
        "importances_hidden": hidden,
    }


def shown_importances(rec: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, float]:
    """The recommendation's importances, or none while they rest on too few trials."""
    importances = rec.get("importances")
    if importances_hidden_reason(counts) or not isinstance(importances, Mapping):
        return {}
    return {str(k): float(v) for k, v in importances.items()}


def user_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's parameters as a user would type them: ``beta2`` rather than the searched
    ``one_minus_beta2``, ``weight_decay`` rather than ``wd_times_lr`` (see tuner.space)."""
    shown: dict[str, Any] = {}
    for name, value in params.items():
        if name == "one_minus_beta2" and isinstance(value, int | float):
            shown["beta2"] = 1.0 - value
        elif name == "wd_times_lr" and isinstance(value, int | float):
            lr = params.get("lr")
            if isinstance(lr, int | float) and lr > 0:
                shown["weight_decay"] = value / lr
            else:
                shown[name] = value
        else:
            shown[name] = value
    return shown
