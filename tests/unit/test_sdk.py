"""The SDK in the user's process: standalone runs, the phases' optimizers, parameter groups,
and the conversation with a worker (an in-process channel server and session)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import adamtune
from adamtune.sdk import protocol
from adamtune.sdk.config import BASELINE, ConfigError, TrialSetup, load
from adamtune.sdk.trial import Trial
from tuner.lr_range import ramp
from tuner.optim import OptimConfig
from tuner.snippet import render_snippet
from tuner.spec import SweepSpec
from workers.program_channel import ChannelServer
from workers.program_sessions import SweepSession, TrialSession

REC = {
    "optimizer": "adamw",
    "lr": 3e-3,
    "betas": [0.85, 0.98],
    "eps": 1e-9,
    "weight_decay": 0.05,
    "amsgrad": False,
    "schedule": "cosine",
    "warmup_steps": 4,
    "total_steps": 20,
    "lr_floor": 0.1,
    "expected_objective": 0.2,
    "final": True,
}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))


def _lrs(optimizer: torch.optim.Optimizer, scheduler: Any, steps: int) -> list[list[float]]:
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_standalone_defaults_are_the_untuned_baseline() -> None:
    trial = Trial(load(env={}, total_steps=10))
    assert trial.phase == "standalone" and not trial.is_reporter
    optimizer, scheduler = trial.build_optimizer(_model())
    assert type(optimizer) is torch.optim.Adam
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.0]
    assert optimizer.defaults["betas"] == (0.9, 0.999) and optimizer.defaults["eps"] == 1e-8
    assert _lrs(optimizer, scheduler, 3) == [[1e-3, 1e-3]] * 3
    trial.report(0, loss=1.0)  # standalone: nothing to ask, nothing raised
    assert not trial.should_stop(8) and trial.should_stop(9)
    trial.finish(val_loss=0.5)


def test_standalone_with_a_recommendation_trains_exactly_as_its_snippet(tmp_path: Path) -> None:
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(REC))
    trial = Trial(load(env={protocol.CONFIG_FILE: str(path)}))
    assert trial.total_steps == 20  # from the recommendation
    optimizer, scheduler = trial.build_optimizer(_model())
    assert type(optimizer) is torch.optim.AdamW
    assert optimizer.defaults["betas"] == (0.85, 0.98)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]

    namespace: dict[str, Any] = {}
    exec(render_snippet(REC), namespace)  # the recommendation's own PyTorch code
    ref_opt, ref_sched = namespace["build_optimizer"](_model())
    assert _lrs(optimizer, scheduler, 20) == _lrs(ref_opt, ref_sched, 20)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read it"), ("{not json", "not JSON"), ('{"lr": -1}', "positive number")],
)
def test_a_bad_config_file_says_what_to_fix(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "rec.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load(env={protocol.CONFIG_FILE: str(path)})


def test_parameter_groups_keep_their_own_settings() -> None:
    model = _model()
    embed, norm, head = model[0], model[1], model[2]
    config = {**BASELINE, "optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.1}
    trial = Trial(TrialSetup("standalone", config, total_steps=None))
    optimizer, _ = trial.build_optimizer(
        [
            {"params": embed.parameters(), "lr_scale": 0.1},
            {"params": norm.parameters(), "weight_decay": 0.0, "name": "no_decay"},
            {"params": head.parameters()},
        ]
    )
    groups = optimizer.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-2, 1e-2])
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0, 0.1]
    assert groups[1]["name"] == "no_decay"
    with pytest.raises(ValueError, match="lr_scale"):
        trial.build_optimizer([{"params": head.parameters(), "lr": 1.0}])


def _worker_env(server: ChannelServer, phase: str, **extra: str) -> dict[str, str]:
    return {protocol.PHASE: phase, protocol.SOCKET: server.path, **extra}


def test_the_sweep_ramps_the_lr_and_stops_at_divergence() -> None:
    spec = SweepSpec(lr_min=1e-4, lr_max=1.0, steps=20)
    session = SweepSession(spec)
    server = ChannelServer(session.handle)
    try:
        env = _worker_env(server, "sweep", **{protocol.SWEEP_SPEC: spec.model_dump_json()})
        trial = Trial(load(env=env))
        optimizer, scheduler = trial.build_optimizer(_model())
        assert [lr[0] for lr in _lrs(optimizer, scheduler, 20)] == pytest.approx(ramp(spec))
        losses = [1.0, 0.8, 0.6, 0.5, 0.5, 3.0, 50.0, 900.0]
        for step, loss in enumerate(losses):
            trial.report(step, loss=loss)
            if trial.should_stop(step):
                break
        assert step < len(losses) - 1 and "minimum" in (trial.stop_reason or "")
        trial.finish()
    finally:
        server.close()
    result = session.result()
    assert result.lrs == pytest.approx(ramp(spec)[: step + 1])
    assert result.losses == losses[: step + 1]


def test_a_trial_reports_to_the_pruner_and_raises_pruned() -> None:
    asked: list[tuple[int, float]] = []

    def pruner(step: int, value: float) -> bool:
        asked.append((step, value))
        return step >= 20

    cfg = OptimConfig(lr=2e-3, warmup_steps=10, schedule="linear")
    session = TrialSession(cfg, total_steps=50, report=pruner)
    server = ChannelServer(session.handle)
    try:
        env = _worker_env(
            server,
            "trial",
            **{protocol.TRIAL_CONFIG: json.dumps(cfg.to_dict()), protocol.TOTAL_STEPS: "50"},
        )
        trial = Trial(load(env=env))
        assert trial.config["lr"] == 2e-3 and trial.total_steps == 50
        with pytest.raises(adamtune.Pruned, match="pruned at step 20"):
            for step in range(50):
                trial.report(step, loss=1.0 / (step + 1))
                if (step + 1) % 10 == 0:
                    trial.report(step, val_loss=1.0 / (step + 1))
                assert not trial.should_stop(step)
    finally:
        server.close()
    assert [s for s, _ in asked] == [10, 20]
    assert session.outcome is not None and session.outcome.state == "pruned"


def test_the_last_evaluation_is_reported_but_never_pruned() -> None:
    """As in process: the pruner sees the final value, and a 'prune' there is ignored."""
    asked: list[int] = []

    def always_prune(step: int, value: float) -> bool:
        asked.append(step)
        return True

    session = TrialSession(OptimConfig(warmup_steps=10), total_steps=10, report=always_prune)
    assert session.handle({"op": "report", "step": 9, "val_loss": 0.5})["action"] == "continue"
    assert session.handle({"op": "finish", "val_loss": 0.5})["action"] == "stop"
    assert asked == [10]
    assert session.outcome is not None and session.outcome.state == "complete"


def test_a_non_finite_loss_prunes_the_trial_as_diverged() -> None:
    session = TrialSession(OptimConfig(), total_steps=10)
    server = ChannelServer(session.handle)
    try:
        trial = Trial(
            load(
                env=_worker_env(
                    server, "trial", **{protocol.TRIAL_CONFIG: "{}", protocol.TOTAL_STEPS: "10"}
                )
            )
        )
        with pytest.raises(adamtune.Pruned, match="non-finite"):
            trial.report(3, loss=math.nan)
    finally:
        server.close()
    assert session.outcome is not None and session.outcome.state == "diverged"


def test_only_rank_zero_talks_to_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    env = {
        protocol.PHASE: "trial",
        protocol.SOCKET: "/nonexistent/socket",
        protocol.TRIAL_CONFIG: "{}",
        protocol.TOTAL_STEPS: "5",
    }
    trial = Trial(load(env=env))
    assert not trial.is_reporter
    trial.report(0, loss=1.0, val_loss=1.0)  # no connection attempted: nothing raised
    assert not trial.should_stop(0) and trial.should_stop(4)
    trial.finish(val_loss=1.0)


def test_import_adamtune_exports_the_sdk_lazily() -> None:
    code = "import sys, adamtune; t = adamtune.trial(); print(t.phase, 'torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.stdout.split() == ["standalone", "False"]
