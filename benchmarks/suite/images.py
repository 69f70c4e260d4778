"""An image workload: scikit-learn's 8x8 digits as 1-channel images, a small CNN."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tuner.workloads.base import InMemoryWorkload

from .data import Split, split


class DigitsCNN(InMemoryWorkload):
    name = "digits_cnn"
    description = ("sklearn digits as 1x8x8 images, CNN conv3x3(8)-ReLU-conv3x3(16)-ReLU-"
                   "maxpool-linear(10), cross-entropy")

    def load_split(self) -> Split:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        images = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
        return split(images, torch.tensor(y, dtype=torch.long), 360)

    def make_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
        )

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)
