"""``adamtune db upgrade`` and ``adamtune keys create|list|revoke``: operator commands.

They talk to the database named by ``ADAMTUNE_DATABASE_URL`` directly, not to the API.
Results go to stdout; messages and errors to stderr, with a non-zero exit on failure.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tuner.db import keys
from tuner.db.engine import (
    StoreError,
    current_revision,
    make_engine,
    make_session_factory,
    normalise_url,
    prepare_optuna_tables,
    sqlite_path_problem,
    transaction,
    upgrade,
)
from tuner.settings import Settings

log = logging.getLogger(__name__)
NOT_MIGRATED_HINT = "is the database migrated? run `adamtune db upgrade` first"


def _shown(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return make_url(normalise_url(url)).render_as_string(hide_password=True)


def run_db_upgrade(args: argparse.Namespace) -> int:
    """Apply adamtune's migrations and create Optuna's tables in ADAMTUNE_DATABASE_URL.

    Idempotent. Optuna's tables are created here too, not only when the first worker opens
    a study, so the API's trials and dashboard routes work on a fresh database.
    """
    url = Settings().database_url
    problem = sqlite_path_problem(url)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if not getattr(args, "verbose", False):  # one line of outcome; -v shows Alembic's steps
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        before = current_revision(url)
        upgrade(url)
        prepare_optuna_tables(url)
        after = current_revision(url)
    except (SQLAlchemyError, StoreError) as exc:
        first = str(exc).splitlines()[0]
        print(f"error: cannot migrate {_shown(url)}: {first}", file=sys.stderr)
        print("  check ADAMTUNE_DATABASE_URL and that the database server is up", file=sys.stderr)
        return 1
    if before == after:
        print(f"database {_shown(url)} already at revision {after} (the latest)", file=sys.stderr)
    else:
        print(f"database {_shown(url)} upgraded to revision {after} (from {before or 'empty'})",
              file=sys.stderr)
    return 0


def _run_keys(action: str, func: Callable[[Session], int]) -> int:
    """Run ``func`` in one transaction; store errors become a message and exit code 1."""
    url = Settings().database_url
    engine = make_engine(url)
    try:
        with transaction(make_session_factory(engine)) as session:
            return func(session)
    except StoreError as exc:
        first = str(exc).splitlines()[0]
        print(f"error: cannot {action} on {_shown(url)}: {first}", file=sys.stderr)
        print(f"  {NOT_MIGRATED_HINT}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def run_keys_create(args: argparse.Namespace) -> int:
    """Create a key for ``--tenant`` and print its secret once (only its hash is kept)."""

    def create(session: Session) -> int:
        try:
            key, plaintext = keys.create_key(session, args.tenant)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(plaintext)
        print(
            f"created key {key.id} for tenant {key.tenant!r}; the secret above is shown only "
            "once: store it now (clients send it as 'Authorization: Bearer <key>')",
            file=sys.stderr,
        )
        return 0

    return _run_keys("create a key", create)


def run_keys_list(args: argparse.Namespace) -> int:
    """Every key: id, tenant, prefix, created, revoked. Never the secret."""

    def show(session: Session) -> int:
        rows = keys.list_keys(session)
        print(f"{'ID':<14}{'TENANT':<20}{'PREFIX':<14}{'CREATED':<27}REVOKED")
        for k in rows:
            revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "-"
            created = k.created_at.isoformat(timespec="seconds")
            print(f"{k.id:<14}{k.tenant:<20}{k.prefix:<14}{created:<27}{revoked}")
        return 0

    return _run_keys("list keys", show)


def run_keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key by id; requests with it get 401 from then on."""

    def revoke(session: Session) -> int:
        if keys.revoke_key(session, args.key_id):
            print(f"revoked key {args.key_id}", file=sys.stderr)
            return 0
        print(
            f"error: no active key with id {args.key_id!r}; `adamtune keys list` shows the ids",
            file=sys.stderr,
        )
        return 1

    return _run_keys("revoke a key", revoke)
