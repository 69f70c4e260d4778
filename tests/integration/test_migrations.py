"""The migrations build exactly the tables the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import optuna
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from tuner.db.engine import ALEMBIC_VERSION_TABLE, make_engine, optuna_storage, upgrade
from tuner.db.models import all_tables

METADATA = all_tables()
OUR_TABLES = set(METADATA.tables)


def _diff(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "version_table": ALEMBIC_VERSION_TABLE,
                    "include_name": lambda name, type_, parents: (
                        type_ != "table" or name in OUR_TABLES
                    ),
                },
            )
            return list(compare_metadata(context, METADATA))
    finally:
        engine.dispose()


def _version(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT version_num FROM {ALEMBIC_VERSION_TABLE}"))
            return [r[0] for r in rows]
    finally:
        engine.dispose()


def test_models_and_migrations_agree(migrated_url: str) -> None:
    assert _diff(migrated_url) == []


def test_upgrade_is_idempotent(migrated_url: str) -> None:
    before = _version(migrated_url)
    upgrade(migrated_url)
    assert _version(migrated_url) == before
    assert len(before) == 1


def test_unmigrated_database_differs(db_url: str) -> None:
    """Guards the comparison itself: an empty database must show every table missing."""
    added = {d[1].name for d in _diff(db_url) if d[0] == "add_table"}
    assert added == OUR_TABLES


def test_optuna_shares_the_database(migrated_url: str) -> None:
    """Optuna's tables and its own alembic_version sit beside ours without interfering."""
    storage = optuna_storage(migrated_url)
    study = optuna.create_study(study_name="shared", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    storage.engine.dispose()
    upgrade(migrated_url)
    engine = make_engine(migrated_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"alembic_version", ALEMBIC_VERSION_TABLE, "studies", "trials"} <= tables
    assert OUR_TABLES <= tables
    assert _diff(migrated_url) == []


def test_downgrade_to_base_and_back(migrated_url: str) -> None:
    from alembic import command

    from tuner.db.engine import alembic_config

    command.downgrade(alembic_config(migrated_url), "base")
    engine = make_engine(migrated_url)
    left = set(inspect(engine).get_table_names()) & OUR_TABLES
    engine.dispose()
    assert left == set()
    upgrade(migrated_url)
    assert _diff(migrated_url) == []
