"""``/v1/jobs/{id}/trials/{n}/log``: the tail of a program trial's stdout and stderr.

A worker writes each run of a program to ``ADAMTUNE_PROGRAM_LOG_DIR/<job id>/`` and the
trial's ``log`` attribute names the file. The API serves it only when it shares that
filesystem (one machine, or a shared folder) and only from under its own
``ADAMTUNE_PROGRAM_LOG_DIR``, never any other path.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response
from fastapi.responses import PlainTextResponse

from api.deps import JobDep, OptunaStorageDep, SettingsDep
from api.schemas import error_responses

router = APIRouter(prefix="/jobs", tags=["results"])
LOG_TAIL_BYTES = 64 * 1024


def _trial_attrs(storage: Any, study_name: str, number: int) -> dict[str, Any] | None:
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        if trial.number == number:
            return dict(trial.user_attrs)
    return None


def read_tail(path: FilePath, limit: int = LOG_TAIL_BYTES) -> tuple[str, bool]:
    """The last ``limit`` bytes of the file as text, and whether earlier bytes were cut."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - limit))
        data = f.read()
    return data.decode(errors="replace"), size > limit


@router.get(
    "/{job_id}/trials/{number}/log",
    response_class=Response,
    summary="The tail of a program trial's log",
    responses={200: {"content": {"text/plain": {}}, "description": "the log's last 64 KiB"}}
    | error_responses(404),
)
def get_trial_log(
    job: JobDep,
    number: Annotated[int, Path(ge=0, le=2**31 - 1)],
    storage: OptunaStorageDep,
    settings: SettingsDep,
) -> Response:
    """The last 64 KiB of the trial's stdout and stderr (``X-Log-Truncated: true`` when
    cut). Only trials of program jobs have a log, served where the API shares the worker's
    ``ADAMTUNE_PROGRAM_LOG_DIR``."""
    attrs = _trial_attrs(storage, job.study_name, number)
    if attrs is None:
        raise HTTPException(
            404, f"job {job.id} has no trial {number}; GET /v1/jobs/{job.id}/trials lists them"
        )
    logged = attrs.get("log")
    if not logged:
        raise HTTPException(
            404, f"trial {number} of job {job.id} has no log: only the trials of program jobs "
            "write one, once their run has started",
        )
    root = settings.program_logs().resolve()
    path = FilePath(str(logged)).resolve()
    worker = attrs.get("worker_id") or "its worker"
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(
            404, f"the log of trial {number} is on {worker}'s filesystem, which this API does "
            f"not share (its ADAMTUNE_PROGRAM_LOG_DIR is {root}); read it there, or give the "
            "API and the workers the same ADAMTUNE_PROGRAM_LOG_DIR on a shared folder",
        )
    text, cut = read_tail(path)
    headers = {"X-Log-Truncated": "true" if cut else "false"}
    return PlainTextResponse(text, headers=headers)
