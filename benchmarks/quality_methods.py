"""The four methods of the time-to-quality benchmark, each spending one budget of training steps.

Every method trains the same workload with the same seed (model init and data order) and is
charged every optimizer step it takes: the LR range test's steps for adamtune, the steps a
pruned or diverged trial actually ran, the full trial for a completed one. A method keeps
asking for trials until it has spent the budget; a trial that ends after the budget is spent
is not counted (see ``Run.within``).

All methods ask and tell through the project's own search driver (``tuner.driver.
SearchDriver``) and train with its batch trainers (``tuner.batch.train_trials``, or
``tuner.population.train_population``), so the training loop, the divergence test and the
objective (final validation loss of a completed trial) are identical; they differ only in what
they sample and whether they prune. The budget here is training steps, not trials.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.batch import train_trials
from tuner.driver import BatchTrainer, SearchDriver
from tuner.lr_range import run_lr_range_test
from tuner.optim import OptimConfig
from tuner.population import train_population
from tuner.search import open_study
from tuner.space import ResolvedSpace, resolve_space
from tuner.spec import Budget, JobSpec
from tuner.train import TrainSettings, run_trial
from tuner.workloads import get as get_workload

log = logging.getLogger(__name__)

METHODS = ("adamtune", "optuna_tpe", "random", "default")
LABELS = {
    "adamtune": "adamtune (sweep + space + pruning)",
    "optuna_tpe": "plain Optuna (TPE defaults, no pruning)",
    "random": "random search",
    "default": "untuned default (Adam, lr 1e-3)",
}
# What a user of a generic tuner would search: the same hyperparameters, lr over five decades.
WIDE_LR = (1e-5, 1.0)
RANDOM_SEED_OFFSET = 10_000
_STEP_IN_REASON = re.compile(r"at step (\d+)")


@dataclass(frozen=True)
class Setting:
    """One workload's budget: trial length, evaluation interval, total steps per method."""

    workload: str
    steps_per_trial: int
    eval_every: int
    budget_steps: int
    population: int = 1

    def spec(self, seed: int) -> JobSpec:
        trials = max(2, self.budget_steps // self.steps_per_trial)
        budget = Budget(trials=trials, steps_per_trial=self.steps_per_trial,
                        eval_every=self.eval_every)
        return JobSpec(workload=self.workload, seed=seed, budget=budget, population=self.population)


@dataclass
class Run:
    """One method on one seed: every trial's end (cumulative steps, objective or None)."""

    method: str
    workload: str
    seed: int
    budget_steps: int
    events: list[tuple[int, float | None]] = field(default_factory=list)
    trials: int = 0
    pruned: int = 0
    diverged: int = 0
    wall_s: float = 0.0
    best_config: dict | None = None  # the configuration of the best trial inside the budget
    lr_range: tuple[float, float] | None = None  # adamtune's searched lr range

    def within(self) -> list[tuple[int, float | None]]:
        """The events that ended inside the budget."""
        return [(s, v) for s, v in self.events if s <= self.budget_steps]

    def best_curve(self) -> list[tuple[int, float]]:
        """(cumulative steps, best objective so far) at every improvement inside the budget."""
        out: list[tuple[int, float]] = []
        best = math.inf
        for steps, value in self.within():
            if value is not None and math.isfinite(value) and value < best:
                best = value
                out.append((steps, value))
        return out

    def final(self) -> float | None:
        curve = self.best_curve()
        return curve[-1][1] if curve else None

    def steps_to(self, target: float) -> int | None:
        """Steps spent when the best objective first came to ``target`` or below; None if never."""
        return next((s for s, v in self.best_curve() if v <= target), None)

    @classmethod
    def from_dict(cls, data: dict) -> Run:
        run = cls(**{**data, "events": [(int(s), v) for s, v in data["events"]]})
        return run

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method, "workload": self.workload, "seed": self.seed,
            "budget_steps": self.budget_steps, "events": self.events, "trials": self.trials,
            "pruned": self.pruned, "diverged": self.diverged, "wall_s": self.wall_s,
            "best_config": self.best_config, "lr_range": self.lr_range,
        }


def trial_steps(trial: FrozenTrial, steps_per_trial: int) -> int:
    """Optimizer steps a finished trial ran, from what ``tuner.batch.record_result`` stored."""
    if "steps" in trial.user_attrs:
        return int(trial.user_attrs["steps"])
    outcome = trial.user_attrs.get("outcome")
    curve = trial.user_attrs.get("curve") or []
    if outcome == "complete":
        return steps_per_trial
    if outcome == "pruned":
        return int(curve[-1][0])
    reason = str(trial.user_attrs.get("reason", ""))
    match = _STEP_IN_REASON.search(reason)
    if outcome == "diverged" and match:
        # tuner.train: "... training loss ... at step i" (0-based step i, so i + 1 steps ran);
        # "non-finite validation loss at step n" (n steps ran).
        step = int(match.group(1))
        return step if "validation" in reason else step + 1
    return steps_per_trial  # failed or unknown: charge the whole trial


def _spend(
    run: Run, study: optuna.Study, spec: JobSpec, space: ResolvedSpace, spent: int,
    train: BatchTrainer, batch: int,
) -> None:
    """Ask, train and tell trials until the run has spent its budget of steps."""
    workload = get_workload(spec.workload)
    settings = TrainSettings.from_spec(spec)
    driver = SearchDriver(study, spec.budget.trials, log_level=logging.DEBUG)
    steps_per_trial = spec.budget.steps_per_trial
    while spent < run.budget_steps:
        trials = driver.ask(batch)
        outcomes = train(trials, workload, settings, space)
        for trial, outcome in zip(trials, outcomes, strict=True):
            driver.tell(trial, outcome)
            frozen = study.get_trials(deepcopy=False)[trial.number]
            spent += trial_steps(frozen, steps_per_trial)
            value = outcome.value if outcome.state == TrialState.COMPLETE else None
            run.events.append((spent, value))
            if value is not None and spent <= run.budget_steps and value == run.final():
                run.best_config = dict(frozen.user_attrs.get("config") or {})
            run.trials += 1
            run.pruned += frozen.user_attrs.get("outcome") == "pruned"
            run.diverged += frozen.user_attrs.get("outcome") == "diverged"


def run_adamtune(setting: Setting, seed: int) -> Run:
    """The full method: LR range test, sweep-informed space, enqueued baseline and suggestion,
    seeded multivariate TPE, Hyperband pruning after warmup (and a population if asked)."""
    spec = setting.spec(seed)
    run = Run("adamtune", setting.workload, seed, setting.budget_steps)
    sweep = run_lr_range_test(get_workload(spec.workload), seed=seed, spec=spec.sweep)
    spent = len(sweep.lrs)  # the range test's optimizer steps are part of the budget
    run.events.append((spent, None))
    study = open_study(None, f"quality-adamtune-{setting.workload}-{seed}", spec, sweep.lr_range,
                       create=True)
    space = resolve_space(spec, sweep.lr_range)
    run.lr_range = space.lr
    train = train_population if setting.population > 1 else train_trials
    _spend(run, study, spec, space, spent, train, max(1, setting.population))
    return run


def _generic(setting: Setting, seed: int, method: str, sampler: optuna.samplers.BaseSampler) -> Run:
    """A generic tuner: the same hyperparameters, lr log-uniform over WIDE_LR, no sweep, no
    pruning, no enqueued trials; only the sampler differs between plain Optuna and random."""
    spec = setting.spec(seed)
    run = Run(method, setting.workload, seed, setting.budget_steps)
    study = optuna.create_study(direction="minimize", sampler=sampler,
                                pruner=optuna.pruners.NopPruner())
    space = ResolvedSpace(lr=WIDE_LR, lr_ref=math.sqrt(WIDE_LR[0] * WIDE_LR[1]))
    _spend(run, study, spec, space, 0, train_trials, 1)
    return run


def run_optuna_tpe(setting: Setting, seed: int) -> Run:
    return _generic(setting, seed, "optuna_tpe", optuna.samplers.TPESampler(seed=seed))


def run_random(setting: Setting, seed: int) -> Run:
    # TPE's first 10 trials come from RandomSampler(seed): the same seed would make random
    # search repeat plain Optuna's first 10 trials exactly, so it draws from its own stream.
    sampler = optuna.samplers.RandomSampler(seed=RANDOM_SEED_OFFSET + seed)
    return _generic(setting, seed, "random", sampler)


def run_default(setting: Setting, seed: int) -> Run:
    """The untuned default: one trial of Adam at lr 1e-3 (what every job measures first)."""
    run = Run("default", setting.workload, seed, setting.budget_steps)
    settings = TrainSettings(setting.steps_per_trial, setting.eval_every, seed=seed,
                             collect_diagnostics=False)
    result = run_trial(get_workload(setting.workload), OptimConfig.baseline(), settings)
    run.events.append((result.steps, result.value if result.state == "complete" else None))
    run.best_config = OptimConfig.baseline().to_dict()
    run.trials = 1
    return run


RUNNERS: dict[str, Callable[[Setting, int], Run]] = {
    "adamtune": run_adamtune,
    "optuna_tpe": run_optuna_tpe,
    "random": run_random,
    "default": run_default,
}


def run_method(method: str, setting: Setting, seed: int) -> Run:
    start = time.perf_counter()
    run = RUNNERS[method](setting, seed)
    run.wall_s = time.perf_counter() - start
    return run
