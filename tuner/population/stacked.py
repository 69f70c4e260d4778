"""K copies of one model, stored as flat ``[K, P]`` parameter rows and run together by vmap.

Every member's trainable parameters live in one row of a single ``[K, P]`` tensor, matrices
(the weight-decayed parameters, ``dim >= 2``) first and 1-D parameters after them, so the
vectorised optimizer updates all members with a handful of kernels and applies weight decay
to one column slice. The parameters that ``functional_call`` sees are views into that tensor.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from tuner.workloads.base import Batch, Workload

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ParamSlot:
    """Where one named parameter lives in a member's row."""

    name: str
    shape: torch.Size
    offset: int
    numel: int


def _trainable_layout(model: nn.Module) -> tuple[list[ParamSlot], int]:
    """Slots for every trainable parameter, decayed (``dim >= 2``) first; the decayed width.

    This is the rule of ``tuner.optim.param_groups``: 1-D parameters (biases, norm weights)
    get no weight decay.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    ordered = [np for np in named if np[1].dim() >= 2] + [np for np in named if np[1].dim() < 2]
    slots, offset, n_decay = [], 0, 0
    for name, p in ordered:
        slots.append(ParamSlot(name, p.shape, offset, p.numel()))
        offset += p.numel()
        if p.dim() >= 2:
            n_decay = offset
    return slots, n_decay


class StackedModel:
    """A population of K models with identical architecture, trained as one.

    ``flat`` is the ``[K, P]`` parameter matrix; ``n_decay`` the number of leading columns
    that belong to weight-decayed parameters; ``buffers`` (and frozen parameters) are
    stacked along a new leading dimension. All members run on the same minibatch.
    """

    def __init__(self, model: nn.Module, size: int, loss: LossFn):
        if size < 1:
            raise ValueError(f"a population needs at least one member (got size={size})")
        self.slots, self.n_decay = _trainable_layout(model)
        trainable = {s.name for s in self.slots}
        params, buffers = stack_module_state([model] * size)
        self.flat = torch.cat(
            [params[s.name].detach().reshape(size, -1) for s in self.slots], dim=1
        )
        # frozen parameters travel with the buffers: they are passed through, never updated
        self.buffers = {
            n: t.detach() for n, t in {**params, **buffers}.items() if n not in trainable
        }
        self._base = copy.deepcopy(model).to("meta")
        self._loss = loss
        self._loss_fn = vmap(self._member_loss, in_dims=(0, 0, None, None))
        self.params = self._views()

    @property
    def size(self) -> int:
        return self.flat.shape[0]

    @property
    def device(self) -> torch.device:
        return self.flat.device

    def _views(self) -> dict[str, torch.Tensor]:
        k = self.size
        return {
            s.name: self.flat[:, s.offset : s.offset + s.numel].view(k, *s.shape)
            for s in self.slots
        }

    def _member_loss(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> torch.Tensor:
        return self._loss(functional_call(self._base, (params, buffers), (x,)), y)

    def loss_and_grad(
        self, x: torch.Tensor, y: torch.Tensor, loss_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training losses ``[K]`` and gradients ``[K, P]`` (laid out as ``flat``) on one batch;
        with ``loss_scale`` ``[K]`` (fp16), each member's gradient is scaled by its factor.

        vmap batches the forward only; ordinary autograd runs the backward, through one
        ``split`` of a leaf that shares ``flat``'s storage, so the gradient arrives already
        flat (one concatenation) and the functorch grad transform's overhead is avoided.
        """
        self._base.train()
        leaf = self.flat.detach().requires_grad_(True)
        parts = torch.split(leaf, [s.numel for s in self.slots], dim=1)
        params = {
            s.name: part.view(self.size, *s.shape)
            for s, part in zip(self.slots, parts, strict=True)
        }
        losses = self._loss_fn(params, self.buffers, x, y)
        scaled = losses if loss_scale is None else losses * loss_scale
        scaled.sum().backward()  # members are independent: d(sum)/d(member k) = d(loss k)
        assert leaf.grad is not None
        return losses.detach(), leaf.grad

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch]) -> torch.Tensor:
        """Mean validation loss per member, ``[K]`` float64, weighting batches by their size."""
        self._base.eval()
        total = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        count = 0
        for x, y in batches:
            total += self._loss_fn(self.params, self.buffers, x, y).to(torch.float64) * len(x)
            count += len(x)
        self._base.train()
        return total / max(count, 1)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the members at ``rows`` (a 1-D index tensor), in that order."""
        self.flat = self.flat.index_select(0, rows)
        self.buffers = {n: b.index_select(0, rows) for n, b in self.buffers.items()}
        self.params = self._views()

    def member_state_dict(self, row: int) -> dict[str, torch.Tensor]:
        """One member's parameters and buffers, as ``model.load_state_dict`` takes them."""
        out = {n: p[row].detach().clone() for n, p in self.params.items()}
        out.update({n: b[row].clone() for n, b in self.buffers.items()})
        return out


def can_vmap(workload: Workload, seed: int = 0) -> tuple[bool, str]:
    """Whether ``workload`` can be trained as a population, and why not when it cannot.

    Runs a tiny stacked forward and backward (two members, four samples) under vmap, so
    BatchNorm in training mode, dropout and in-place buffer updates show up here rather
    than in the middle of a job.
    """
    if not getattr(workload, "vmappable", False):
        return False, f"workload {workload.name!r} declares vmappable=False"
    try:
        model = workload.make_model(seed)
        x, y = next(iter(workload.train_batches(seed)))
        stacked = StackedModel(model, 2, workload.loss)
        losses, grads = stacked.loss_and_grad(x[:4], y[:4])
        stacked.evaluate([(x[:4], y[:4])])
    except Exception as exc:  # any failure means: train one at a time; the reason is logged
        return False, f"{type(exc).__name__}: {exc}".strip()
    if losses.shape != (2,) or grads.shape != stacked.flat.shape:
        return (
            False,
            f"the loss must be a scalar per member (got losses of shape {tuple(losses.shape)})",
        )
    return True, "ok"
