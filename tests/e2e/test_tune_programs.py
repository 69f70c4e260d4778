"""``adamtune tune`` on a program job, as a user runs it: a real process running the example
script (examples/programs/train.py) once for the LR range test and once per trial.

Each run of the script pays python + torch start-up (seconds), so the jobs are tiny.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_tune_cli import CONTRACT
from tests.processes import children as process_children
from tests.processes import group_members

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
SCRIPT = Path(sys.executable).parent / "adamtune"
TRAIN = ROOT / "examples" / "programs" / "train.py"
DIGITS = f"digits={shlex.quote(sys.executable)} {shlex.quote(str(TRAIN))} --batch-size 32"
TINY = """\
name: digits tiny
program: digits
seed: 0
budget: {trials: 4, steps_per_trial: 40, eval_every: 20}
sweep: {steps: 30}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the children: one thread each on a busy machine


def tune_command(*args: str) -> list[str]:
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "adamtune"]
    return [*cmd, "tune", *args]


def tune(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tune_command(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=ENV
    )


def job_file(tmp_path: Path, text: str = TINY) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return str(path)


def test_a_program_job_runs_here_to_a_recommendation(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    proc = tune(job_file(tmp_path), "--program", DIGITS, "--json", "--log-dir", str(logs))
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)  # stdout holds the JSON alone
    assert CONTRACT <= set(rec)
    assert rec["final"] is True and rec["baseline_objective"] is not None
    assert rec["trials"]["complete"] + rec["trials"]["pruned"] == 4
    assert set(rec["lr_range"]) == {"low", "suggested", "high"}  # the script's range test
    assert "sweep" in proc.stderr and "search 4/4" in proc.stderr  # progress on stderr
    assert sorted(p.name for p in logs.iterdir()) == [
        "digits-sweep.log", *(f"digits-trial-{n}.log" for n in range(4))
    ]


def test_a_job_naming_a_program_not_given_exits_2_saying_how(tmp_path: Path) -> None:
    programs = tmp_path / "programs.yaml"
    programs.write_text("programs:\n  other: {command: python other.py}\n")
    proc = tune(job_file(tmp_path), "--program", "mnist=python mnist.py", "--programs",
                str(programs))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "program 'digits'" in proc.stderr and "mnist, other" in proc.stderr, proc.stderr
    assert "--program digits=" in proc.stderr and "--programs FILE" in proc.stderr
    proc = tune(job_file(tmp_path))
    assert proc.returncode == 2 and "programs given: none" in proc.stderr, proc.stderr


def test_failed_trials_show_the_reason_and_the_log(tmp_path: Path) -> None:
    job = TINY.replace("trials: 4", "trials: 2")
    crashing = DIGITS + " --crash-at 5"  # the trials crash; the range test does not
    proc = tune(job_file(tmp_path, job), "--program", crashing, "--log-dir", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert "no trial completed" in proc.stderr
    assert "trial 0 (baseline) fail" in proc.stderr and "exited with code 1" in proc.stderr
    assert "RuntimeError: --crash-at 5: crashing on purpose" in proc.stderr
    assert f"(log: {tmp_path / 'digits-trial-0.log'})" in proc.stderr


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_ends_the_running_program_and_leaves_no_child(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    slow = TINY.replace("sweep: {steps: 30}", "sweep: {steps: 10000, lr_max: 1.0e-4}")
    proc = subprocess.Popen(
        tune_command(job_file(tmp_path, slow), "--program", DIGITS, "--log-dir", str(tmp_path)),
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        children: list[int] = []
        while not children and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            children = process_children(proc.pid)
        assert children, "the range test's child never started"
        time.sleep(3)  # the script is running (importing torch, or training)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert f"stopped by {sig.name}" in stderr
    assert not any(group_members(pid) for pid in children)  # the child and its group are gone
