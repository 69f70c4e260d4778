"""A plain PyTorch training loop tuned by adamtune: sklearn's digits, an MLP, dict batches.

Run it alone (``python train.py``: Adam, lr 1e-3, or ``ADAMTUNE_CONFIG=rec.json`` to train
with a recommendation) or let a worker run it: ``adamtune worker --program
digits='python examples/programs/train.py'``. The data, split, batches, model and
evaluation are those of the built-in ``digits_mlp`` workload: a trial's validation loss is
the in-process trial's to the last bit (on as many threads), and a job gives the built-in
job's recommendation (tests/integration/test_program_parity.py, benchmarks/program_parity.py).

Under ``torchrun --nproc-per-node N`` it trains with DistributedDataParallel (gloo on CPU,
nccl on GPUs), each rank on its own shuffle of the data; only rank 0 talks to adamtune.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

import adamtune

Batch = dict[str, torch.Tensor]


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x, dtype=torch.float32) / 16.0
    yt = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(yt), generator=torch.Generator().manual_seed(1234))
    xt, yt = xt[order], yt[order]
    return xt[360:], yt[360:], xt[:360], yt[:360]


def batches(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> Iterator[Batch]:
    """Endless shuffled minibatches as dicts, the way most data loaders hand them out."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y) - size + 1, size):
            idx = order[start : start + size]
            yield {"pixels": x[idx], "label": y[idx]}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    loss = float(F.cross_entropy(model(x), y))
    model.train()
    return loss


def distributed_rank() -> int:
    """Join the process group when launched by torchrun; this process's rank (0 alone)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank()


def train(args: argparse.Namespace) -> None:
    rank = distributed_rank()
    trial = adamtune.trial(total_steps=args.steps)  # every rank gets the same configuration
    seed = trial.seed if trial.seed is not None else args.seed
    eval_every = trial.eval_every or args.eval_every
    x, y, xv, yv = load_data()
    torch.manual_seed(seed)
    model: nn.Module = nn.Sequential(
        nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 10)
    )
    if dist.is_initialized():
        model = nn.parallel.DistributedDataParallel(model)
    optimizer, scheduler = trial.build_optimizer(model)
    train_batches = batches(x, y, args.batch_size // args.accumulate, seed + rank)
    for step in range(trial.total_steps or args.steps):
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for _ in range(args.accumulate):  # gradient accumulation: one optimizer step
            batch = next(train_batches)
            loss = F.cross_entropy(model(batch["pixels"]), batch["label"]) / args.accumulate
            loss.backward()
            step_loss += loss.item()
        optimizer.step()
        scheduler.step()
        faulty = trial.phase != "sweep"  # fault injection for tests: crash, hang, diverge
        if faulty and args.diverge_at is not None and step >= args.diverge_at:
            step_loss = float("nan")  # the worker prunes the trial as diverged
        trial.report(step, loss=step_loss)  # the LR range test and the divergence test read it
        if faulty and step == args.crash_at:
            raise RuntimeError(f"--crash-at {step}: crashing on purpose")
        if faulty and step == args.hang_at:
            print(f"--hang-at {step}: hanging on purpose", file=sys.stderr, flush=True)
            time.sleep(10**6)
        if trial.phase != "sweep" and (step + 1) % eval_every == 0:
            trial.report(step, val_loss=evaluate(model, xv, yv))  # may raise adamtune.Pruned
        if trial.should_stop(step):
            break
    trial.finish(val_loss=evaluate(model, xv, yv))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300, help="steps when run standalone")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--accumulate", type=int, default=1, help="micro-batches per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crash-at", type=int, help="raise at this step (to test failures)")
    parser.add_argument("--hang-at", type=int, help="sleep forever at this step (time limits)")
    parser.add_argument("--diverge-at", type=int, help="report a NaN loss from this step on")
    parser.add_argument(
        "--hang-when-pruned", action="store_true", help="sleep forever once pruned (no exit)"
    )
    args = parser.parse_args()
    try:
        train(args)
    except adamtune.Pruned as exc:
        print(f"adamtune pruned this trial: {exc}", flush=True)
        if args.hang_when_pruned:  # a script that ignores being pruned: the worker must end it
            print("--hang-when-pruned: hanging on purpose", file=sys.stderr, flush=True)
            time.sleep(10**6)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
