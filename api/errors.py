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
from tuner import spec
from tuner.db.engine import StoreConflict, StoreError, StoreUnavailable, sqlite_path_problem

log = logging.getLogger(__name__)
UNPARSED_BODY = "There was an error parsing the body"  # FastAPI's words, for any cause


def field_error(loc: Sequence[str | int], msg: str, type_: str = "value_error") -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": type_}


def unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": errors})


class UnprocessableJob(Exception):
    """A job body that is valid JSON but that this server refuses (unknown workload, limits)."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        super().__init__("; ".join(e["msg"] for e in errors))


def _clean(error: Any, request: Request, body: Any) -> dict[str, Any]:
    """One validation error, worded as :func:`tuner.spec.error_message` words it for the CLI,
    except where the body as a whole was unreadable: then what to send instead."""
    loc, type_ = list(error.get("loc", ())), str(error.get("type", "value_error"))
    if type_ == "json_invalid" and isinstance(body, str) and len(loc) == 2:
        return field_error(["body"], _json_error(body, int(loc[1]), error), type_)
    if type_ == "model_attributes_type" and loc == ["body"]:
        return field_error(loc, _not_an_object(request, error.get("input")), type_)
    return field_error(loc, spec.error_message(error), type_)


def _json_error(doc: str, pos: int, error: Any) -> str:
    line = doc.count("\n", 0, pos) + 1
    column = pos - (doc.rfind("\n", 0, pos) + 1) + 1
    what = (error.get("ctx") or {}).get("error", "JSON decode error")
    return (
        f"the body is not valid JSON: {what} at line {line}, column {column} "
        f"(character {pos}); fix the JSON there"
    )


def _not_an_object(request: Request, given: Any) -> str:
    content_type = request.headers.get("content-type")
    if isinstance(given, bytes | bytearray) or (
        content_type and "json" not in content_type.lower()
    ):
        sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        return (
            f"the body was sent with {sent}, so it was not read as JSON; send the job as a "
            "JSON object with the header Content-Type: application/json"
        )
    kind = {list: "an array", str: "a string", int: "a number", float: "a number"}.get(
        type(given), "not an object"
    )
    return f'the body must be one JSON object (a job: {{"workload": ...}}), not {kind}'


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return unprocessable([_clean(e, request, exc.body) for e in exc.errors()])


async def _unprocessable_job(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnprocessableJob)
    return unprocessable(exc.errors)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 400 and detail == UNPARSED_BODY:
        detail = _unparsed_body(exc.__cause__)
    return JSONResponse(
        status_code=exc.status_code, content={"detail": detail}, headers=exc.headers
    )


def _unparsed_body(cause: BaseException | None) -> str:
    """What FastAPI's "There was an error parsing the body" was about."""
    if isinstance(cause, UnicodeDecodeError):
        byte = cause.object[cause.start : cause.start + 1].hex()
        return (
            f"the body is not UTF-8: byte 0x{byte} at position {cause.start} cannot be "
            "decoded; send the JSON encoded as UTF-8"
        )
    reason = f" ({cause})" if cause else ""
    return f"the body could not be read as JSON{reason}; send one UTF-8 JSON object"


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    problem = sqlite_path_problem(request.app.state.settings.database_url)
    if problem:  # retrying cannot help: say what to fix
        return JSONResponse(status_code=503, content={"detail": problem})
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
