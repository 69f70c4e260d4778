"""scikit-learn's 8x8 digits (shipped with the package), classified by a small MLP."""

from __future__ import annotations

import torch
from torch import nn

from tuner.workloads.base import MLPWorkload, Split


class DigitsMLP(MLPWorkload):
    name = "digits_mlp"
    description = "sklearn digits (1797 8x8 images, 10 classes), MLP 64-128-128-10, cross-entropy"
    widths = (64, 128, 128, 10)
    activation = nn.GELU

    def load_split(self) -> Split:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        xt = torch.tensor(x, dtype=torch.float32) / 16.0
        yt = torch.tensor(y, dtype=torch.long)
        order = torch.randperm(len(yt), generator=torch.Generator().manual_seed(1234))
        xt, yt = xt[order], yt[order]
        n_val = 360
        return xt[n_val:], yt[n_val:], xt[:n_val], yt[:n_val]
