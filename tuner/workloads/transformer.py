"""A tiny causal transformer language model on a generated copy task.

Each sequence is 8 random tokens followed by the same 8 tokens again; the loss counts only
the second half, which a model can predict only by attending back (an induction head).
Transformers are where AdamW, beta2 < 0.999 and warmup matter most.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property

import torch
from torch import nn
from torch.nn import functional as F

from tuner.workloads.base import Batch

VOCAB = 16
HALF = 8
SEQ = 2 * HALF


def copy_task(n: int, gen: torch.Generator) -> Batch:
    first = torch.randint(0, VOCAB, (n, HALF), generator=gen)
    seq = torch.cat([first, first], dim=1)
    inputs = seq[:, :-1]
    targets = seq[:, 1:].clone()
    targets[:, : HALF - 1] = -100  # the random half cannot be predicted: not scored
    return inputs, targets


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        mask = torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // h)
        mask: torch.Tensor = self.mask  # type: ignore[assignment]
        att = att.masked_fill(~mask[:t, :t], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab: int = VOCAB, dim: int = 32, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(SEQ, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, SEQ) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


class TinyTransformerLM:
    name = "tiny_transformer"
    description = "2-layer causal transformer LM (dim 32) on a generated copy task, cross-entropy"
    vmappable = True
    batch_size = 32

    @cached_property
    def _val(self) -> list[Batch]:
        return [copy_task(512, torch.Generator().manual_seed(999_999))]

    def make_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return TinyLM()

    def train_batches(self, seed: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(seed)
        while True:
            yield copy_task(self.batch_size, gen)

    def val_batches(self) -> list[Batch]:
        return self._val

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), ignore_index=-100
        )
