"""fp16 loss scaling for a population: ``torch.amp.GradScaler``'s dynamic scale, one per member.

A member whose gradients overflow must skip its step and halve *its* scale, as its own trial
with a ``GradScaler`` would, without holding back the members whose gradients are finite. So
every member has its own scale, growth tracker and skip count (``[K]`` tensors), and the
vectorised optimizer skips the rows that :meth:`MemberGradScaler.unscale_` flags.
The constants and the update rule are ``torch.amp.GradScaler``'s defaults.
"""

from __future__ import annotations

import torch

INIT_SCALE = 2.0**16
GROWTH_FACTOR = 2.0
BACKOFF_FACTOR = 0.5
GROWTH_INTERVAL = 2000


class MemberGradScaler:
    """Per-member dynamic loss scales; ``enabled=False`` (fp32, bf16) passes everything through."""

    def __init__(self, size: int, device: torch.device, enabled: bool):
        self.enabled = enabled
        self.scale = torch.full((size,), INIT_SCALE, dtype=torch.float32, device=device)
        self.growth_tracker = torch.zeros(size, dtype=torch.int64, device=device)
        self.skipped = torch.zeros(size, dtype=torch.int64)  # steps skipped, on the CPU
        self.skipped_in_a_row = torch.zeros(size, dtype=torch.int64)

    def loss_scale(self) -> torch.Tensor | None:
        """The ``[K]`` factors to multiply the members' losses by before backward, or None."""
        return self.scale if self.enabled else None

    def unscale_(self, grad: torch.Tensor) -> torch.Tensor | None:
        """Divide each gradient row ``[K, P]`` by its member's scale, in place (so clipping and
        the optimizer state see true gradients); return which rows are not finite (CPU bool
        ``[K]``: those members skip this step), or None when disabled."""
        if not self.enabled:
            return None
        inv_scale = self.scale.double().reciprocal().float()  # as GradScaler.unscale_ does
        grad.mul_(inv_scale.unsqueeze(1))
        return (~torch.isfinite(grad).all(dim=1)).cpu()

    def update(self, found_inf: torch.Tensor | None) -> None:
        """``GradScaler.update()`` per member: back off where a step was skipped, grow after
        ``GROWTH_INTERVAL`` finite steps in a row."""
        if found_inf is None:
            return
        self.skipped += found_inf
        self.skipped_in_a_row = torch.where(found_inf, self.skipped_in_a_row + 1, 0)
        inf = found_inf.to(self.scale.device)
        tracker = torch.where(inf, 0, self.growth_tracker + 1)
        grow = tracker == GROWTH_INTERVAL
        grown = self.scale * GROWTH_FACTOR
        self.scale = torch.where(
            inf,
            self.scale * BACKOFF_FACTOR,
            torch.where(grow & torch.isfinite(grown), grown, self.scale),
        )
        self.growth_tracker = torch.where(grow, 0, tracker)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep the members at ``rows`` only, as the stack and the optimizer do."""
        cpu_rows = rows.cpu()
        self.scale = self.scale.index_select(0, rows)
        self.growth_tracker = self.growth_tracker.index_select(0, rows)
        self.skipped = self.skipped.index_select(0, cpu_rows)
        self.skipped_in_a_row = self.skipped_in_a_row.index_select(0, cpu_rows)
