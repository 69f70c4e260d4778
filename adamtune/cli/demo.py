"""``adamtune demo``: the whole service on a fresh SQLite file, driven through its REST API.

Starts the API (on a free port) and one worker as child processes, submits
``examples/digits.yaml`` over HTTP, prints progress until the job completes, then the
recommendation (readable, and the PyTorch snippet) and the URLs; stops everything after
(unless ``--keep``). Runs without API keys (``ADAMTUNE_AUTH=disabled``): it is local only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adamtune.cli.local_service import StopRequested, prepare_database, start_service, supervised
from adamtune.cli.processes import Children, free_port
from tuner.db.status import JobStatus

EXAMPLE = Path("examples") / "digits.yaml"
DEMO_DB = Path("adamtune-demo.db")
DEMO_TIMEOUT_S = 1800.0


def example_file() -> Path:
    """examples/digits.yaml from the working directory, else from the source checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / EXAMPLE).is_file():
            return base / EXAMPLE
    raise FileNotFoundError(
        f"{EXAMPLE} not found; run `adamtune demo` from the adamtune checkout (or `make demo`)"
    )


def fresh_database(path: Path) -> str:
    """Delete the demo database (and its WAL files) and return its SQLite URL."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path.resolve()}"


def run_demo(args: argparse.Namespace) -> int:
    """Fresh SQLite service, the digits job through the REST API, the recommendation printed."""
    from tuner.spec import JobFileError, load_job_file

    try:
        spec = load_job_file(example_file())
    except (FileNotFoundError, JobFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    url = fresh_database(DEMO_DB)
    env = {"ADAMTUNE_DATABASE_URL": url, "ADAMTUNE_AUTH": "disabled"}
    os.environ.update(env)
    print(f"demo: fresh database {DEMO_DB} (ADAMTUNE_AUTH=disabled: local, no API keys)")
    prepare_database(url)
    port = args.port or free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="adamtune-demo-"))
    children = Children(env=env, log_dir=log_dir)

    def demo() -> int:
        urls = start_service(children, host="127.0.0.1", port=port, workers=1, device="cpu",
                             dashboard=True)
        code = _tune(urls, spec.model_dump(mode="json"))
        if code != 0:
            print(f"(service logs in {log_dir})", file=sys.stderr)
        elif args.keep:
            return _keep_running(urls)
        print("stopping the service...", file=sys.stderr)
        return code

    # SIGINT, SIGTERM, SIGHUP: every child is stopped first, then the demo exits 130.
    return supervised(children, demo, stopped_code=130,
                      error_hint=f"\n(service logs in {log_dir})")


def _tune(urls: dict[str, str], body: dict[str, Any]) -> int:
    from adamtune.cli.render import progress_line, render_recommendation
    from tuner.client import ApiError, Client

    api = urls["api"]
    with Client(api) as client:
        try:
            job = client.submit(body)
            print(f"submitted job {job['id']} ({body['workload']}, "
                  f"{body['budget']['trials']} trials); waiting for it...")
            last = [""]

            def show(current: dict[str, Any]) -> None:
                line = progress_line(current)
                if line != last[0]:
                    print(f"  {line}", flush=True)
                    last[0] = line

            job = client.wait(job["id"], timeout=DEMO_TIMEOUT_S, poll=1.0, on_progress=show)
            if job["status"] != JobStatus.COMPLETED:
                print(f"error: job {job['id']} ended {job['status']}: {job.get('error')}",
                      file=sys.stderr)
                return 1
            rec = client.recommendation(job["id"])
        except (ApiError, TimeoutError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print()
    print(render_recommendation(rec))
    links = {"job page": f"{api}/jobs/{job['id']}", "job (JSON)": f"{api}/v1/jobs/{job['id']}",
             **urls}
    print("\nURLs (while the service runs; `adamtune demo --keep` keeps it running):")
    for name, url in links.items():
        print(f"  {name:11s} {url}")
    return 0


def _keep_running(urls: dict[str, str]) -> int:
    """Until a stop signal: then 0, the way a user ends ``--keep``."""
    print(f"\nthe service keeps running at {urls['api']}; Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(1.0)
    except StopRequested:
        return 0
