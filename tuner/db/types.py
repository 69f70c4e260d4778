"""Column types and SQL expressions that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator


def finite_json(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON (and PostgreSQL) has no such numbers.

    A diverged LR sweep ends in an infinite loss; it is stored, and served, as ``null``.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def json_dumps(value: Any) -> str:
    """The JSON serializer of every engine: strict JSON, the same on SQLite and PostgreSQL."""
    return json.dumps(finite_json(value), allow_nan=False)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zones: values are stored as UTC text and read back as aware UTC.
    Naive datetimes are refused on write, because their zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class db_now(FunctionElement[datetime]):  # noqa: N801 - reads as a function at call sites
    """The database clock in UTC, optionally shifted: ``db_now(+30)`` is 30 s from now.

    Liveness and leases compare against this, never against a worker's own clock.
    SQLite's ``CURRENT_TIMESTAMP`` has whole seconds only, so it gets milliseconds here.
    """

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, offset_seconds: float = 0.0):
        self.offset_seconds = float(offset_seconds)
        super().__init__()


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    offset = f"{element.offset_seconds:+.3f} seconds"
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', '{offset}'))"


@compiles(db_now)
def _db_now_default(element: db_now, compiler: Any, **kw: Any) -> str:
    if element.offset_seconds == 0:
        return "now()"
    return f"(now() + interval '{element.offset_seconds:.3f} seconds')"
