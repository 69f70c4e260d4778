"""``adamtune submit|status|recommendation|cancel``: the CLI side of the REST API.

Every HTTP call goes through :class:`tuner.client.Client`; this module only turns answers
into terminal output and API errors into messages that say what to do. Results go to
stdout, progress and errors to stderr, so ``JOB=$(adamtune submit job.yaml)`` works.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

import yaml

from tuner.client import ACTIVE_STATUSES, CONNECTION_FAILED, ApiError, Client
from tuner.spec import JobFileError, load_job_file

BAR_WIDTH = 30


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


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value)


def progress_line(job: dict[str, Any]) -> str:
    """``searching  [#######------]  9/24 trials  best 0.1234``: one line for a job."""
    progress = job.get("progress") or {}
    done = int(progress.get("trials_completed") or 0)
    total = int(progress.get("trials_total") or 0)
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total) if total else 0
    label = job["status"]
    phase = job.get("phase")
    if phase and label in ACTIVE_STATUSES and f"{done}/{total}" not in phase:
        label = f"{label} ({phase})"
    best = progress.get("best_objective")
    best_text = f"  best {best:.4g}" if isinstance(best, int | float) else ""
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return f"{label:<22} [{bar}] {done}/{total} trials{best_text}"


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


def _schedule_text(rec: dict[str, Any]) -> str:
    schedule = rec.get("schedule")
    name = schedule.get("name", schedule) if isinstance(schedule, dict) else schedule
    warmup, total = rec.get("warmup_steps"), rec.get("total_steps")
    return f"{_fmt(name)}, warmup {_fmt(warmup)} of {_fmt(total)} steps"


def _gain_text(rec: dict[str, Any]) -> str:
    expected, baseline = rec.get("expected_objective"), rec.get("baseline_objective")
    if not isinstance(expected, int | float) or not isinstance(baseline, int | float):
        return _fmt(expected)
    text = f"{expected:.4g} (untuned Adam lr=1e-3: {baseline:.4g}"
    if baseline:
        gain = 100 * (baseline - expected) / abs(baseline)
        text += f", {abs(gain):.1f}% {'lower' if gain >= 0 else 'higher'}"
    return text + ")"


def recommendation_text(rec: dict[str, Any]) -> str:
    """The recommendation for a human: the settings, the gain over the baseline, the code."""
    lr_range = rec.get("lr_range") or {}
    betas = rec.get("betas")
    rows = [
        ("optimizer", _fmt(rec.get("optimizer"))),
        ("lr", _fmt(rec.get("lr"))),
        ("betas", ", ".join(_fmt(b) for b in betas) if isinstance(betas, list) else _fmt(betas)),
        ("eps", _fmt(rec.get("eps"))),
        ("weight_decay", _fmt(rec.get("weight_decay"))),
        ("schedule", _schedule_text(rec)),
        ("objective", _gain_text(rec)),
        ("sweep range", f"{_fmt(lr_range.get('low'))} .. {_fmt(lr_range.get('high'))}"),
    ]
    title = "Recommendation" + (
        "" if rec.get("final") else " (partial: the search is still running)"
    )
    lines = [title] + [f"  {k:<13}{v}" for k, v in rows]
    snippet = rec.get("snippet")
    if snippet:
        lines += ["", str(snippet).rstrip()]
    return "\n".join(lines)


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
    if job["status"] != "completed":
        reason = f": {job['error']}" if job.get("error") else ""
        print(f"error: job {job_id} ended {job['status']}{reason}", file=sys.stderr)
        return 1
    print(f"job {job_id} completed")
    print(recommendation_text(client.recommendation(job_id)))
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
        ("updated", job.get("updated_at")),
    ]
    if job.get("error"):
        rows.append(("error", job["error"]))
    for key, value in rows:
        print(f"{key:<10}{_fmt(value)}")
    return 0


def _recommendation(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rec = client.recommendation(args.job)
    if args.format == "python":
        print(str(rec.get("snippet") or "").rstrip())
    elif args.format == "yaml":
        print(yaml.safe_dump(rec, sort_keys=False).rstrip())
    else:
        print(json.dumps(rec, indent=2))
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
    """``adamtune recommendation JOB [--format json|yaml|python]``."""
    return _guarded(_recommendation, args)


def run_cancel(args: argparse.Namespace) -> int:
    """``adamtune cancel JOB``."""
    return _guarded(_cancel, args)
