"""Same quality with a population: adamtune's search with K trials at once against K = 1.

For each seed, adamtune's full method (LR range test, sweep-informed space, enqueued baseline
and suggestion, TPE, Hyperband pruning) spends the same budget of training steps twice: asking
and training one trial at a time, and asking K trials at once (the constant-liar TPE keeps
them apart) and training them as one vectorised population. Prints, per seed, the best
objective inside the budget and the wall time of both, then the mean difference of the best
objectives against their seed-to-seed spread, and the wall-time speedup.

    .venv/bin/python benchmarks/population_search.py --quick    # ~5 minutes on a 2-core CPU
    .venv/bin/python benchmarks/population_search.py
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import warnings
from pathlib import Path

import optuna
import torch
from quality_methods import Run, Setting, run_method

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="digits_mlp")
    p.add_argument("--k", type=int, default=16, help="population size compared with 1")
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 (5; 3 with --quick)")
    p.add_argument("--budget-trials", type=int, help="budget in trials' worth of steps (48; 32)")
    p.add_argument("--steps", type=int, default=300, help="steps per trial")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


def compare(setting_of: dict[int, Setting], seeds: list[int]) -> dict[int, list[Run]]:
    runs: dict[int, list[Run]] = {k: [] for k in setting_of}
    for seed in seeds:
        for k, setting in setting_of.items():
            run = run_method("adamtune", setting, seed)
            runs[k].append(run)
            print(f"seed {seed}  K={k:<3d} best {run.final():.6f}  trials {run.trials:3d}  "
                  f"pruned {run.pruned:3d}  wall {run.wall_s:6.1f}s", flush=True)
    return runs


def summarize(runs: dict[int, list[Run]], k: int) -> dict[str, float]:
    one = [r.final() or float("nan") for r in runs[1]]
    many = [r.final() or float("nan") for r in runs[k]]
    diffs = [b - a for a, b in zip(one, many, strict=True)]
    wall_one = sum(r.wall_s for r in runs[1])
    wall_many = sum(r.wall_s for r in runs[k])
    return {
        "mean_best_k1": statistics.mean(one),
        "mean_best_k": statistics.mean(many),
        "mean_difference": statistics.mean(diffs),
        "seed_spread_k1": statistics.stdev(one) if len(one) > 1 else 0.0,
        "stderr_difference": statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0,
        "speedup": wall_one / wall_many,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    torch.set_num_threads(1)  # K = 1 and K alike; a shared 2-core machine
    seeds = list(range(args.seeds or (3 if args.quick else 5)))
    budget_trials = args.budget_trials or (32 if args.quick else 48)
    if args.k < 2:
        print("--k must be at least 2", file=sys.stderr)
        return 2
    setting_of = {
        k: Setting(args.workload, args.steps, args.eval_every, budget_trials * args.steps, k)
        for k in (1, args.k)
    }
    print(f"{args.workload}: {budget_trials} trials' worth of steps ({budget_trials * args.steps}"
          f"), {args.steps} steps per trial, seeds {seeds}, K = 1 against K = {args.k}\n")
    runs = compare(setting_of, seeds)
    s = summarize(runs, args.k)
    print(f"\nmean best objective   K=1 {s['mean_best_k1']:.6f}   "
          f"K={args.k} {s['mean_best_k']:.6f}")
    print(f"difference (K={args.k} - K=1)  {s['mean_difference']:+.6f} "
          f"± {s['stderr_difference']:.6f} (standard error over seeds)")
    print(f"seed-to-seed spread of K=1  {s['seed_spread_k1']:.6f} (standard deviation)")
    print(f"wall-time speedup of K={args.k}  {s['speedup']:.2f}x (torch threads 1)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "workload": args.workload, "k": args.k, "seeds": seeds,
            "budget_trials": budget_trials, "steps": args.steps, "summary": s,
            "runs": {str(k): [r.to_dict() for r in rs] for k, rs in runs.items()},
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
