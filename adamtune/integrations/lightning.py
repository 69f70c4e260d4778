"""Tune a Lightning module: the trial's optimizer and schedule, its reports and stops.

    class Model(lightning.LightningModule):
        def configure_optimizers(self):
            return lightning_optimizers(self)

    trial = adamtune.trial(total_steps=1000)
    trainer = lightning.Trainer(max_steps=trial.total_steps, callbacks=[AdamTuneCallback()])
    trainer.fit(model, train_loader, val_loader)
    trial.finish(val_loss=float(trainer.callback_metrics["val_loss"]))

``training_step`` returns the loss (or a dict with ``"loss"``); ``validation_step`` logs
``val_loss`` (``self.log("val_loss", ...)``). With gradient accumulation a step is an
optimizer step: the callback reports once per ``trainer.global_step``.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from adamtune.sdk.trial import Pruned, Trial
from adamtune.sdk.trial import trial as current_trial


def lightning_optimizers(module: torch.nn.Module, trial: Trial | None = None) -> dict[str, Any]:
    """What ``configure_optimizers`` returns: the trial's optimizer, its LambdaLR per step."""
    optimizer, scheduler = (trial or current_trial()).build_optimizer(module)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class AdamTuneCallback(L.Callback):
    """Reports the training loss and ``val_loss``; stops the Trainer when the trial ends.

    A pruned trial stops the Trainer (``trainer.should_stop``) instead of raising through
    it; ``pruned`` then holds the :class:`adamtune.Pruned`.
    """

    def __init__(self, trial: Trial | None = None, metric: str = "val_loss"):
        self.trial = trial or current_trial()
        self.metric = metric
        self.pruned: Pruned | None = None
        self._last_step = 0  # global_step before the first optimizer step

    def _report(self, trainer: L.Trainer, **values: float) -> None:
        try:
            self.trial.report(trainer.global_step - 1, **values)
        except Pruned as exc:
            self.pruned = exc
        if self.pruned is not None or self.trial.should_stop(trainer.global_step - 1):
            trainer.should_stop = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_step == self._last_step or self.pruned is not None:
            return  # a micro-batch of gradient accumulation: no optimizer step yet
        self._last_step = trainer.global_step
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._report(trainer, loss=float(loss))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None or self.pruned is not None:
            return
        if trainer.global_step > 0:
            self._report(trainer, val_loss=float(value))
