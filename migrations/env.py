"""Alembic environment for adamtune's own tables.

Optuna's tables live in the same database with their own ``alembic_version``; ours use
``adamtune_alembic_version``, and autogenerate looks only at the tables in our metadata.
The URL comes from ``config.attributes["database_url"]`` (see ``tuner.db.engine.upgrade``)
or, for the plain ``alembic`` command, from ``ADAMTUNE_DATABASE_URL`` via Settings.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from tuner.db.engine import ALEMBIC_VERSION_TABLE, is_sqlite, make_engine, normalise_url
from tuner.db.models import all_tables

config = context.config
target_metadata = all_tables()
OUR_TABLES = frozenset(target_metadata.tables)


def include_name(name: str | None, type_: Any, parent_names: MutableMapping[Any, Any]) -> bool:
    """Compare only adamtune's tables; Optuna's share the database and are not ours."""
    if type_ == "table":
        return name in OUR_TABLES
    return True


def _url() -> str:
    url = config.attributes.get("database_url")
    if url is None:
        from tuner.settings import Settings

        url = Settings().database_url
    return normalise_url(url)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=ALEMBIC_VERSION_TABLE,
        include_name=include_name,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        version_table=ALEMBIC_VERSION_TABLE,
        literal_binds=True,
        render_as_batch=is_sqlite(_url()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
