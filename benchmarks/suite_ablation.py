"""What each part of adamtune's first trials buys: the suite, with one part taken out.

Runs ``benchmarks/suite.py`` for adamtune alone with one engine decision changed, so its
picks can be set beside the full engine's (``--peers`` a saved run of the same steps and
seeds, adamtune's own column included: pass it as ``--baseline``):

- ``no_pruning``: no Hyperband (``tuner.search.make_pruner`` -> Optuna's NopPruner); a
  diverging trial is still stopped, as the engine does without a pruner;
- ``no_random_startup``: TPE models from its third finished trial, i.e. right after the
  seeded trials, instead of sampling at random until a third of the budget has finished
  (``tuner.search.startup_trials``);
- ``no_confirmation``: ``budget.confirm_seeds: 0`` (a job setting): the whole budget is
  searched and the pick is the best trial on the selection seed.

Only the first two replace an engine function, here and in this process alone: the engine
has no switch for them, because its users are not meant to turn them off.

    .venv/bin/python benchmarks/suite_ablation.py no_pruning --unseen-seeds 1 2 3 4 5 6 7 8 9 10
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import suite.methods as methods  # noqa: E402
from suite.report import mean  # noqa: E402

import tuner.search as search  # noqa: E402

PARTS = {"no_pruning": "Hyperband pruning", "no_random_startup": "TPE's random startup trials",
         "no_confirmation": "confirmation on new seeds"}
VARIANTS = tuple(PARTS)
RESULTS = Path(__file__).parent / "results"


def apply(variant: str) -> None:
    """Change the one engine decision ``variant`` names, in this process (the engine looks
    these up when it builds a study, so the change holds for every job run after it)."""
    if variant == "no_pruning":
        search.make_pruner = lambda spec: optuna.pruners.NopPruner()  # type: ignore[assignment]
    elif variant == "no_random_startup":
        search.startup_trials = lambda spec: 3  # type: ignore[assignment]  # TPE's minimum
    elif variant == "no_confirmation":
        budget = methods.Budget
        methods.Budget = lambda **kw: budget(confirm_seeds=0, **kw)  # type: ignore[assignment,misc]


def compare(variant_json: Path, baseline_json: Path) -> str:
    """Markdown: per workload, adamtune's unseen-seed mean with and without the part."""
    ours = {r["workload"]: r for r in json.loads(variant_json.read_text())["results"]}
    full = {r["workload"]: r for r in json.loads(baseline_json.read_text())["results"]}
    lines = ["| workload | full engine | without | ratio |", "|---|---|---|---|"]
    for name, result in ours.items():
        if name not in full:
            continue
        a = mean(full[name]["methods"]["adamtune"]["unseen_losses"])
        b = mean(result["methods"]["adamtune"]["unseen_losses"])
        lines.append(f"| {name} | {a:.4g} | {b:.4g} | {b / a:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("--baseline", type=Path, default=RESULTS / "suite_30_seeds10.json",
                   help="a saved suite run with adamtune, same steps and unseen seeds")
    p.add_argument("--json", type=Path, help="default: results/suite_ablation_VARIANT.json")
    args, rest = p.parse_known_args(argv)
    out = args.json or RESULTS / f"suite_ablation_{args.variant}.json"
    apply(args.variant)
    logging.getLogger(__name__).info("variant %s", args.variant)
    _load_suite_main().main(["--methods", "adamtune", "--grid-points", "0", "--json", str(out),
                     "--plot", f"/tmp/suite_ablation_{args.variant}.png", *rest])
    print(f"\nadamtune without {PARTS[args.variant]} (unseen-seed means)\n")
    print(compare(out, args.baseline))


def _load_suite_main() -> Any:
    """``benchmarks/suite.py`` as a module (its name clashes with the ``suite`` package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("suite_main", Path(__file__).parent / "suite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["suite_main"] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
