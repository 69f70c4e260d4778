"""Program jobs end to end: the API and two workers configured with the plain-loop example.

Real processes on SQLite and PostgreSQL: a job naming ``program: digits`` is swept and
searched by the user's script (a child process per phase) and completes with a
recommendation; a job naming a program no worker offers is a 422 listing ``digits``.

Faults, with the example's fault flags (trial phase only): a crashing script and a hanging
one (killed at its time limit) fail their trial with the reason and the log tail over REST;
a trial pruned while its script ignores it, and the running trials of a cancelled job, end
with their child processes (checked by pid: the one the trial recorded, or, for a
cancelled trial, the worker's children found in /proc).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import httpx
import optuna
import pytest

from tests.e2e.harness import Service, wait_until
from tests.processes import descendants, is_alive
from tuner.client import ApiError, Client

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "examples" / "programs" / "train.py"
# The worker's own interpreter, so the child imports the same torch and adamtune.
PROGRAM = f"digits={shlex.quote(sys.executable)} {shlex.quote(str(TRAIN))} --batch-size 32"
CRASHING = PROGRAM.replace("digits=", "crashing=", 1) + " --crash-at 5"
JOB_TIMEOUT_S = 240.0
JOB = {
    "name": "digits program",
    "program": "digits",
    "seed": 3,
    "budget": {"trials": 3, "steps_per_trial": 60, "eval_every": 20},
    "sweep": {"steps": 30},
}
WORKERS = ("worker-a", "worker-b")
HANG_LIMIT_S = 20  # the hanging script's time limit: its child starts (torch) well within it
FAULT_STEPS = 60


def _start(service: Service, tmp_path: Path, *programs: str) -> None:
    """The API and two workers offering ``programs`` (default: digits and crashing)."""
    programs = programs or ("--program", PROGRAM, "--program", CRASHING)
    env = {"ADAMTUNE_PROGRAM_LOG_DIR": str(tmp_path / "program-logs")}  # shared with the API
    service.start_api(env=env)
    for name in WORKERS:
        service.start_worker(name, *programs, env=env)
    wait_until(
        lambda: sum(w["alive"] for w in _workers(service)) == 2, 90, "both workers registered"
    )


def _workers(service: Service) -> list[dict]:
    data: list[dict] = httpx.get(f"{service.api_url}/v1/workers").json()["data"]
    return data


def _trial_in(client: Client, job_id: str, state: str) -> dict | None:
    """The job's first trial in ``state`` (GET /v1/jobs/{id}/trials), or None."""
    return next((t for t in client.trials(job_id) if t["state"] == state), None)


def _first_trial_in(client: Client, job: dict, state: str) -> tuple[str, dict]:
    """Submit ``job``; its id and its first trial to reach ``state`` (over REST)."""
    job_id = client.submit(job)["id"]
    return job_id, wait_until(lambda: _trial_in(client, job_id, state), JOB_TIMEOUT_S, state)


def _assert_log_served(service: Service, job_id: str, number: int, text: str) -> None:
    log = httpx.get(f"{service.api_url}/v1/jobs/{job_id}/trials/{number}/log")
    assert log.status_code == 200 and text in log.text


def _recorded_pid(service: Service, job_id: str, number: int) -> int:
    """The child pid a trial recorded when its child started (user attr ``pid``)."""
    study = optuna.load_study(study_name=f"adamtune-{job_id}", storage=service.database_url)
    return int(study.trials[number].user_attrs["pid"])


def test_a_program_job_completes_with_a_recommendation(service: Service, tmp_path: Path) -> None:
    _start(service, tmp_path)
    client = service.client()
    workers = _workers(service)
    assert {w["id"]: w["programs"] for w in workers} == {
        "worker-a": [
            {"name": "digits", "time_limit": None},
            {"name": "crashing", "time_limit": None},
        ],
        "worker-b": [
            {"name": "digits", "time_limit": None},
            {"name": "crashing", "time_limit": None},
        ],
    }
    assert str(TRAIN) not in str(workers)  # a worker never shows its command

    job = client.submit(JOB)
    assert job["program"] == "digits" and job["workload"] is None
    done = client.wait(job["id"], timeout=JOB_TIMEOUT_S, poll=0.5)
    assert done["status"] == "completed", (done, service.all_logs())
    assert done["progress"]["trials_completed"] == 3

    sweep = client.lr_sweep(job["id"])
    assert len(sweep["lrs"]) == len(sweep["losses"]) >= 10  # the curve the program reported
    low, suggested, high = (sweep["lr_range"][k] for k in ("low", "suggested", "high"))
    assert low < suggested < high

    trials = client.trials(job["id"])
    assert len([t for t in trials if t["state"] in ("complete", "pruned")]) == 3
    assert {t["worker_id"] for t in trials} <= {"worker-a", "worker-b"}
    logs = list((tmp_path / "program-logs" / job["id"]).glob("digits-*.log"))
    assert any(p.name.startswith("digits-trial-") for p in logs), logs  # one folder per job
    log = httpx.get(f"{service.api_url}/v1/jobs/{job['id']}/trials/{trials[0]['number']}/log")
    assert log.status_code == 200, log.text
    assert log.headers["x-log-truncated"] == "false"
    page = httpx.get(f"{service.api_url}/jobs/{job['id']}")
    assert page.status_code == 200  # the job page links each best trial's log
    assert any(f'href="/v1/jobs/{job["id"]}/trials/{t["number"]}/log"' in page.text for t in trials)

    rec = client.recommendation(job["id"])
    assert rec["final"] is True
    assert rec["optimizer"] in ("adam", "adamw") and rec["lr"] > 0
    assert rec["baseline_objective"] is not None  # the untuned default ran as a program too
    assert rec["references"] in ([], {}, None)  # no Schedule-Free/Prodigy for a user's loop


def test_a_job_naming_an_unknown_program_is_422_listing_digits(
    service: Service, tmp_path: Path
) -> None:
    _start(service, tmp_path)
    with pytest.raises(ApiError) as refused:
        service.client().submit({**JOB, "program": "resnet"})
    assert refused.value.status == 422
    assert "no live worker offers program 'resnet'" in str(refused.value)
    assert "programs offered: crashing, digits" in str(refused.value)


def test_a_crashing_trial_fails_with_the_reason_and_log_tail_over_rest(
    service: Service, tmp_path: Path
) -> None:
    _start(service, tmp_path)
    client = service.client()
    crashing = {**JOB, "program": "crashing", "budget": {**JOB["budget"], "trials": 2}}
    job_id, trial = _first_trial_in(client, crashing, "fail")
    assert "exited with code 1" in trial["reason"], trial
    assert "RuntimeError: --crash-at 5: crashing on purpose" in trial["reason"]
    _assert_log_served(service, job_id, trial["number"], "crashing on purpose")
    assert not is_alive(_recorded_pid(service, job_id, trial["number"]))
    done = client.wait(job_id, timeout=JOB_TIMEOUT_S, poll=0.5)  # every trial crashes
    assert done["status"] == "failed", done


# --- faults of a user's script: a time limit, ignoring a prune, a cancelled job


def _start_faulty(service: Service, tmp_path: Path) -> None:
    """Workers offering the example with a fault each (a programs file: limits, grace 1 s)."""
    base = [sys.executable, str(TRAIN), "--batch-size", "32"]
    programs = {
        "hanging": {"command": [*base, "--hang-at", "5"], "time_limit": HANG_LIMIT_S, "grace": 1},
        "stuck": {"command": [*base, "--hang-at", "5"], "grace": 1},  # no time limit
        "diverging": {"command": [*base, "--diverge-at", "3", "--hang-when-pruned"], "grace": 1},
    }
    path = tmp_path / "programs.yaml"
    path.write_text(json.dumps({"programs": programs}))  # JSON is YAML
    _start(service, tmp_path, "--programs", str(path))


def _fault_job(program: str, trials: int = 2) -> dict:
    """A job with no LR range test: its trials start at once."""
    budget = {"trials": trials, "steps_per_trial": FAULT_STEPS, "eval_every": 20}
    return {**JOB, "program": program, "budget": budget, "sweep": {"steps": 30, "enabled": False}}


def _program_children(service: Service, worker: str) -> list[int]:
    """The worker's live descendants that run the example (its trials' children)."""
    found = []
    for pid in descendants(service.child(worker).process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(TRAIN).encode() in cmdline:
            found.append(pid)
    return found


def test_a_hanging_trial_is_killed_at_its_time_limit_with_the_reason_and_log_tail(
    service: Service, tmp_path: Path
) -> None:
    _start_faulty(service, tmp_path)
    job_id, trial = _first_trial_in(service.client(), _fault_job("hanging"), "fail")
    limit = f"program 'hanging' exceeded its time limit of {HANG_LIMIT_S}s: killed"
    assert limit in trial["reason"], trial
    assert "--hang-at 5: hanging on purpose" in trial["reason"]  # the stderr tail
    _assert_log_served(service, job_id, trial["number"], "hanging on purpose")
    assert not is_alive(_recorded_pid(service, job_id, trial["number"]))


def test_a_pruned_trial_whose_script_ignores_it_ends_with_its_process(
    service: Service, tmp_path: Path
) -> None:
    """The script keeps running once pruned (diverged: NaN loss); the worker ends it."""
    _start_faulty(service, tmp_path)
    job_id, trial = _first_trial_in(service.client(), _fault_job("diverging"), "pruned")
    assert trial["reason"].startswith("non-finite training loss (nan) at step 3"), trial
    assert not is_alive(_recorded_pid(service, job_id, trial["number"]))


def test_cancelling_a_program_job_ends_its_running_trials_processes(
    service: Service, tmp_path: Path
) -> None:
    """Both workers run a hanging trial; after the cancel, their children are gone, the
    trials failed with the reason, and no other trial of the job ever started."""
    _start_faulty(service, tmp_path)
    client = service.client()
    job_id = client.submit(_fault_job("stuck", trials=4))["id"]
    log_dir = tmp_path / "program-logs" / job_id

    def hanging_on_both() -> list[dict] | None:
        running = [t for t in client.trials(job_id) if t["state"] == "running"]
        logs = [log_dir / f"stuck-trial-{t['number']}.log" for t in running]
        hanging = all(p.exists() and "hanging on purpose" in p.read_text() for p in logs)
        return running if hanging and {t["worker_id"] for t in running} == set(WORKERS) else None

    running = wait_until(hanging_on_both, JOB_TIMEOUT_S, "a hanging trial on each worker")
    children = {w: _program_children(service, w) for w in WORKERS}
    assert all(len(pids) == 1 for pids in children.values()), children
    assert client.cancel(job_id)["status"] == "cancelled"
    pids = [pid for found in children.values() for pid in found]
    wait_until(lambda: not any(map(is_alive, pids)), 60, f"trial processes {pids} to end")

    def stopped() -> list[dict] | None:  # the worker fails a trial once its child is gone
        trials = client.trials(job_id)
        return None if any(t["state"] == "running" for t in trials) else trials

    trials = wait_until(stopped, 60, "the cancelled trials to be failed")
    for number in (t["number"] for t in running):
        (trial,) = (t for t in trials if t["number"] == number)
        match = re.fullmatch(r"stopped at step (\d+): the job was cancelled", trial["reason"] or "")
        assert trial["state"] == "fail" and match is not None, trial
        assert int(match.group(1)) < FAULT_STEPS
        assert _recorded_pid(service, job_id, number) in pids  # recorded at its start
    started = {t["number"] for t in trials if t["datetime_start"] is not None}
    assert started == {t["number"] for t in running}, trials  # none started after the cancel
    assert not any(_program_children(service, w) for w in WORKERS)
