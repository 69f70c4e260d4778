"""A small Python client of the adamtune REST API; the CLI's remote commands use it too,
so every HTTP call lives here. It needs httpx and pydantic, never torch.

    from tuner.client import Client
    with Client("http://127.0.0.1:8000", api_key="...") as client:
        job = client.submit({"workload": "digits_mlp", "budget": {"trials": 12}})
        job = client.wait(job["id"], timeout=600)
        print(client.recommendation(job["id"])["snippet"])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import httpx

from tuner.db.status import ACTIVE_JOB_STATUSES, FINISHED_JOB_STATUSES
from tuner.spec import JobSpec

log = logging.getLogger(__name__)

ACTIVE_STATUSES = frozenset(ACTIVE_JOB_STATUSES)
FINISHED_STATUSES = frozenset(FINISHED_JOB_STATUSES)
CONNECTION_FAILED = 0  # ApiError.status when no HTTP response came back at all

# Aliases at module level: inside Client, ``list`` names the method, not the builtin.
Rows = list[dict[str, Any]]


class ApiError(RuntimeError):
    """The API answered with an error (``status`` >= 400), or could not be reached
    (``status`` == 0). ``detail`` is the server's own explanation, as a readable string."""

    def __init__(self, status: int, detail: str, url: str = "") -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail
        self.url = url


def _format_detail(detail: Any) -> str:
    """FastAPI's 422 detail is a list of {loc, msg}; make it one line per field."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        lines = []
        for err in detail:
            if isinstance(err, Mapping):
                loc = ".".join(str(p) for p in err.get("loc", ()))
                msg = str(err.get("msg", err)).removeprefix("Value error, ")
                lines.append(f"{loc}: {msg}" if loc else msg)
            else:
                lines.append(str(err))
        return "; ".join(lines)
    return str(detail)


def _error_from_response(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        detail = _format_detail(body.get("detail", body)) if isinstance(body, dict) else str(body)
    except ValueError:
        detail = response.text.strip() or response.reason_phrase
    return ApiError(response.status_code, detail, str(response.request.url))


def _spec_body(spec: JobSpec | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec, JobSpec):
        return spec.model_dump(mode="json", exclude_unset=True)
    return dict(spec)


class Client:
    """One HTTP connection pool to an adamtune API. Usable as a context manager."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "adamtune-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; transport failures and HTTP errors both become ApiError."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ApiError(
                CONNECTION_FAILED, f"connection failed: {exc}", self.base_url
            ) from exc
        except httpx.TimeoutException as exc:
            raise ApiError(
                CONNECTION_FAILED, f"no answer from {self.base_url} in time: {exc}", self.base_url
            ) from exc
        except httpx.TransportError as exc:
            raise ApiError(
                CONNECTION_FAILED, f"request to {self.base_url} failed: {exc}", self.base_url
            ) from exc
        if response.status_code >= 400:
            raise _error_from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def submit(
        self, spec: JobSpec | Mapping[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """POST a job; returns the created (or, for a reused idempotency key, the same) job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        job: dict[str, Any] = self._json("POST", "/v1/jobs", json=_spec_body(spec), headers=headers)
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        """The job: id, status, phase, progress, error."""
        job: dict[str, Any] = self._json("GET", f"/v1/jobs/{job_id}")
        return job

    def list(self) -> Rows:
        """The jobs this key can see, newest first."""
        body = self._json("GET", "/v1/jobs")
        jobs: Rows = body["data"] if isinstance(body, dict) else body
        return jobs

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the service to cancel a job; returns the job as it is afterwards."""
        job: dict[str, Any] = self._json("POST", f"/v1/jobs/{job_id}/cancel")
        return job

    def recommendation(self, job_id: str) -> dict[str, Any]:
        """The recommended configuration (``final`` says whether the search is over)."""
        rec: dict[str, Any] = self._json("GET", f"/v1/jobs/{job_id}/recommendation")
        return rec

    def trials(self, job_id: str) -> Rows:
        """Every trial of the job's study: number, state, params, value, worker, device."""
        body = self._json("GET", f"/v1/jobs/{job_id}/trials")
        trials: Rows = body["data"] if isinstance(body, dict) else body
        return trials

    def lr_sweep(self, job_id: str) -> dict[str, Any]:
        """The LR range test: lrs, losses, smoothed, suggestions, lr_range."""
        sweep: dict[str, Any] = self._json("GET", f"/v1/jobs/{job_id}/lr-sweep")
        return sweep

    def lr_sweep_svg(self, job_id: str) -> str:
        """The LR range curve as an SVG document (for notebooks: ``IPython.display.SVG``)."""
        return self._request("GET", f"/v1/jobs/{job_id}/lr-sweep.svg").text

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        poll: float = 1.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until it is completed, failed or cancelled, and return it.

        ``on_progress`` is called with the job after every poll. Raises ``TimeoutError``
        when ``timeout`` seconds pass first (the job keeps running on the service).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["status"] in FINISHED_STATUSES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"job {job_id} is still {job['status']} after {timeout:g}s; it keeps "
                    "running on the service: wait again or cancel it"
                )
            pause = poll if deadline is None else min(poll, max(deadline - time.monotonic(), 0))
            time.sleep(pause)
