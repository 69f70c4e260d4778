"""Dependencies of the routes, as ``Annotated`` aliases: settings, session, tenant, storage.

FastAPI runs a plain ``def`` dependency in the thread pool, one hop each (~0.1 ms, more on
a loaded machine). Those that do no I/O (settings; the tenant, which the auth middleware has
already found) are ``async def`` and run on the event loop instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import auth
from tuner.db import jobs
from tuner.db.engine import optuna_storage, transaction
from tuner.db.models import Job
from tuner.settings import Settings

log = logging.getLogger(__name__)
_storage_lock = threading.Lock()


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Session]:
    """One session and transaction per request, committed before the response is sent."""
    with transaction(request.app.state.session_factory) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_db, scope="function")]


def _authenticate(request: Request, settings: Settings) -> str:
    key = auth.key_of(request.headers, request.method)
    with transaction(request.app.state.session_factory) as session:
        return auth.authenticate(session, settings, key)


async def get_tenant(
    request: Request,
    settings: SettingsDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(auth.bearer_scheme)],
    _api_key: Annotated[str | None, Security(auth.api_key_scheme)],
) -> str:
    """The tenant whose jobs this request may see: the one :mod:`api.auth` authenticated.

    Where the auth middleware did not run (an app assembled without ``auth.install``), the
    key is checked here (in the thread pool), so a route using this dependency is never
    open by accident. The two security parameters only declare the key schemes in the
    OpenAPI spec.
    """
    tenant = auth.tenant_of(request.scope)
    if tenant is not None:
        return tenant
    try:
        return await run_in_threadpool(_authenticate, request, settings)
    except auth.AuthError as exc:
        headers = {"WWW-Authenticate": auth.challenge_for(request.url.path)}
        raise HTTPException(exc.status_code, detail=exc.detail, headers=headers) from None


CurrentTenant = Annotated[str, Depends(get_tenant)]


def optuna_storage_of(app: Any) -> Any:
    """Optuna's storage on the app's database, opened once per app on first use."""
    state = app.state
    with _storage_lock:
        if getattr(state, "optuna_storage", None) is None:
            state.optuna_storage = optuna_storage(state.settings.database_url)
    return state.optuna_storage


def get_optuna_storage(request: Request) -> Any:
    return optuna_storage_of(request.app)


OptunaStorageDep = Annotated[Any, Depends(get_optuna_storage)]


def job_or_404(session: Session, job_id: str, tenant: str) -> Job:
    """The job ``job_id``, if ``tenant`` owns it; 404 otherwise (never 403: no leak)."""
    job = jobs.get_job(session, job_id, tenant=tenant)
    if job is None:
        raise HTTPException(
            status_code=404,
            detail=f"job {shown_id(job_id)} not found; GET /v1/jobs lists your jobs",
        )
    return job


def shown_id(job_id: str, limit: int = 64) -> str:
    """A job id as an error message echoes it: whole up to ``limit`` characters, else cut."""
    if len(job_id) <= limit:
        return job_id
    return f"{job_id[:limit]}... ({len(job_id)} characters; a job id has 32)"


def get_job_or_404(job_id: str, session: SessionDep, tenant: CurrentTenant) -> Job:
    """The job named in the path, if this tenant owns it; 404 otherwise (never 403: no leak)."""
    return job_or_404(session, job_id, tenant)


JobDep = Annotated[Job, Depends(get_job_or_404)]
