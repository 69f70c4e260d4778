"""Many trials as one vmapped model, updated by a vectorised Adam/AdamW.

``run_population(workload, configs, settings)`` trains one member per ``OptimConfig`` at once
and returns one ``tuner.train.TrialResult`` per member, each equal (within float rounding) to
a separate ``tuner.train.run_trial`` with the same settings. ``can_vmap(workload)`` says
whether a workload can be trained this way; where it cannot, train its trials one at a time.
``train_population(trials, workload, settings, space)`` is the batch trainer that does that
for asked Optuna trials (the signature of ``tuner.batch.train_trials``).
"""

from tuner.divergence import DIVERGENCE_FACTOR, DivergenceMonitor
from tuner.population.diagnostics import effective_step_diagnostics
from tuner.population.optimizer import MemberHyperparameters, VectorisedAdam, VectorisedAdamW
from tuner.population.stacked import StackedModel, can_vmap
from tuner.population.trainer import clip_grad_norm_rows_, run_population
from tuner.population.trials import population_support, train_population

__all__ = [
    "DIVERGENCE_FACTOR",
    "DivergenceMonitor",
    "MemberHyperparameters",
    "StackedModel",
    "VectorisedAdam",
    "VectorisedAdamW",
    "can_vmap",
    "clip_grad_norm_rows_",
    "effective_step_diagnostics",
    "population_support",
    "run_population",
    "train_population",
]
