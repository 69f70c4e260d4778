"""Every error is JSON ``{"detail": ...}`` that says what was wrong and how to fix it.

Validation errors (422) list each bad field as ``{"loc": [...], "msg": "...", "type": ...}``
without echoing the input back. Store outages are 503; anything unexpected is logged with
a request id and answered with a generic 500 that carries the same id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.middleware import request_id_of
from tuner.db.engine import StoreConflict, StoreError, StoreUnavailable

log = logging.getLogger(__name__)


def field_error(loc: Sequence[str | int], msg: str, type_: str = "value_error") -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": type_}


def unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": errors})


class UnprocessableJob(Exception):
    """A job body that is valid JSON but that this server refuses (unknown workload, limits)."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        super().__init__("; ".join(e["msg"] for e in errors))


def _clean(error: Any) -> dict[str, Any]:
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        msg = "unknown field; remove it (see the schema at /docs for the fields allowed here)"
    if error.get("type") == "missing":
        msg = "field required"
    return field_error(list(error.get("loc", ())), msg, str(error.get("type", "value_error")))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return unprocessable([_clean(e) for e in exc.errors()])


async def _unprocessable_job(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnprocessableJob)
    return unprocessable(exc.errors)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers
    )


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    detail = "the database is unavailable or busy; retry in a few seconds"
    return JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": "5"})


async def _store_conflict(request: Request, exc: Exception) -> JSONResponse:
    log.info("store conflict on %s %s: %s", request.method, request.url.path, exc)
    detail = "the request conflicted with a concurrent change; retry it"
    return JSONResponse(status_code=409, content={"detail": detail})


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    request_id = request_id_of(request)
    log.exception(
        "unhandled error on %s %s (request id %s)",
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    detail = f"internal error; report request id {request_id} to the operator"
    return JSONResponse(
        status_code=500, content={"detail": detail}, headers={"X-Request-ID": request_id}
    )


def install(app: FastAPI) -> None:
    """Register the handlers; order does not matter, the most specific class wins."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(UnprocessableJob, _unprocessable_job)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(StoreConflict, _store_conflict)
    app.add_exception_handler(StoreError, _internal)
    app.add_exception_handler(Exception, _internal)
