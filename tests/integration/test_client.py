"""``tuner.client.Client`` and the remote CLI commands against a real uvicorn on loopback."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
import yaml
from ui_seed import SNIPPET, SeededJob, seed_finished_job

from adamtune.cli import main as cli
from adamtune.cli.processes import adamtune_command
from api.app import create_app
from tuner.client import CONNECTION_FAILED, ApiError, Client
from tuner.db import keys
from tuner.db.engine import make_engine, make_session_factory, transaction, upgrade
from tuner.settings import Settings
from tuner.spec import Budget, JobSpec

SMALL_JOB = {"workload": "digits_mlp", "name": "client test", "budget": {"trials": 4}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """uvicorn serving ``create_app(settings)`` in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SeededJob]:
    url = f"sqlite:///{tmp_path_factory.mktemp('client') / 'adamtune.db'}"
    return url, seed_finished_job(url)


@pytest.fixture(scope="module")
def base_url(seeded_db: tuple[str, SeededJob]) -> Iterator[str]:
    with live_server(Settings(database_url=seeded_db[0], auth="disabled")) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[Client]:
    with Client(base_url) as c:
        yield c


@pytest.fixture
def finished(seeded_db: tuple[str, SeededJob]) -> SeededJob:
    return seeded_db[1]


def test_submit_get_list(client: Client) -> None:
    job = client.submit(SMALL_JOB)
    assert job["status"] == "queued" and job["progress"]["trials_total"] == 4
    assert client.get(job["id"])["id"] == job["id"]
    assert job["id"] in [j["id"] for j in client.list()]


def test_submit_a_jobspec_with_an_idempotency_key(client: Client) -> None:
    spec = JobSpec(workload="digits_mlp", budget=Budget(trials=3))
    first = client.submit(spec, idempotency_key="client-test-key")
    again = client.submit(spec, idempotency_key="client-test-key")
    assert again["id"] == first["id"]


def test_refused_job_carries_the_servers_detail(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.submit({"workload": "digits_mlp", "budget": {"trials": 1}})
    assert err.value.status == 422
    assert "budget.trials" in err.value.detail
    with pytest.raises(ApiError) as err:
        client.submit({"workload": "no_such_workload"})
    assert err.value.status == 422 and "digits_mlp" in err.value.detail


def test_missing_job_is_a_404_with_detail(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.get("0" * 32)
    assert err.value.status == 404 and "not found" in err.value.detail


def test_results_of_a_finished_job(client: Client, finished: SeededJob) -> None:
    job = client.wait(finished.job_id, timeout=5)
    assert job["status"] == "completed"
    rec = client.recommendation(finished.job_id)
    assert rec["final"] is True and rec["snippet"] == SNIPPET
    trials = client.trials(finished.job_id)
    assert [t["number"] for t in trials] == list(range(len(finished.trials)))
    sweep = client.lr_sweep(finished.job_id)
    assert len(sweep["lrs"]) == len(finished.sweep["lrs"])
    svg = client.lr_sweep_svg(finished.job_id)
    assert svg.count('<circle class="pt') == finished.finite_smoothed


def test_recommendation_before_any_trial_is_a_409(client: Client) -> None:
    job = client.submit(SMALL_JOB)
    with pytest.raises(ApiError) as err:
        client.recommendation(job["id"])
    assert err.value.status == 409 and "no recommendation yet" in err.value.detail


def test_wait_times_out_and_reports_progress(client: Client) -> None:
    job = client.submit(SMALL_JOB)
    seen: list[str] = []
    with pytest.raises(TimeoutError, match="still queued"):
        client.wait(
            job["id"], timeout=0.3, poll=0.1, on_progress=lambda j: seen.append(j["status"])
        )
    assert seen and set(seen) == {"queued"}


def test_cancel_then_wait_returns_the_cancelled_job(client: Client) -> None:
    job = client.submit(SMALL_JOB)
    assert client.cancel(job["id"])["status"] == "cancelled"
    assert client.wait(job["id"], timeout=5)["status"] == "cancelled"
    with pytest.raises(ApiError) as err:
        client.cancel(job["id"])
    assert err.value.status == 409 and "already cancelled" in err.value.detail


def test_connection_refused_is_an_api_error_without_status() -> None:
    with Client(f"http://127.0.0.1:{free_port()}") as c, pytest.raises(ApiError) as err:
        c.get("x")
    assert err.value.status == CONNECTION_FAILED and "connection failed" in err.value.detail


def test_the_key_is_sent_as_a_bearer_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    upgrade(url)
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as s:
        _, secret = keys.create_key(s, "team-a")
    engine.dispose()
    with live_server(Settings(database_url=url, auth="enabled")) as base:
        with Client(base, api_key=secret) as c:
            assert c.list() == []
        with Client(base) as anonymous, pytest.raises(ApiError) as err:
            anonymous.list()
        assert err.value.status == 401 and "Authorization: Bearer" in err.value.detail
        with Client(base, api_key="wrong") as wrong, pytest.raises(ApiError) as err:
            wrong.list()
        assert err.value.status == 401 and "invalid" in err.value.detail
        assert cli(["status", "x", "--url", base]) == 1
        assert "ADAMTUNE_API_KEY" in capsys.readouterr().err
        assert cli(["status", "0" * 32, "--url", base, "--api-key", secret]) == 1
        assert "not found" in capsys.readouterr().err


# --- the CLI's remote commands, in process, against the same server


def test_cli_status_and_recommendation_formats(
    base_url: str, finished: SeededJob, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["status", finished.job_id, "--url", base_url]) == 0
    out = capsys.readouterr().out
    assert "completed" in out and "12/12 trials" in out
    job = Client(base_url).get(finished.job_id)
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert rows["started"] == job["started_at"] and rows["finished"] == job["finished_at"]
    assert cli(["recommendation", finished.job_id, "--url", base_url, "--format", "python"]) == 0
    assert capsys.readouterr().out.strip() == SNIPPET.strip()
    assert cli(["recommendation", finished.job_id, "--url", base_url, "--format", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optimizer"] == "adamw"
    assert cli(["recommendation", finished.job_id, "--url", base_url]) == 0
    assert '"optimizer": "adamw"' in capsys.readouterr().out


def test_cli_status_of_a_queued_job_says_not_started(
    client: Client, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job = client.submit(SMALL_JOB)
    assert cli(["status", job["id"], "--url", base_url]) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert rows["started"] == "not yet (queued)" and rows["finished"] == "not yet"


def test_cli_submit_prints_the_id_and_cancel_cancels(
    base_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(SMALL_JOB))
    assert cli(["submit", str(job_file), "--url", base_url]) == 0
    job_id = capsys.readouterr().out.strip()
    assert len(job_id) == 32
    assert cli(["cancel", job_id, "--url", base_url]) == 0
    assert f"job {job_id} is cancelled" in capsys.readouterr().out


def test_cli_errors_say_what_to_do(
    base_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["status", "0" * 32, "--url", base_url]) == 1
    assert "not found" in capsys.readouterr().err
    dead = f"http://127.0.0.1:{free_port()}"
    assert cli(["status", "x", "--url", dead]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the adamtune API at {dead}" in err and "adamtune up" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("workload: digits_mlp\nbudget: {trials: 1}\n")
    assert cli(["submit", str(bad), "--url", base_url]) == 1
    assert "budget.trials" in capsys.readouterr().err


def test_cli_recommendation_as_text_is_the_shared_rendering(
    base_url: str, finished: SeededJob, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["recommendation", finished.job_id, "--url", base_url, "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Recommendation (final)")
    assert "optimizer    adamw" in out and "(3 trials within 1% of the best)" in out
    assert out.rstrip().endswith(SNIPPET.strip())


# --- output into a pipe that closes early: quiet, exit 0 (as `git log | head` does)


def _into_closed_pipe(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``adamtune ARGS`` whose stdout is a pipe with no reader left: every write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(adamtune_command(*args), stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [["status"], ["recommendation", "--format", "yaml"], ["recommendation"],
     ["recommendation", "--format", "text"]],
    ids=["status", "yaml", "json", "text"],
)
def test_output_into_a_closed_pipe_ends_quietly(
    base_url: str, finished: SeededJob, args: list[str]
) -> None:
    done = _into_closed_pipe([*args, finished.job_id, "--url", base_url])
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


def test_recommendation_yaml_into_head_ends_quietly(base_url: str, finished: SeededJob) -> None:
    command = " ".join(shlex.quote(a) for a in adamtune_command(
        "recommendation", finished.job_id, "--url", base_url, "--format", "yaml"))
    done = subprocess.run(f"set -o pipefail; {command} | head -1", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stderr == ""


def test_help_into_a_closed_pipe_ends_quietly() -> None:
    done = _into_closed_pipe(["--help"])
    assert done.returncode == 0 and done.stderr == "", done.stderr
