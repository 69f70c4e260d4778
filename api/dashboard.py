"""The Optuna dashboard inside the API: same storage, same keys, each tenant its own studies.

optuna-dashboard is a WSGI (Bottle) app that serves its single-page UI at ``/dashboard``,
its JSON at ``/api/...`` and its assets at ``/static/...``, with those absolute paths baked
into its JavaScript. :class:`DashboardDispatch` therefore hands exactly those paths, whole,
to the dashboard (through ``a2wsgi``) and everything else to adamtune. It sits inside
:class:`api.auth.ApiKeyMiddleware`, so the dashboard needs a key like every other route.

A tenant must not see another tenant's studies: each tenant gets a dashboard over a
:func:`tenant_storage` that lists only the studies of that tenant's jobs and answers
"no such study" for the rest. The dashboard is read-only here (jobs are created, changed
and cancelled through ``/v1``), so a request other than GET or HEAD gets a 405.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from optuna.storages import BaseStorage
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import tenant_of
from tuner.db.engine import transaction
from tuner.db.models import DEFAULT_TENANT, Job

log = logging.getLogger(__name__)

DASHBOARD_PREFIXES = ("/dashboard", "/api/", "/static/", "/csv/", "/favicon.ico")
READ_METHODS = frozenset({"GET", "HEAD"})


def is_dashboard_path(path: str) -> bool:
    return path == "/dashboard" or any(path.startswith(p) for p in DASHBOARD_PREFIXES)


def tenant_study_names(session: Session, tenant: str) -> set[str]:
    return set(session.scalars(select(Job.study_name).where(Job.tenant == tenant)))


def tenant_storage(base: BaseStorage, allowed: Callable[[], set[str]]) -> BaseStorage:
    """A view of ``base`` that shows only the studies whose names ``allowed()`` returns.

    The view is an instance of ``base``'s own class sharing its state (engine, caches), so
    optuna-dashboard, which checks ``isinstance(storage, BaseStorage)``, uses it unchanged;
    every study-addressed read checks ownership first.
    """

    class TenantView(type(base)):  # type: ignore[misc]
        def get_all_studies(self):  # type: ignore[no-untyped-def]
            names = allowed()
            return [s for s in super().get_all_studies() if s.study_name in names]

        def _check_study(self, study_id: int) -> None:
            name = type(base).get_study_name_from_id(self, study_id)
            if name not in allowed():
                raise KeyError(f"no study with id {study_id}")

    for name in _STUDY_METHODS:
        setattr(TenantView, name, _guarded(name))
    view = object.__new__(TenantView)
    view.__dict__ = base.__dict__  # the same engine, sessions and caches as ``base``
    return view


_STUDY_METHODS = (
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_trials",
    "get_n_trials",
    "get_best_trial",
    "get_trial_id_from_study_id_trial_number",
)


def _guarded(name: str) -> Callable[..., Any]:
    """``name`` of the base class, after checking that the study (first argument) is allowed.
    Trial-addressed methods need no guard: the dashboard only writes through them, and it
    is read-only here."""

    def method(self: Any, study_id: int, *args: Any, **kwargs: Any) -> Any:
        self._check_study(study_id)
        return getattr(type(self).__mro__[1], name)(self, study_id, *args, **kwargs)

    method.__name__ = name
    return method


class DashboardDispatch:
    """Route the dashboard's paths to a per-tenant optuna-dashboard; the rest to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        storage_factory: Callable[[], BaseStorage],
        session_factory: Callable[[], Session],
    ) -> None:
        self.app = app
        self.storage_factory = storage_factory
        self.session_factory = session_factory
        self._apps: dict[str, ASGIApp] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_dashboard_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in READ_METHODS:
            await _json(send, 405, "the dashboard is read-only here; manage jobs through /v1")
            return
        tenant = tenant_of(scope) or DEFAULT_TENANT
        await self._dashboard_for(tenant)(scope, receive, send)

    def _dashboard_for(self, tenant: str) -> ASGIApp:
        with self._lock:
            if tenant not in self._apps:
                self._apps[tenant] = self._build(tenant)
            return self._apps[tenant]

    def _build(self, tenant: str) -> ASGIApp:
        from a2wsgi import WSGIMiddleware
        from optuna_dashboard import wsgi

        def allowed() -> set[str]:
            with transaction(self.session_factory) as session:
                return tenant_study_names(session, tenant)

        log.info("optuna dashboard opened for tenant %r", tenant)
        return WSGIMiddleware(wsgi(tenant_storage(self.storage_factory(), allowed)))  # type: ignore[arg-type,return-value]


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
