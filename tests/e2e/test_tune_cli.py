"""``adamtune tune`` as a user runs it: a real process, the shipped example, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
SCRIPT = Path(sys.executable).parent / "adamtune"
CONTRACT = {
    "optimizer",
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "schedule",
    "warmup_steps",
    "total_steps",
    "expected_objective",
    "baseline_objective",
    "lr_range",
    "final",
    "snippet",
}
TINY = """\
workload: regression_mlp
budget: {trials: 4, steps_per_trial: 20, eval_every: 10}
sweep: {steps: 20}
"""


def tune(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "adamtune"]
    return subprocess.run(
        [*cmd, "tune", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def job_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return str(path)


def test_digits_example_beats_the_untuned_baseline() -> None:
    proc = tune("examples/digits.yaml", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)  # stdout holds the JSON alone
    assert CONTRACT <= set(rec)
    assert rec["final"] is True and rec["baseline_objective"] is not None
    assert rec["expected_objective"] < rec["baseline_objective"]
    assert set(rec["lr_range"]) == {"low", "suggested", "high"}
    assert "search 30/30" in proc.stderr  # progress went to stderr


def test_readable_output_and_progress(tmp_path: Path) -> None:
    proc = tune(job_file(tmp_path, TINY))
    assert proc.returncode == 0, proc.stderr
    assert "Recommendation for regression_mlp" in proc.stdout
    assert "def build_optimizer(model" in proc.stdout and "LR range test" in proc.stdout
    assert "sweep" in proc.stderr and "search 4/4" in proc.stderr and "best" in proc.stderr


def test_population_flag_runs_to_the_end(tmp_path: Path) -> None:
    proc = tune(job_file(tmp_path, TINY), "--json", "--population", "2")
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads(proc.stdout)["trials"]["complete"] + json.loads(proc.stdout)["trials"]["pruned"]
        == 4
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "workload: digits_mlp\npreset: bert\n",
            ["preset", "'transformer'", "'finetune'", "'gan'"],
        ),
        ("workload: digits_mlp\nsearch: {schedules: [step]}\n", ["search.schedules.0", "'cosine'"]),
        ("workload: no_such_model\n", ["workload", "known workloads", "digits_mlp"]),
        (
            "workload: digits_mlp\nbudget: {trials: 1}\n",
            ["budget.trials", "greater than or equal to 2"],
        ),
    ],
    ids=["preset", "schedule", "workload", "trials"],
)
def test_bad_job_file_exits_2_naming_the_field(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    proc = tune(job_file(tmp_path, text))
    assert proc.returncode == 2
    assert proc.stdout == ""
    for fragment in expected:
        assert fragment in proc.stderr


def test_bad_device_and_missing_file_exit_2(tmp_path: Path) -> None:
    proc = tune(job_file(tmp_path, TINY), "--device", "tpu")
    assert proc.returncode == 2 and "use cpu or cuda:N" in proc.stderr
    proc = tune(str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "cannot read job file" in proc.stderr


def test_json_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`adamtune tune FILE --json | head -c 0`: no traceback, exit 0 (as `git log | head`)."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "adamtune"]
    try:
        proc = subprocess.run([*cmd, "tune", job_file(tmp_path, TINY), "--json"], cwd=ROOT,
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "search 4/4" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
