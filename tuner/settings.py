"""Settings from the environment, all prefixed ``ADAMTUNE_``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tuner import spec

DEFAULT_MAX_SWEEP_ATTEMPTS = 3


def default_program_log_dir() -> Path:
    """Programs' logs when ADAMTUNE_PROGRAM_LOG_DIR is not set: one folder per job under it."""
    return Path(tempfile.gettempdir()) / "adamtune-program-logs"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADAMTUNE_", extra="ignore")

    database_url: str = "sqlite:///./adamtune.db"
    auth: Literal["enabled", "disabled"] = "enabled"

    # Liveness: workers record heartbeats every `heartbeat_interval` seconds; work of a
    # worker silent for `grace_period` seconds is taken over by another.
    heartbeat_interval: int = Field(default=10, ge=1)
    grace_period: int = Field(default=30, ge=2)
    poll_interval: float = Field(default=1.0, gt=0)
    # An LR range test whose worker died (its lease expired) this many times fails the job
    # instead of being claimed again: a workload that kills its process would loop forever.
    max_sweep_attempts: int = Field(default=DEFAULT_MAX_SWEEP_ATTEMPTS, ge=1)

    # Server-side limits on what a job may ask for.
    max_trials: int = Field(default=1000, ge=2, le=spec.MAX_TRIALS)
    max_steps_per_trial: int = Field(default=100_000, ge=10, le=spec.MAX_STEPS_PER_TRIAL)
    max_population: int = Field(default=256, ge=1, le=spec.MAX_POPULATION)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    # Where a worker writes its programs' logs, one folder per job (default: the system's
    # temporary folder). GET /v1/jobs/{id}/trials/{n}/log serves them where the API shares it.
    program_log_dir: str | None = None

    dashboard: bool = True
    log_level: str = "INFO"

    def program_logs(self) -> Path:
        """The folder of programs' logs (a folder per job), ADAMTUNE_PROGRAM_LOG_DIR."""
        return Path(self.program_log_dir) if self.program_log_dir else default_program_log_dir()

    @model_validator(mode="after")
    def _grace_exceeds_heartbeat(self) -> Settings:
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"ADAMTUNE_GRACE_PERIOD ({self.grace_period}) must exceed "
                f"ADAMTUNE_HEARTBEAT_INTERVAL ({self.heartbeat_interval})"
            )
        return self
