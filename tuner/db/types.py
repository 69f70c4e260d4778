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
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_non_finite(value: Any) -> Any:
    """``value`` with NaN and infinities as the strings "NaN", "Infinity", "-Infinity".

    JSON (and PostgreSQL's json type) has no such numbers, yet a diverged LR sweep ends
    in an infinite loss. As strings they survive both backends, and ``float()`` reads
    them back unchanged. Readers that serve JSON turn them into null (``finite_or_none``).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: encode_non_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_non_finite(v) for v in value]
    return value


def finite_or_none(value: Any) -> float | None:
    """A stored number as a finite float, or None for NaN/infinities (either spelling)."""
    if value is None:
        return None
    number = NON_FINITE.get(value, value) if isinstance(value, str) else value
    number = float(number)
    return number if math.isfinite(number) else None


def json_dumps(value: Any) -> str:
    """The JSON serializer of every engine: strict JSON, the same on SQLite and PostgreSQL."""
    return json.dumps(encode_non_finite(value), allow_nan=False)


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
    # The offset is rendered into the SQL text, so it must be part of the statement cache
    # key: otherwise db_now(+60) and db_now(+0.05) in the same statement share one SQL.
    _traverse_internals = [
        *FunctionElement._traverse_internals,
        ("offset_seconds", InternalTraversal.dp_plain_obj),
    ]

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
