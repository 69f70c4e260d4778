"""The Workload protocol: what one trial trains."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from itertools import pairwise
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F

Batch = tuple[torch.Tensor, torch.Tensor]
Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # train x, y; val x, y


@runtime_checkable
class Workload(Protocol):
    """A model, its data and its loss.

    ``make_model(seed)`` returns a fresh model whose initial weights depend only on the seed;
    ``train_batches(seed)`` is an endless iterator of CPU ``(inputs, targets)`` batches;
    ``val_batches()`` is a fixed, finite list of CPU batches; ``loss`` is a scalar loss.
    ``vmappable`` says whether the model can be trained as a population under
    ``torch.func.vmap``: True for plain layers, attention and LayerNorm (and BatchNorm, whose
    running statistics vmap handles in torch 2.13); False for dropout or other random ops in
    ``forward``, ``.item()`` calls and branches on tensor values. ``tuner.population.can_vmap``
    probes the model too, and a workload that fails the probe trains its trials one at a time.
    """

    name: str
    description: str
    vmappable: bool

    def make_model(self, seed: int) -> nn.Module: ...

    def train_batches(self, seed: int) -> Iterator[Batch]: ...

    def val_batches(self) -> Iterable[Batch]: ...

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...


def endless_shuffled(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int
) -> Iterator[Batch]:
    """Endless minibatches of (x, y), reshuffled every epoch by a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]


def fixed_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> list[Batch]:
    return [
        (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)
    ]


class InMemoryWorkload(ABC):
    """A workload whose data is one fixed split held in memory: shuffled minibatches of
    ``batch_size`` to train on, the whole validation set as one batch.

    A subclass says what the split is (``load_split``, called once), the model and the loss.
    """

    name = ""
    description = ""
    vmappable = True
    batch_size = 64

    @abstractmethod
    def load_split(self) -> Split:
        """The fixed (train x, train y, validation x, validation y), whatever the seed."""

    @abstractmethod
    def make_model(self, seed: int) -> nn.Module: ...

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    @cached_property
    def _split(self) -> Split:
        return self.load_split()

    def train_batches(self, seed: int) -> Iterator[Batch]:
        x, y, _, _ = self._split
        return endless_shuffled(x, y, self.batch_size, seed)

    def val_batches(self) -> list[Batch]:
        _, _, xv, yv = self._split
        return fixed_batches(xv, yv, len(yv))


def mlp(widths: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers from ``widths[0]`` inputs to ``widths[-1]`` outputs, an ``activation``
    between each two."""
    layers: list[nn.Module] = []
    for n_in, n_out in pairwise(widths):
        if layers:
            layers.append(activation())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class MLPWorkload(InMemoryWorkload):
    """An in-memory workload trained by a plain MLP (:func:`mlp` of ``widths`` and
    ``activation``): cross-entropy on class labels, or MSE where ``classification`` is False."""

    widths: tuple[int, ...] = ()
    activation: type[nn.Module] = nn.ReLU
    classification = True

    def make_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return mlp(self.widths, self.activation)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.classification:
            return F.cross_entropy(outputs, targets)
        return F.mse_loss(outputs, targets)
