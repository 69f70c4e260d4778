"""The divergence test of a training run, shared by single trials and population members.

A run has diverged when its training loss is not finite, or when, after warmup, the
bias-corrected EMA of its training loss is far above its running minimum (``factor`` x)
*and* has given back a large part of the progress it had made (``lost_progress`` of the way
from the minimum back to the first loss). The second condition keeps the test honest on
tasks trained to near-zero loss: on ``tiny_transformer`` a run whose smoothed loss fell from
2.3 to 6.5e-4 spiked to 7.4e-3 (11x its minimum, 0.3% of the way back) and ended the trial
at 3.5e-4; a ratio-only rule would have stopped it as diverged.
"""

from __future__ import annotations

import math

DIVERGENCE_FACTOR = 10.0  # smoothed train loss above this multiple of its running minimum ...
LOST_PROGRESS = 0.5  # ... and back above this fraction of the way from the minimum to the start
LOSS_SMOOTHING = 0.9  # EMA factor of the training loss


class DivergenceMonitor:
    """Feed it each step's training loss; it says why the run diverged, or None."""

    def __init__(
        self,
        warmup_steps: int,
        factor: float = DIVERGENCE_FACTOR,
        beta: float = LOSS_SMOOTHING,
        lost_progress: float = LOST_PROGRESS,
    ):
        self.warmup_steps, self.factor, self.beta = warmup_steps, factor, beta
        self.lost_progress = lost_progress
        self._avg, self._count = 0.0, 0
        self.start: float | None = None
        self.best = math.inf

    def update(self, step: int, loss: float) -> str | None:
        """Feed the training loss of ``step``; return a reason if the run has diverged."""
        if not math.isfinite(loss):
            return f"non-finite training loss ({loss}) at step {step}"
        self._count += 1
        self._avg = self.beta * self._avg + (1.0 - self.beta) * loss
        smoothed = self._avg / (1.0 - self.beta**self._count)
        if self.start is None:
            self.start = smoothed
        self.best = min(self.best, smoothed)
        if step < self.warmup_steps or self.best <= 0 or smoothed <= self.factor * self.best:
            return None
        progress = max(0.0, self.start - self.best)  # 0 if the loss never went down
        if smoothed - self.best <= self.lost_progress * progress:
            return None  # a spike on a run that is still far below where it started
        return (
            f"smoothed training loss {smoothed:.4g} exceeded {self.factor:g}x its minimum "
            f"{self.best:.4g} at step {step} (first loss {self.start:.4g})"
        )
