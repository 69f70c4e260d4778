"""Data for the suite's workloads: scikit-learn's shipped sets and seeded generators.

Every split is fixed (a seeded permutation), so a workload's validation set never depends on
the trial's seed; only the model's initial weights and the batch order do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
SPLIT_SEED = 1234


def split(x: torch.Tensor, y: torch.Tensor, n_val: int) -> Split:
    """A seeded shuffle, then the first ``n_val`` rows for validation, the rest for training."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    x, y = x[order], y[order]
    return x[n_val:], y[n_val:], x[:n_val], y[:n_val]


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale every column to zero mean, unit variance, with the training rows' statistics."""
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True).clamp(min=1e-8)
    return [(t - mean) / std for t in (train, *others)]


def sklearn_set(loader: Callable[..., tuple[np.ndarray, np.ndarray]], n_val: int,
                classification: bool) -> Split:
    """A scikit-learn set shipped with the package, standardised features (and targets)."""
    x_np, y_np = loader(return_X_y=True)
    x = torch.tensor(x_np, dtype=torch.float32)
    y = (torch.tensor(y_np, dtype=torch.long) if classification
         else torch.tensor(y_np, dtype=torch.float32).unsqueeze(1))
    xt, yt, xv, yv = split(x, y, n_val)
    xt, xv = standardise(xt, xv)
    if not classification:
        yt, yv = standardise(yt, yv)
    return xt, yt, xv, yv


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def noisy_labels(y: torch.Tensor, classes: int, fraction: float, seed: int) -> torch.Tensor:
    """``y`` with a seeded ``fraction`` of its labels redrawn uniformly at random."""
    gen = generator(seed)
    redraw = torch.rand(len(y), generator=gen) < fraction
    return torch.where(redraw, torch.randint(0, classes, (len(y),), generator=gen), y)
