"""Control-plane overhead of adamtune's workers against plain Optuna, and API latency.

1. Per-trial overhead. The same trivial workload (a 4-to-1 linear model, a few steps), the
   same sampler, pruner and search space, the same database, three ways:
     - in memory: ``study.optimize`` on Optuna's InMemoryStorage (the cost of the trial
       itself: sampling and training, no database);
     - Optuna: ``study.optimize`` on an RDBStorage of the database, plain and with the
       liveness adamtune has (heartbeats, ``fail_stale_trials``, stale-trial retries);
     - adamtune: the real worker loop (``Worker.step``: claim query, search lock, stale
       check, budget count, ask, heartbeats, tell, progress and partial recommendation).
   Overhead per trial = time per trial - the in-memory time per trial; the ratio is
   adamtune's overhead divided by Optuna's (goal: <= 1.0).
2. Program trials: the same digits trial in process and as a child process running
   ``examples/programs/train.py`` (``benchmarks/program_overhead.py``): wall time per
   trial, the ratio, and the child's start-up against its training; no database.
3. API latency: ``GET /v1/jobs/{id}`` with an API key (``ADAMTUNE_AUTH=enabled``) from 50
   concurrent clients on loopback against a real ``adamtune api`` (``--api-workers`` uvicorn
   processes), bounded by a request count and a time limit; p50 and p99.

1 and 3 on SQLite and on PostgreSQL (``ADAMTUNE_BENCH_POSTGRES_URL``, default the test server;
skipped with a note when unreachable).

    python benchmarks/overhead.py            # 3 rounds of 60 trials, 3000 requests per backend
    python benchmarks/overhead.py --quick    # 1 round of 20 trials, 500 requests
    python benchmarks/overhead.py --api-only --api-workers 1 2   # API latency only
    python benchmarks/overhead.py --trials-only                  # per-trial overhead only
    python benchmarks/overhead.py --programs-only --program-steps 100 1000   # programs only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import torch
from api_latency import CLIENTS, POLL_INTERVAL_S, api_latency
from program_overhead import print_program_overhead, program_overhead
from torch import nn
from torch.nn import functional as F

from tuner import recommend, search
from tuner.batch import train_trial
from tuner.db import claims, jobs
from tuner.db.engine import (
    make_engine,
    make_session_factory,
    optuna_storage,
    temporary_postgres_database,
    transaction,
    upgrade,
)
from tuner.settings import Settings
from tuner.space import resolve_space
from tuner.spec import JobSpec, parse_job
from tuner.train import TrainSettings
from workers.context import JobContext, open_or_create_study
from workers.runtime import Identity, Runtime, quiet_optuna_warnings
from workers.worker import WORKED, Worker

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class TrivialWorkload:
    """A 4-to-1 linear regression: a trial costs about a millisecond of training."""

    name = "trivial"
    description = "linear regression 4 -> 1 (benchmarks only)"
    vmappable = True

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=gen)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def make_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Linear(4, 1)

    def train_batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.x, self.y

    def val_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.x, self.y)]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, targets)


def bench_spec(trials: int) -> JobSpec:
    return parse_job({
        "workload": "regression_mlp",  # a registered name; the benchmark trains TrivialWorkload
        "budget": {"trials": trials, "steps_per_trial": 10, "eval_every": 10},
        "sweep": {"enabled": False},
    })


# ------------------------------------------------------------------ databases


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="adamtune-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards."""
    with temporary_postgres_database(server_url, "adamtune_bench") as url:
        yield url


# ------------------------------------------------------------------ per-trial overhead


def objective_for(spec: JobSpec, workload: TrivialWorkload) -> Any:
    """Plain Optuna's objective: the same trial training as adamtune's batch trainer."""
    space = resolve_space(spec, None)
    settings = TrainSettings.from_spec(spec)

    def objective(trial: optuna.Trial) -> float:
        outcome = train_trial(trial, workload, settings, space)  # type: ignore[arg-type]
        if outcome.state == optuna.trial.TrialState.PRUNED:
            raise optuna.TrialPruned(outcome.reason)
        return float(outcome.value)  # type: ignore[arg-type]

    return objective


def time_optimize(storage: Any, spec: JobSpec, name: str) -> float:
    """Seconds per trial of plain ``study.optimize`` (same sampler, pruner, first trials)."""
    study = search.open_study(storage, name, spec, None, create=True)
    objective = objective_for(spec, TrivialWorkload())
    start = time.perf_counter()
    study.optimize(objective, n_trials=spec.budget.trials)
    return (time.perf_counter() - start) / spec.budget.trials


def time_worker(url: str, spec: JobSpec) -> float:
    """Seconds per trial of adamtune's worker loop on a job of ``spec`` (sweep disabled)."""
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with transaction(sessions) as s:
        job = jobs.create_job(s, spec=spec)
    settings = Settings(database_url=url, heartbeat_interval=10, grace_period=30)
    runtime = Runtime.open(settings, Identity(worker_id="bench", device="cpu"))
    with transaction(sessions) as s:
        claimed = claims.claim_sweep(s, "bench", ["regression_mlp"], 60)
        assert claimed is not None and claimed.id == job.id
    study = open_or_create_study(runtime, job.study_name, spec, None)
    with transaction(sessions) as s:
        assert claims.finish_sweep(s, job.id, "bench")
    worker = Worker(runtime)
    worker.cache.put(JobContext(job.id, job.study_name, spec, TrivialWorkload(), study,  # type: ignore[arg-type]
                                resolve_space(spec, None), None, spec.budget.trials))
    worker.heartbeat.start()
    start = time.perf_counter()
    while worker.step() == WORKED:
        pass
    elapsed = time.perf_counter() - start
    worker.heartbeat.stop()
    with transaction(sessions) as s:
        status = claims.job_status(s, job.id)
    runtime.close()
    engine.dispose()
    if status != "completed":
        raise RuntimeError(f"the benchmark job ended {status}, not completed")
    return elapsed / spec.budget.trials


def warm_up(spec: JobSpec) -> None:
    """Import and exercise once what both sides use (torch, TPE, importances), untimed."""
    small = bench_spec(6)
    study = search.open_study(optuna.storages.InMemoryStorage(), "warm-up", small, None,
                              create=True)
    study.optimize(objective_for(small, TrivialWorkload()), n_trials=small.budget.trials)
    recommend.build_recommendation(study.get_trials(), spec=small, sweep=None, final=True)


def overhead(url: str, trials: int, repeat: int) -> dict[str, float]:
    """Medians over ``repeat`` rounds, the three ways interleaved so load drifts hit all."""
    spec = bench_spec(trials)
    warm_up(spec)
    rounds: dict[str, list[float]] = {k: [] for k in ("in_memory", "optuna", "optuna_hb",
                                                      "adamtune")}
    for n in range(repeat):
        memory = optuna.storages.InMemoryStorage()
        rounds["in_memory"].append(time_optimize(memory, spec, f"in-memory-{n}"))
        rounds["optuna"].append(time_optimize(url, spec, f"plain-optuna-{n}"))
        rounds["optuna_hb"].append(time_optimize(heartbeat_storage(url), spec, f"optuna-hb-{n}"))
        rounds["adamtune"].append(time_worker(url, spec))
    ms = {k: 1000 * statistics.median(v) for k, v in rounds.items()}

    def ratio(peer: str) -> float:
        peer_overhead = ms[peer] - ms["in_memory"]
        ours = ms["adamtune"] - ms["in_memory"]
        return ours / peer_overhead if peer_overhead > 0 else float("inf")

    return {"trials": trials, "repeat": repeat, **{f"{k}_ms": v for k, v in ms.items()},
            "ratio": ratio("optuna"), "ratio_heartbeat": ratio("optuna_hb")}


def heartbeat_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna with the liveness adamtune's workers have: heartbeats and stale-trial retries."""
    return optuna_storage(url, heartbeat_interval=10, grace_period=30,
                          callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))


# ------------------------------------------------------------------ report


def run_backend(
    name: str, trials: int, requests: int, repeat: int, api_workers: list[int], api_only: bool
) -> dict[str, Any]:
    """Both measurements on a backend, each on a fresh database (``api_only``: the API's)."""
    result: dict[str, Any] = {"backend": name}
    if not api_only:
        with _fresh(name) as url:
            result.update(overhead(url, trials, repeat))
    result["api"] = {}
    for n in api_workers:
        with _fresh(name) as url:
            result["api"][n] = api_latency(url, requests, n, bench_spec(10))
    return result


def _fresh(name: str) -> Any:
    return sqlite_database() if name == "sqlite" else postgres_database(_postgres_url())


def _postgres_url() -> str:
    return os.environ.get("ADAMTUNE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)


def print_table(results: list[dict[str, Any]]) -> None:
    if any("trials" in r for r in results):
        _print_overhead(results)
    if any(r["api"] for r in results):
        _print_api(results)


def _print_overhead(results: list[dict[str, Any]]) -> None:
    print("\nper-trial control-plane overhead (trivial workload, ms per trial, median of rounds)")
    print(f"{'backend':10s} {'trials':>6s} {'in memory':>9s} {'optuna':>9s} {'optuna+hb':>9s} "
          f"{'adamtune':>9s} {'ratio':>6s} {'ratio vs +hb':>12s}")
    for r in results:
        if "trials" not in r:  # --api-only
            continue
        print(f"{r['backend']:10s} {r['trials']:6d} {r['in_memory_ms']:9.1f} "
              f"{r['optuna_ms']:9.1f} {r['optuna_hb_ms']:9.1f} {r['adamtune_ms']:9.1f} "
              f"{r['ratio']:6.2f} {r['ratio_heartbeat']:12.2f}")
    print("ratio = (adamtune - in memory) / (optuna - in memory), goal <= 1.0; 'vs +hb': Optuna "
          "with heartbeats and stale-trial retries, the liveness adamtune's workers have")


def _print_api(results: list[dict[str, Any]]) -> None:
    print(f"\nGET /v1/jobs/{{id}} with a key, {CLIENTS} concurrent clients on loopback")
    print(f"{'backend':10s} {'api procs':>9s} {'clients':22s} {'requests':>8s} {'errors':>6s} "
          f"{'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'in app p50/p99':>14s} {'load 1m':>7s}")
    for r in results:
        for workers, modes in r["api"].items():
            for mode, a in modes.items():
                label = (f"polling every {POLL_INTERVAL_S:g}s" if mode == "polling"
                         else "back to back")
                app = "-"
                if "server_p50_ms" in a:
                    app = f"<={a['server_p50_ms']:g}/<={a['server_p99_ms']:g}"
                print(f"{r['backend']:10s} {workers:9d} {label:22s} {a['requests']:8d} "
                      f"{a['errors']:6d} {a['requests_per_s']:7.0f} {a['p50_ms']:7.1f} "
                      f"{a['p99_ms']:7.1f} {app:>14s} {a['load_1m']:7.2f}")
    for r in results:
        for workers, modes in r["api"].items():
            for mode, a in modes.items():
                if a["errors"]:
                    print(f"errors ({r['backend']}, {workers} api procs, {mode}): "
                          f"{a['error_kinds']}")
    print("goal: p99 < 50 ms. 'in app': the API's own histogram (/metrics, one API process "
          "only), bucket bounds in ms: time inside the app, without queueing in the HTTP "
          "server or the clients")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 trials, 500 requests")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None, help="rounds (median); default 3")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--api-only", action="store_true", help="only the API latency part")
    parser.add_argument("--trials-only", action="store_true",
                        help="only the per-trial overhead part (no API latency)")
    parser.add_argument("--api-workers", type=int, nargs="+", default=[1], metavar="N",
                        help="API processes (`adamtune api --workers N`), one run each; default 1")
    parser.add_argument("--programs-only", action="store_true",
                        help="only a program trial (a child process) against an in-process one")
    parser.add_argument("--program-steps", type=int, nargs="+", default=[100, 1000],
                        metavar="N", help="steps per program trial, one row each")
    args = parser.parse_args(argv)
    trials = args.trials or (20 if args.quick else 60)
    requests = args.requests or (500 if args.quick else 3000)
    repeat = args.repeat or (1 if args.quick else 3)
    logging.basicConfig(level=logging.WARNING)
    quiet_optuna_warnings()
    warnings.filterwarnings("ignore", category=FutureWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)

    results = []
    programs = None
    if not (args.api_only or args.trials_only):
        programs = program_overhead(args.program_steps, repeat)
        print_program_overhead(programs)
    for name in ("sqlite", "postgres"):
        if args.programs_only or args.backend not in (name, "both"):
            continue
        try:
            api_workers = [] if args.trials_only else args.api_workers
            results.append(run_backend(name, trials, requests, repeat, api_workers,
                                       args.api_only))
        except Exception as exc:  # an unreachable PostgreSQL must not hide the SQLite figures
            if name != "postgres":
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"note: PostgreSQL skipped ({reason}); set ADAMTUNE_BENCH_POSTGRES_URL",
                  file=sys.stderr)
    print_table(results)
    if args.json is not None:
        out = results if programs is None else [*results, {"programs": programs}]
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
