"""The Hugging Face and Lightning examples, each a small program job run to completion by
``adamtune tune`` (a real process; the examples' job files with a tiny budget).

Every run of these scripts pays python + torch + the library's start-up (several seconds):
three trials and a short range test keep each job around half a minute.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_tune_cli import CONTRACT
from tests.e2e.test_tune_programs import tune

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).parents[2] / "examples" / "programs"
TINY_BUDGET = {"trials": 3, "steps_per_trial": 20, "eval_every": 10}


@pytest.mark.parametrize(
    ("job", "script", "library"),
    [
        ("hf.yaml", "train_hf.py", "transformers"),
        ("lightning.yaml", "train_lightning.py", "lightning"),
    ],
    ids=["huggingface", "lightning"],
)
def test_the_example_runs_a_small_job_to_a_recommendation(
    tmp_path: Path, job: str, script: str, library: str
) -> None:
    pytest.importorskip(library, reason=f"{library} is not installed (pip install .[hf,lightning])")
    spec = yaml.safe_load((EXAMPLES / job).read_text())
    spec["budget"] = TINY_BUDGET
    spec["sweep"]["steps"] = 20
    job_file = tmp_path / job
    job_file.write_text(yaml.safe_dump(spec))
    command = [sys.executable, str(EXAMPLES / script)]
    if script == "train_hf.py":
        command += ["--output", str(tmp_path / "hf-output")]
    program = f"{spec['program']}={shlex.join(command)}"
    logs = tmp_path / "logs"
    proc = tune(str(job_file), "--program", program, "--json", "--log-dir", str(logs))
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert CONTRACT <= set(rec) and rec["final"] is True
    assert rec["trials"]["complete"] + rec["trials"]["pruned"] == 3, rec["trials"]
    assert rec["baseline_objective"] is not None  # the untuned default ran as a program too
    assert set(rec["lr_range"]) == {"low", "suggested", "high"}  # the script's range test
    assert "search 3/3" in proc.stderr
    name = spec["program"]
    assert {f"{name}-sweep.log", f"{name}-trial-0.log"} <= {p.name for p in logs.iterdir()}
