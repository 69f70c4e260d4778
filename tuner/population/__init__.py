"""Many trials as one vmapped model, updated by a vectorised Adam/AdamW.

``train_population(workload, configs, ...)`` trains one member per ``OptimConfig`` at once
and returns one result per member, each equal (within float rounding) to a separate
``torch.optim`` trial with the same seed. ``can_vmap(workload)`` says whether a workload
can be trained this way; where it cannot, train its trials one at a time.
``evaluate_population(trials, workload, spec, space, ...)`` does that for asked Optuna trials.
"""

from tuner.divergence import DIVERGENCE_FACTOR, DivergenceMonitor
from tuner.population.diagnostics import effective_step_diagnostics
from tuner.population.evaluate import evaluate_population, population_support
from tuner.population.optimizer import MemberHyperparameters, VectorisedAdam, VectorisedAdamW
from tuner.population.stacked import StackedModel, can_vmap
from tuner.population.trainer import (
    PopulationInterrupted,
    PopulationMemberResult,
    clip_grad_norm_rows_,
    train_population,
)

__all__ = [
    "DIVERGENCE_FACTOR",
    "DivergenceMonitor",
    "MemberHyperparameters",
    "PopulationInterrupted",
    "PopulationMemberResult",
    "StackedModel",
    "VectorisedAdam",
    "VectorisedAdamW",
    "can_vmap",
    "clip_grad_norm_rows_",
    "effective_step_diagnostics",
    "evaluate_population",
    "population_support",
    "train_population",
]
