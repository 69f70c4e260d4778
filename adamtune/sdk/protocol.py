"""What a worker and a program it launches agree on: environment variables and messages.

The worker names the trial in the child's environment and listens on a Unix domain socket
(``ADAMTUNE_SOCKET``). The SDK sends one JSON object per line and reads one reply per line:

- ``{"op": "report", "step": s, "loss": x}``: a training loss (the range test's curve, the
  trial's divergence test);
- ``{"op": "report", "step": s, "val_loss": v}``: a validation loss (the pruner's input);
- ``{"op": "should_stop", "step": s}``;
- ``{"op": "finish", "step": s, "val_loss": v}``: the trial's objective.

Every reply is ``{"action": "continue" | "stop" | "prune", "reason": str | None}``. A Unix
socket rather than the child's stdout (captured as the trial's log) or an inherited pipe
(``torchrun`` closes the descriptors it does not know): its path travels in the environment
through any launcher. ``step`` is the 0-based index of the optimizer step just taken.
"""

from __future__ import annotations

import json
from typing import Any, Literal

PHASE = "ADAMTUNE_PHASE"  # "sweep" or "trial"; absent: the script runs standalone
SOCKET = "ADAMTUNE_SOCKET"  # the worker's Unix socket
TRIAL_CONFIG = "ADAMTUNE_TRIAL_CONFIG"  # JSON: tuner.optim.OptimConfig's fields
SWEEP_SPEC = "ADAMTUNE_SWEEP"  # JSON: tuner.spec.SweepSpec's fields (the sweep phase)
TOTAL_STEPS = "ADAMTUNE_TOTAL_STEPS"  # optimizer steps of this run
EVAL_EVERY = "ADAMTUNE_EVAL_EVERY"  # validate every this many steps (a hint to the script)
TRIAL_NUMBER = "ADAMTUNE_TRIAL_NUMBER"
SEED = "ADAMTUNE_SEED"
CONFIG_FILE = "ADAMTUNE_CONFIG"  # standalone: a recommendation JSON to train with

Phase = Literal["sweep", "trial", "standalone"]
Action = Literal["continue", "stop", "prune"]
ACTIONS: tuple[Action, ...] = ("continue", "stop", "prune")
MAX_LINE = 64 * 1024  # a message longer than this is a broken client


def encode(message: dict[str, Any]) -> bytes:
    """One message as a JSON line (NaN and inf are sent as JSON's non-standard literals)."""
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    """One JSON line as a dict; ValueError if it is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object, got {type(message).__name__}")
    return message


def reply(action: Action, reason: str | None = None) -> dict[str, Any]:
    return {"action": action, "reason": reason}
