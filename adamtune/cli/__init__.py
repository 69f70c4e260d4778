"""The ``adamtune`` command. Each subcommand lives in its own module, imported lazily so
that ``adamtune status`` never pays for importing torch."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

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


def _program_args(p: argparse.ArgumentParser) -> None:
    """The programs (users' training scripts) a worker runs for jobs that name them."""
    p.add_argument(
        "--program",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="a program jobs may name, e.g. --program digits='python train.py --data /data' "
        "(repeatable; docs/programs.md)",
    )
    p.add_argument(
        "--programs",
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML file of programs: command, working directory, environment, time limit",
    )


def _command(sub: Any, name: str, what: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` starts by saying what it does."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=what, description=what)
    return parser


def _job_command(
    sub: Any, name: str, what: str, job_help: str = "the job id"
) -> argparse.ArgumentParser:
    """A remote command about one job: ``adamtune NAME JOB`` with the client options, run by
    ``adamtune.cli.remote.run_NAME``."""
    p = _command(sub, name, what)
    p.add_argument("job", help=job_help)
    _client_args(p)
    p.set_defaults(module="remote", func_name=f"run_{name}")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adamtune", description="Tune Adam/AdamW hyperparameters."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "tune", "tune a job file in this process, no server")
    p.epilog = (
        "A program job (`program: NAME` in the file) runs your own training script, once for "
        "the LR range test and once per trial, each a child process: give it with --program "
        "NAME='python train.py ...' or --programs FILE (docs/programs.md). Its logs go to "
        "--log-dir. Ctrl-C or SIGTERM ends the running script and exits."
    )
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
    _program_args(p)
    p.add_argument(
        "--log-dir",
        default=None,
        metavar="DIR",
        help="where a program job's runs write their logs, NAME-sweep.log and NAME-trial-N.log "
        "(default: ./adamtune-logs/<job name>/)",
    )
    p.set_defaults(module="tune")

    p = _command(sub, "api", "run the REST API (and its /dashboard) on the configured database")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes on the port (default 1)"
    )
    p.set_defaults(module="service", func_name="run_api")

    p = _command(sub, "worker", "run a worker that claims and runs jobs")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--device", default="cpu", help="cpu or cuda:N")
    where.add_argument(
        "--devices",
        default=None,
        help="one worker per device, supervised and restarted if it dies: all (every GPU, "
        "or one cpu), cuda:0,cuda:2, cpu*2 or cpu",
    )
    p.add_argument(
        "--population", type=int, default=None, help="train K trials at once (default: the job's)"
    )
    p.add_argument(
        "--worker-id",
        default=None,
        help="stable id (default: host-pid; with --devices the prefix of HOST-cuda0, ...)",
    )
    _program_args(p)
    p.set_defaults(module="service", func_name="run_worker")

    p = _command(
        sub,
        "up",
        "the service on one machine: migrate, then run the API (its /dashboard behind the "
        "keys) and workers until Ctrl-C, SIGTERM or SIGHUP stops them all",
    )
    p.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--device", default="cpu", help="the workers' device: cpu or cuda:N")
    _program_args(p)
    p.set_defaults(module="service", func_name="run_up")

    p = _command(sub, "demo", "start the service on SQLite, tune the digits job, print the result")
    p.add_argument("--port", type=int, default=0, help="API port (0: a free one)")
    p.add_argument("--keep", action="store_true", help="keep the service running afterwards")
    p.set_defaults(module="demo", func_name="run_demo")

    p = _command(sub, "submit", "submit a job file to the API; prints the job id")
    p.add_argument("file", help="job file (YAML or JSON), the shape of POST /v1/jobs")
    p.add_argument(
        "--watch", action="store_true", help="show progress until done, then the recommendation"
    )
    p.add_argument(
        "--idempotency-key", default=None, help="a retry with the same key returns the same job"
    )
    _client_args(p)
    p.set_defaults(module="remote", func_name="run_submit")

    _job_command(sub, "status", "show a job's status and progress",
                 job_help="the job id (`adamtune submit` prints it)")
    p = _job_command(sub, "recommendation", "print a job's recommendation (partial while it runs)")
    p.add_argument(
        "--format",
        choices=["json", "yaml", "python", "text"],
        default="json",
        help="json (default), yaml, python (the snippet alone) or text (for reading)",
    )
    _job_command(sub, "cancel", "cancel a job")

    p = _command(sub, "db", "database administration (ADAMTUNE_DATABASE_URL)")
    dsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    d = _command(dsub, "upgrade", "apply migrations (idempotent)")
    d.set_defaults(module="admin", func_name="run_db_upgrade")

    p = _command(sub, "keys", "create, list and revoke API keys (ADAMTUNE_DATABASE_URL)")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    k = _command(ksub, "create", "create a key for a tenant and print it once")
    k.add_argument("--tenant", required=True, help="the tenant the key acts for")
    k.set_defaults(module="admin", func_name="run_keys_create")
    k = _command(ksub, "list", "list keys (never the secret)")
    k.set_defaults(module="admin", func_name="run_keys_list")
    k = _command(ksub, "revoke", "revoke a key by its id")
    k.add_argument("key_id", help="the key's id (`adamtune keys list` shows them)")
    k.set_defaults(module="admin", func_name="run_keys_revoke")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Its output may go to a pipe that closes early (``| head -1``): the
    command then ends quietly with exit 0, as ``git log | head`` does."""
    try:
        code = _run(argv)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:  # the reader has all it wanted
        from adamtune.cli.output import discard_closed_pipes

        discard_closed_pipes()
        return 0
    except KeyboardInterrupt:
        return 130


def _run(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # --help or a usage error: flush here, where a closed pipe is caught
        sys.stdout.flush()
        raise
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else os.environ.get("ADAMTUNE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    module = importlib.import_module(f"adamtune.cli.{args.module}")
    func = getattr(module, getattr(args, "func_name", "run"))
    return int(func(args) or 0)
