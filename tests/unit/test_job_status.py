"""The job state machine: the transition table, and that nothing but transition() writes a
job's status (a scan of the source)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from tuner.db.status import (
    ACTIVE_JOB_STATUSES,
    FINISHED_JOB_STATUSES,
    TRANSITIONS,
    IllegalTransition,
    JobStatus,
    check_edges,
)

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("tuner", "api", "workers", "adamtune")
THE_WRITER = ("tuner/db/jobs.py", "transition")  # the one function allowed to write a status


def test_statuses_are_their_strings() -> None:
    assert JobStatus.QUEUED == "queued"
    assert json.dumps({"status": JobStatus.SEARCHING}) == '{"status": "searching"}'
    assert [str(s) for s in JobStatus] == [
        "queued", "sweeping", "searching", "completed", "failed", "cancelled"
    ]


def test_active_and_finished_follow_from_the_table() -> None:
    assert ACTIVE_JOB_STATUSES == (JobStatus.QUEUED, JobStatus.SWEEPING, JobStatus.SEARCHING)
    assert FINISHED_JOB_STATUSES == (
        JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED
    )
    for active in ACTIVE_JOB_STATUSES:
        assert {JobStatus.FAILED, JobStatus.CANCELLED} <= TRANSITIONS[active]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("queued", "sweeping"),
        ("sweeping", "sweeping"),  # a sweep lease taken over
        ("sweeping", "searching"),
        ("searching", "completed"),
        ("queued", "cancelled"),
        ("searching", "failed"),
    ],
)
def test_legal_edges(old: str, new: str) -> None:
    assert check_edges([old], new) == (JobStatus(old),)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("queued", "searching"),
        ("queued", "completed"),
        ("sweeping", "completed"),
        ("searching", "sweeping"),
        ("searching", "queued"),
        ("completed", "failed"),
        ("failed", "queued"),
        ("cancelled", "cancelled"),
    ],
)
def test_illegal_edges_raise(old: str, new: str) -> None:
    with pytest.raises(IllegalTransition, match=f"cannot move from '{old}' to '{new}'"):
        check_edges([old], new)


def test_one_illegal_source_among_several_raises() -> None:
    with pytest.raises(IllegalTransition, match="from 'sweeping' to 'completed'"):
        check_edges(["searching", "sweeping"], "completed")


def test_unknown_status_names_the_statuses() -> None:
    with pytest.raises(ValueError, match="unknown job status 'done'; statuses: queued, sweeping"):
        check_edges(["queued"], "done")


# --------------------------------------------------------------- the source scan
_RAW_SQL = re.compile(r"UPDATE\s+jobs\s+SET\b[^;]*\bstatus\b", re.IGNORECASE | re.DOTALL)


def _writes_status(call: ast.Call) -> bool:
    """A ``.values(...)`` / ``update(...).values`` call that sets a ``status``."""
    if any(k.arg == "status" for k in call.keywords):
        return True
    for arg in call.args:
        if isinstance(arg, ast.Dict):
            for key in arg.keys:
                if isinstance(key, ast.Constant) and key.value == "status":
                    return True
                if isinstance(key, ast.Attribute) and key.attr == "status":
                    return True
    return False


def _targets_jobs(call: ast.Call) -> bool:
    """Whether the call chain below ``.values`` starts with ``update(Job)`` / ``update(jobs)``."""
    node: ast.AST = call.func
    while isinstance(node, ast.Attribute | ast.Call):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else ""
            if name == "update" and node.args:
                target = ast.unparse(node.args[0])
                return target in ("Job", "Job.__table__", "jobs", "jobs_table")
            node = node.func
        else:
            node = node.value
    return False


def _is_job_status_item(key: ast.expr | None, value: ast.expr) -> bool:
    """``"status": <a job status>`` (values built apart and splatted into an UPDATE)."""
    if not (isinstance(key, ast.Constant) and key.value == "status"):
        return False
    text = ast.unparse(value)
    return "JobStatus" in text or any(repr(str(s)) in text for s in JobStatus)


def status_writes(source: str, path: str) -> list[str]:
    """Places in ``source`` that write a job's status outside :data:`THE_WRITER`."""
    found = []
    tree = ast.parse(source)
    allowed: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and (path, fn.name) == THE_WRITER:
            allowed |= {id(n) for n in ast.walk(fn)}
    for node in ast.walk(tree):
        if id(node) in allowed:
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "values" and _targets_jobs(node) and _writes_status(node):
                found.append(f"{path}:{node.lineno}: update(Job).values(status=...)")
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "status":
                    owner = ast.unparse(target.value)
                    if "job" in owner.lower():
                        found.append(f"{path}:{node.lineno}: {owner}.status = ...")
        if isinstance(node, ast.Dict) and path.startswith("tuner/db/"):
            if any(_is_job_status_item(k, v) for k, v in zip(node.keys, node.values, strict=True)):
                found.append(f"{path}:{node.lineno}: a {{'status': ...}} dict in the store")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _RAW_SQL.search(node.value):
                found.append(f"{path}:{node.lineno}: raw SQL UPDATE jobs SET status")
    return found


def test_no_status_write_outside_transition() -> None:
    found = []
    for folder in SOURCE_DIRS:
        for file in sorted((ROOT / folder).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            found += status_writes(file.read_text(), rel)
    assert not found, "job statuses written outside tuner.db.jobs.transition():\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    "snippet",
    [
        "def f(s):\n    s.execute(update(Job).where(Job.id == 1).values(status='failed'))\n",
        "def f(s):\n    s.execute(update(Job).values({'status': 'failed'}))\n",
        "def f(s):\n    s.execute(update(Job).values({Job.status: 'failed'}))\n",
        "def f(job):\n    job.status = 'cancelled'\n",
        "def f(s):\n    s.execute(text('update jobs set error = 1, status = :s'))\n",
        "def transition(s):\n    s.execute(update(Job).values(status='failed'))\n",  # wrong file
        "def v():\n    return {'status': 'sweeping', 'sweep_attempts': 1}\n",
    ],
)
def test_the_scan_finds_a_hand_written_status_update(snippet: str) -> None:
    assert status_writes(snippet, "tuner/db/claims.py")


def test_the_scan_allows_transition_and_other_tables() -> None:
    allowed = "def transition(s):\n    s.execute(update(Job).values(status='failed'))\n"
    assert not status_writes(allowed, "tuner/db/jobs.py")
    worker = "def f(s):\n    s.execute(update(Worker).values(status='lost'))\n"
    assert not status_writes(worker, "tuner/db/workers.py")
