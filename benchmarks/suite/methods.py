"""The suite's methods: each picks one configuration on the selection seed.

Every method returns a :class:`Pick`: the configuration to re-train on unseen seeds, the
training steps it spent choosing it, and (adamtune only) the objective it expects.
adamtune is reached through :func:`run_adamtune` alone, so when the engine's entry point
moves, one import changes. The peers search with this package's own training loop
(``training.train_final``): the same steps per trial, the same selection seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import optuna
from optuna.trial import TrialState

from tuner.local_search import run_local_search  # the engine's one entry point used here
from tuner.spec import Budget, JobSpec
from tuner.workloads.base import Workload

from .training import Config, train_final

REC_FIELDS = ("expected_objective", "objective_std", "objective_seeds", "baseline_objective",
              "trial_role", "trials", "lr_range")
RANDOM_SEED_OFFSET = 10_000  # random search's own stream: TPE's startup trials are random too
# The distinct points of AlgoPerf's NAdamW qualification baselines (external tuning):
# prize_qualification_baselines/external_tuning/tuning_search_space.json in
# mlcommons/algorithmic-efficiency (5 entries, the 1st and 3rd identical). Dropout and label
# smoothing are the workload's business there; the suite's workloads have neither.
ALGOPERF_NADAMW: tuple[dict[str, float], ...] = (
    {"learning_rate": 0.001308209823469072, "one_minus_beta1": 0.02686663061,
     "beta2": 0.9981232922116359, "weight_decay": 0.16375311233774334, "warmup_factor": 0.1},
    {"learning_rate": 0.0008445074561975979, "one_minus_beta1": 0.11042418465,
     "beta2": 0.9978504782314613, "weight_decay": 0.08135402759553023, "warmup_factor": 0.05},
    {"learning_rate": 0.004958460849689891, "one_minus_beta1": 0.13625575743,
     "beta2": 0.6291854735396584, "weight_decay": 0.1147386261512052, "warmup_factor": 0.02},
    {"learning_rate": 0.0017486387539278373, "one_minus_beta1": 0.06733926164,
     "beta2": 0.9955159689799007, "weight_decay": 0.08121616522670176, "warmup_factor": 0.02},
)


@dataclass
class Pick:
    config: Config
    steps_spent: int
    selection_value: float | None = None  # the pick's loss on the selection seed
    expected_objective: float | None = None  # what adamtune promises for it
    extra: dict[str, Any] = field(default_factory=dict)


def run_adamtune(workload: Workload, trials: int, steps: int, seed: int,
                 ) -> tuple[Config, float]:
    """Tune ``workload`` as ``adamtune tune`` does (the job's defaults: LR range test, then the
    search); return its recommendation as a configuration, and its ``expected_objective``.

    The configuration carries the recommendation's optimizer, lr, betas, eps, weight decay,
    schedule, warmup and decay floor, and (under "_spent_steps", "_rec") what the search
    cost and the recommendation's other fields."""
    spec = JobSpec(workload=workload.name, seed=seed,
                   budget=Budget(trials=trials, steps_per_trial=steps, eval_every=min(50, steps)))
    result = run_local_search(spec, workload=workload)
    rec = result.recommendation
    sweep_steps = len(result.sweep.lrs) if result.sweep is not None else 0
    search_steps = sum(int(t.user_attrs.get("steps", 0)) for t in result.study.get_trials())
    config: Config = {
        "kind": rec["optimizer"], "lr": rec["lr"], "beta1": rec["betas"][0],
        "beta2": rec["betas"][1], "eps": rec["eps"], "weight_decay": rec["weight_decay"],
        "amsgrad": rec.get("amsgrad", False), "warmup_steps": rec["warmup_steps"],
        "schedule": rec["schedule"], "floor": rec.get("lr_floor", 0.0),
        "_spent_steps": sweep_steps + search_steps,
        "_rec": {k: rec.get(k) for k in REC_FIELDS},
    }
    return config, float(rec["expected_objective"])


def adamtune(workload: Workload, trials: int, steps: int, seed: int) -> Pick:
    config, expected = run_adamtune(workload, trials, steps, seed)
    spent = int(config.pop("_spent_steps"))
    rec = config.pop("_rec")
    return Pick(config, spent, expected_objective=expected,
                extra={"recommendation": json.loads(json.dumps(rec, default=str))})


def plain_adam_config(trial: optuna.Trial, kind: str = "adam", decay_1d: bool = True) -> Config:
    """What a generic tuner searches for Adam: five hyperparameters, lr over five decades,
    weight decay on every parameter, constant lr (a 20-line Optuna script).

    Another ``kind`` (the optimizer-family ablation: ``adamw``, ``nadamw``, ``radamw``)
    searches the same dimensions with decoupled decay, whose strength is ``lr x decay``: its
    range is the L2 range's times 10 (1e-5 .. 1), where AdamW's usual 1e-2 .. 1e-1 lies.
    ``decay_1d=False`` decays matrices only (biases and norm weights not), as adamtune does.
    """
    decoupled = kind != "adam"
    low, high = (1e-5, 1.0) if decoupled else (1e-6, 1e-1)
    config: Config = {
        "kind": kind, "lr": trial.suggest_float("lr", 1e-5, 1.0, log=True),
        "beta1": trial.suggest_float("beta1", 0.8, 0.99),
        "beta2": trial.suggest_float("beta2", 0.9, 0.9999),
        "eps": trial.suggest_float("eps", 1e-10, 1e-6, log=True),
        "weight_decay": trial.suggest_float("weight_decay", low, high, log=True),
        "decay_1d": decay_1d,
    }
    if decoupled:
        config["schedule"] = "constant"
    return config


@dataclass
class SearchHistory:
    """Every trial of a generic search in order: (config, selection-seed loss)."""

    trials: list[tuple[Config, float]] = field(default_factory=list)

    def best_of_first(self, n: int) -> tuple[int, Config, float]:
        """The index, configuration and loss of the best of the first ``n`` trials."""
        values = [v for _, v in self.trials[:n]]
        index = min(range(len(values)), key=values.__getitem__)
        return index, self.trials[index][0], values[index]


SpaceFn = Callable[[optuna.Trial], Config]


class GenericSearch:
    """Plain Optuna over ``space`` (:func:`plain_adam_config` unless told), extended on
    demand: a seeded sequential search's first n trials are the n-trial search, so one study
    serves every budget."""

    def __init__(self, workload: Workload, sampler: optuna.samplers.BaseSampler, steps: int,
                 seed: int, space: SpaceFn = plain_adam_config):
        self.workload, self.steps, self.seed, self.space = workload, steps, seed, space
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.history = SearchHistory()

    def run_to(self, trials: int) -> SearchHistory:
        """Ask/tell until ``trials`` trials have run; a diverged trial fails."""
        while len(self.history.trials) < trials:
            trial = self.study.ask()
            config = self.space(trial)
            value = train_final(self.workload, config, self.steps, self.seed)
            if math.isfinite(value):
                self.study.tell(trial, value)
            else:
                self.study.tell(trial, state=TrialState.FAIL)
            self.history.trials.append((config, value))
        return self.history


def generic_search(workload: Workload, sampler: optuna.samplers.BaseSampler, trials: int,
                   steps: int, seed: int, space: SpaceFn = plain_adam_config) -> SearchHistory:
    """``trials`` trials of plain Optuna with ``sampler`` over ``space``."""
    return GenericSearch(workload, sampler, steps, seed, space).run_to(trials)


def tpe_sampler(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


def random_sampler(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=RANDOM_SEED_OFFSET + seed)


def _searched(sampler: Callable[[int], optuna.samplers.BaseSampler],
              space: SpaceFn = plain_adam_config) -> Callable[[Workload, int, int, int], Pick]:
    def method(workload: Workload, trials: int, steps: int, seed: int) -> Pick:
        history = generic_search(workload, sampler(seed), trials, steps, seed, space)
        index, config, value = history.best_of_first(trials)
        return Pick(config, trials * steps, value, extra={"best_trial": index})
    return method


def algoperf_config(point: dict[str, float], steps: int) -> Config:
    """NAdamW with linear warmup (``warmup_factor`` of the steps) and cosine decay to 0."""
    return {"kind": "nadamw", "lr": point["learning_rate"],
            "beta1": 1.0 - point["one_minus_beta1"], "beta2": point["beta2"], "eps": 1e-8,
            "weight_decay": point["weight_decay"],
            "warmup_steps": int(point["warmup_factor"] * steps)}


def algoperf(workload: Workload, trials: int, steps: int, seed: int) -> Pick:
    """The best of AlgoPerf's NAdamW points on the selection seed (its size is the list's)."""
    configs = [algoperf_config(p, steps) for p in ALGOPERF_NADAMW]
    values = [train_final(workload, c, steps, seed) for c in configs]
    best = min(range(len(values)), key=values.__getitem__)
    return Pick(configs[best], len(configs) * steps, values[best], extra={"point": best})


def _fixed(config: Config) -> Callable[[Workload, int, int, int], Pick]:
    """A tuning-free method: one configuration, nothing spent choosing it."""
    def method(workload: Workload, trials: int, steps: int, seed: int) -> Pick:
        return Pick(dict(config), 0)
    return method


METHODS: dict[str, Callable[[Workload, int, int, int], Pick]] = {
    "adamtune": adamtune,
    "optuna_tpe": _searched(tpe_sampler),
    "random": _searched(random_sampler),
    "algoperf_nadamw": algoperf,
    "schedulefree": _fixed({"kind": "schedulefree"}),
    "prodigy": _fixed({"kind": "prodigy", "schedule": "constant"}),
    "prodigy_cosine": _fixed({"kind": "prodigy", "schedule": "cosine"}),
    "adam_1e-3": _fixed({"kind": "adam", "lr": 1e-3}),
}
# Opt-in (``--methods``), not in the default table. Does the optimizer family matter when the
# search is the same? Plain TPE over the same five dimensions, decoupled decay, constant lr
# (item 2 of the suite's issue: add NAdam or RAdam to adamtune's space only if these win).
# And does decaying biases matter? Plain TPE over Adam with L2 on matrices only.
ABLATIONS: dict[str, Callable[[Workload, int, int, int], Pick]] = {
    **{f"optuna_tpe_{kind}": _searched(tpe_sampler, partial(plain_adam_config, kind=kind))
       for kind in ("adamw", "nadamw", "radamw")},
    "optuna_tpe_matrices": _searched(tpe_sampler, partial(plain_adam_config, decay_1d=False)),
}
LABELS = {
    "adamtune": "adamtune",
    "optuna_tpe": "Optuna TPE (Adam: lr, b1, b2, eps, wd)",
    "random": "random search (same space)",
    "algoperf_nadamw": "AlgoPerf NAdamW list (4 points)",
    "schedulefree": "Schedule-Free AdamW (defaults)",
    "prodigy": "Prodigy (defaults, constant)",
    "prodigy_cosine": "Prodigy + cosine",
    "adam_1e-3": "Adam lr 1e-3",
    "optuna_tpe_adamw": "Optuna TPE (AdamW)",
    "optuna_tpe_nadamw": "Optuna TPE (NAdamW)",
    "optuna_tpe_radamw": "Optuna TPE (RAdamW)",
    "optuna_tpe_matrices": "Optuna TPE (Adam, L2 on matrices only)",
}
