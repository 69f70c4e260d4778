"""Tabular workloads on scikit-learn's shipped sets and a generated mixture."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tuner.workloads.base import InMemoryWorkload, MLPWorkload

from .data import Split, generator, noisy_labels, sklearn_set, split


class WineLogistic(InMemoryWorkload):
    name = "wine_logreg"
    description = ("sklearn wine (178 x 13, 3 classes, 20% of labels redrawn at random: the data "
                   "are separable otherwise), multinomial logistic regression")
    batch_size = 32

    def load_split(self) -> Split:
        from sklearn.datasets import load_wine

        xt, yt, xv, yv = sklearn_set(load_wine, 58, classification=True)
        return xt, noisy_labels(yt, 3, 0.2, seed=5), xv, noisy_labels(yv, 3, 0.2, seed=6)

    def make_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Linear(13, 3)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)


class _SklearnMLP(MLPWorkload):
    """An MLP on a set shipped with scikit-learn (its loader ``sklearn.datasets.<dataset>``),
    ``n_val`` examples held out to validate."""

    dataset = ""
    n_val = 0

    def load_split(self) -> Split:
        from sklearn import datasets

        loader = getattr(datasets, self.dataset)
        return sklearn_set(loader, self.n_val, classification=self.classification)


class BreastCancerTanh(_SklearnMLP):
    name = "breast_cancer_tanh"
    description = "sklearn breast_cancer (569 x 30, 2 classes), tanh MLP 30-64-64-2"
    dataset, n_val = "load_breast_cancer", 169
    widths = (30, 64, 64, 2)
    activation = nn.Tanh


class DiabetesWideReLU(_SklearnMLP):
    name = "diabetes_wide_relu"
    description = ("sklearn diabetes (442 x 10, standardised target), over-parameterised ReLU "
                   "MLP 10-256-256-1, MSE: overfits fast, so a small lr wins")
    dataset, n_val = "load_diabetes", 142
    widths = (10, 256, 256, 1)
    activation = nn.ReLU
    classification = False


class NoisyBlobsTanh(MLPWorkload):
    name = "noisy_blobs_tanh"
    description = ("generated: 5 Gaussian classes in 20-d, 20% of labels flipped at random, "
                   "tanh MLP 20-64-5")
    widths = (20, 64, 5)
    activation = nn.Tanh

    def load_split(self) -> Split:
        gen = generator(7)
        n, d, k = 2000, 20, 5
        centres = torch.randn(k, d, generator=gen) * 1.2
        y = torch.randint(0, k, (n,), generator=gen)
        x = centres[y] + torch.randn(n, d, generator=gen)
        return split(x, noisy_labels(y, k, 0.2, seed=8), 500)
