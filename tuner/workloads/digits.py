"""scikit-learn's 8x8 digits (shipped with the package), classified by a small MLP."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tuner.workloads.base import InMemoryWorkload, Split


class DigitsMLP(InMemoryWorkload):
    name = "digits_mlp"
    description = "sklearn digits (1797 8x8 images, 10 classes), MLP 64-128-128-10, cross-entropy"
    batch_size = 64

    def load_split(self) -> Split:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        xt = torch.tensor(x, dtype=torch.float32) / 16.0
        yt = torch.tensor(y, dtype=torch.long)
        order = torch.randperm(len(yt), generator=torch.Generator().manual_seed(1234))
        xt, yt = xt[order], yt[order]
        n_val = 360
        return xt[n_val:], yt[n_val:], xt[:n_val], yt[:n_val]

    def make_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 10)
        )

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)
