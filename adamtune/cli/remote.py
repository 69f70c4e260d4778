"""``adamtune submit|status|recommendation|cancel``: the CLI side of the REST API.

Every HTTP call goes through :class:`tuner.client.Client`; this module only turns answers
into terminal output and API errors into messages that say what to do. Results go to
stdout, progress and errors to stderr, so ``JOB=$(adamtune submit job.yaml)`` works.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

from adamtune.cli.render import fmt, progress_line, render_recommendation
from tuner.client import CONNECTION_FAILED, ApiError, Client
from tuner.db.status import JobStatus
from tuner.spec import JobFileError, load_job_file


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, api_key=args.api_key)


def explain(exc: ApiError, url: str) -> str:
    """A message for a failed request that says what went wrong and how to fix it."""
    if exc.status == CONNECTION_FAILED:
        return (
            f"error: cannot reach the adamtune API at {url} ({exc.detail}).\n"
            "  Is the service running? Start one with `adamtune up`, or point --url "
            "(or ADAMTUNE_URL) at it."
        )
    if exc.status == 401:
        return (
            f"error: the API needs a valid API key: {exc.detail}\n"
            "  Pass --api-key or set ADAMTUNE_API_KEY; an operator creates one with "
            "`adamtune keys create --tenant NAME`."
        )
    if exc.status == 403:
        return f"error: this API key may not do that: {exc.detail}"
    if exc.status == 404:
        return (
            f"error: not found: {exc.detail}\n"
            "  Check the job id (`adamtune submit` prints it)."
        )
    if exc.status == 422:
        return f"error: the API refused the request: {exc.detail}"
    return f"error: the API answered {exc.status}: {exc.detail}"


def _guarded(action: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; API errors and bad job files become one message on stderr, exit 1."""
    if not getattr(args, "verbose", False):
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    try:
        return action(args)
    except ApiError as exc:
        print(explain(exc, args.url), file=sys.stderr)
    except JobFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 1


class ProgressPrinter:
    """Redraws one line in place on a terminal; elsewhere prints a line per change."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last = ""

    def __call__(self, job: dict[str, Any]) -> None:
        line = progress_line(job)
        if line == self._last:
            return
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last)))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last = line

    def close(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()


def _submit(args: argparse.Namespace) -> int:
    spec = load_job_file(args.file)
    with _client(args) as client:
        job = client.submit(spec, idempotency_key=args.idempotency_key)
        print(f"submitted job {job['id']} ({job['status']})", file=sys.stderr)
        if not args.watch:
            print(job["id"])
            print(f"  follow it with: adamtune status {job['id']}", file=sys.stderr)
            return 0
        return _watch(client, job["id"])


def _watch(client: Client, job_id: str) -> int:
    printer = ProgressPrinter(sys.stderr)
    try:
        job = client.wait(job_id, poll=1.0, on_progress=printer)
    except KeyboardInterrupt:
        printer.close()
        print(
            f"stopped watching; job {job_id} keeps running (adamtune cancel {job_id})",
            file=sys.stderr,
        )
        return 130
    printer.close()
    if job["status"] != JobStatus.COMPLETED:
        reason = f": {job['error']}" if job.get("error") else ""
        print(f"error: job {job_id} ended {job['status']}{reason}", file=sys.stderr)
        return 1
    print(f"job {job_id} completed")
    print(render_recommendation(client.recommendation(job_id)))
    return 0


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.get(args.job)
    rows = [
        ("job", f"{job['id']}" + (f"  ({job['name']})" if job.get("name") else "")),
        ("workload", job.get("workload")),
        ("status", job["status"] + (f" (phase: {job['phase']})" if job.get("phase") else "")),
        ("progress", progress_line(job).split("] ", 1)[-1]),
        ("created", job.get("created_at")),
        ("started", job.get("started_at") or "not yet (queued)"),
        ("finished", job.get("finished_at") or "not yet"),
        ("updated", job.get("updated_at")),
    ]
    if job.get("error"):
        rows.append(("error", job["error"]))
    for key, value in rows:
        print(f"{key:<10}{fmt(value)}")
    return 0


def _recommendation(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rec = client.recommendation(args.job)
    print(render_recommendation(rec, args.format))
    if not rec.get("final"):
        print("note: partial recommendation, the search is still running", file=sys.stderr)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel(args.job)
    print(f"job {job['id']} is {job['status']}")
    return 0


def run_submit(args: argparse.Namespace) -> int:
    """``adamtune submit FILE [--watch]``."""
    return _guarded(_submit, args)


def run_status(args: argparse.Namespace) -> int:
    """``adamtune status JOB``."""
    return _guarded(_status, args)


def run_recommendation(args: argparse.Namespace) -> int:
    """``adamtune recommendation JOB [--format json|yaml|python|text]``."""
    return _guarded(_recommendation, args)


def run_cancel(args: argparse.Namespace) -> int:
    """``adamtune cancel JOB``."""
    return _guarded(_cancel, args)
