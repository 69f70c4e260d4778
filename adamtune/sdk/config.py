"""Where a trial's configuration comes from: the worker's environment, or, standalone, the
defaults (Adam, lr 1e-3, as every job's baseline) or a recommendation file.

No torch here: ``adamtune.trial()`` reads its configuration without importing it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adamtune.sdk import protocol

# tuner.optim.OptimConfig's fields and defaults (the untuned baseline); tuner.optim imports
# torch, so the SDK keeps the names here and builds the OptimConfig in build_optimizer.
BASELINE: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "amsgrad": False,
    "warmup_steps": 0,
    "schedule": "constant",
    "floor": 0.0,
}


class ConfigError(ValueError):
    """The trial's configuration (environment or ADAMTUNE_CONFIG file) cannot be used."""


@dataclass(frozen=True)
class TrialSetup:
    """Everything ``adamtune.trial()`` learns before training starts."""

    phase: protocol.Phase
    config: dict[str, Any]
    total_steps: int | None
    eval_every: int | None = None
    seed: int | None = None
    number: int | None = None
    sweep: dict[str, Any] | None = None
    socket_path: str | None = None
    source: str = "defaults"


def from_recommendation(rec: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A recommendation (``adamtune recommendation --json``) or a config dict as config fields."""
    config = dict(BASELINE)
    for key, value in rec.items():
        if key == "betas":
            try:
                config["beta1"], config["beta2"] = (float(b) for b in value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{source}: 'betas' must be two numbers, got {value!r}") from exc
        elif key == "lr_floor":
            config["floor"] = float(value)
        elif key in BASELINE:
            config[key] = value  # a recommendation's other keys (objective, snippet) are notes
    if not isinstance(config["lr"], int | float) or config["lr"] <= 0:
        raise ConfigError(f"{source}: 'lr' must be a positive number, got {config['lr']!r}")
    if not isinstance(config["optimizer"], str):  # which names exist: tuner.optim decides
        raise ConfigError(f"{source}: 'optimizer' must be a name such as 'adam' or 'adamw'")
    return config


def _load_file(path: str) -> tuple[dict[str, Any], int | None]:
    source = f"{protocol.CONFIG_FILE}={path}"
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it ({exc.strerror}); fix the path") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}: not JSON ({exc}); write it with `adamtune recommendation JOB --json`"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object (a recommendation)")
    steps = data.get("total_steps")
    return from_recommendation(data, source), (int(steps) if steps is not None else None)


def _json_env(env: Mapping[str, str], name: str) -> dict[str, Any]:
    try:
        value = json.loads(env[name])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{name} is missing or not JSON: the worker sets it") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object")
    return value


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    return int(env[name]) if env.get(name) else None


def load(env: Mapping[str, str] | None = None, total_steps: int | None = None) -> TrialSetup:
    """The setup for this process; ``total_steps`` is the script's own, used standalone only."""
    env = os.environ if env is None else env
    phase = env.get(protocol.PHASE, "standalone")
    if phase == "standalone":
        path = env.get(protocol.CONFIG_FILE)
        if not path:
            return TrialSetup("standalone", dict(BASELINE), total_steps)
        config, steps = _load_file(path)
        return TrialSetup("standalone", config, steps or total_steps, source=path)
    if phase not in ("sweep", "trial"):
        raise ConfigError(f"{protocol.PHASE}={phase!r}: expected 'sweep' or 'trial'")
    socket_path = env.get(protocol.SOCKET)
    if not socket_path:
        raise ConfigError(f"{protocol.PHASE} is set but {protocol.SOCKET} is not")
    sweep = _json_env(env, protocol.SWEEP_SPEC) if phase == "sweep" else None
    config = (
        dict(BASELINE)
        if phase == "sweep"
        else from_recommendation(_json_env(env, protocol.TRIAL_CONFIG), protocol.TRIAL_CONFIG)
    )
    return TrialSetup(
        phase,  # type: ignore[arg-type]
        config,
        _int_env(env, protocol.TOTAL_STEPS),
        eval_every=_int_env(env, protocol.EVAL_EVERY),
        seed=_int_env(env, protocol.SEED),
        number=_int_env(env, protocol.TRIAL_NUMBER),
        sweep=sweep,
        socket_path=socket_path,
        source="worker",
    )
