"""``adamtune api | worker | up``: the service's processes.

``api`` serves the REST API with uvicorn; ``worker`` runs the worker loop on one device;
``up`` runs the whole service on one machine (migrations, the API, N workers) until Ctrl-C,
with :mod:`adamtune.cli.local_service` (which ``adamtune demo`` uses too).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

from adamtune.cli.local_service import (
    local_auth_env,
    prepare_database,
    start_service,
    supervise,
    supervised,
)
from adamtune.cli.output import say
from adamtune.cli.processes import Children, port_is_free

log = logging.getLogger(__name__)

EXIT_USAGE = 2
START_TIMEOUT_S = 60.0  # the worker waits this long for the database


def _settings() -> Any:
    from pydantic import ValidationError

    from tuner.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        from tuner.spec import format_validation_error

        raise SystemExit(f"error: bad ADAMTUNE_* setting: {format_validation_error(exc)}") from None


# ---------------------------------------------------------------------------- api


API_FACTORY = "api.app:create_app"


def run_api(args: argparse.Namespace) -> int:
    """Serve the REST API (``api.app:create_app``) with uvicorn on ``--host``/``--port``.

    ``--workers N`` > 1 runs N uvicorn worker processes on the one socket; each builds its
    own app (engine, pool) from the same ``ADAMTUNE_*`` environment, checked here first.
    Connections get ``TCP_NODELAY`` either way (:mod:`api.http_protocol`).
    """
    import uvicorn

    from api.app import create_app
    from api.http_protocol import NAME as HTTP_PROTOCOL

    if args.workers < 1:
        print(f"error: --workers must be >= 1 (got {args.workers})", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings()
    level = os.environ.get("ADAMTUNE_LOG_LEVEL", "info").lower()
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": level,
        "access_log": False,
        "http": HTTP_PROTOCOL,
    }
    if args.workers == 1:
        uvicorn.run(create_app(settings), **options)
    else:  # uvicorn imports the factory in each worker process
        uvicorn.run(API_FACTORY, factory=True, workers=args.workers, **options)
    return 0


# ---------------------------------------------------------------------------- worker


def run_worker(args: argparse.Namespace) -> int:
    """Run one worker on ``--device`` until SIGTERM (first: hand back and exit 0), or with
    ``--devices`` one per device under a supervisor (:func:`run_node`)."""
    from workers.runtime import Identity, Runtime, check_device, default_worker_id
    from workers.worker import Worker

    settings = _settings()
    if args.population is not None and args.population < 1:
        print(f"error: --population must be >= 1 (got {args.population})", file=sys.stderr)
        return EXIT_USAGE
    programs = _programs(args)
    if programs is None:
        return EXIT_USAGE
    if args.devices is not None:
        return run_node(args, settings.database_url)
    try:
        device = check_device(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not _wait_for_schema(settings.database_url):
        return 1
    identity = Identity(worker_id=args.worker_id or default_worker_id(), device=device,
                        programs=tuple(programs.values()))
    runtime = Runtime.open(settings, identity, population=args.population)
    worker = Worker(runtime)
    worker.install_signal_handlers()
    return worker.run()


def _programs(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``--program``/``--programs`` definitions; None (the error on stderr) if one is bad."""
    from workers.programs import ProgramError, collect_programs

    try:
        return collect_programs(args.program, args.programs)
    except ProgramError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def program_options(args: argparse.Namespace) -> list[str]:
    """The program options again, for a child worker (files as absolute paths)."""
    options = [arg for text in args.program for arg in ("--program", text)]
    return options + [arg for f in args.programs for arg in ("--programs", os.path.abspath(f))]


def run_node(args: argparse.Namespace, database_url: str) -> int:
    """``adamtune worker --devices SPEC``: one worker process per device, each pinned with
    ``CUDA_VISIBLE_DEVICES``, restarted if it dies, stopped by SIGTERM/SIGINT passed on."""
    import socket

    from adamtune.cli.processes import adamtune_command
    from workers.devices import DeviceSlot, parse_devices
    from workers.supervisor import Supervisor

    try:
        slots = parse_devices(args.devices)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not _wait_for_schema(database_url):
        return 1

    def command(slot: DeviceSlot, worker_id: str) -> list[str]:
        extra = [] if args.population is None else ["--population", str(args.population)]
        return adamtune_command("worker", "--device", slot.device, "--worker-id", worker_id,
                                *extra, *program_options(args))

    supervisor = Supervisor(slots, args.worker_id or socket.gethostname(), command)
    supervisor.install_signal_handlers()
    log.info("supervising %d worker(s): %s", len(slots), ", ".join(s.label for s in slots))
    return supervisor.run()


def _wait_for_schema(url: str, timeout: float = START_TIMEOUT_S) -> bool:
    """Wait for the database to answer; False (with a message) if it lacks our tables."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from tuner.db.engine import make_engine

    engine = make_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                has_tables = inspect(engine).has_table("search_locks")
                break
            except SQLAlchemyError as exc:
                if time.monotonic() > deadline:
                    print(f"error: cannot reach the database: {exc}", file=sys.stderr)
                    return False
                log.warning("database not reachable yet (%s); retrying", exc)
                time.sleep(2.0)
    finally:
        engine.dispose()
    if not has_tables:
        print("error: the database has no (or outdated) adamtune tables; run "
              "`adamtune db upgrade` with the same ADAMTUNE_DATABASE_URL first", file=sys.stderr)
    return has_tables


# ---------------------------------------------------------------------------- up


def run_up(args: argparse.Namespace) -> int:
    """Migrate, start the API and the workers, supervise them until SIGINT, SIGTERM or SIGHUP.

    One dashboard: the API's own ``/dashboard``, behind the API keys. Every child is
    stopped before anything more is printed, and a closed output pipe stops nothing.
    """
    if args.workers < 0:
        print(f"error: --workers must be >= 0 (got {args.workers})", file=sys.stderr)
        return EXIT_USAGE
    if _programs(args) is None:
        return EXIT_USAGE
    if not port_is_free(args.port, args.host):
        print(f"error: port {args.port} on {args.host} is in use; pick another with --port",
              file=sys.stderr)
        return EXIT_USAGE
    os.environ.update(local_auth_env(args.host))
    settings = _settings()
    prepare_database(settings.database_url)
    children = Children(env={"ADAMTUNE_DATABASE_URL": settings.database_url})

    def serve() -> int:
        urls = start_service(children, host=args.host, port=args.port, workers=args.workers,
                             device=args.device, dashboard=settings.dashboard,
                             worker_options=program_options(args))
        _print_urls(urls, settings.database_url)
        return supervise(children)

    return supervised(children, serve, stopped_code=0)


def _print_urls(urls: dict[str, str], database_url: str) -> None:
    from sqlalchemy.engine import make_url

    shown = make_url(database_url).render_as_string(hide_password=True)
    say(f"adamtune is up (database {shown})")
    for name, url in urls.items():
        say(f"  {name:10s} {url}")
    say(f"Submit a job:  adamtune submit examples/digits.yaml --url {urls['api']} --watch")
    say("Stop with Ctrl-C.")
