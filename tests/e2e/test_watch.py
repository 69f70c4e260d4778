"""``adamtune submit --watch`` against a live service: progress on stderr, then the
recommendation on stdout, matching what the API serves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from adamtune.cli.processes import adamtune_command
from tests.e2e.harness import Service

pytestmark = pytest.mark.e2e

JOB = {
    "name": "watch",
    "workload": "regression_mlp",
    "seed": 1,
    "budget": {"trials": 4, "steps_per_trial": 30, "eval_every": 10},
    "sweep": {"steps": 20},
}
WATCH_TIMEOUT_S = 240


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_submit_watch_prints_progress_then_the_recommendation(
    service: Service, tmp_path: Path
) -> None:
    url = service.start_api()
    service.start_worker("watch-worker")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(JOB))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ADAMTUNE_URL": url}
    done = subprocess.run(
        adamtune_command("submit", str(job_file), "--watch"),
        env=env,
        capture_output=True,
        text=True,
        timeout=WATCH_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    err, out = done.stderr, done.stdout
    assert "submitted job" in err
    assert "4/4 trials" in err  # the bar reached the budget
    assert "best " in err
    job_id = err.split("submitted job ", 1)[1].split()[0]

    with service.client() as client:
        rec = client.recommendation(job_id)
    assert out.startswith(f"job {job_id} completed")
    assert "Recommendation for regression_mlp (final;" in out  # final, not partial
    assert f"lr           {rec['lr']:.4g}" in out
    assert f"optimizer    {rec['optimizer']}" in out
    assert rec["snippet"].strip() in out
