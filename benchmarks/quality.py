"""The compute multiplier on the built-in workloads: plain Optuna and random search vs adamtune.

adamtune tunes each built-in workload as ``adamtune tune`` does (the job's defaults, the given
trials and steps); its recommendation is re-trained on seeds it was not selected on. Plain
Optuna TPE and random search over Adam's five hyperparameters then get up to 10x adamtune's
training steps (its LR range test and every trial counted); the multiplier is the first
checkpoint whose pick, re-trained on the same unseen seeds, is no worse than adamtune's. It
replaces the old steps-to-within-1% protocol, which charged fixed seeded trials and could not
show more than about 4x. The protocol is the suite's (``benchmarks/suite.py --multiplier``,
reused here, not copied); the suite runs it on workloads nobody tuned for, this on the
built-ins.

    nice -n 10 .venv/bin/python benchmarks/quality.py --quick   # 2 workloads, 10 trials
    nice -n 10 .venv/bin/python benchmarks/quality.py           # 3 workloads, 30 trials
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from suite.methods import METHODS
from suite.report import mean, multiplier_table
from suite.runs import quiet_single_thread, refuse_selected_seed
from suite.training import losses_on_seeds

from tuner.workloads import get

ROOT = Path(__file__).resolve().parent.parent
QUICK_WORKLOADS = ("digits_mlp", "regression_mlp")
WORKLOADS = ("digits_mlp", "regression_mlp", "tiny_transformer")

log = logging.getLogger("quality")


def suite_runner() -> ModuleType:
    """``benchmarks/suite.py`` (the script; the ``suite`` package shadows its module name)."""
    spec = importlib.util.spec_from_file_location("suite_runner", ROOT / "benchmarks" / "suite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_workload(name: str, args: argparse.Namespace, runner: ModuleType) -> dict[str, Any]:
    """adamtune's pick re-trained on the unseen seeds, then the peers' multipliers."""
    workload = get(name)
    start = time.perf_counter()
    pick = METHODS["adamtune"](workload, args.trials, args.steps, args.seed)
    losses = losses_on_seeds(workload, pick.config, args.steps, list(args.unseen_seeds))
    adamtune = {"config": pick.config, "steps_spent": pick.steps_spent,
                "expected_objective": pick.expected_objective, "unseen_losses": losses,
                "unseen_mean": mean(losses), "wall_s": time.perf_counter() - start}
    log.info("%s adamtune: %d steps, unseen mean %.4g", name, pick.steps_spent, mean(losses))
    multiplier = runner.run_multiplier(workload, args.steps, args.trials, args.seed,
                                       list(args.unseen_seeds), adamtune)
    return {"workload": name, "methods": {"adamtune": adamtune}, "multiplier": multiplier}


def summary(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """The median multiplier of each peer over the workloads (None: beyond the cap)."""
    out: dict[str, float | None] = {}
    for method in ("optuna_tpe", "random"):
        values = [r["multiplier"][method]["multiplier"] for r in results]
        capped = [v if v is not None else float("inf") for v in values]
        median = statistics.median(capped)
        out[method] = median if median != float("inf") else None
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 workloads, 10 trials of 150 steps")
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0, help="the selection seed")
    p.add_argument("--unseen-seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.trials, args.steps = min(args.trials, 10), min(args.steps, 150)
        args.workloads = args.workloads or list(QUICK_WORKLOADS)
    args.workloads = args.workloads or list(WORKLOADS)
    refuse_selected_seed(p, args.seed, args.unseen_seeds)
    tag = "quick" if args.quick else "full"
    args.json = args.json or ROOT / "benchmarks" / "results" / f"quality_multiplier_{tag}.json"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_single_thread()
    started = time.time()
    runner = suite_runner()
    results = [run_workload(name, args, runner) for name in args.workloads]
    payload = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
               "wall_s": time.time() - started, "results": results,
               "median_multiplier": summary(results)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(runner._json_safe(payload), indent=1))
    print(f"\nCompute multiplier, {args.trials} trials of {args.steps} steps, selection seed "
          f"{args.seed}, unseen seeds {args.unseen_seeds}: steps to match adamtune\n")
    print(multiplier_table(results))
    print(f"\nJSON: {args.json}\nwall: {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
