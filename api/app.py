"""The FastAPI application factory: ``create_app(settings)``.

Nothing is created at import time: the engine, the session factory and Optuna's storage
belong to one app instance (``app.state``), so tests can build apps on SQLite and on
PostgreSQL side by side. ``uvicorn --factory api.app:create_app`` reads the settings from
the environment (``ADAMTUNE_*``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from api import auth, errors, metrics, openapi
from api.dashboard import DashboardDispatch
from api.deps import get_tenant, optuna_storage_of
from api.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from api.routes import health, jobs, logs, pages, plots, results, workers, workloads
from api.schemas import error_responses
from tuner.db.engine import make_engine, make_session_factory, sqlite_path_problem
from tuner.settings import Settings

log = logging.getLogger(__name__)
API_PREFIX = "/v1"
DESCRIPTION = (
    "Tune Adam/AdamW hyperparameters: submit a job (a workload and a budget), let the "
    "workers run the LR range test and the search, then fetch a ready-to-paste recommendation."
)


def api_router() -> APIRouter:
    """Every resource's router under ``/v1``."""
    router = APIRouter(
        prefix=API_PREFIX,
        responses=error_responses(401, 500, 503),
        dependencies=[Depends(get_tenant)],  # declares the key schemes on every /v1 operation
    )
    for module in (jobs, results, logs, workloads, workers):
        router.include_router(module.router)
    return router


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    storage = getattr(app.state, "optuna_storage", None)
    if storage is not None:
        storage.engine.dispose()
    app.state.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app on ``settings`` (default: from the environment)."""
    settings = settings or Settings()
    app = FastAPI(
        title="adamtune",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # openapi.install_docs serves /docs from local files; no ReDoc (a CDN)
        redoc_url=None,
    )
    problem = sqlite_path_problem(settings.database_url)
    if problem:
        log.error("%s", problem)
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.optuna_storage = None
    errors.install(app)
    if settings.dashboard:  # inside the auth middleware: the dashboard needs a key too
        app.add_middleware(
            DashboardDispatch,
            storage_factory=lambda: optuna_storage_of(app),
            session_factory=app.state.session_factory,
        )
    auth.install(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(api_router())
    app.include_router(health.router)
    app.include_router(
        plots.router, prefix=API_PREFIX, responses=error_responses(401, 404, 500, 503)
    )
    app.include_router(pages.router)
    metrics.install(app, app.state.session_factory, settings.grace_period)
    openapi.install(app, settings)
    openapi.install_docs(app)
    return app
