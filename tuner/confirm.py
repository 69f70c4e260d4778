"""The roles of a job's trials, and the confirmation of the best configurations on new seeds.

A job's budget has two parts. The *search* part holds the seeded trials (the untuned baseline,
the tuning-free references, the sweep's suggestions and an lr ladder around them) and the
trials TPE samples, all on the job's seed. Once it is spent, the best ``confirm_top`` tuned
configurations and the baseline (and the references, where that is cheap) are re-run on
``confirm_seeds`` new seeds: the *confirmation* part, enqueued exactly once, by whichever
process (a worker under the job's search lock, or ``adamtune tune``) sees the search part done.
A confirmation trial has the user attrs ``role=confirm``, ``seed``, ``of_trial`` (the number
of the trial it repeats) and ``of_role``. The recommendation is the best mean, and its
``expected_objective`` the mean over the confirmation seeds. Imports no torch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.spec import JobSpec

log = logging.getLogger(__name__)

ROLE_BASELINE = "baseline"
ROLE_REFERENCE = "reference"
ROLE_SWEEP = "sweep_suggestion"
ROLE_SCHEDULE = "schedule_suggestion"
ROLE_LADDER = "lr_ladder"
ROLE_SEARCH = "search"
ROLE_CONFIRM = "confirm"
TUNED_ROLES = (ROLE_SWEEP, ROLE_SCHEDULE, ROLE_LADDER, ROLE_SEARCH)  # what may be recommended

REFERENCES_FROM_TRIALS = 15  # default references: both from this budget up (below, every
# trial goes to the search)
CONFIRM_FROM_TRIALS = 15  # default confirmation: DEFAULT_CONFIRM_SEEDS from this budget up
DEFAULT_CONFIRM_SEEDS = 2
REFERENCE_CONFIRM_SHARE = 0.1  # references are re-run too when that costs <= 10% of the budget
CONFIRM_SEED_STRIDE = 7919  # confirmation seeds: far from the job's seed and its neighbours
ENQUEUED_ATTR = "confirmations"  # study user attr, set once the confirmations are enqueued


def role_of(trial: FrozenTrial | optuna.Trial) -> str:
    return str(trial.user_attrs.get("role", ROLE_SEARCH))


def references_of(spec: JobSpec) -> tuple[str, ...]:
    """The tuning-free optimizers this job runs: the job's list, else both from
    ``REFERENCES_FROM_TRIALS`` trials up. None for a program job: Schedule-Free needs
    train/eval switching that a user's own loop does not do (JobSpec refuses a list there)."""
    if spec.program is not None:
        return ()
    if spec.references is not None:
        return tuple(dict.fromkeys(spec.references))
    return ("schedulefree", "prodigy") if spec.budget.trials >= REFERENCES_FROM_TRIALS else ()


@dataclass(frozen=True)
class ConfirmPlan:
    """How many trials confirm, on which seeds; ``trials`` is the confirmation part's size."""

    seeds: tuple[int, ...]
    top: int
    references: tuple[str, ...]  # the references re-run on the seeds too (may be empty)

    @property
    def trials(self) -> int:
        return len(self.seeds) * (self.top + 1 + len(self.references))


def confirm_seeds(seed: int, n: int) -> tuple[int, ...]:
    """``n`` seeds no search trial used (the job's seed is the selection seed)."""
    return tuple((seed + CONFIRM_SEED_STRIDE * (i + 1)) % 2**31 for i in range(n))


def plan_for(spec: JobSpec) -> ConfirmPlan:
    """The job's confirmation plan: ``budget.confirm_seeds`` (default 2 from 15 trials up)."""
    n = spec.budget.confirm_seeds
    if n is None:
        n = DEFAULT_CONFIRM_SEEDS if spec.budget.trials >= CONFIRM_FROM_TRIALS else 0
    refs = references_of(spec)
    cheap = n * len(refs) <= REFERENCE_CONFIRM_SHARE * spec.budget.trials
    return ConfirmPlan(confirm_seeds(spec.seed, n), spec.budget.confirm_top, refs if cheap else ())


def search_budget(spec: JobSpec) -> int:
    """The search part of the budget: every trial that is not a confirmation."""
    return spec.budget.trials - plan_for(spec).trials


def _finite_complete(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]


def candidates(trials: Sequence[FrozenTrial], top: int) -> list[FrozenTrial]:
    """The best ``top`` distinct tuned configurations on the selection seed."""
    tuned = sorted(
        (t for t in _finite_complete(trials) if role_of(t) in TUNED_ROLES),
        key=lambda t: (float(t.value), t.number),  # type: ignore[arg-type]
    )
    picked: list[FrozenTrial] = []
    seen: set[tuple[tuple[str, object], ...]] = set()
    for t in tuned:
        key = tuple(sorted(t.params.items()))
        if key not in seen:
            seen.add(key)
            picked.append(t)
        if len(picked) == top:
            break
    return picked


def enqueued(study: optuna.Study) -> bool:
    return ENQUEUED_ATTR in study.user_attrs


def enqueue_confirmations(
    study: optuna.Study, trials: Sequence[FrozenTrial], plan: ConfirmPlan
) -> int:
    """Enqueue the confirmation trials once (the caller holds the job's search lock); the
    number enqueued. Fewer than ``plan.trials`` where fewer configurations completed: the
    budget's remaining trials are then searched.

    Each enqueue is its own write, and the study's marker comes last: an enqueue cut short
    (the connection lost half way) is finished by the next lock holder, which skips every
    (trial, seed) already in ``trials``, so no confirmation runs twice and the budget holds.
    """
    if enqueued(study):
        return 0
    present = {(t.user_attrs.get("of_trial"), t.user_attrs.get("seed"))
               for t in trials if role_of(t) == ROLE_CONFIRM}
    done = _finite_complete(trials)
    repeats = [(t, role_of(t)) for t in candidates(trials, plan.top)]
    repeats += [(t, ROLE_BASELINE) for t in done if role_of(t) == ROLE_BASELINE][:1]
    repeats += [
        (t, ROLE_REFERENCE)
        for t in done
        if role_of(t) == ROLE_REFERENCE and t.user_attrs.get("reference") in plan.references
    ]
    n = 0
    for seed in plan.seeds:
        for trial, role in repeats:
            if (trial.number, seed) in present:
                continue
            n += 1
            attrs = {"role": ROLE_CONFIRM, "seed": seed, "of_trial": trial.number, "of_role": role}
            if role == ROLE_REFERENCE:
                attrs["reference"] = trial.user_attrs["reference"]
            study.enqueue_trial(dict(trial.params), user_attrs=attrs)
    study.set_user_attr(
        ENQUEUED_ATTR, {"seeds": list(plan.seeds), "of_trials": [t.number for t, _ in repeats]}
    )
    log.info("confirming trials %s on seeds %s: %d trials (%d enqueued before)",
             [t.number for t, _ in repeats], list(plan.seeds),
             len(plan.seeds) * len(repeats), len(present))
    return n


def seed_values(trials: Sequence[FrozenTrial], seed: int) -> dict[int, dict[int, float]]:
    """Per trial number, its final loss on every seed it ran on (``seed``: the job's own),
    its confirmations included; ``inf`` where a confirmation diverged."""
    out: dict[int, dict[int, float]] = {}
    for t in trials:
        if role_of(t) == ROLE_CONFIRM and t.state == TrialState.PRUNED:  # it diverged there
            out.setdefault(int(t.user_attrs["of_trial"]), {})[int(t.user_attrs["seed"])] = math.inf
    for t in _finite_complete(trials):
        if role_of(t) == ROLE_CONFIRM:
            of = int(t.user_attrs["of_trial"])
            out.setdefault(of, {})[int(t.user_attrs["seed"])] = float(t.value)  # type: ignore[arg-type]
        else:
            out.setdefault(t.number, {})[seed] = float(t.value)  # type: ignore[arg-type]
    return out
