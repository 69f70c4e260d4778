"""Adam and AdamW for K population members at once, with per-member hyperparameters.

``torch.optim``'s fused and foreach kernels take one scalar lr per parameter group, so
they cannot give every member its own lr, betas, eps and weight decay. Here every
hyperparameter is a ``[K, 1]`` column broadcast over the member's ``[K, P]`` parameter row,
and the update follows ``torch.optim.Adam``/``AdamW``'s single-tensor code operation by
operation (bias correction, eps added after the square root, L2 decay for Adam and
decoupled ``lr * wd`` decay for AdamW, optional amsgrad), so each member agrees with a
``torch.optim`` run of its own. Scalars are computed in float64 and rounded once, as
torch's Python-float hyperparameters are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from tuner.optim import OptimConfig
from tuner.schedules import SCHEDULE_CODES, lr_multiplier_tensor

OPTIMIZERS = ("adam", "adamw")


@dataclass(frozen=True)
class MemberHyperparameters:
    """Every member's hyperparameters as CPU tensors of shape ``[K]``."""

    lr: torch.Tensor
    beta1: torch.Tensor
    beta2: torch.Tensor
    eps: torch.Tensor
    weight_decay: torch.Tensor
    decoupled: torch.Tensor  # bool: AdamW
    amsgrad: torch.Tensor  # bool
    warmup_steps: torch.Tensor
    schedule_codes: torch.Tensor
    floor: torch.Tensor

    @classmethod
    def from_configs(cls, configs: Sequence[OptimConfig]) -> MemberHyperparameters:
        for i, c in enumerate(configs):
            if c.optimizer not in OPTIMIZERS:
                raise ValueError(
                    f"member {i}: unknown optimizer {c.optimizer!r}; use 'adam' or 'adamw'"
                )
            if c.schedule not in SCHEDULE_CODES:
                raise ValueError(
                    f"member {i}: unknown schedule {c.schedule!r}; "
                    f"use one of {', '.join(SCHEDULE_CODES)}"
                )

        def column(attr: str) -> torch.Tensor:
            return torch.tensor([float(getattr(c, attr)) for c in configs], dtype=torch.float64)

        return cls(
            lr=column("lr"),
            beta1=column("beta1"),
            beta2=column("beta2"),
            eps=column("eps"),
            weight_decay=column("weight_decay"),
            decoupled=torch.tensor([c.optimizer == "adamw" for c in configs]),
            amsgrad=torch.tensor([bool(c.amsgrad) for c in configs]),
            warmup_steps=column("warmup_steps"),
            schedule_codes=torch.tensor([SCHEDULE_CODES[c.schedule] for c in configs]),
            floor=column("floor"),
        )

    def select(self, rows: torch.Tensor) -> MemberHyperparameters:
        """The hyperparameters of the members at ``rows`` only."""
        cpu_rows = rows.cpu()
        return MemberHyperparameters(
            **{f.name: getattr(self, f.name)[cpu_rows] for f in fields(self)}
        )

    def lr_at(self, step: int, total_steps: int) -> torch.Tensor:
        """Each member's lr for ``step`` (0-based): peak lr times its schedule's multiplier."""
        mult = lr_multiplier_tensor(
            step,
            total_steps=total_steps,
            warmup_steps=self.warmup_steps,
            schedule_codes=self.schedule_codes,
            floor=self.floor,
        )
        return self.lr * mult


class VectorisedAdam:
    """Adam (L2 decay) and AdamW (decoupled decay), one ``decoupled`` flag per member.

    ``params`` is the ``[K, P]`` parameter matrix, updated in place; its first ``n_decay``
    columns are weight-decayed (matrices), the rest are not (biases, norm weights).
    Every member counts its own steps (``steps``, for bias correction): under fp16 a member
    whose gradients overflowed skips its step, as ``GradScaler`` makes its own trial do.
    """

    def __init__(self, params: torch.Tensor, n_decay: int, hyper: MemberHyperparameters):
        if params.dim() != 2 or params.shape[0] != len(hyper.lr):
            raise ValueError(
                f"params must be [K, P] with K = {len(hyper.lr)} members "
                f"(got {tuple(params.shape)})"
            )
        self.params = params
        self.n_decay = n_decay
        self.hyper = hyper
        self.steps = torch.zeros(len(hyper.lr), dtype=torch.float64)  # per member, on the CPU
        self.exp_avg = torch.zeros_like(params)
        self.exp_avg_sq = torch.zeros_like(params)
        self.max_exp_avg_sq = torch.zeros_like(params) if bool(hyper.amsgrad.any()) else None
        self._set_constants()

    def column(self, values: torch.Tensor) -> torch.Tensor:
        """A float64 CPU vector ``[K]`` as a ``[K, 1]`` column of the parameters' dtype, device."""
        return values.to(self.params.dtype).unsqueeze(1).to(self.params.device)

    def _set_constants(self) -> None:
        h = self.hyper
        coupled_wd = torch.where(h.decoupled, torch.zeros_like(h.weight_decay), h.weight_decay)
        self._l2 = self.column(coupled_wd)
        self._any_l2 = bool((coupled_wd != 0).any()) and self.n_decay > 0
        self._any_decoupled = bool((h.decoupled & (h.weight_decay != 0)).any()) and self.n_decay > 0
        self._one_minus_beta1 = self.column(1.0 - h.beta1)
        self._beta2 = self.column(h.beta2)
        self._one_minus_beta2 = self.column(1.0 - h.beta2)
        self._eps = self.column(h.eps)
        self._amsgrad_rows = h.amsgrad.unsqueeze(1).to(self.params.device)
        self._all_amsgrad = bool(h.amsgrad.all())
        self._scratch = torch.empty_like(self.params)
        self._denom = torch.empty_like(self.params)

    @property
    def step_count(self) -> int:
        """Steps taken by the member that took the most (all of them, without fp16 skips)."""
        return int(self.steps.max()) if len(self.steps) else 0

    def _step_coefficients(self, lr: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-member decoupled decay factor, sqrt of bias correction 2 and -step size."""
        h = self.hyper
        decay = torch.where(h.decoupled, 1.0 - lr * h.weight_decay, torch.ones_like(lr))
        bc2_sqrt = (1.0 - h.beta2**step) ** 0.5
        neg_step_size = -(lr / (1.0 - h.beta1**step))
        packed = torch.stack([decay, bc2_sqrt, neg_step_size]).to(self.params.dtype)
        packed = packed.unsqueeze(2).to(self.params.device, non_blocking=True)
        return packed[0], packed[1], packed[2]

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: torch.Tensor, skip: torch.Tensor | None = None) -> None:
        """One update: ``grad`` ``[K, P]`` (changed in place), ``lr`` float64 ``[K]`` on CPU;
        members where the CPU bool ``[K]`` ``skip`` is True keep their state unchanged."""
        if skip is not None and bool(skip.any()):
            self._step_skipping(grad, lr, skip)
            return
        self.steps += 1
        self._update(grad, lr, self.steps)

    def _step_skipping(self, grad: torch.Tensor, lr: torch.Tensor, skip: torch.Tensor) -> None:
        """The rare fp16 overflow step: update every row, then put the skipped rows back."""
        rows = skip.nonzero().squeeze(1).to(self.params.device)
        state = [
            t
            for t in (self.params, self.exp_avg, self.exp_avg_sq, self.max_exp_avg_sq)
            if t is not None
        ]
        saved = [t.index_select(0, rows) for t in state]
        grad.index_fill_(0, rows, 0.0)  # the skipped rows' inf/nan must not reach the kernels
        self.steps += (~skip).to(self.steps.dtype)
        self._update(grad, lr, self.steps.clamp(min=1.0))
        for tensor, rows_before in zip(state, saved, strict=True):
            tensor.index_copy_(0, rows, rows_before)

    def _update(self, grad: torch.Tensor, lr: torch.Tensor, steps: torch.Tensor) -> None:
        decay, bc2_sqrt, neg_step_size = self._step_coefficients(lr, steps)
        p, d = self.params, self.n_decay
        if self._any_l2:
            grad[:, :d].add_(torch.mul(p[:, :d], self._l2, out=self._scratch[:, :d]))
        if self._any_decoupled:
            p[:, :d].mul_(decay)
        self.exp_avg.lerp_(grad, self._one_minus_beta1)
        # torch: v.mul_(beta2).addcmul_(g, g, value=1 - beta2), i.e. v + ((1 - beta2) * g) * g
        torch.mul(grad, self._one_minus_beta2, out=self._scratch)
        self.exp_avg_sq.mul_(self._beta2).addcmul_(self._scratch, grad)
        second = self._second_moment()
        # torch: (v.sqrt() / bc2_sqrt).add_(eps); addcdiv rounds the same way in one pass
        torch.sqrt(second, out=self._denom)
        torch.addcdiv(self._eps, self._denom, bc2_sqrt, out=self._denom)
        # torch: p.addcdiv_(m, denom, value=-step_size), i.e. p + (-step_size * m) / denom
        torch.mul(self.exp_avg, neg_step_size, out=self._scratch)
        p.addcdiv_(self._scratch, self._denom)

    def _second_moment(self) -> torch.Tensor:
        """The second moment each member normalises by: its running max where amsgrad is on."""
        if self.max_exp_avg_sq is None:
            return self.exp_avg_sq
        torch.maximum(self.max_exp_avg_sq, self.exp_avg_sq, out=self.max_exp_avg_sq)
        if self._all_amsgrad:
            return self.max_exp_avg_sq
        return torch.where(self._amsgrad_rows, self.max_exp_avg_sq, self.exp_avg_sq)

    def keep(self, rows: torch.Tensor, params: torch.Tensor) -> None:
        """Keep the state of the members at ``rows``; ``params`` is the compacted parameters."""
        self.params = params
        self.exp_avg = self.exp_avg.index_select(0, rows)
        self.exp_avg_sq = self.exp_avg_sq.index_select(0, rows)
        self.steps = self.steps.index_select(0, rows.cpu())
        self.hyper = self.hyper.select(rows)
        if self.max_exp_avg_sq is not None and bool(self.hyper.amsgrad.any()):
            self.max_exp_avg_sq = self.max_exp_avg_sq.index_select(0, rows)
        else:  # no amsgrad member left: stop paying for the running max
            self.max_exp_avg_sq = None
        self._set_constants()


class VectorisedAdamW(VectorisedAdam):
    """AdamW for every member (decoupled weight decay), whatever the configs' optimizer says."""

    def __init__(self, params: torch.Tensor, n_decay: int, hyper: MemberHyperparameters):
        hyper = MemberHyperparameters(
            **{f.name: getattr(hyper, f.name) for f in fields(hyper) if f.name != "decoupled"},
            decoupled=torch.ones_like(hyper.decoupled),
        )
        super().__init__(params, n_decay, hyper)
