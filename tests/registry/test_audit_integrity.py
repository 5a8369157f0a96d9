"""The audit log beyond its chain: append-only triggers, signed checkpoints, one writer at a time."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from treum.registry import audit, checkpoints
from treum.registry.schema import AuditLog
from treum.registry.store import Registry

from .conftest import drop_append_only_triggers


def _recompute_chain(registry, edit) -> None:
    """What someone with write access to the database can do: edit rows, then recompute every hash after."""
    drop_append_only_triggers(registry.engine)
    with registry.transaction() as s:
        prev = audit.GENESIS
        for row in s.execute(select(AuditLog).order_by(AuditLog.id)).scalars():
            edit(row)
            row.prev_hash = prev
            row.row_hash = audit.row_digest(prev, row.created_at, row.actor, row.action, row.entity_type,
                                            row.entity_id, row.details)
            prev = row.row_hash


def _chain_alone(registry) -> audit.ChainReport:
    with registry.sessions() as s:
        return audit.verify_chain(s)


def _lines(registry) -> list[dict]:
    return [json.loads(line) for line in registry.checkpoint_path.read_text().splitlines()]


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log",
                                       "DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)"])
def test_update_and_delete_through_sql_are_refused(lifecycle, statement):
    with pytest.raises(DBAPIError, match="audit_log is append-only"):
        with lifecycle.engine.begin() as conn:
            conn.execute(text(statement))
    assert len(lifecycle.audit_rows()) == 4 and lifecycle.verify_audit().ok


def test_emptying_the_whole_table_is_refused(lifecycle):
    # PostgreSQL's TRUNCATE bypasses row triggers (a statement trigger refuses it); SQLite has no TRUNCATE,
    # and its "DELETE FROM" without WHERE (the truncate optimisation) must meet the DELETE trigger too
    postgres = lifecycle.engine.dialect.name == "postgresql"
    statement, message = (("TRUNCATE audit_log", "append-only: TRUNCATE refused") if postgres
                          else ("DELETE FROM audit_log", "audit_log is append-only"))
    with pytest.raises(DBAPIError, match=message):
        with lifecycle.engine.begin() as conn:
            conn.execute(text(statement))
    assert len(lifecycle.audit_rows()) == 4


def test_a_checkpoint_is_a_signed_line_with_a_key_kept_outside_the_database(lifecycle, treum_home):
    cp = lifecycle.checkpoint_audit("alice")
    (line,) = _lines(lifecycle)
    assert set(line) == {"at", "by", "db", "rows", "head", "hmac"}
    assert (line["rows"], line["by"], line["head"]) == (4, "alice", lifecycle.audit_rows()[0].row_hash)
    assert line["hmac"] == cp.hmac and len(cp.hmac) == 64
    key = treum_home / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().strip() not in json.dumps(line)
    with lifecycle.engine.connect() as conn:  # nothing of the key in the database
        dump = " ".join(str(r) for r in conn.execute(text("SELECT * FROM audit_log")))
    assert key.read_text().strip() not in dump


def test_the_key_comes_from_the_environment_when_set(lifecycle, treum_home, monkeypatch):
    monkeypatch.setenv("TREUM_AUDIT_KEY", "k" * 64)
    lifecycle.checkpoint_audit()
    assert not (treum_home / "audit.key").exists()
    assert lifecycle.verify_audit().ok
    monkeypatch.setenv("TREUM_AUDIT_KEY", "another key")
    report = lifecycle.verify_audit()
    assert not report.ok and "is forged: its HMAC does not match" in report.reason


def test_a_key_file_others_can_read_is_refused(lifecycle, treum_home):
    lifecycle.checkpoint_audit()
    os.chmod(treum_home / "audit.key", 0o644)
    with pytest.raises(Exception, match="can be read by others .*chmod 600"):
        lifecycle.checkpoint_audit()


def test_a_deleted_tail_is_caught_by_the_checkpoints(lifecycle):
    lifecycle.checkpoint_audit("cli")
    drop_append_only_triggers(lifecycle.engine)
    with lifecycle.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log ORDER BY id DESC LIMIT 2)"))
    assert _chain_alone(lifecycle).ok  # the rows left still chain: the hash chain alone cannot see this
    report = lifecycle.verify_audit()
    assert not report.ok and report.first_broken_id is None
    assert report.reason.startswith("the audit log has 2 rows but checkpoint of ") and "covered 4" in report.reason
    assert "truncation" in report.reason


def test_a_recomputed_chain_is_caught_by_the_checkpoints(lifecycle):
    lifecycle.checkpoint_audit("cli")

    def edit(row):
        if row.action == "model.deploy":
            row.actor = "mallory"

    _recompute_chain(lifecycle, edit)
    assert _chain_alone(lifecycle).ok  # every hash matches again: only the checkpoint shows it
    report = lifecycle.verify_audit()
    assert not report.ok and "row 4 of the audit log does not have the hash" in report.reason
    assert "recomputed or edited" in report.reason


def test_a_forged_checkpoint_is_reported(lifecycle):
    _recompute_chain(lifecycle, lambda row: setattr(row, "actor", "mallory"))
    rows, head = 4, lifecycle.audit_rows()[0].row_hash
    forged = checkpoints.sign(b"not the key", "mallory", checkpoints.database_identity(lifecycle.url), rows, head)
    checkpoints.append(lifecycle.checkpoint_path, forged)
    report = lifecycle.verify_audit()
    assert not report.ok and "is forged" in report.reason


def test_an_unreadable_checkpoint_line_is_reported(lifecycle):
    lifecycle.checkpoint_audit()
    with open(lifecycle.checkpoint_path, "a") as fh:
        fh.write('{"rows": 1}\n')
    report = lifecycle.verify_audit()
    assert not report.ok and "line 2: it is not a checkpoint line" in report.reason


def test_verify_checks_every_checkpoint_then_writes_a_fresh_one(lifecycle, register):
    lifecycle.checkpoint_audit()
    register(payload="bb")
    first = lifecycle.verify_audit("ops")
    assert first.ok and first.rows == 5 and first.checkpoints == 1
    assert first.checkpoint.rows == 5 and first.checkpoint.by == "ops"
    assert lifecycle.verify_audit().checkpoints == 2
    assert lifecycle.verify_audit(checkpoint=False).checkpoint is None
    assert [line["rows"] for line in _lines(lifecycle)] == [4, 5, 5]


def test_a_failed_verification_writes_no_checkpoint(lifecycle):
    lifecycle.checkpoint_audit()
    drop_append_only_triggers(lifecycle.engine)
    with lifecycle.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)"))
    assert not lifecycle.verify_audit().ok and len(_lines(lifecycle)) == 1


def test_an_exported_copy_still_shows_a_truncation_when_the_local_file_is_gone(lifecycle, tmp_path):
    lifecycle.checkpoint_audit()
    export = tmp_path / "offsite.jsonl"
    export.write_bytes(lifecycle.checkpoint_path.read_bytes())
    lifecycle.checkpoint_path.unlink()
    drop_append_only_triggers(lifecycle.engine)
    with lifecycle.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)"))
    report = lifecycle.verify_audit(extra_checkpoints=[export])
    assert not report.ok and "has 3 rows but checkpoint" in report.reason


def test_checkpoints_of_another_registry_in_the_same_home_are_not_compared(lifecycle, tmp_path, treum_home):
    other = Registry(url=f"sqlite:///{tmp_path / 'other.db'}", home=treum_home)
    try:
        other.checkpoint_audit()
        assert other.verify_audit().ok  # 0 rows, while this registry's checkpoint below covers 4
        lifecycle.checkpoint_audit()
        report = other.verify_audit()
        assert report.ok and report.checkpoints == 2
        assert lifecycle.verify_audit().checkpoints == 1
    finally:
        other.close()


def test_forced_deploys_are_marked_in_the_audit_log(registry, register):
    register(validated=False)
    registry.deploy("gbm_direction", "1", actor="alice", force=True, reason="hotfix")
    row = registry.audit_rows()[0]
    assert row.action == "model.deploy" and row.details["forced"] is True and row.details["reason"] == "hotfix"


@pytest.mark.parametrize("session", ["transaction", "plain"])
def test_concurrent_writers_never_chain_to_the_same_head(registry, session):
    """Two processes (two engines) append at once, each transaction's first write being its audit row."""
    writers = [registry, Registry(url=registry.url, home=registry.home)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)
    n = 60

    def write(reg: Registry, label: str) -> None:
        try:
            start.wait()
            for i in range(n):
                # "plain": a session that is not Registry.transaction(); audit.lock takes the write lock itself
                opened = reg.transaction() if session == "transaction" else reg.sessions.begin()
                with opened as s:
                    audit.append(s, label, "test.tick", "test", str(i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(reg, f"w{k}")) for k, reg in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    writers[1].close()
    assert not errors, errors
    report = registry.verify_audit()
    assert report.ok, report.reason
    assert report.rows == 2 * n


def test_an_audit_write_holds_the_chain_lock_until_it_commits(registry):
    """SQLite: every registry transaction starts with BEGIN IMMEDIATE (the write lock); PostgreSQL: an audit
    write holds the chain's advisory lock. Either way a second writer cannot read the head meanwhile."""
    from treum.registry import audit

    if registry.engine.dialect.name == "postgresql":
        with registry.transaction() as s, registry.engine.connect() as other:
            audit.lock(s)
            assert other.execute(text("SELECT pg_try_advisory_xact_lock(7215100)")).scalar() is False
        with registry.engine.connect() as other:  # released at commit
            assert other.execute(text("SELECT pg_try_advisory_xact_lock(7215100)")).scalar() is True
        return
    import sqlite3

    other = sqlite3.connect(registry.engine.url.database, timeout=0, isolation_level=None)
    try:
        with registry.transaction() as s:
            s.execute(select(AuditLog.id)).all()  # a read only: the lock is held already
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with registry.sessions() as s:  # a plain read does not take it
            s.execute(select(AuditLog.id)).all()
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()
