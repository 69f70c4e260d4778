"""Workers (liveness on the database clock) and API keys (hashed only), on both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from tuner.db import jobs, keys, workers
from tuner.db.engine import make_engine, make_session_factory, transaction
from tuner.db.models import ApiKey, Worker
from tuner.db.types import db_now
from tuner.spec import JobSpec


@pytest.fixture
def store(migrated_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_url)
    yield make_session_factory(engine)
    engine.dispose()


def _register(store: sessionmaker[Session], worker_id: str = "w1") -> None:
    with transaction(store) as s:
        workers.register_worker(
            s, worker_id=worker_id, hostname="gpu-1", pid=42, device="cuda:0", workloads=["a", "b"]
        )


def _age(store: sessionmaker[Session], worker_id: str, seconds: float) -> None:
    """Pretend the worker's last heartbeat was ``seconds`` ago (database clock)."""
    with transaction(store) as s:
        s.execute(
            update(Worker).where(Worker.id == worker_id).values(last_heartbeat=db_now(-seconds))
        )


def test_register_and_list(store: sessionmaker[Session]) -> None:
    _register(store)
    with transaction(store) as s:
        [state] = workers.list_workers(s, grace_seconds=30)
    assert state.id == "w1" and state.device == "cuda:0" and state.workloads == ["a", "b"]
    assert state.alive and state.status == "running" and state.current_job_id is None
    assert state.last_heartbeat.tzinfo is not None


def test_silent_worker_is_not_alive_and_heartbeat_revives(store: sessionmaker[Session]) -> None:
    _register(store)
    _age(store, "w1", 120)
    with transaction(store) as s:
        assert not workers.list_workers(s, grace_seconds=30)[0].alive
        assert workers.mark_lost_workers(s, grace_seconds=30) == ["w1"]
        assert workers.mark_lost_workers(s, grace_seconds=30) == []
    with transaction(store) as s:
        assert workers.heartbeat(s, "w1")
        assert not workers.heartbeat(s, "nobody")
    with transaction(store) as s:
        [state] = workers.list_workers(s, grace_seconds=30)
        assert state.alive and state.status == "running"


def test_heartbeat_sets_current_job_only_when_given(store: sessionmaker[Session]) -> None:
    with transaction(store) as s:
        job_id = jobs.create_job(s, spec=JobSpec(workload="digits_mlp")).id
    _register(store)
    with transaction(store) as s:
        workers.heartbeat(s, "w1", current_job_id=job_id)
        workers.heartbeat(s, "w1")
        worker = workers.get_worker(s, "w1")
        assert worker is not None and worker.current_job_id == job_id
        workers.heartbeat(s, "w1", current_job_id=None)
        worker = workers.get_worker(s, "w1")
        assert worker is not None and worker.current_job_id is None


def test_stop_and_reregister(store: sessionmaker[Session]) -> None:
    _register(store)
    with transaction(store) as s:
        assert workers.set_status(s, "w1", "stopping")
        assert workers.mark_stopped(s, "w1")
        with pytest.raises(ValueError, match="unknown worker status 'gone'"):
            workers.set_status(s, "w1", "gone")
    with transaction(store) as s:
        [state] = workers.list_workers(s, grace_seconds=30)
        assert state.status == "stopped" and not state.alive
    _register(store)
    with transaction(store) as s:
        [state] = workers.list_workers(s, grace_seconds=30)
        assert state.status == "running" and state.alive


def test_keys_store_only_the_hash(store: sessionmaker[Session]) -> None:
    with transaction(store) as s:
        assert not keys.any_active_keys(s)
        key, plaintext = keys.create_key(s, "acme")
    assert plaintext.startswith("adt_") and key.prefix == plaintext[:12]
    with transaction(store) as s:
        stored = s.execute(select(ApiKey.id, ApiKey.tenant, ApiKey.key_hash, ApiKey.prefix)).all()
        dump = " ".join(str(v) for row in stored for v in row)
        assert plaintext not in dump and key.key_hash == keys.hash_key(plaintext)
        raw = s.execute(text("SELECT * FROM api_keys")).all()
        assert all(plaintext not in str(v) for row in raw for v in row)
        assert keys.any_active_keys(s)


def test_verify_and_revoke(store: sessionmaker[Session]) -> None:
    with transaction(store) as s:
        key, plaintext = keys.create_key(s, "acme")
        keys.create_key(s, "other")
    with transaction(store) as s:
        found = keys.verify_key(s, plaintext)
        assert found is not None and found.tenant == "acme"
        assert keys.verify_key(s, plaintext + "x") is None
        assert keys.verify_key(s, "") is None
        assert [k.tenant for k in keys.list_keys(s, tenant="acme")] == ["acme"]
        assert len(keys.list_keys(s)) == 2
    with transaction(store) as s:
        assert keys.revoke_key(s, key.id)
        assert not keys.revoke_key(s, key.id)
        assert not keys.revoke_key(s, "nope")
    with transaction(store) as s:
        assert keys.verify_key(s, plaintext) is None
        assert keys.any_active_keys(s)  # the other tenant's key is still active
        [revoked] = keys.list_keys(s, tenant="acme")
        assert revoked.revoked_at is not None


def test_create_key_refuses_empty_tenant(store: sessionmaker[Session]) -> None:
    with transaction(store) as s, pytest.raises(ValueError, match="tenant must be"):
        keys.create_key(s, "")
