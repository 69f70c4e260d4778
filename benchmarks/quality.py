"""Time to quality: adamtune against plain Optuna, random search and the untuned default.

Every method gets the same budget of training steps on every built-in workload, for the same
seeds. For each (workload, seed) the target is the best objective any method found, plus 1%;
a method's steps-to-target is the cumulative number of training steps it had spent when its
best objective first reached the target. Prints, per workload, each method's median
steps-to-target and final objective, and the ratios plain-Optuna/adamtune and random/adamtune;
draws one PNG per workload (median and min-max band over seeds).

    .venv/bin/python benchmarks/quality.py --quick     # < 10 minutes on a 2-core CPU
    .venv/bin/python benchmarks/quality.py             # more seeds, larger budget
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import plots
import torch
from quality_methods import LABELS, METHODS, Run, Setting, run_method

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("optuna_tpe", "random")
WORKLOADS = ("digits_mlp", "regression_mlp", "tiny_transformer")
TOLERANCE = 0.01  # "within 1% of the best objective any method found"

log = logging.getLogger("quality")


@dataclass(frozen=True)
class Mode:
    name: str
    seeds: int
    steps_per_trial: int
    eval_every: int
    budget_trials: int  # budget = budget_trials * steps_per_trial training steps per method


MODES = {
    "quick": Mode("quick", seeds=2, steps_per_trial=200, eval_every=50, budget_trials=10),
    "full": Mode("full", seeds=5, steps_per_trial=300, eval_every=50, budget_trials=30),
}


@dataclass
class MethodSummary:
    """One method on one workload, over seeds."""

    steps: list[int | None]  # steps-to-target per seed, None where never reached
    finals: list[float | None]
    gaps: list[float | None]  # final objective / best any method found - 1, per seed

    @property
    def median_steps(self) -> float:
        return statistics.median(math.inf if s is None else s for s in self.steps)

    @property
    def reached(self) -> int:
        return sum(s is not None for s in self.steps)

    @property
    def median_final(self) -> float:
        return statistics.median(math.inf if f is None else f for f in self.finals)

    @property
    def median_gap(self) -> float:
        return statistics.median(math.inf if g is None else g for g in self.gaps)


def target_of(best: float) -> float:
    return best + TOLERANCE * abs(best)


def summarize(runs: dict[str, list[Run]]) -> tuple[dict[str, MethodSummary], list[float]]:
    """Per-method summaries and the per-seed targets (1% above the best any method found)."""
    n_seeds = len(next(iter(runs.values())))
    bests = []
    for i in range(n_seeds):
        finals = [r[i].final() for r in runs.values()]
        bests.append(min(f for f in finals if f is not None))
    targets = [target_of(b) for b in bests]
    out = {}
    for method, per_seed in runs.items():
        finals = [r.final() for r in per_seed]
        out[method] = MethodSummary(
            steps=[r.steps_to(t) for r, t in zip(per_seed, targets, strict=True)],
            finals=finals,
            gaps=[None if f is None else f / b - 1.0 for f, b in zip(finals, bests, strict=True)],
        )
    return out, targets


def ratio_text(peer: MethodSummary, ours: MethodSummary, budget: int) -> str:
    """peer steps / adamtune steps; a lower bound where the peer never reached the target."""
    if math.isinf(ours.median_steps):
        return "n/a (adamtune did not reach the target)"
    if math.isinf(peer.median_steps):
        return (f">{budget / ours.median_steps:.1f}x (peer not reached in the budget; "
                f"final gap {_fmt_gap(peer.median_gap)})")
    return f"{peer.median_steps / ours.median_steps:.1f}x"


def match_ratios(peer_runs: list[Run], our_runs: list[Run]) -> list[float | None]:
    """Per seed: the steps the peer took to reach its own final objective, divided by the steps
    adamtune took to reach that same objective (None where adamtune never did)."""
    out: list[float | None] = []
    for peer, ours in zip(peer_runs, our_runs, strict=True):
        final = peer.final()
        if final is None:
            out.append(None)
            continue
        peer_steps, our_steps = peer.steps_to(final), ours.steps_to(final)
        out.append(None if our_steps is None or peer_steps is None else peer_steps / our_steps)
    return out


def match_text(ratios: list[float | None]) -> str:
    per_seed = ", ".join("never" if r is None else f"{r:.1f}x" for r in ratios)
    median = statistics.median(0.0 if r is None else r for r in ratios)
    return f"median {median:.1f}x (per seed: {per_seed})"


def _best_lrs(runs: list[Run]) -> str:
    lrs = [r.best_config.get("lr") if r.best_config else None for r in runs]
    return ", ".join("-" if lr is None else f"{lr:.2g}" for lr in lrs)


def _fmt_gap(gap: float) -> str:
    """Relative gap to the best objective: a percentage, or a factor once it passes 100%."""
    if math.isinf(gap):
        return "n/a"
    return f"{gap:+.1%}" if gap < 1.0 else f"{1.0 + gap:.1f}x"


def _fmt_steps(s: MethodSummary) -> str:
    return "not reached" if math.isinf(s.median_steps) else f"{s.median_steps:.0f}"


def print_workload(workload: str, setting: Setting, runs: dict[str, list[Run]],
                   summary: dict[str, MethodSummary], seeds: list[int]) -> None:
    print(f"\n== {workload}: {setting.budget_steps} steps per method, trials of "
          f"{setting.steps_per_trial} steps, seeds {','.join(map(str, seeds))}")
    print(f"   {'method':<11} {'steps to 1%':>12} {'reached':>8} {'final (median)':>15} "
          f"{'gap':>8} {'trials':>7} {'pruned':>7} {'diverged':>9} {'wall s':>7} "
          f"{'best lr (per seed)'}")
    for method, s in summary.items():
        rs = runs[method]
        final = "none" if math.isinf(s.median_final) else f"{s.median_final:.4g}"
        gap = _fmt_gap(s.median_gap)
        print(f"   {method:<11} {_fmt_steps(s):>12} {s.reached:>5}/{len(rs):<2} {final:>15} "
              f"{gap:>8} {sum(r.trials for r in rs):>7} {sum(r.pruned for r in rs):>7} "
              f"{sum(r.diverged for r in rs):>9} {sum(r.wall_s for r in rs):>7.1f} "
              f"{_best_lrs(rs)}")
    ours = summary["adamtune"]
    ranges = [r.lr_range for r in runs["adamtune"] if r.lr_range]
    if ranges:
        print("   adamtune's searched lr ranges (from its sweep): "
              + ", ".join(f"[{lo:.2g}, {hi:.2g}]" for lo, hi in ranges))
    for peer in PEERS:
        if peer in summary:
            verdict = "no worse" if ours.median_final <= summary[peer].median_final else "WORSE"
            print(f"   steps-to-1% ratio {peer}/adamtune: "
                  f"{ratio_text(summary[peer], ours, setting.budget_steps)}; "
                  f"adamtune final objective {verdict} than {peer}")
            print(f"   time to {peer}'s final objective, {peer}/adamtune: "
                  f"{match_text(match_ratios(runs[peer], runs['adamtune']))}")


def run_workload(setting: Setting, seeds: list[int], methods: list[str]) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {m: [] for m in methods}
    for seed in seeds:
        for method in methods:
            run = run_method(method, setting, seed)
            runs[method].append(run)
            log.info("%s seed %d %s: final %s after %d trials, %.1fs", setting.workload, seed,
                     method, run.final(), run.trials, run.wall_s)
    return runs


def plot_workload(path: Path, setting: Setting, runs: dict[str, list[Run]],
                  targets: list[float], mode: str) -> None:
    curves = {m: [r.best_curve() for r in rs] for m, rs in runs.items()}
    plots.time_to_quality(path, f"{setting.workload} ({mode})", curves, LABELS,
                          setting.budget_steps, statistics.median(targets))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 seeds, 10 trials' worth of steps")
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1); default per mode")
    p.add_argument("--budget-trials", type=int, help="budget in trials' worth of steps")
    p.add_argument("--population", type=int, default=1,
                   help="adamtune trains this many trials at once (wall time only: the step "
                        "count is the same)")
    p.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img")
    p.add_argument("--json", type=Path, help="write every run's events here")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--from-json", type=Path, nargs="+", metavar="JSON",
                   help="train nothing: print the tables and draw the plots of saved runs")
    return p.parse_args(argv)


def report_saved(paths: list[Path], img_dir: Path | None) -> None:
    """Tables and plots of runs saved by ``--json`` (e.g. workloads run in separate processes)."""
    for path in paths:
        for saved in json.loads(path.read_text()):
            setting = Setting(**saved["setting"])
            runs: dict[str, list[Run]] = {}
            for data in saved["runs"]:
                runs.setdefault(data["method"], []).append(Run.from_dict(data))
            summary, targets = summarize(runs)
            seeds = [r.seed for r in runs["adamtune"]]
            print_workload(setting.workload, setting, runs, summary, seeds)
            if img_dir is not None:
                quick = setting.budget_steps <= MODES["quick"].budget_trials * 200
                suffix = "_quick" if quick else ""
                plot_workload(img_dir / f"quality_{setting.workload}{suffix}.png", setting, runs,
                              targets, "quick" if quick else "full")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("tuner").setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    torch.set_num_threads(1)  # every method alike; a shared 2-core machine
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # tables as they come
    if args.from_json:
        report_saved(args.from_json, None if args.no_plots else args.img_dir)
        return 0
    mode = MODES["quick" if args.quick else "full"]
    seeds = list(range(args.seeds or mode.seeds))
    budget_trials = args.budget_trials or mode.budget_trials
    if "adamtune" not in args.methods:
        print("--methods must include adamtune: the ratios are against it", file=sys.stderr)
        return 2
    start = time.perf_counter()
    results = []
    for workload in args.workloads:
        setting = Setting(workload, mode.steps_per_trial, mode.eval_every,
                          budget_trials * mode.steps_per_trial, args.population)
        runs = run_workload(setting, seeds, args.methods)
        summary, targets = summarize(runs)
        print_workload(workload, setting, runs, summary, seeds)
        if not args.no_plots:
            suffix = "_quick" if args.quick else ""
            plot_workload(args.img_dir / f"quality_{workload}{suffix}.png", setting, runs,
                          targets, mode.name)
        results.append({"workload": workload, "setting": setting.__dict__, "targets": targets,
                        "runs": [r.to_dict() for rs in runs.values() for r in rs]})
        if args.json is not None:  # after every workload, so a long run keeps what it has done
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))
    print(f"\ntotal wall time {time.perf_counter() - start:.0f}s ({mode.name} mode, "
          f"torch threads 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
