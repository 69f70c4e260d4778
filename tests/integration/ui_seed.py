"""A finished job written through the store's own query functions, with a real (small)
Optuna study in the same database, for the page, plot and metrics tests.

No worker runs: the sweep and the recommendation are plausible documents, and the
trials are real Optuna trials of a cheap objective, some of them pruned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from tuner.db import jobs, recommendations, sweeps, workers
from tuner.db.engine import make_engine, make_session_factory, optuna_storage, transaction, upgrade
from tuner.spec import Budget, JobSpec

SWEEP_POINTS = 60
SNIPPET = (
    "import torch\n"
    "optimizer = torch.optim.AdamW(model.parameters(), lr=0.003, betas=(0.9, 0.995))\n"
    "scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)\n"
)


@dataclass
class SeededJob:
    job_id: str
    sweep: dict[str, Any]
    trials: list[optuna.trial.FrozenTrial]
    recommendation: dict[str, Any]

    @property
    def finite_smoothed(self) -> int:
        return sum(1 for v in self.sweep["smoothed"] if math.isfinite(v))

    @property
    def trials_with_values(self) -> int:
        return sum(1 for t in self.trials if t.value is not None)


def sweep_document() -> dict[str, Any]:
    """An LR range test that falls, bottoms out near lr=3e-3 and diverges at the end."""
    lrs = [1e-6 * (10.0 / 1e-6) ** (i / (SWEEP_POINTS - 1)) for i in range(SWEEP_POINTS)]
    smoothed = [1.0 + 0.3 * (math.log10(lr) + 2.5) ** 2 / 4 for lr in lrs]
    smoothed[-2:] = [math.inf, math.nan]
    return {
        "lrs": lrs,
        "losses": [v * 1.02 for v in smoothed],
        "smoothed": smoothed,
        "suggestions": {"steepest": 1e-4, "valley": 1e-3, "min_div10": 3e-4, "divergence": 2.0},
        "lr_range": {"low": 1e-5, "suggested": 1e-3, "high": 1e-2},
        "stop_reason": "diverged",
        "spec": {},
    }


def _objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-5, 1e-2, log=True)
    beta1 = trial.suggest_float("beta1", 0.8, 0.99)
    wd = trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
    value = 0.2 + (math.log10(lr) + 2.5) ** 2 * 0.1 + (beta1 - 0.9) ** 2 + wd
    trial.set_user_attr("worker_id", "worker-a" if trial.number % 2 else "worker-b")
    trial.set_user_attr("device", "cpu")
    trial.report(value * 1.5, step=10)
    if trial.number in (3, 7):
        trial.set_user_attr("reason", "pruned by Hyperband at step 10")
        raise optuna.TrialPruned()
    return value


def run_study(url: str, study_name: str, n_trials: int) -> list[optuna.trial.FrozenTrial]:
    storage = optuna_storage(url)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.enqueue_trial({"lr": 1e-3, "beta1": 0.9, "weight_decay": 1e-6}, {"role": "baseline"})
    study.optimize(_objective, n_trials=n_trials)
    trials = study.get_trials(deepcopy=False)
    storage.engine.dispose()
    return trials


def recommendation_body(best: optuna.trial.FrozenTrial, baseline: float) -> dict[str, Any]:
    return {
        "optimizer": "adamw",
        "lr": best.params["lr"],
        "betas": [best.params["beta1"], 0.995],
        "eps": 1e-8,
        "weight_decay": best.params["weight_decay"],
        "schedule": "cosine",
        "warmup_steps": 5,
        "total_steps": 50,
        "expected_objective": best.value,
        "baseline_objective": baseline,
        "lr_range": {"low": 1e-5, "suggested": 1e-3, "high": 1e-2},
        "lr_band": {"low": best.params["lr"] / 2, "high": best.params["lr"] * 2, "n_trials": 3},
        "importances": {"lr": 0.7, "beta1": 0.1, "weight_decay": 0.2},
        "diagnostics": {"modules": {"net": {"p10": 0.01, "p50": 0.1, "p90": 0.6}}},
        "snippet": SNIPPET,
        "final": True,
    }


def seed_finished_job(url: str, n_trials: int = 12, with_worker: bool = True) -> SeededJob:
    """Migrate ``url`` and write one completed job, its sweep, study and recommendation."""
    upgrade(url)
    engine = make_engine(url)
    session_factory = make_session_factory(engine)
    spec = JobSpec(
        workload="digits_mlp",
        name="seeded digits",
        budget=Budget(trials=n_trials, steps_per_trial=50, eval_every=10),
    )
    with transaction(session_factory) as s:
        job = jobs.create_job(s, spec=spec)
        job_id, study_name = job.id, job.study_name
    sweep = sweep_document()
    trials = run_study(url, study_name, n_trials)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value or math.inf)
    baseline = float(trials[0].value or math.nan)
    rec = recommendation_body(best, baseline)
    with transaction(session_factory) as s:
        sweeps.save_sweep(s, job_id, sweep, "worker-a")
        recommendations.upsert_recommendation(s, job_id, rec, final=True)
        jobs.transition(s, job_id, "queued", "sweeping")
        jobs.transition(s, job_id, "sweeping", "searching")
        jobs.transition(
            s,
            job_id,
            "searching",
            "completed",
            trials_completed=len(trials),
            best_objective=best.value,
            baseline_objective=baseline,
        )
        if with_worker:
            workers.register_worker(
                s,
                worker_id="worker-a",
                hostname="host",
                pid=1,
                device="cpu",
                workloads=["digits_mlp"],
            )
    engine.dispose()
    return SeededJob(job_id, sweep, trials, rec)
