"""The built-in digits job against the same job as a program: do they recommend the same?

One job body (``examples/digits.yaml``'s workload, ``examples/programs/digits.yaml``'s
budget), run twice by ``adamtune tune`` with the same name and seed (the study's name seeds
Hyperband's brackets, the seed the sampler, the model and the data order):

- ``workload: digits_mlp``: the LR range test and every trial in the command's process;
- ``program: digits``: ``examples/programs/train.py`` (the same MLP, data and loop as a plain
  PyTorch script) run by ``--program digits=...`` as a child process per phase.

The built-in job lists no tuning-free references, as a program job cannot run them. Both
train on one CPU thread (``adamtune tune`` sets it for itself; ``OMP_NUM_THREADS=1``
reaches the children), so a trial's validation loss is the same to the last bit
(``tests/integration/test_program_parity.py``) and so is every choice the search makes from
them. Prints the two recommendations side by side and the wall time of each job.

    python benchmarks/program_parity.py                      # seed 0, 12 trials of 300 steps
    python benchmarks/program_parity.py --seeds 0 1 --trials 16 --confirm-seeds 1
    python benchmarks/program_parity.py --program-threads 2  # the child on 2 threads
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "programs" / "train.py"
COMPARED = ("optimizer", "lr", "betas", "eps", "weight_decay", "schedule", "warmup_steps",
            "total_steps", "expected_objective", "baseline_objective", "lr_range")


def job_body(seed: int, trials: int, steps: int, confirm_seeds: int | None) -> dict[str, Any]:
    budget: dict[str, Any] = {"trials": trials, "steps_per_trial": steps, "eval_every": 50}
    if confirm_seeds is not None:
        budget["confirm_seeds"] = confirm_seeds
    return {"name": "digits-parity", "seed": seed, "budget": budget, "sweep": {"steps": 100}}


def tune(body: dict[str, Any], folder: Path, label: str, extra: list[str],
         threads: int) -> tuple[dict[str, Any], float]:
    """``adamtune tune`` on ``body``: its recommendation (JSON) and the job's wall time."""
    path = folder / f"{label}.yaml"
    path.write_text(yaml.safe_dump(body))
    command = [sys.executable, "-m", "adamtune", "tune", str(path), "--json", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{label}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), elapsed


def run_pair(seed: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    body = job_body(seed, args.trials, args.steps, args.confirm_seeds)
    # references: [] as a program job has none (Schedule-Free needs train/eval switching)
    builtin, builtin_s = tune({**body, "workload": "digits_mlp", "references": []}, folder,
                              f"builtin-{seed}", [], 1)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(TRAIN))}"
    program, program_s = tune(
        {**body, "program": "digits"}, folder, f"program-{seed}",
        ["--program", f"digits={command}", "--log-dir", str(folder / f"logs-{seed}")],
        args.program_threads,
    )
    return {"seed": seed, "builtin": builtin, "program": program,
            "builtin_s": builtin_s, "program_s": program_s}


def _same(a: Any, b: Any) -> str:
    if a == b:
        return "same"
    if isinstance(a, float) and isinstance(b, float) and a and math.isfinite(a):
        return f"{(b - a) / abs(a):+.2e} rel"
    return "DIFFERENT"


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return " / ".join(_show(v) for v in value.values())
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def print_pair(r: dict[str, Any]) -> bool:
    """Print one seed's two recommendations side by side; True if they agree exactly."""
    builtin, program = r["builtin"], r["program"]
    print(f"\nseed {r['seed']}: built-in digits_mlp job {r['builtin_s']:.0f} s, "
          f"as a program {r['program_s']:.0f} s ({r['program_s'] / r['builtin_s']:.1f}x)")
    print(f"{'':18s} {'built-in':>40s} {'program':>40s}  agreement")
    agree = True
    for key in COMPARED:
        a, b = builtin.get(key), program.get(key)
        verdict = _same(a, b)
        agree = agree and verdict == "same"
        print(f"{key:18s} {_show(a):>40s} {_show(b):>40s}  {verdict}")
    others = sorted(k for k in set(builtin) | set(program)
                    if k not in COMPARED and builtin.get(k) != program.get(k))
    print(f"every other field the same except: {', '.join(others) or 'none'} (a program's "
          "trials have no optimizer-state diagnostics; a program job has no workload)")
    return agree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=300, help="steps per trial")
    parser.add_argument("--confirm-seeds", type=int, default=None)
    parser.add_argument("--program-threads", type=int, default=1,
                        help="OMP_NUM_THREADS of the program's children (default 1, as in process)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="adamtune-parity-") as tmp:
        results = [run_pair(seed, args, Path(tmp)) for seed in args.seeds]
    agreed = [print_pair(r) for r in results]
    print(f"\n{sum(agreed)} of {len(agreed)} seeds: the same recommendation "
          f"({args.trials} trials of {args.steps} steps, program children on "
          f"{args.program_threads} thread(s))")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
