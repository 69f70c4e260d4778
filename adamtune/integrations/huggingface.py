"""Tune a ``transformers.Trainer``: the trial's optimizer and schedule, its reports and stops.

    trial = adamtune.trial(total_steps=1000)
    args = TrainingArguments(..., max_steps=trial.total_steps, eval_strategy="steps")
    trainer = Trainer(model, args, ..., optimizers=trainer_optimizers(model, trial),
                      callbacks=[AdamTuneCallback(trial)])
    trainer.train()
    trial.finish(val_loss=trainer.evaluate()["eval_loss"])

The Trainer steps the scheduler once per optimizer step, as the trial's LambdaLR expects.
In the sweep the callback asks the Trainer to log every step: the range test needs the loss
of each one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from adamtune.sdk.trial import Pruned, Trial
from adamtune.sdk.trial import trial as current_trial

if TYPE_CHECKING:
    import torch
    from torch.optim.lr_scheduler import LambdaLR


def trainer_optimizers(
    model: torch.nn.Module, trial: Trial | None = None
) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """``Trainer(optimizers=...)``: the trial's optimizer and scheduler for ``model``."""
    return (trial or current_trial()).build_optimizer(model)


class AdamTuneCallback(TrainerCallback):
    """Reports the Trainer's ``loss`` and ``eval_loss``; stops training when the trial ends.

    A pruned trial stops the Trainer (``control.should_training_stop``) instead of raising
    through it; ``pruned`` then holds the :class:`adamtune.Pruned`.
    """

    def __init__(self, trial: Trial | None = None, metric: str = "eval_loss"):
        self.trial = trial or current_trial()
        self.metric = metric
        self.pruned: Pruned | None = None

    def _stop_if_done(self, step: int, control: TrainerControl) -> None:
        if self.pruned is not None or self.trial.should_stop(step):
            control.should_training_stop = True

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.trial.phase == "sweep":
            control.should_log = True  # the range test reads every step's loss
        else:
            self._stop_if_done(state.global_step - 1, control)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        if not logs or "loss" not in logs or self.pruned is not None:
            return
        step = state.global_step - 1
        try:
            self.trial.report(step, loss=float(logs["loss"]))
        except Pruned as exc:
            self.pruned = exc
        self._stop_if_done(step, control)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        if not metrics or self.metric not in metrics or self.pruned is not None:
            return
        try:
            self.trial.report(state.global_step - 1, val_loss=float(metrics[self.metric]))
        except Pruned as exc:
            self.pruned = exc
            control.should_training_stop = True
