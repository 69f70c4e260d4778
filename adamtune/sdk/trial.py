"""The trial a training script is running: its configuration, its optimizer, its reports.

Under a worker (``ADAMTUNE_PHASE`` set) every report goes to the worker, which decides:
continue, stop (the range test is over, the worker hands the trial back) or prune. Alone,
the script trains with the defaults or ``ADAMTUNE_CONFIG`` and nothing is sent anywhere.
With ``torchrun`` only rank 0 talks to the worker; once ``torch.distributed`` is
initialised, rank 0's decision is broadcast, so every rank must call ``report`` and
``should_stop`` at the same steps (they are collectives then).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from adamtune.sdk import protocol
from adamtune.sdk.channel import Channel
from adamtune.sdk.config import TrialSetup, load

if TYPE_CHECKING:
    import torch
    from torch.optim.lr_scheduler import LambdaLR

    from adamtune.sdk.optimizer import Params

log = logging.getLogger("adamtune")


class Pruned(Exception):
    """The worker pruned this trial (or found it diverged): stop training and exit."""

    def __init__(self, step: int, reason: str | None):
        self.step, self.reason = step, reason
        super().__init__(reason or f"trial pruned at step {step}")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _distributed() -> Any:
    """torch.distributed when it is initialised with more than one rank, else None."""
    if "torch" not in sys.modules:  # a script that never imported torch runs no collective
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


class Trial:
    """One run of the script: the sweep, one trial of the search, or a standalone run."""

    def __init__(self, setup: TrialSetup):
        self.setup = setup
        self.rank = _rank()
        self.stop_reason: str | None = None
        self._channel: Channel | None = None
        self._finished = False

    # ------------------------------------------------------------------ what the run is
    @property
    def phase(self) -> protocol.Phase:
        return self.setup.phase

    @property
    def config(self) -> dict[str, Any]:
        """The optimizer's hyperparameters (tuner.optim.OptimConfig's fields)."""
        return dict(self.setup.config)

    @property
    def total_steps(self) -> int | None:
        """Optimizer steps of this run (the sweep's ramp, or the trial's budget)."""
        if self.phase == "sweep" and self.setup.sweep is not None:
            return int(self.setup.sweep.get("steps", 100))
        return self.setup.total_steps

    @property
    def eval_every(self) -> int | None:
        return self.setup.eval_every

    @property
    def seed(self) -> int | None:
        return self.setup.seed

    @property
    def is_reporter(self) -> bool:
        """Whether this process talks to the worker (rank 0 of a torchrun, or the only one)."""
        return self.phase != "standalone" and self.rank == 0

    def build_optimizer(
        self, params: Params, *, decay_1d: bool = False
    ) -> tuple[torch.optim.Optimizer, LambdaLR]:
        """The phase's optimizer and scheduler; ``params``: a model, tensors or groups."""
        from adamtune.sdk.optimizer import build

        return build(
            params,
            phase=self.phase,
            config=self.setup.config,
            total_steps=self.total_steps,
            sweep=self.setup.sweep,
            decay_1d=decay_1d,
        )

    # ------------------------------------------------------------------ talking to the worker
    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Rank 0 only: send ``message`` to the worker and return its answer."""
        if self._channel is None:
            assert self.setup.socket_path is not None
            self._channel = Channel(self.setup.socket_path)
        return self._channel.request(message)

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """The worker's answer on rank 0, broadcast to every rank when distributed."""
        answer = self._request(message) if self.is_reporter else protocol.reply("continue")
        dist = _distributed() if self.phase != "standalone" else None
        if dist is not None:
            box = [answer]
            dist.broadcast_object_list(box, src=0)
            answer = box[0]
        if answer["action"] == "stop" and self.stop_reason is None:
            self.stop_reason = answer.get("reason") or "stopped by the worker"
        return answer

    def report(
        self, step: int, *, loss: float | None = None, val_loss: float | None = None
    ) -> None:
        """Report the training ``loss`` and/or ``val_loss`` after optimizer step ``step``.

        Raises :class:`Pruned` when the worker prunes the trial. The range test reads the
        training loss of every step; the pruner reads validation losses.
        """
        if loss is None and val_loss is None:
            raise ValueError("report() needs loss=... or val_loss=...")
        message: dict[str, Any] = {"op": "report", "step": int(step)}
        if loss is not None:
            message["loss"] = float(loss)
        if val_loss is not None:
            message["val_loss"] = float(val_loss)
        if self.phase == "standalone":
            if val_loss is not None:
                log.info("step %d: validation loss %.6g", step, val_loss)
            return
        answer = self._ask(message)
        if answer["action"] == "prune":
            raise Pruned(int(step), answer.get("reason"))

    def should_stop(self, step: int) -> bool:
        """True when the run is over after step ``step``: the ramp ended or diverged, the
        trial's steps are done, or the worker is handing the trial back."""
        if self.stop_reason is not None:
            return True
        steps = self.total_steps
        if steps is not None and step + 1 >= steps:
            self.stop_reason = f"{steps} steps done"
            return True
        if self.phase == "standalone":
            return False
        return self._ask({"op": "should_stop", "step": int(step)})["action"] != "continue"

    def finish(self, val_loss: float | None = None, *, step: int | None = None) -> None:
        """End the run; ``val_loss`` is the trial's objective (the final validation loss)."""
        if self._finished:
            return
        self._finished = True
        if self.phase == "standalone":
            if val_loss is not None:
                log.info("finished: validation loss %.6g", val_loss)
            return
        message: dict[str, Any] = {"op": "finish"}
        if val_loss is not None:
            message["val_loss"] = float(val_loss)
        if step is not None:
            message["step"] = int(step)
        if self.is_reporter:  # no collective here: only rank 0 has an objective to send
            self._request(message)
            if self._channel is not None:
                self._channel.close()
                self._channel = None


_current: Trial | None = None


def trial(total_steps: int | None = None) -> Trial:
    """This process's trial (the same object on every call).

    ``total_steps`` is the script's own length for a standalone run; under a worker the
    job's budget decides it.
    """
    global _current
    if _current is None:
        _current = Trial(load(total_steps=total_steps))
    return _current
