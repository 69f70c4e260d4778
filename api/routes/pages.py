"""HTML pages: ``/`` lists the jobs, ``/jobs/{id}`` shows one with its charts and its
recommendation. Server-rendered Jinja2 with SVG drawn by :mod:`api.charts`; the only
script is inline (copy button, reload while running), so nothing is fetched from the
internet. The data is what the JSON API serves for the same job, read by the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from api import charts
from api.deps import CurrentTenant, OptunaStorageDep, SessionDep, shown_id
from api.evidence import trial_counts
from api.routes import jobs as job_routes
from api.routes import results
from api.schemas import JobPublic
from tuner.db import jobs
from tuner.db.models import ACTIVE_JOB_STATUSES, Job
from tuner.recommend import gain_over_baseline

router = APIRouter(tags=["pages"], include_in_schema=False)
REFRESH_SECONDS = 3
DASHBOARD_URL = "/dashboard"
BEST_TRIALS_SHOWN = 10
TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")


def fmt(value: Any) -> str:
    """Numbers for people: 4 significant digits, ``-`` for nothing."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def when(moment: datetime | str | None) -> str:
    """``2026-11-22 05:01:02 UTC`` from an aware datetime or its ISO text."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def percent(done: int | None, total: int | None) -> float:
    return 0.0 if not total else round(min(100.0, 100.0 * (done or 0) / total), 1)


def schedule_text(rec: dict[str, Any]) -> str:
    warmup, total = rec.get("warmup_steps"), rec.get("total_steps")
    return f"{rec.get('schedule') or '-'}, warmup {fmt(warmup)} of {fmt(total)} steps"


TEMPLATES.env.globals.update(fmt=fmt, when=when, percent=percent, schedule_text=schedule_text)
TEMPLATES.env.filters["fmt"] = fmt


def _or_none(read: Callable[[], BaseModel]) -> dict[str, Any] | None:
    """What a JSON route would answer, or None where it answers 404/409 (not there yet)."""
    try:
        return read().model_dump(mode="json")
    except HTTPException as exc:
        if exc.status_code in (404, 409):
            return None
        raise


def gain_percent(rec: dict[str, Any] | None) -> float | None:
    """How much lower the tuned objective is than the untuned baseline's, in percent."""
    if not rec:
        return None
    expected, baseline = rec.get("expected_objective"), rec.get("baseline_objective")
    if not isinstance(expected, int | float) or not isinstance(baseline, int | float):
        return None
    gain = gain_over_baseline(expected, baseline)
    return None if gain is None else 100.0 * gain


def diagnostics_lines(rec: dict[str, Any] | None) -> list[str]:
    """The best trial's effective step sizes, one line per module or parameter group."""
    diagnostics = (rec or {}).get("diagnostics")
    if not isinstance(diagnostics, dict):
        return []
    lines = []
    for section, entries in diagnostics.items():
        if not isinstance(entries, dict):
            continue
        for name, q in entries.items():
            if isinstance(q, dict):
                quantiles = ", ".join(f"{k} {fmt(v)}" for k, v in q.items())
                lines.append(f"{DIAGNOSTIC_SECTIONS.get(section, section)} {name}: {quantiles}")
    return lines


DIAGNOSTIC_SECTIONS = {"groups": "parameter group", "modules": "module"}


def best_trials(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    complete = [t for t in trials if t.get("state") == "complete" and t.get("value") is not None]
    return sorted(complete, key=lambda t: (t["value"], t["number"]))[:BEST_TRIALS_SHOWN]


def study_url(storage: Any, study_name: str) -> str:
    """The job's study in the Optuna dashboard, or its study list before the study exists."""
    try:
        return f"{DASHBOARD_URL}/studies/{storage.get_study_id_from_name(study_name)}"
    except KeyError:
        return DASHBOARD_URL


def _dashboard_on(request: Request) -> bool:
    return bool(request.app.state.settings.dashboard)


def job_view(job: Job, session: Any, storage: Any) -> dict[str, Any]:
    """Everything the job page shows, read through the JSON routes' own functions."""
    public = JobPublic.of(job).model_dump(mode="json")
    sweep = _or_none(lambda: results.get_lr_sweep(job, session))
    rec = _or_none(lambda: results.get_recommendation(job, session, storage))
    trials = results.list_trials(job, storage).model_dump(mode="json")["data"]
    counts = trial_counts(trials)
    hidden = (rec or {}).get("evidence", {}).get("importances_hidden") if rec else None
    baseline = public.get("baseline_objective")
    if baseline is None and rec:
        baseline = rec.get("baseline_objective")
    return {
        "job": public,
        "sweep": sweep,
        "rec": rec,
        "trials": trials,
        "counts": counts,
        "importances_hidden": hidden,
        "events": job_routes.list_job_events(job, session).model_dump(mode="json")["data"],
        "best_trials": best_trials(trials),
        "baseline": baseline,
        "gain": gain_percent(rec),
        "diagnostics": diagnostics_lines(rec),
        "lr_svg": charts.lr_curve_svg(
            sweep["lrs"], sweep["smoothed"], sweep.get("suggestions"), sweep.get("lr_range")
        )
        if sweep
        else charts.lr_curve_svg([], []),
        "trials_svg": charts.trials_svg(trials, baseline=baseline),
        "importances_svg": charts.importances_svg(
            (rec or {}).get("importances"), hidden_reason=hidden
        ),
        "refresh_seconds": REFRESH_SECONDS if job.status in ACTIVE_JOB_STATUSES else 0,
        "dashboard_url": DASHBOARD_URL,
        "study_url": study_url(storage, job.study_name),
    }


@router.get("/", response_class=HTMLResponse, summary="The jobs, newest first")
def jobs_page(request: Request, session: SessionDep, tenant: CurrentTenant) -> HTMLResponse:
    page, total = jobs.list_jobs(session, tenant=tenant, limit=100)
    listed = [JobPublic.of(j).model_dump(mode="json") for j in page]
    active = any(j["status"] in ACTIVE_JOB_STATUSES for j in listed)
    context = {
        "jobs": listed,
        "count": total,
        "refresh_seconds": REFRESH_SECONDS if active else 0,
        "dashboard_url": DASHBOARD_URL if _dashboard_on(request) else None,
    }
    return TEMPLATES.TemplateResponse(request, "jobs.html", context)


@router.get("/jobs/{job_id}", response_class=HTMLResponse, summary="One job, with its charts")
def job_page(
    request: Request,
    job_id: str,
    session: SessionDep,
    tenant: CurrentTenant,
    storage: OptunaStorageDep,
) -> HTMLResponse:
    job = jobs.get_job(session, job_id, tenant=tenant)
    if job is None:
        context = {"job_id": shown_id(job_id), "refresh_seconds": 0, "dashboard_url": DASHBOARD_URL}
        if not _dashboard_on(request):
            context["dashboard_url"] = None
        return TEMPLATES.TemplateResponse(request, "not_found.html", context, status_code=404)
    context = job_view(job, session, storage)
    if not _dashboard_on(request):
        context["dashboard_url"] = context["study_url"] = None
    return TEMPLATES.TemplateResponse(request, "job.html", context)
