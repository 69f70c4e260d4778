"""The Optuna dashboard inside the API: same storage, same keys, each tenant its own studies.

optuna-dashboard is a WSGI (Bottle) app that serves its single-page UI at ``/dashboard``,
its JSON at ``/api/...`` and its assets at ``/static/...``, with those absolute paths baked
into its JavaScript. :class:`DashboardDispatch` therefore hands exactly those paths, whole,
to the dashboard (through ``a2wsgi``) and everything else to adamtune. It sits inside
:class:`api.auth.ApiKeyMiddleware`, so the dashboard needs a key like every other route.

A tenant must not see another tenant's studies: each tenant gets a dashboard over a
:func:`tenant_storage` that lists only the studies of that tenant's jobs and answers
"no such study" for the rest; a request addressed to such a study is answered 404 here,
before the dashboard sees it (a probe is not an error: logged at INFO, no traceback). The
study list names each study by its job's name. The dashboard is read-only here (jobs are
created, changed and cancelled through ``/v1``): a request other than GET or HEAD gets a
405, and its page loads :data:`READ_ONLY_SCRIPT`, which says so and hides the buttons that
would write. Its server-side plots (``/api/studies/N/plot/...``) need plotly; without it
they answer 501 with the reason (the dashboard's own charts are drawn in the browser).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import tenant_of
from api.evidence import importances_hidden_reason, shown_importances, trial_counts
from tuner.db import recommendations, trials
from tuner.db.engine import transaction
from tuner.db.models import DEFAULT_TENANT, Job

log = logging.getLogger(__name__)

DASHBOARD_PREFIXES = ("/dashboard", "/api/", "/static/", "/csv/", "/favicon.ico")
READ_METHODS = frozenset({"GET", "HEAD"})
READ_ONLY_SCRIPT = "/static/adamtune-read-only.js"
READ_ONLY_SCRIPT_FILE = Path(__file__).resolve().parent / "templates" / "dashboard-read-only.js"
STUDY_PATH = re.compile(r"^/(?:api/studies|csv)/(\d+)(?:/|$)")
IMPORTANCES_PATH = re.compile(r"^/api/studies/\d+/param_importances$")
PLOT_PATH = re.compile(r"^/api/studies/\d+/plot(?:/|$)")
NO_PLOTLY = (
    "the dashboard's server-side plots need plotly, which is not installed on this server; "
    "the dashboard draws its charts in the browser without it (an operator can "
    "`pip install plotly` to enable this route)"
)


def is_dashboard_path(path: str) -> bool:
    return path == "/dashboard" or any(path.startswith(p) for p in DASHBOARD_PREFIXES)


def tenant_studies(session: Session, tenant: str) -> dict[str, str]:
    """The study names of ``tenant``'s jobs, each with what people call it: the job's name
    and id (the id alone for a job without a name)."""
    rows = session.execute(
        select(Job.study_name, Job.name, Job.id).where(Job.tenant == tenant)
    ).all()
    return {study: f"{name} ({job_id})" if name else job_id for study, name, job_id in rows}


def tenant_storage(base: BaseStorage, allowed: Callable[[], dict[str, str]]) -> BaseStorage:
    """A view of ``base`` that lists only the studies ``allowed()`` returns, by their labels.

    The view is an instance of ``base``'s own class sharing its state (engine, caches), so
    optuna-dashboard, which checks ``isinstance(storage, BaseStorage)``, uses it unchanged;
    every study-addressed read checks ownership first. Only the list (which is also where the
    dashboard reads a study's header) is relabelled: lookups by name still see the real one.
    """

    class TenantView(type(base)):  # type: ignore[misc]
        def get_all_studies(self):  # type: ignore[no-untyped-def]
            labels = allowed()
            return [
                _labelled(s, labels[s.study_name])
                for s in super().get_all_studies()
                if s.study_name in labels
            ]

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


def _labelled(study: Any, label: str) -> Any:
    shown = copy.copy(study)
    shown.study_name = label
    return shown


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
        path = scope["path"]
        if scope["method"] not in READ_METHODS:
            await _json(send, 405, "the dashboard is read-only here; manage jobs through /v1")
            return
        tenant = tenant_of(scope) or DEFAULT_TENANT
        study = STUDY_PATH.match(path)
        if study and not await run_in_threadpool(self._owns, tenant, int(study.group(1))):
            log.info(
                "dashboard: tenant %r asked for study %s, not one of its own", tenant, study[1]
            )
            detail = f"no study {study[1]} among your jobs' studies; /api/studies lists them"
            await _json(send, 404, detail)
            return
        if IMPORTANCES_PATH.match(path) and study:
            body = await run_in_threadpool(self._importances, tenant, int(study.group(1)))
            await _send(send, 200, json.dumps(body).encode(), b"application/json")
            return
        if PLOT_PATH.match(path) and importlib.util.find_spec("plotly") is None:
            await _json(send, 501, NO_PLOTLY)
            return
        if path == READ_ONLY_SCRIPT:
            await _send(send, 200, READ_ONLY_SCRIPT_FILE.read_bytes(), b"text/javascript")
            return
        dashboard = self._dashboard_for(tenant)
        if scope["method"] == "GET" and (path == "/dashboard" or path.startswith("/dashboard/")):
            await dashboard(scope, receive, _with_read_only_script(send))
        else:
            await dashboard(scope, receive, send)

    def _owns(self, tenant: str, study_id: int) -> bool:
        try:
            name = self.storage_factory().get_study_name_from_id(study_id)
        except KeyError:
            return False
        with transaction(self.session_factory) as session:
            return name in tenant_studies(session, tenant)

    def _importances(self, tenant: str, study_id: int) -> dict[str, Any]:
        """The dashboard's importances answer with adamtune's own: the recommendation's,
        withheld by the same rule (:mod:`api.evidence`), so both views show the same."""
        storage = self.storage_factory()
        name = storage.get_study_name_from_id(study_id)
        records = [asdict(r) for r in trials.list_trials(storage, name)]
        counts = trial_counts(records)
        with transaction(self.session_factory) as session:
            job = session.scalars(
                select(Job).where(Job.study_name == name, Job.tenant == tenant)
            ).first()
            rec = recommendations.get_recommendation(session, job.id) if job else None
            body = dict(rec.body) if rec else {}
        shown = shown_importances(body, counts)
        distributions: dict[str, str] = {}
        for trial in storage.get_all_trials(study_id, deepcopy=False):
            for param, dist in trial.distributions.items():
                distributions.setdefault(param, type(dist).__name__)
        listed = [
            {"name": k, "importance": v, "distribution": distributions.get(k, "FloatDistribution")}
            for k, v in sorted(shown.items(), key=lambda kv: -kv[1])
        ]
        reason = importances_hidden_reason(counts) or (None if listed else "no importances yet")
        return {"param_importances": [listed], "reason": reason}

    def _dashboard_for(self, tenant: str) -> ASGIApp:
        with self._lock:
            if tenant not in self._apps:
                self._apps[tenant] = self._build(tenant)
            return self._apps[tenant]

    def _build(self, tenant: str) -> ASGIApp:
        from a2wsgi import WSGIMiddleware
        from optuna_dashboard import wsgi

        def allowed() -> dict[str, str]:
            with transaction(self.session_factory) as session:
                return tenant_studies(session, tenant)

        log.info("optuna dashboard opened for tenant %r", tenant)
        return WSGIMiddleware(wsgi(tenant_storage(self.storage_factory(), allowed)))  # type: ignore[arg-type,return-value]


def _with_read_only_script(send: Send) -> Send:
    """``send`` for the dashboard's HTML page, with :data:`READ_ONLY_SCRIPT` loaded in it."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def send_page(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        tag = f'<script defer src="{READ_ONLY_SCRIPT}"></script></head>'.encode()
        body = body.replace(b"</head>", tag, 1)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", b"%d" % len(body)))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return send_page


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail, "reason": detail}).encode()
    await _send(send, status, body, b"application/json")


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
