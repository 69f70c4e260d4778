"""The Hugging Face and Lightning examples under the program runner, with the real libraries
on tiny models built from a config (no downloads)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tuner.optim import OptimConfig
from tuner.spec import SweepSpec
from tuner.train import TrainSettings
from workers.program_runner import ProgramRunner
from workers.programs import Program

pytest.importorskip("transformers", reason="the hf extra is not installed: pip install .[hf]")
pytest.importorskip("lightning", reason="the lightning extra is not installed")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "programs"


def _program(script: str, tmp_path: Path) -> Program:
    return Program(
        name=script.removesuffix(".py"),
        command=(sys.executable, str(EXAMPLES / script), "--output", str(tmp_path / "out"))
        if script == "train_hf.py"
        else (sys.executable, str(EXAMPLES / script)),
        environment={"OMP_NUM_THREADS": "1"},
        time_limit=240.0,
        grace=2.0,
    )


@pytest.fixture()
def runner(tmp_path: Path) -> ProgramRunner:
    return ProgramRunner(device="cpu", log_dir=tmp_path / "logs")


def test_a_trainer_trial_completes(runner: ProgramRunner, tmp_path: Path) -> None:
    cfg = OptimConfig(
        optimizer="adamw", lr=2e-3, weight_decay=0.01, warmup_steps=4, schedule="linear"
    )
    seen: list[int] = []
    result = runner.run_trial(
        _program("train_hf.py", tmp_path),
        cfg,
        TrainSettings(total_steps=20, eval_every=10, seed=0),
        report=lambda step, value: seen.append(step) is not None,  # never prunes
    )
    assert result.state == "complete", result.reason
    assert seen == [10, 20]  # step 20 is the last evaluation: reported, its answer ignored
    assert [s for s, _ in result.curve] == [10, 20]
    assert result.value is not None and 0 < result.value < 2


def test_a_trainer_sweep_reads_every_steps_loss(runner: ProgramRunner, tmp_path: Path) -> None:
    spec = SweepSpec(lr_min=1e-5, lr_max=1.0, steps=30)
    result = runner.run_sweep(_program("train_hf.py", tmp_path), spec, seed=0)
    assert len(result.lrs) >= 10
    assert result.lrs[:3] == pytest.approx(
        [1e-5 * (1e5) ** (i / 29) for i in range(3)]
    )  # one point per optimizer step


def test_a_lightning_trial_is_pruned(runner: ProgramRunner, tmp_path: Path) -> None:
    result = runner.run_trial(
        _program("train_lightning.py", tmp_path),
        OptimConfig(),
        TrainSettings(total_steps=60, eval_every=20, seed=0),
        report=lambda step, value: step >= 40,
    )
    assert result.state == "pruned", result.reason
    assert [s for s, _ in result.curve] == [20, 40]
