"""The ``adamtune`` command. Each subcommand lives in its own module, imported lazily so
that ``adamtune status`` never pays for importing torch."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

DEFAULT_URL = "http://127.0.0.1:8000"


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("ADAMTUNE_URL", DEFAULT_URL),
        help="API base URL (env ADAMTUNE_URL)",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("ADAMTUNE_API_KEY"),
        help="API key (env ADAMTUNE_API_KEY)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adamtune", description="Tune Adam/AdamW hyperparameters."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("tune", help="tune a job file in this process, no server")
    p.add_argument("file", help="job file (YAML or JSON), the shape of POST /v1/jobs")
    p.add_argument(
        "--json", action="store_true", help="print only the recommendation JSON on stdout"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda:N")
    p.add_argument(
        "--population", type=int, default=None, help="train K trials at once (overrides the file)"
    )
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL to keep the study (default: in memory)"
    )
    p.set_defaults(module="tune")

    p = sub.add_parser("api", help="run the REST API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes on the port (default 1)"
    )
    p.set_defaults(module="service", func_name="run_api")

    p = sub.add_parser("worker", help="run a worker that claims and runs jobs")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N")
    p.add_argument(
        "--population", type=int, default=None, help="train K trials at once (default: the job's)"
    )
    p.add_argument("--worker-id", default=None, help="stable id (default: host-pid)")
    p.set_defaults(module="service", func_name="run_worker")

    p = sub.add_parser("up", help="API + workers + Optuna dashboard on one machine")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.set_defaults(module="service", func_name="run_up")

    p = sub.add_parser(
        "demo", help="start the service on SQLite, tune the digits job, print the result"
    )
    p.add_argument("--port", type=int, default=0, help="API port (0: a free one)")
    p.add_argument("--keep", action="store_true", help="keep the service running afterwards")
    p.set_defaults(module="demo", func_name="run_demo")

    p = sub.add_parser("submit", help="submit a job file to the API")
    p.add_argument("file")
    p.add_argument(
        "--watch", action="store_true", help="show progress until done, then the recommendation"
    )
    p.add_argument("--idempotency-key", default=None)
    _client_args(p)
    p.set_defaults(module="remote", func_name="run_submit")

    p = sub.add_parser("status", help="show a job's status and progress")
    p.add_argument("job")
    _client_args(p)
    p.set_defaults(module="remote", func_name="run_status")

    p = sub.add_parser("recommendation", help="print a job's recommendation")
    p.add_argument("job")
    p.add_argument(
        "--format",
        choices=["json", "yaml", "python", "text"],
        default="json",
        help="json (default), yaml, python (the snippet alone) or text (for reading)",
    )
    _client_args(p)
    p.set_defaults(module="remote", func_name="run_recommendation")

    p = sub.add_parser("cancel", help="cancel a job")
    p.add_argument("job")
    _client_args(p)
    p.set_defaults(module="remote", func_name="run_cancel")

    p = sub.add_parser("db", help="database administration")
    dsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    d = dsub.add_parser("upgrade", help="apply migrations (idempotent)")
    d.set_defaults(module="admin", func_name="run_db_upgrade")

    p = sub.add_parser("keys", help="API keys")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    k = ksub.add_parser("create", help="create a key for a tenant and print it once")
    k.add_argument("--tenant", required=True)
    k.set_defaults(module="admin", func_name="run_keys_create")
    k = ksub.add_parser("list", help="list keys (never the secret)")
    k.set_defaults(module="admin", func_name="run_keys_list")
    k = ksub.add_parser("revoke", help="revoke a key by its id")
    k.add_argument("key_id")
    k.set_defaults(module="admin", func_name="run_keys_revoke")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else os.environ.get("ADAMTUNE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    module = importlib.import_module(f"adamtune.cli.{args.module}")
    func = getattr(module, getattr(args, "func_name", "run"))
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
