"""Engines, sessions, transactions and migrations for adamtune's store.

One URL (``ADAMTUNE_DATABASE_URL``) names the database. SQLite is the embedded default
(WAL, a busy timeout); PostgreSQL is the scale-out store (psycopg 3, pre-ping). Optuna's
RDB storage lives in the same database: :func:`optuna_storage` opens it with the same URL.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tuner.db.types import UTCDateTime, db_now, json_dumps

if TYPE_CHECKING:
    import optuna
    from alembic.config import Config

__all__ = [
    "StoreConflict",
    "StoreError",
    "StoreUnavailable",
    "UTCDateTime",
    "db_now",
    "make_engine",
    "make_session_factory",
    "optuna_storage",
    "prepare_optuna_tables",
    "temporary_postgres_database",
    "transaction",
    "upgrade",
]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
POSTGRES_POOL_SIZE = 5
POSTGRES_MAX_OVERFLOW = 10
ALEMBIC_VERSION_TABLE = "adamtune_alembic_version"


class StoreError(RuntimeError):
    """The store failed (database unreachable, locked, or refused a statement)."""


class StoreUnavailable(StoreError):
    """The database could not be reached or was too busy; retrying later may work."""


class StoreConflict(StoreError):
    """A write broke a uniqueness or foreign-key rule (e.g. a reused idempotency key)."""


def normalise_url(url: str) -> str:
    """Make every PostgreSQL URL use the psycopg 3 driver, so users may write ``postgresql://``."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path_problem(url: str) -> str | None:
    """Why a SQLite URL can never open (its directory is missing), with the fix; else None."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    directory = Path(database).expanduser().resolve().parent
    if directory.is_dir():
        return None
    return (
        f"the SQLite database {database!r} cannot be created: its directory {str(directory)!r} "
        f"does not exist; create it (mkdir -p {directory}) or set ADAMTUNE_DATABASE_URL to a "
        "path in an existing directory"
    )


def _enable_sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run beside one writer; the busy timeout makes writers wait, not fail."""
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for the backend: SQLite in WAL mode, PostgreSQL with a pre-pinged pool."""
    url = normalise_url(url)
    if is_sqlite(url):
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        engine = create_engine(url, connect_args=connect_args, json_serializer=json_dumps, **kwargs)
        event.listen(engine, "connect", _enable_sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
    kwargs.setdefault("max_overflow", POSTGRES_MAX_OVERFLOW)
    kwargs.setdefault("pool_recycle", 1800)
    return create_engine(url, pool_pre_ping=True, json_serializer=json_dumps, **kwargs)


@contextmanager
def temporary_postgres_database(server_url: str, prefix: str) -> Iterator[str]:
    """The URL of a fresh, uniquely named database on the PostgreSQL server at
    ``server_url``, dropped (with force) afterwards: for tests and benchmarks."""
    server = make_url(server_url)
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:
        admin.dispose()
        raise
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit, so callers can read returned rows."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def translate_error(exc: SQLAlchemyError) -> StoreError:
    """Turn a driver error into the store's own exception, keeping the cause."""
    if isinstance(exc, IntegrityError):
        return StoreConflict(f"the database refused a write: {exc.orig}")
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return StoreUnavailable(f"lost the database connection: {exc.orig}")
    if isinstance(exc, DBAPIError) and type(exc).__name__ in ("OperationalError", "InterfaceError"):
        return StoreUnavailable(f"database error: {exc.orig}")
    return StoreError(f"database error: {exc}")


@contextmanager
def transaction(session_factory: Callable[[], Session]) -> Iterator[Session]:
    """One unit of work: commit on exit, roll back on error, driver errors become StoreError."""
    session = session_factory()
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise translate_error(exc) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migrations_dir() -> Path:
    """The ``migrations`` package (its env.py and versions/), wherever it is installed."""
    import migrations

    return Path(migrations.__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """Alembic configured in code: our migrations, our version table, this database."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = normalise_url(url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply adamtune's migrations (idempotent: a database already at head is left as is)."""
    from alembic import command

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The adamtune migration the database is at (None: none applied yet)."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": ALEMBIC_VERSION_TABLE}
            )
            return context.get_current_revision()
    finally:
        engine.dispose()


def _optuna_engine_kwargs(url: str) -> dict[str, Any]:
    if is_sqlite(url):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    return {"pool_pre_ping": True, "pool_size": POSTGRES_POOL_SIZE}


def optuna_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    callback: Callable[..., None] | None = None,
) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on the same database; Optuna creates and migrates its own tables."""
    import optuna

    url = normalise_url(url)
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=_optuna_engine_kwargs(url),
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=callback,
    )


def prepare_optuna_tables(url: str) -> str:
    """Create Optuna's tables in the database, or migrate them to this Optuna's schema.

    Idempotent. ``adamtune db upgrade`` runs it so that the API's trials and dashboard
    routes work on a fresh database before any worker has opened a study. Returns Optuna's
    schema version.
    """
    import optuna

    url = normalise_url(url)
    storage = optuna.storages.RDBStorage(
        url, engine_kwargs=_optuna_engine_kwargs(url), skip_compatibility_check=True
    )
    try:
        if storage.get_current_version() != storage.get_head_version():
            log.info("migrating Optuna's tables from %s to %s",
                     storage.get_current_version(), storage.get_head_version())
            storage.upgrade()
        return storage.get_current_version()
    finally:
        storage.remove_session()
        storage.engine.dispose()
