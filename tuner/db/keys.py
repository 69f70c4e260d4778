"""API keys. The secret is shown once at creation; only its SHA-256 is stored.

Lookup is by hash (an indexed, unique column), then confirmed with a constant-time
comparison, so neither the database nor timing reveals a key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tuner.db.engine import make_engine, make_session_factory, transaction
from tuner.db.models import ApiKey
from tuner.db.types import db_now

KEY_PREFIX = "adt_"
PREFIX_CHARS = 12


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_key(s: Session, tenant: str) -> tuple[ApiKey, str]:
    """A new key for ``tenant``: the row (hash only) and the plaintext, to show once."""
    if not tenant or len(tenant) > 64:
        raise ValueError("tenant must be 1 to 64 characters")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=secrets.token_hex(6),
        tenant=tenant,
        key_hash=hash_key(plaintext),
        prefix=plaintext[:PREFIX_CHARS],
    )
    s.add(key)
    s.flush()
    return key, plaintext


def create_key_at(url: str, tenant: str) -> str:
    """The plaintext of a new key for ``tenant`` in the database at ``url`` (committed)."""
    engine = make_engine(url)
    try:
        with transaction(make_session_factory(engine)) as session:
            _, plaintext = create_key(session, tenant)
    finally:
        engine.dispose()
    return plaintext


def verify_key(s: Session, plaintext: str) -> ApiKey | None:
    """The active key whose secret is ``plaintext``, or None (unknown or revoked)."""
    digest = hash_key(plaintext)
    stmt = select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    key = s.scalars(stmt).one_or_none()
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    return key


def revoke_key(s: Session, key_id: str) -> bool:
    """Revoke a key by id; False when there is no active key with that id."""
    stmt = (
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=db_now())
        .execution_options(synchronize_session="fetch")
    )
    return s.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


def list_keys(s: Session, tenant: str | None = None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant is not None:
        stmt = stmt.where(ApiKey.tenant == tenant)
    return list(s.scalars(stmt))


def any_active_keys(s: Session) -> bool:
    """Whether any key is active: until one exists, the API serves the default tenant."""
    stmt = select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)
    return s.scalar(stmt) is not None
