"""Population training against the same trials run one at a time with torch.optim.

Prints trials per minute for population sizes K (default 1, 8, 32, 128) and for K
sequential ``torch.optim`` trials of the same workload, configs and steps, with peak memory
and the speedup. Every measurement runs in a fresh child process, so its peak memory
(``ru_maxrss`` on CPU, ``torch.cuda.max_memory_allocated`` on GPU) is its own; the time is
taken inside the child, after imports and data loading. ``--quality`` instead trains K=16
random configs both ways for several seeds and compares the best objective; ``--breakdown``
times the parts of one population step (stacked forward and backward, the vectorised
update, reading the losses back) to show whether the model or the update dominates.
Sequential trials use ``tuner.optim.build_optimizer``: fused torch.optim kernels on CUDA
and CPU. ``--precision`` trains both sides in fp32 (default), bf16 or fp16.

    python benchmarks/population.py --quick
    python benchmarks/population.py --device cuda --steps 300
    python benchmarks/population.py --quality --quick
    python benchmarks/population.py --breakdown --device cuda --sizes 1,8,32,128
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from population_breakdown import breakdown

from tuner.optim import OptimConfig, build_optimizer, build_scheduler
from tuner.population import (
    DivergenceMonitor,
    can_vmap,
    run_population,
)
from tuner.train import TrainSettings, autocast, grad_scaler, validation_loss
from tuner.workloads import get
from tuner.workloads.base import Workload

SIZES = (1, 8, 32, 128)
SEARCH_SEED = 20261122


def random_configs(n: int, steps: int, seed: int) -> list[OptimConfig]:
    """``n`` configs drawn from adamtune's default search space (uniform, not TPE)."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=gen).item()

    def log_uniform(low: float, high: float) -> float:
        return math.exp(uniform(math.log(low), math.log(high)))

    def choice(options: list[str]) -> str:
        return options[int(torch.randint(len(options), (), generator=gen))]

    return [
        OptimConfig(
            optimizer=choice(["adam", "adamw"]),
            lr=log_uniform(3e-4, 3e-2),
            beta1=uniform(0.8, 0.99),
            beta2=1.0 - log_uniform(1e-3, 1e-1),
            eps=log_uniform(1e-10, 1e-6),
            weight_decay=log_uniform(1e-5, 1e-1),
            warmup_steps=int(uniform(0.0, 0.2) * steps),
            schedule=choice(["constant", "linear", "cosine"]),
        )
        for _ in range(n)
    ]


def train_one(
    workload: Workload,
    cfg: OptimConfig,
    steps: int,
    eval_every: int,
    seed: int,
    device: str,
    precision: str = "fp32",
) -> float | None:
    """One trial the ordinary way: torch.optim (fused where supported), autocast and a
    GradScaler for fp16, the same divergence rule; final val loss."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = workload.make_model(seed).to(dev)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps)
    scaler = grad_scaler(dev, precision)
    monitor = DivergenceMonitor(cfg.warmup_steps)
    batches = workload.train_batches(seed)
    value = None
    for step in range(steps):
        x, y = next(batches)
        with autocast(dev, precision):
            loss = workload.loss(model(x.to(dev)), y.to(dev))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if monitor.update(step, loss.item()) is not None:
            return None
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            value = validation_loss(model, workload, dev, precision="fp32")
            if not math.isfinite(value):
                return None
    return value


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """In a child process: time one population, or the same trials one at a time."""
    workload = get(args.workload)
    configs = random_configs(args.k, args.steps, SEARCH_SEED + args.seed)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    # first calls pay for lazy initialisation and first-touch page faults: not what we measure
    warm = min(args.steps, 5)
    if args.measure == "population":
        run_population(
            workload,
            configs,
            TrainSettings(warm, warm, seed=0, device=args.device, precision=args.precision),
        )
    else:
        train_one(workload, configs[0], warm, warm, 0, args.device, args.precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu_start = time.perf_counter(), time.process_time()
    if args.measure == "population":
        settings = TrainSettings(
            args.steps,
            args.eval_every,
            seed=args.seed,
            device=args.device,
            collect_diagnostics=False,
            precision=args.precision,
        )
        results = run_population(workload, configs, settings)
        values = [r.value if r.state == "complete" else None for r in results]
    else:
        values = [
            train_one(
                workload, c, args.steps, args.eval_every, args.seed, args.device, args.precision
            )
            for c in configs
        ]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mib = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else (rss_after - rss_before) / 1024  # ru_maxrss is in KiB on Linux
    )
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_mib": peak_mib,
        "rss_mib": rss_after / 1024,
        "values": values,
    }


def run_child(args: argparse.Namespace, measure_what: str, k: int, seed: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--measure",
        measure_what,
        "--k",
        str(k),
        "--workload",
        args.workload,
        "--device",
        args.device,
        "--steps",
        str(args.steps),
        "--eval-every",
        str(args.eval_every),
        "--seed",
        str(seed),
        "--threads",
        str(args.threads),
        "--precision",
        args.precision,
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run (the machine is shared: noise only ever slows down), the highest peak."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["cpu_seconds"] = min(r["cpu_seconds"] for r in runs)
    best["peak_mib"] = max(r["peak_mib"] for r in runs)
    return best


def compare(args: argparse.Namespace, k: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Population and sequential runs, interleaved so that both see the same machine load."""
    pops, seqs = [], []
    for _ in range(args.repeats):
        pops.append(run_child(args, "population", k, args.seed))
        seqs.append(run_child(args, "sequential", k, args.seed))
    return best_of(pops), best_of(seqs)


def describe_machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    print(
        f"population vs sequential torch.optim: {args.workload}, {args.steps} steps, eval every "
        f"{args.eval_every}, device {args.device} ({describe_machine(args.device)}), "
        f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, "
        f"best of {args.repeats} interleaved runs"
    )
    mem = "peak GPU MiB" if args.device.startswith("cuda") else "peak RSS +MiB"
    print(
        f"{'K':>5} {'pop trials/min':>15} {'seq trials/min':>15} {'speedup':>8} {'(CPU time)':>12} "
        f"{'pop ' + mem:>18} {'seq ' + mem:>18}"
    )
    rows = []
    for k in args.sizes:
        pop, seq = compare(args, k)
        row = {
            "k": k,
            "population_trials_per_min": 60 * k / pop["seconds"],
            "sequential_trials_per_min": 60 * k / seq["seconds"],
            "speedup": seq["seconds"] / pop["seconds"],
            "cpu_time_speedup": seq["cpu_seconds"] / pop["cpu_seconds"],
            "population_peak_mib": pop["peak_mib"],
            "sequential_peak_mib": seq["peak_mib"],
            "population_seconds": pop["seconds"],
            "sequential_seconds": seq["seconds"],
        }
        rows.append(row)
        print(
            f"{k:>5} {row['population_trials_per_min']:>15.1f} "
            f"{row['sequential_trials_per_min']:>15.1f} {row['speedup']:>7.2f}x "
            f"{row['cpu_time_speedup']:>11.2f}x "
            f"{pop['peak_mib']:>18.1f} {seq['peak_mib']:>18.1f}",
            flush=True,
        )
    return rows


def quality(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Best objective of 16 random configs, population vs one at a time, for several seeds."""
    k = 16
    print(
        f"quality: best validation loss of K={k} random configs, {args.workload}, "
        f"{args.steps} steps; population vs the same configs one at a time"
    )
    print(
        f"{'seed':>5} {'best pop':>12} {'best seq':>12} {'|diff|':>10} {'max trial rel diff':>19}"
    )
    rows = []
    for seed in range(args.seeds):
        pop = run_child(args, "population", k, seed)["values"]
        seq = run_child(args, "sequential", k, seed)["values"]
        finite = [(p, s) for p, s in zip(pop, seq, strict=True) if p is not None and s is not None]
        best_pop = min((p for p in pop if p is not None), default=math.nan)
        best_seq = min((s for s in seq if s is not None), default=math.nan)
        rel = max((abs(p - s) / abs(s) for p, s in finite), default=math.nan)
        same_states = [p is None for p in pop] == [s is None for s in seq]
        rows.append(
            {
                "seed": seed,
                "best_population": best_pop,
                "best_sequential": best_seq,
                "max_trial_rel_diff": rel,
                "same_diverged_set": same_states,
            }
        )
        print(
            f"{seed:>5} {best_pop:>12.6f} {best_seq:>12.6f} {abs(best_pop - best_seq):>10.2e} "
            f"{rel:>19.2e}{'' if same_states else '  (different trials diverged)'}",
            flush=True,
        )
    return rows


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workload", default="digits_mlp")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--steps", type=int, default=None, help="steps per trial (300; 100 with --quick)"
    )
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=list(SIZES))
    p.add_argument("--repeats", type=int, default=None, help="runs per measurement (2; 1 quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seeds", type=int, default=None, help="seeds for --quality (5; 3 quick)")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats: a few minutes")
    p.add_argument("--quality", action="store_true", help="compare best objectives instead")
    p.add_argument(
        "--breakdown", action="store_true", help="time the parts of a population step instead"
    )
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--measure", choices=["population", "sequential"], help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.steps = args.steps or (100 if args.quick else 300)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.seeds = args.seeds or (3 if args.quick else 5)
    args.eval_every = min(args.eval_every, args.steps)
    return args


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return 0
    ok, why = can_vmap(get(args.workload))
    if not ok:
        print(f"{args.workload} cannot be trained as a population: {why}", file=sys.stderr)
        return 2
    if args.breakdown:
        rows = breakdown(
            args,
            lambda k: random_configs(k, args.steps, SEARCH_SEED),
            describe_machine(args.device),
        )
    else:
        rows = quality(args) if args.quality else speed(args)
    if args.json:
        args.json.write_text(json.dumps({"args": sys.argv[1:], "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
