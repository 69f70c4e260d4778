"""Workloads on generated data: a deep narrow GELU regression, a GRU and an attention model
on sequence tasks. Every data set comes from a fixed seed, whatever the trial's seed."""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import nn
from torch.nn import functional as F

from tuner.workloads.base import InMemoryWorkload, MLPWorkload

from .data import Split, generator, split


class _Generated(InMemoryWorkload):
    """A fixed generated split: the last ``n_val`` examples validate."""

    n_val = 500

    @abstractmethod
    def examples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All (inputs, targets), generated from a fixed seed."""

    def load_split(self) -> Split:
        return split(*self.examples(), self.n_val)


class DeepNarrowGELU(_Generated, MLPWorkload):
    name = "deep_narrow_gelu"
    description = ("generated regression (16-d inputs, a random tanh teacher plus noise), "
                   "deep narrow GELU MLP: 8 hidden layers of width 24, MSE")
    widths = (16, *[24] * 8, 1)
    activation = nn.GELU
    classification = False

    def examples(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = generator(11)
        x = torch.randn(3000, 16, generator=gen)
        w1 = torch.randn(16, 32, generator=gen) / 4.0
        w2 = torch.randn(32, 1, generator=gen) / math.sqrt(32)
        y = torch.tanh(x @ w1) @ w2
        y = y + 0.1 * y.std() * torch.randn(y.shape, generator=gen)
        return x, (y - y.mean()) / y.std()


class _MajorityGRU(nn.Module):
    def __init__(self, vocab: int, classes: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.gru = nn.GRU(16, 32, batch_first=True)
        self.head = nn.Linear(32, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(self.embed(tokens))
        return self.head(last[-1])


class MajorityGRU(_Generated):
    name = "majority_gru"
    description = ("generated sequences (length 12, 4 tokens), GRU(16->32) classifies the most "
                   "frequent token (ties: the smallest), cross-entropy")
    vmappable = False  # nn.GRU's fused kernel has no vmap rule

    def examples(self) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randint(0, 4, (3500, 12), generator=generator(13))
        counts = F.one_hot(tokens, 4).sum(1)
        return tokens, counts.argmax(1)

    def make_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return _MajorityGRU(4, 4)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)


class _PointerAttention(nn.Module):
    """One self-attention block (single head, pre-LayerNorm) and an MLP, read at position 0."""

    def __init__(self, vocab: int, length: int, width: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.randn(length, width) * 0.1)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, width))
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position
        q, k, v = self.qkv(self.norm1(h)).chunk(3, dim=-1)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        h = h + self.out(weights @ v)
        h = h + self.mlp(self.norm2(h))
        return self.head(h[..., 0, :])


class PointerAttention(_Generated):
    name = "pointer_attention"
    description = ("generated sequences (length 8, 10 tokens): the first token names a "
                   "position, the target is the token there (10% of targets random); one attention "
                   "block, cross-entropy")

    def examples(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = generator(17)
        n, length = 3500, 8
        tokens = torch.randint(0, 10, (n, length), generator=gen)
        tokens[:, 0] = torch.randint(1, length, (n,), generator=gen)
        targets = tokens.gather(1, tokens[:, :1]).squeeze(1)
        noisy = torch.rand(n, generator=gen) < 0.1  # a loss floor: ratios stay meaningful
        return tokens, torch.where(noisy, torch.randint(0, 10, (n,), generator=gen), targets)

    def make_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return _PointerAttention(10, 8)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)
