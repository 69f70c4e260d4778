"""Regression of a smooth nonlinear function of 16 inputs, on generated data."""

from __future__ import annotations

import torch
from torch import nn

from tuner.workloads.base import MLPWorkload, Split


class RegressionMLP(MLPWorkload):
    name = "regression_mlp"
    description = "generated regression y = sin(Wx) . v + noise (16 -> 1), MLP 16-64-64-1, MSE"
    batch_size = 128
    widths = (16, 64, 64, 1)
    activation = nn.Tanh
    classification = False

    def load_split(self) -> Split:
        gen = torch.Generator().manual_seed(4321)
        n, d = 4096, 16
        x = torch.randn(n, d, generator=gen)
        w = torch.randn(d, 8, generator=gen) / d**0.5
        v = torch.randn(8, 1, generator=gen)
        y = torch.sin(2.0 * x @ w) @ v + 0.3 * (x[:, :1] * x[:, 1:2])
        y = y + 0.05 * torch.randn(n, 1, generator=gen)
        n_val = 512
        return x[n_val:], y[n_val:], x[:n_val], y[:n_val]
