"""Dependencies of the routes, as ``Annotated`` aliases: settings, session, tenant, storage."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from tuner.db import jobs, keys
from tuner.db.engine import optuna_storage, transaction
from tuner.db.models import DEFAULT_TENANT, Job
from tuner.settings import Settings

log = logging.getLogger(__name__)
_storage_lock = threading.Lock()


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Session]:
    """One session and transaction per request, committed before the response is sent."""
    with transaction(request.app.state.session_factory) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_db, scope="function")]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def get_tenant(request: Request, settings: SettingsDep, session: SessionDep) -> str:
    """The tenant whose jobs this request may see.

    ``ADAMTUNE_AUTH=disabled``, or no active API key yet (a fresh install): the default
    tenant. Once keys exist, a valid ``Authorization: Bearer <key>`` names the tenant.
    """
    if settings.auth == "disabled" or not keys.any_active_keys(session):
        return DEFAULT_TENANT
    token = _bearer(request)
    key = keys.verify_key(session, token) if token else None
    if key is None:
        reason = "an invalid or revoked" if token else "no"
        raise HTTPException(
            status_code=401,
            detail=f"{reason} API key: send 'Authorization: Bearer <key>'; an operator "
            "creates keys with `adamtune keys create --tenant NAME`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key.tenant


CurrentTenant = Annotated[str, Depends(get_tenant)]


def get_optuna_storage(request: Request) -> Any:
    """Optuna's storage on the same database, opened once per app on first use."""
    state = request.app.state
    with _storage_lock:
        if getattr(state, "optuna_storage", None) is None:
            state.optuna_storage = optuna_storage(state.settings.database_url)
    return state.optuna_storage


OptunaStorageDep = Annotated[Any, Depends(get_optuna_storage)]


def get_job_or_404(job_id: str, session: SessionDep, tenant: CurrentTenant) -> Job:
    """The job named in the path, if this tenant owns it; 404 otherwise (never 403: no leak)."""
    job = jobs.get_job(session, job_id, tenant=tenant)
    if job is None:
        raise HTTPException(
            status_code=404, detail=f"job {job_id} not found; GET /v1/jobs lists your jobs"
        )
    return job


JobDep = Annotated[Job, Depends(get_job_or_404)]
