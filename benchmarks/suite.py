"""The benchmark suite: adamtune and its peers on workloads nobody tuned for.

Per suite workload (``benchmarks/suite/``), every method picks a configuration at the same
steps per trial and on the same selection seed: adamtune (the engine's local search, as
``adamtune tune`` runs it), plain Optuna TPE and random search over Adam's lr, betas, eps and
weight decay with the same number of trials, the AlgoPerf NAdamW qualification list,
Schedule-Free AdamW and Prodigy (constant and cosine) at their defaults, and Adam at 1e-3.
Each pick is then re-trained on seeds it was not selected on; the score is the mean final
validation loss there. A constant-lr Adam grid on the same unseen seeds is the reference.

``--multiplier``: plain Optuna and random search run up to 10x adamtune's training steps;
the multiplier is the first checkpoint (geometric) whose pick, re-trained on the unseen
seeds, is no worse than adamtune's.

    nice -n 10 .venv/bin/python benchmarks/suite.py --quick
    nice -n 10 .venv/bin/python benchmarks/suite.py --trials 30
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from suite import get, names
from suite.methods import ABLATIONS, METHODS, GenericSearch, random_sampler, tpe_sampler
from suite.report import (
    mean,
    multiplier_table,
    paired_table,
    plot,
    promise_table,
    steps_table,
    table,
)
from suite.runs import quiet_single_thread, refuse_selected_seed
from suite.training import losses_on_seeds

ROOT = Path(__file__).resolve().parent.parent
QUICK_WORKLOADS = ("wine_logreg", "digits_cnn", "deep_narrow_gelu")
CHECKPOINTS = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0)  # multiples of adamtune's steps

log = logging.getLogger("suite")


def run_grid(workload: Any, steps: int, seeds: list[int], points: int) -> dict[str, Any]:
    """Constant-lr Adam (torch's defaults otherwise) on a log grid 1e-5 .. 1, unseen seeds."""
    lrs = [float(v) for v in np.logspace(-5, 0, points)]
    means = [mean(losses_on_seeds(workload, {"kind": "adam", "lr": lr}, steps, seeds))
             for lr in lrs]
    best = int(np.argmin(means))
    return {"lrs": lrs, "means": [m if math.isfinite(m) else None for m in means],
            "best_lr": lrs[best], "best_mean": means[best]}


def run_multiplier(workload: Any, steps: int, seed: int, unseen: list[int],
                   adamtune: dict[str, Any], caps: dict[str, float]) -> dict[str, Any]:
    """Steps plain Optuna and random search need to match adamtune's unseen-seed loss, tried
    at each checkpoint up to the method's cap (no match: the multiplier is above the cap)."""
    target, budget = adamtune["unseen_mean"], adamtune["steps_spent"]
    out: dict[str, Any] = {"adamtune_steps": budget, "target": target,
                           "cap": max(caps.values())}
    for method, sampler in (("optuna_tpe", tpe_sampler), ("random", random_sampler)):
        cap = caps[method]
        n_max = math.ceil(cap * budget / steps)
        search = GenericSearch(workload, sampler(seed), steps, seed)  # run only as far as needed
        retrained: dict[int, float] = {}
        found, points = None, []
        for factor in (f for f in CHECKPOINTS if f <= cap):
            n = min(n_max, max(1, math.floor(factor * budget / steps)))
            index, config, _ = search.run_to(n).best_of_first(n)
            if index not in retrained:
                retrained[index] = mean(losses_on_seeds(workload, config, steps, unseen))
            points.append({"trials": n, "steps": n * steps, "pick": index,
                           "unseen_mean": retrained[index]})
            if retrained[index] <= target:
                found = n * steps / budget
                break
        out[method] = {"multiplier": found, "checkpoints": points, "cap": cap}
        log.info("  multiplier %s: %s", method, f"{found:.1f}x" if found else f"> {cap:g}x")
    return out


def run_workload(name: str, args: argparse.Namespace) -> dict[str, Any]:
    workload = get(name)
    unseen = list(args.unseen_seeds)
    result: dict[str, Any] = {"workload": name, "description": workload.description,
                              "steps": args.steps, "trials": args.trials, "seed": args.seed,
                              "unseen_seeds": unseen, "methods": {}}
    for method in args.methods:
        start = time.perf_counter()
        try:
            pick = {**METHODS, **ABLATIONS}[method](workload, args.trials, args.steps,
                                                          args.seed)
        except Exception as exc:  # one method's crash is a result, not the end of the suite
            log.exception("%s %s failed", name, method)
            result["methods"][method] = {"error": repr(exc), "config": None, "steps_spent": 0,
                                         "unseen_losses": [], "unseen_mean": math.inf}
            continue
        losses = losses_on_seeds(workload, pick.config, args.steps, unseen)
        result["methods"][method] = {
            "config": pick.config, "steps_spent": pick.steps_spent,
            "selection_value": pick.selection_value,
            "expected_objective": pick.expected_objective, "extra": pick.extra,
            "unseen_losses": [v if math.isfinite(v) else None for v in losses],
            "unseen_mean": mean(losses), "wall_s": time.perf_counter() - start,
        }
        log.info("%s %-16s unseen mean %.4g (%.0fs)", name, method, mean(losses),
                 time.perf_counter() - start)
    if args.grid_points:
        result["grid"] = run_grid(workload, args.steps, unseen, args.grid_points)
        log.info("%s grid-best lr %.2g: %.4g", name, result["grid"]["best_lr"],
                 result["grid"]["best_mean"])
    if args.multiplier and "adamtune" in result["methods"]:
        caps = dict(zip(("optuna_tpe", "random"), args.multiplier_caps, strict=True))
        result["multiplier"] = run_multiplier(workload, args.steps, args.seed, unseen,
                                              result["methods"]["adamtune"], caps)
    return result


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=30, help="trials of every searching method")
    p.add_argument("--steps", type=int, default=150, help="training steps of every trial")
    p.add_argument("--workloads", nargs="+", choices=names(), help="default: all")
    p.add_argument("--methods", nargs="+", choices=[*METHODS, *ABLATIONS],
                   default=list(METHODS),
                   help="default: every method but the ablations "
                        f"({', '.join(ABLATIONS)})")
    p.add_argument("--seed", type=int, default=0, help="the selection seed")
    p.add_argument("--unseen-seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--grid-points", type=int, default=11,
                   help="constant-lr Adam grid 1e-5..1 (0: none)")
    p.add_argument("--multiplier", action="store_true",
                   help="also the compute multiplier of Optuna and random search (costly)")
    p.add_argument("--multiplier-caps", type=float, nargs=2, default=[10.0, 10.0],
                   metavar=("TPE", "RANDOM"), choices=CHECKPOINTS,
                   help="the most steps (x adamtune's) each peer gets; e.g. 2 4 tells whether "
                        "they need >= 3x and >= 5x at a third of the cost of 10 10")
    p.add_argument("--quick", action="store_true", help="3 workloads, 10 trials, 100 steps")
    p.add_argument("--json", type=Path, help="default: benchmarks/results/suite[_quick|_N].json")
    p.add_argument("--plot", type=Path, help="default: docs/img/suite[_quick|_N].png")
    p.add_argument("--report", type=Path, metavar="JSON",
                   help="print the tables and draw the plot of a saved run; train nothing")
    p.add_argument("--peers", type=Path, nargs="+", default=[], metavar="JSON",
                   help="saved runs whose methods fill in the ones this run (or --report) "
                        "lacks, e.g. the peers' picks beside an adamtune-only run; the run's "
                        "settings must match theirs")
    args = p.parse_args(argv)
    if args.quick:
        args.trials, args.steps = min(args.trials, 10), min(args.steps, 100)
        args.workloads = args.workloads or list(QUICK_WORKLOADS)
        args.grid_points = min(args.grid_points, 6)
    args.workloads = args.workloads or names()
    refuse_selected_seed(p, args.seed, args.unseen_seeds)
    tag = "_quick" if args.quick else ("" if args.trials == 30 else f"_{args.trials}")
    args.json = args.json or ROOT / "benchmarks" / "results" / f"suite{tag}.json"
    args.plot = args.plot or ROOT / "docs" / "img" / f"suite{tag}.png"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_single_thread()
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        merge_peers(saved["results"], saved["args"], args.peers)
        report(saved["results"], saved["args"], args.plot, args.multiplier)
        return
    started = time.time()
    results: list[dict[str, Any]] = []
    for name in args.workloads:
        results.append(run_workload(name, args))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"args": {k: _plain(v) for k, v in vars(args).items()},
                   "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
                   "wall_s": time.time() - started, "results": results}
        args.json.write_text(json.dumps(_json_safe(payload), indent=1))
    merge_peers(results, vars(args), args.peers)
    report(results, vars(args), args.plot, args.multiplier)
    print(f"JSON: {args.json}\nwall: {time.time() - started:.0f}s")


def _plain(value: Any) -> Any:
    """An argument as JSON holds it: paths (``--json``, ``--peers`` ...) as strings."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


SAME_SETTINGS = ("steps", "seed", "unseen_seeds")
SEARCHING = ("optuna_tpe", "random")  # their pick depends on the number of trials


def merge_peers(results: list[dict[str, Any]], args: dict[str, Any], files: list[Path]) -> None:
    """Fill in each workload's missing methods (and grid) from saved runs of the same settings.

    The peers do not depend on adamtune's engine, so their picks from an earlier run stand
    beside a new adamtune-only run; a saved run with other steps or seeds is refused, and the
    searching peers of a run with another number of trials are left out.
    """
    for path in files:
        saved = json.loads(path.read_text())
        theirs = saved["args"]
        differ = [k for k in SAME_SETTINGS if theirs.get(k) != args.get(k)]
        if differ:
            raise SystemExit(
                f"--peers {path}: not the settings of this run ({', '.join(differ)}: "
                f"{[theirs.get(k) for k in differ]} there, {[args.get(k) for k in differ]} here)"
            )
        same_trials = theirs.get("trials") == args.get("trials")
        by_name = {r["workload"]: r for r in saved["results"]}
        for r in results:
            other = by_name.get(r["workload"])
            if other is None:
                continue
            for method, value in other["methods"].items():
                if same_trials or method not in SEARCHING:
                    r["methods"].setdefault(method, value)
            if "grid" in other:
                r.setdefault("grid", other["grid"])


def report(results: list[dict[str, Any]], args: dict[str, Any], plot_path: Path,
           multiplier: bool) -> None:
    """The ratio table, adamtune's promise against its re-train, the multiplier, the plot."""
    for r in results:  # a saved run holds null for inf (diverged)
        for m in r["methods"].values():
            m["unseen_mean"] = math.inf if m["unseen_mean"] is None else m["unseen_mean"]
            m["unseen_losses"] = [math.inf if v is None else v for v in m["unseen_losses"]]
    print(f"\n{args['trials']} trials of {args['steps']} steps, selection seed {args['seed']}, "
          f"unseen seeds {args['unseen_seeds']}; ratio = unseen-seed mean / best peer's "
          "(bold: the best peer)\n")
    print(table(results))
    pairs = paired_table(results)
    if pairs:
        print(f"\nadamtune against the best peer, seed by seed ({len(args['unseen_seeds'])} "
              "unseen seeds; the interval: 95%, t on the log ratios)\n")
        print(pairs)
    print("\nTraining steps spent choosing (LR range test included; re-training not counted)\n")
    print(steps_table(results))
    print("\nadamtune's expected_objective against its unseen-seed re-train\n")
    print(promise_table(results))
    if multiplier or any(r.get("multiplier") for r in results):
        print("\nCompute multiplier: steps to match adamtune's unseen-seed loss\n")
        print(multiplier_table(results))
    plot(results, plot_path, f"suite, {args['trials']} trials x {args['steps']} steps")
    print(f"\nplot: {plot_path}")


if __name__ == "__main__":
    main()
