"""API keys on every request: which tenant is calling, or a 401 that says how to get a key.

Default deny: :class:`ApiKeyMiddleware` wraps the whole ASGI app, so every route, page and
mounted app (``/dashboard``) needs a key except the few in ``OPEN_PATHS`` (health, metrics,
the OpenAPI docs). A route added tomorrow is guarded without anyone remembering to.

A key travels as ``Authorization: Bearer <key>``, ``X-API-Key: <key>`` or, for browsers
(pages, dashboard), HTTP Basic with the key as the password (or as the user with an empty
password, as ``curl -u KEY:`` sends it; GET and HEAD only, so a cross-site form cannot
replay a browser's cached credentials). Keys are looked up by their SHA-256 and confirmed
with ``hmac.compare_digest``, as :func:`tuner.db.keys.verify_key` does. With
``ADAMTUNE_AUTH=enabled`` (the default) and no key in the database every request is refused
(fail closed); ``ADAMTUNE_AUTH=disabled`` is the explicit, loudly logged way to run open.

Every request looks its key up in the database, so a revoked key is refused from the next
request on (no cache). The lookup is one indexed ``SELECT`` of two columns on a pooled
connection, without an ORM session (about 40 us on SQLite), because it runs on every request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable, Collection, Mapping

from fastapi import FastAPI
from fastapi.security import APIKeyHeader, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api import openapi
from tuner.db import keys
from tuner.db.engine import StoreError, StoreUnavailable, sqlite_path_problem, translate_error
from tuner.db.models import DEFAULT_TENANT, ApiKey
from tuner.settings import Settings

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
TENANT_STATE_KEY = "tenant"
# Open without a key: probes, Prometheus (aggregates only, no tenant data), the API docs.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Declared on every guarded operation of the OpenAPI spec (see api.deps.get_tenant), so
# /docs shows Authorize; auto_error=False because ApiKeyMiddleware answers with its own 401.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="Authorization: Bearer <key> (from `adamtune keys create --tenant NAME`)",
)
api_key_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="the key itself")
CREATE_KEY_HINT = "create one with `adamtune keys create --tenant NAME` (it prints the key once)"
READ_METHODS = frozenset({"GET", "HEAD"})
SEND_KEY_HINT = f"send 'Authorization: Bearer <key>' or '{API_KEY_HEADER}: <key>'"
# Core statements (compiled once, cached): the active key with this hash; any active key.
_ACTIVE_KEY = select(ApiKey.tenant, ApiKey.key_hash).where(
    ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None)
)
_ANY_ACTIVE_KEY = select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)


class AuthError(Exception):
    """A request without a usable key; ``detail`` says what to send or whom to ask."""

    def __init__(self, detail: str, status_code: int = 401):
        self.detail = detail
        self.status_code = status_code
        super().__init__(detail)


def _basic_key(token: str) -> str:
    """The key inside HTTP Basic credentials: the password, or the user if no password."""
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError(f"malformed Basic credentials; {SEND_KEY_HINT}") from None
    user, _, password = decoded.partition(":")
    return password or user


def _authorization_key(value: str, method: str) -> str:
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if not token:
        raise AuthError(f"empty Authorization header; {SEND_KEY_HINT}")
    if scheme.lower() == "bearer":
        return token
    if scheme.lower() == "basic" and method not in READ_METHODS:
        # Browsers replay cached Basic credentials on cross-site form posts: no CSRF that way.
        raise AuthError(f"HTTP Basic is accepted only to read pages (GET); {SEND_KEY_HINT}")
    if scheme.lower() == "basic":
        return _basic_key(token)
    raise AuthError(f"unsupported Authorization scheme {scheme[:20]!r}; {SEND_KEY_HINT}")


def key_of(headers: Mapping[str, str], method: str = "GET") -> str | None:
    """The key a request carries, or None; AuthError when a key header is present but empty
    or malformed, or two headers name different keys (fail closed: no guessing)."""
    found = set()
    if "authorization" in headers:
        found.add(_authorization_key(headers["authorization"], method))
    if API_KEY_HEADER.lower() in headers:
        value = headers[API_KEY_HEADER.lower()].strip()
        if not value:
            raise AuthError(f"empty {API_KEY_HEADER} header; {SEND_KEY_HINT}")
        found.add(value)
    if len(found) > 1:
        raise AuthError("two different keys sent (Authorization and X-API-Key); send only one")
    return found.pop() if found else None


def tenant_of_key(db: Session | Connection, key: str) -> str | None:
    """The tenant of the active key ``key``, or None (unknown or revoked): found by its
    SHA-256 (an indexed, unique column), confirmed with a constant-time comparison."""
    digest = keys.hash_key(key)
    row = db.execute(_ACTIVE_KEY, {"digest": digest}).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return str(row.tenant)


def authenticate(db: Session | Connection, settings: Settings, key: str | None) -> str:
    """The tenant that ``key`` belongs to; AuthError (401) when there is none."""
    if settings.auth == "disabled":
        return DEFAULT_TENANT
    tenant = tenant_of_key(db, key) if key else None
    if tenant is not None:
        return tenant
    if db.execute(_ANY_ACTIVE_KEY).first() is None:
        raise AuthError(
            "authentication is enabled but no API key exists yet: "
            f"{CREATE_KEY_HINT}, or set ADAMTUNE_AUTH=disabled to run without keys "
            "(only on a machine nobody else can reach)"
        )
    if key is None:
        raise AuthError(f"no API key: {SEND_KEY_HINT}; an operator can {CREATE_KEY_HINT}")
    raise AuthError(
        f"an invalid or revoked API key was sent; {SEND_KEY_HINT} with an active key "
        "(`adamtune keys list` shows them); an operator can " + CREATE_KEY_HINT
    )


def tenant_of(scope: Scope) -> str | None:
    """The tenant :class:`ApiKeyMiddleware` authenticated for this request, if it ran."""
    state = scope.get("state") or {}
    tenant = state.get(TENANT_STATE_KEY)
    return tenant if isinstance(tenant, str) else None


def challenge_for(path: str) -> str:
    """``WWW-Authenticate``: Basic for pages and the dashboard (browsers then ask for the
    key), Bearer for the JSON API."""
    return "Bearer" if path.startswith("/v1") else 'Basic realm="adamtune", charset="UTF-8"'


class ApiKeyMiddleware:
    """Pure ASGI guard: refuse requests without a valid key, record the tenant otherwise.

    Reusable around any ASGI app (e.g. a mounted dashboard): pass the settings and a session
    factory on the same database (a ``sessionmaker`` bound to an engine: keys are read on
    that engine's pooled connections, without a session). ``tenants``, when given, admits
    only those tenants (403 for others), for apps that show every tenant's data.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        session_factory: Callable[[], Session],
        open_paths: Collection[str] = OPEN_PATHS,
        tenants: Collection[str] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.engine = _engine_of(session_factory)
        self.open_paths = frozenset(open_paths)
        self.tenants = frozenset(tenants) if tenants is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        try:
            tenant = await self._tenant(scope)
        except AuthError as exc:
            await _refuse(scope, send, exc.status_code, exc.detail, challenge_for(scope["path"]))
            return
        except StoreUnavailable as exc:
            log.warning("auth: store unavailable: %s", exc)
            problem = sqlite_path_problem(self.settings.database_url)
            detail = problem or "the database is unavailable or busy; retry in a few seconds"
            await _refuse(scope, send, 503, detail, None, retry_after=not problem)
            return
        except StoreError:
            log.exception("auth: store error on %s", scope["path"])
            await _refuse(scope, send, 500, "internal error while checking the API key", None)
            return
        scope.setdefault("state", {})[TENANT_STATE_KEY] = tenant
        await self.app(scope, receive, send)

    async def _tenant(self, scope: Scope) -> str:
        if self.settings.auth == "disabled":
            return DEFAULT_TENANT
        key = key_of(Headers(scope=scope), scope.get("method", "GET"))
        tenant = await run_in_threadpool(self._lookup, key)
        if self.tenants is not None and tenant not in self.tenants:
            raise AuthError(
                f"tenant {tenant!r} may not use {scope['path']}; it is open to: "
                f"{', '.join(sorted(self.tenants))}",
                status_code=403,
            )
        return tenant

    def _lookup(self, key: str | None) -> str:
        """One read-only lookup on a pooled connection (rolled back when it is returned);
        driver errors become StoreError, as in :func:`tuner.db.engine.transaction`."""
        try:
            with self.engine.connect() as conn:
                return authenticate(conn, self.settings, key)
        except SQLAlchemyError as exc:
            raise translate_error(exc) from exc


def _engine_of(session_factory: Callable[[], Session]) -> Engine:
    bind = session_factory.kw.get("bind") if isinstance(session_factory, sessionmaker) else None
    if not isinstance(bind, Engine):
        raise TypeError(
            "ApiKeyMiddleware needs a sessionmaker bound to an engine "
            "(tuner.db.engine.make_session_factory(engine)); got "
            f"{type(session_factory).__name__}"
        )
    return bind


async def _refuse(
    scope: Scope,
    send: Send,
    status: int,
    detail: str,
    challenge: str | None,
    retry_after: bool = False,
) -> None:
    """A JSON error (``{"detail": ...}``); a websocket is closed with policy violation."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if challenge and status == 401:
        headers.append((b"www-authenticate", challenge.encode()))
    if retry_after:
        headers.append((b"retry-after", b"5"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def docs_paths(app: FastAPI) -> set[str]:
    """The OpenAPI document and its viewers, open so that /docs can show Authorize."""
    paths = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return {p for p in paths if p} | openapi.DOCS_PATHS


def install(app: FastAPI) -> None:
    """Guard ``app`` (built on ``app.state.settings`` and ``app.state.session_factory``)."""
    settings: Settings = app.state.settings
    if settings.auth == "disabled":
        log.warning(
            "ADAMTUNE_AUTH=disabled: NO AUTHENTICATION. Anyone who can reach this API can "
            "submit, read and cancel every job (all as tenant %r). Create a key with "
            "`adamtune keys create --tenant NAME` and unset ADAMTUNE_AUTH before sharing it.",
            DEFAULT_TENANT,
        )
    open_paths = OPEN_PATHS | docs_paths(app)
    app.add_middleware(
        ApiKeyMiddleware,
        settings=settings,
        session_factory=app.state.session_factory,
        open_paths=open_paths,
    )
