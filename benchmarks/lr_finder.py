"""LR range test accuracy: each rule's suggested lr against the grid-best constant lr.

Per workload, a dense log grid of constant learning rates is trained for the same number of
steps (Adam, torch's defaults otherwise) on several seeds; the grid-best lr has the lowest
mean final validation loss. Three rules suggest an lr from a range test of the same budget
(100 steps, 1e-7 to 10, Adam), once per sweep seed:

- adamtune: ``tuner.lr_range.run_lr_range_test(...).lr_range["suggested"]``;
- torch-lr-finder (PyPI ``torch-lr-finder``): its own range test and its steepest-gradient
  suggestion (``LRFinder.plot(suggest_lr=True)``), with its default smoothing and stop rule;
- fastai's "valley" rule, implemented here from its description, on adamtune's range-test
  curve (fastai's ``lr_find`` defaults are the same: 1e-7 to 10 in 100 steps, EMA 0.98,
  stop at 4x the minimum).

Each suggestion is then trained at a constant lr on the grid's seeds. Reported: the factor
between the suggestion and the grid-best lr, and the ratio of their final losses.

    .venv/bin/python benchmarks/lr_finder.py --quick
    .venv/bin/python benchmarks/lr_finder.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plots
import torch
from torch_lr_finder import LRFinder, TrainDataLoaderIter

from tuner.lr_range import run_lr_range_test
from tuner.optim import OptimConfig
from tuner.population import run_population
from tuner.spec import SweepSpec
from tuner.train import TrainSettings, TrialResult
from tuner.workloads import Workload
from tuner.workloads import get as get_workload

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("digits_mlp", "regression_mlp", "tiny_transformer")
RULES = ("adamtune", "torch_lr_finder", "fastai_valley")
LABELS = {
    "adamtune": "adamtune (suggested)",
    "torch_lr_finder": "torch-lr-finder (steepest gradient)",
    "fastai_valley": "fastai valley rule",
}
GRID_RANGE = (1e-5, 1.0)
WITHIN = 2.0

log = logging.getLogger("lr_finder")


# ---------------------------------------------------------------- the peers' rules


def fastai_valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's ``valley``: the longest valley of the loss curve, two thirds of the way down.

    As fastai's ``lr_find`` does, the first tenth and the last five points of the range test
    are dropped; then the longest strictly decreasing subsequence of the losses is found
    (O(n^2) dynamic programming), and the lr at ``start + int(len/3) + int(len/6)`` returned.
    """
    n_all = len(lrs)
    x = list(lrs[n_all // 10 : n_all - 5])
    y = list(losses[n_all // 10 : n_all - 5])
    n = len(y)
    if n < 2:
        raise ValueError(f"range test too short for the valley rule ({n_all} points)")
    longest = [1] * n
    start, end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if y[i] < y[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end = i
            start = end - longest[end]
    sections = (end - start) / 3
    return float(x[start + int(sections) + int(sections / 2)])


class _EndlessBatches(TrainDataLoaderIter):
    """Feeds a workload's endless batch iterator to torch-lr-finder."""

    def __init__(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]):
        super().__init__(batches, auto_reset=False)


def torch_lr_finder_suggestion(workload: Workload, seed: int, spec: SweepSpec) -> float:
    """torch-lr-finder's range test (same ramp and length) and its steepest-gradient pick."""
    import matplotlib.pyplot as plt

    torch.manual_seed(seed)
    model = workload.make_model(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr_min)
    finder = LRFinder(model, optimizer, workload.loss, device="cpu")
    fig, ax = plt.subplots()
    # it prints its suggestion and draws a progress bar
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder.range_test(_EndlessBatches(workload.train_batches(seed)), start_lr=spec.lr_min,
                          end_lr=spec.lr_max, num_iter=spec.steps, step_mode="exp")
        _, lr = finder.plot(suggest_lr=True, ax=ax)
    plt.close(fig)
    return float(lr)


# ---------------------------------------------------------------- training at constant lrs


def train_on_seeds(workload: Workload, configs: Sequence[OptimConfig], seeds: Sequence[int],
                   steps: int, grad_clip: float | None = None,
                   ) -> list[list[TrialResult]]:
    """Each config trained for ``steps`` steps on each seed: one population per seed (each
    member equals a separate torch.optim run); one list of member results per seed."""
    return [run_population(workload, configs,
                           TrainSettings(steps, steps, seed=seed, grad_clip=grad_clip,
                                         collect_diagnostics=False))
            for seed in seeds]


def final_loss(result: TrialResult) -> float | None:
    """A member's final validation loss; None where it diverged or failed."""
    return result.value if result.state == "complete" else None


def mean_losses(per_seed: Sequence[Sequence[TrialResult]]) -> list[float]:
    """Mean final validation loss of each member over the seeds; inf where any seed diverged."""
    finals = [[math.inf if (v := final_loss(r)) is None else v for r in results]
              for results in per_seed]
    return [statistics.fmean(col) if all(map(math.isfinite, col)) else math.inf
            for col in zip(*finals, strict=True)]


def final_losses(workload: Workload, lrs: Sequence[float], seeds: Sequence[int], steps: int,
                 grad_clip: float | None = None) -> list[float]:
    """Mean final validation loss of constant-lr Adam at each lr over ``seeds``."""
    configs = [OptimConfig(lr=float(lr)) for lr in lrs]
    return mean_losses(train_on_seeds(workload, configs, seeds, steps, grad_clip))


def lr_grid(points: int) -> list[float]:
    """``points`` constant lrs, evenly spaced on a log scale over GRID_RANGE."""
    return np.logspace(math.log10(GRID_RANGE[0]), math.log10(GRID_RANGE[1]), points).tolist()


def factor(lr: float, best_lr: float) -> float:
    """How far ``lr`` is from ``best_lr``, as a factor >= 1 either way."""
    return max(lr / best_lr, best_lr / lr)


@dataclass
class RuleResult:
    suggestions: list[float] = field(default_factory=list)  # one per sweep seed
    losses: list[float] = field(default_factory=list)

    def factors(self, best_lr: float) -> list[float]:
        return [factor(s, best_lr) for s in self.suggestions]


def suggestions_for(workload: Workload, sweep_seeds: Sequence[int]) -> dict[str, RuleResult]:
    spec = SweepSpec()
    out = {rule: RuleResult() for rule in RULES}
    for seed in sweep_seeds:
        sweep = run_lr_range_test(workload, seed=seed, spec=spec)
        out["adamtune"].suggestions.append(sweep.lr_range["suggested"])
        out["fastai_valley"].suggestions.append(fastai_valley(sweep.lrs, sweep.smoothed))
        out["torch_lr_finder"].suggestions.append(torch_lr_finder_suggestion(workload, seed, spec))
    return out


def run_workload(name: str, args: argparse.Namespace) -> dict[str, object]:
    workload = get_workload(name)
    grid_seeds = list(range(args.grid_seeds))
    grid = lr_grid(args.grid_points)
    start = time.perf_counter()
    grid_loss = final_losses(workload, grid, grid_seeds, args.steps)
    best = int(np.argmin(grid_loss))
    rules = suggestions_for(workload, range(args.sweep_seeds))
    flat = [lr for r in rules.values() for lr in r.suggestions]
    losses = final_losses(workload, flat, grid_seeds, args.steps)
    for r in rules.values():
        r.losses, losses = losses[: len(r.suggestions)], losses[len(r.suggestions) :]
    return {"workload": name, "grid_lrs": grid, "grid_losses": grid_loss,
            "best_lr": grid[best], "best_loss": grid_loss[best],
            "rules": {k: v.__dict__ for k, v in rules.items()},
            "wall_s": time.perf_counter() - start}


# ---------------------------------------------------------------- report


def rule_row(result: dict[str, object], rule: str) -> tuple[float, float, int, int]:
    """Median factor from the grid-best lr, median loss ratio, seeds within 2x, seeds."""
    r = RuleResult(**result["rules"][rule])  # type: ignore[index]
    factors = r.factors(float(result["best_lr"]))  # type: ignore[arg-type]
    ratios = [loss / float(result["best_loss"]) for loss in r.losses]  # type: ignore[arg-type]
    within = sum(f <= WITHIN for f in factors)
    return statistics.median(factors), statistics.median(ratios), within, len(factors)


def print_report(results: list[dict[str, object]]) -> None:
    wins = {rule: 0 for rule in RULES}
    for res in results:
        print(f"\n== {res['workload']}: grid-best lr {res['best_lr']:.3g} "
              f"(final loss {res['best_loss']:.4g}), {res['wall_s']:.0f}s")
        print(f"   {'rule':<16} {'suggested lrs':<28} {'factor':>7} {'loss ratio':>11} "
              f"{'within 2x':>10}")
        for rule in RULES:
            factor, ratio, within, n = rule_row(res, rule)
            lrs = ", ".join(f"{x:.2g}" for x in res["rules"][rule]["suggestions"])  # type: ignore[index]
            wins[rule] += factor <= WITHIN
            print(f"   {rule:<16} {lrs:<28} {factor:>6.2f}x {ratio:>11.3f} {within:>7}/{n}")
    print("\nworkloads where the median suggestion is within 2x of the grid-best lr: "
          + ", ".join(f"{rule} {wins[rule]}/{len(results)}" for rule in RULES))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="coarser grid, fewer seeds")
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    p.add_argument("--steps", type=int, default=300, help="training steps per grid point")
    p.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    args.grid_points, args.grid_seeds, args.sweep_seeds = (21, 2, 2) if args.quick else (26, 3, 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("tuner").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    results = []
    for name in args.workloads:
        res = run_workload(name, args)
        log.info("%s done in %.0fs", name, res["wall_s"])
        results.append(res)
        suffix = "_quick" if args.quick else ""
        plots.lr_grid(args.img_dir / f"lr_finder_{name}{suffix}.png",
                      f"{name}: final loss after {args.steps} steps at a constant lr",
                      res["grid_lrs"], res["grid_losses"], res["best_lr"],  # type: ignore[arg-type]
                      {k: v["suggestions"] for k, v in res["rules"].items()},  # type: ignore[attr-defined]
                      LABELS)
    print_report(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
