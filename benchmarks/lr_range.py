"""adamtune's recommendation against the grid-best constant lr, and the compute each spends.

Per built-in workload, the job of ``examples/<workload>.yaml`` (its preset, budget, sweep,
grad clip and lr floor; only the seed changes) is tuned with
``tuner.local_search.run_local_search``, which is what ``adamtune tune`` runs: the LR range
test, then the search. Its steps are counted as the trials record them (``steps`` user attr: a
pruned or diverged trial counts the steps it ran) plus the range test's.

The grid is ``benchmarks/lr_finder.py``'s: constant-lr Adam (torch's defaults otherwise) on a
log grid from 1e-5 to 1, trained for the job's ``steps_per_trial`` with the job's grad clip on
several seeds; the grid-best lr has the lowest mean final validation loss over those seeds.
Its steps are those the members ran (a diverged member stops early).

The recommended configuration is then trained on the grid's seeds, and reported: the sweep's
suggestion and its factor from the grid-best lr, mean(recommendation's final loss) /
mean(grid-best's final loss), and both step totals. The goal: ratio <= 1.02 on every workload
with fewer adamtune steps than grid steps.

    nice -n 10 .venv/bin/python benchmarks/lr_range.py --quick
    nice -n 10 .venv/bin/python benchmarks/lr_range.py
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from lr_finder import WORKLOADS, factor, final_loss, lr_grid, mean_losses, train_on_seeds

from tuner.local_search import LocalSearchResult, run_local_search
from tuner.optim import OptimConfig
from tuner.spec import JobSpec, load_job_file
from tuner.workloads import Workload
from tuner.workloads import get as get_workload

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "digits_mlp": ROOT / "examples" / "digits.yaml",
    "regression_mlp": ROOT / "examples" / "regression.yaml",
    "tiny_transformer": ROOT / "examples" / "transformer.yaml",
}
GOAL_RATIO = 1.02  # the recommendation's loss may exceed the grid-best's by at most 2%

log = logging.getLogger("lr_range")


def job_for(workload: str, seed: int) -> JobSpec:
    """The example job of ``workload``, with its seed set to ``seed``."""
    spec = load_job_file(EXAMPLES[workload])
    return JobSpec.model_validate({**spec.model_dump(mode="json"), "seed": seed})


def recommended_config(rec: dict[str, Any]) -> OptimConfig:
    """The OptimConfig a user builds from the recommendation's fields."""
    return OptimConfig(
        optimizer=rec["optimizer"], lr=rec["lr"], beta1=rec["betas"][0], beta2=rec["betas"][1],
        eps=rec["eps"], weight_decay=rec["weight_decay"], amsgrad=rec["amsgrad"],
        warmup_steps=rec["warmup_steps"], schedule=rec["schedule"], floor=rec["lr_floor"],
    )


def steps_spent(result: LocalSearchResult) -> tuple[int, int]:
    """Optimizer steps of the range test and of the search's trials."""
    sweep = len(result.sweep.lrs) if result.sweep is not None else 0
    search = sum(int(t.user_attrs.get("steps", 0)) for t in result.study.get_trials())
    return sweep, search


def run_grid(workload: Workload, spec: JobSpec, points: int, seeds: Sequence[int],
             ) -> dict[str, Any]:
    grid = lr_grid(points)
    start = time.perf_counter()
    configs = [OptimConfig(lr=lr) for lr in grid]
    per_seed = train_on_seeds(workload, configs, seeds, spec.budget.steps_per_trial,
                              spec.grad_clip)
    losses = mean_losses(per_seed)
    best = int(np.argmin(losses))
    return {"lrs": grid, "losses": losses, "seeds": list(seeds), "best_lr": grid[best],
            "best_loss": losses[best],
            "best_losses": [results[best].value for results in per_seed],
            "steps": sum(r.steps for results in per_seed for r in results),
            "nominal_steps": len(grid) * len(seeds) * spec.budget.steps_per_trial,
            "wall_s": time.perf_counter() - start}


def run_search(workload: Workload, spec: JobSpec, grid: dict[str, Any]) -> dict[str, Any]:
    """Tune ``spec`` as ``adamtune tune`` does, then train its recommendation on the grid's
    seeds."""
    start = time.perf_counter()
    result = run_local_search(spec, workload=workload)
    wall = time.perf_counter() - start
    rec = result.recommendation
    sweep_steps, search_steps = steps_spent(result)
    per_seed = train_on_seeds(workload, [recommended_config(rec)], grid["seeds"],
                              spec.budget.steps_per_trial, spec.grad_clip)
    losses = [final_loss(results[0]) for results in per_seed]  # None: diverged on that seed
    loss = mean_losses(per_seed)[0]
    ratio = loss / grid["best_loss"]
    suggested = float(result.sweep.lr_range["suggested"]) if result.sweep is not None else None
    total = sweep_steps + search_steps
    keep = ("optimizer", "lr", "betas", "eps", "weight_decay", "amsgrad", "schedule",
            "warmup_steps", "lr_floor", "expected_objective", "baseline_objective",
            "trial_number", "trial_role", "trials")
    return {"seed": spec.seed, "sweep_suggested": suggested,
            "factor": factor(suggested, grid["best_lr"]) if suggested else None,
            "recommendation": {k: rec[k] for k in keep},
            "rec_losses": losses, "rec_loss": loss, "ratio": ratio,
            "sweep_steps": sweep_steps, "search_steps": search_steps, "total_steps": total,
            "trials": len(result.study.get_trials()),
            "passed": ratio <= GOAL_RATIO and total < grid["steps"], "search_wall_s": wall}


def run_workload(name: str, args: argparse.Namespace) -> dict[str, Any]:
    workload = get_workload(name)
    grid = run_grid(workload, job_for(name, 0), args.grid_points, range(args.grid_seeds))
    log.info("%s: grid of %d lrs x %d seeds in %.0fs", name, args.grid_points, args.grid_seeds,
             grid["wall_s"])
    searches = []
    for seed in range(args.search_seeds):
        searches.append(run_search(workload, job_for(name, seed), grid))
        log.info("%s: search seed %d in %.0fs", name, seed, searches[-1]["search_wall_s"])
    spec = job_for(name, 0)
    return {"workload": name, "job": str(EXAMPLES[name].relative_to(ROOT)),
            "steps_per_trial": spec.budget.steps_per_trial, "grad_clip": spec.grad_clip,
            "grid": grid, "searches": searches}


# ---------------------------------------------------------------- report


def print_report(results: list[dict[str, Any]]) -> None:
    head = (f"{'workload':<17}{'seed':>4} {'grid-best lr':>12} {'grid loss':>10} "
            f"{'sweep lr':>9} {'factor':>7} {'rec lr':>8} {'rec loss':>9} {'ratio':>6} "
            f"{'rec exp.obj':>11} {'grid steps':>10} {'adamtune':>9}  goal")
    print(head)
    print("-" * len(head))
    for res in results:
        g = res["grid"]
        for s in res["searches"]:
            sweep = f"{s['sweep_suggested']:.3g}" if s["sweep_suggested"] else "-"
            fac = f"{s['factor']:.2f}x" if s["factor"] else "-"
            print(f"{res['workload']:<17}{s['seed']:>4} {g['best_lr']:>12.3g} "
                  f"{g['best_loss']:>10.4g} {sweep:>9} {fac:>7} "
                  f"{s['recommendation']['lr']:>8.3g} {s['rec_loss']:>9.4g} {s['ratio']:>6.3f} "
                  f"{s['recommendation']['expected_objective']:>11.4g} {g['steps']:>10} "
                  f"{s['total_steps']:>9}  {'PASS' if s['passed'] else 'FAIL'}")
    print(f"\ngoal: ratio <= {GOAL_RATIO} and adamtune steps (sweep + search) < grid steps")
    for res in results:
        g = res["grid"]
        verdict = "PASS" if all(s["passed"] for s in res["searches"]) else "FAIL"
        ratios = [s["ratio"] for s in res["searches"]]
        print(f"\n== {res['workload']} ({res['job']}, {res['steps_per_trial']} steps/trial, "
              f"grad clip {res['grad_clip']}): {verdict}; median ratio "
              f"{statistics.median(ratios):.3f}")
        print(f"   grid: {len(g['lrs'])} lrs x {len(g['seeds'])} seeds, {g['steps']} steps "
              f"({g['nominal_steps']} if none diverged), {g['wall_s']:.0f}s; grid-best per "
              "seed " + ", ".join(f"{x:.4g}" for x in g["best_losses"]))
        for s in res["searches"]:
            r = s["recommendation"]
            print(f"   seed {s['seed']}: {s['trials']} trials, {s['sweep_steps']} + "
                  f"{s['search_steps']} steps, {s['search_wall_s']:.0f}s; best trial "
                  f"#{r['trial_number']} ({r['trial_role']}): {r['optimizer']} lr {r['lr']:.3g} "
                  f"betas ({r['betas'][0]:.3f}, {r['betas'][1]:.4f}) wd {r['weight_decay']:.2g} "
                  f"{r['schedule']} warmup {r['warmup_steps']}; on the grid's seeds "
                  + ", ".join("diverged" if x is None else f"{x:.4g}" for x in s["rec_losses"]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="coarser grid, fewer grid seeds, one search seed")
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    p.add_argument("--grid-points", type=int, help="lrs in the grid (quick 21, full 26)")
    p.add_argument("--json", type=Path, help="write every number to this JSON file")
    args = p.parse_args(argv)
    points, args.grid_seeds, args.search_seeds = (21, 2, 1) if args.quick else (26, 3, 3)
    args.grid_points = args.grid_points or points
    if args.grid_points < 2:
        p.error(f"--grid-points must be at least 2 (got {args.grid_points})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("tuner").setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    results = []
    for name in args.workloads:
        results.append(run_workload(name, args))
        if args.json is not None:  # after every workload, so a long run keeps what it has done
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))
    print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
