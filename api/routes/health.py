"""``/healthz`` (the process answers) and ``/readyz`` (and its database does too)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.schemas import Health

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"description": "the database cannot be reached"}},
    summary="Readiness: the database answers",
)
def readyz(request: Request) -> Health | JSONResponse:
    """``SELECT 1`` on the store; 503 with the reason while the database is down."""
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc) or exc).splitlines()[0]
        log.warning("readiness check failed: %s", reason)
        return JSONResponse(
            status_code=503,
            content={"detail": f"database unavailable: {reason}", "status": "unavailable"},
        )
    return Health(status="ok", database="ok")
