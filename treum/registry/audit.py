"""The append-only, hash-chained audit log.

Each row's hash covers the previous row's hash and the row's own content, so
changing, deleting or reordering any row breaks every hash after it;
``verify_chain`` names the first row that no longer matches. Rows are written in
the same transaction as the change they record, by one writer at a time (``lock``),
so no two rows chain to the same head. Triggers refuse UPDATE and DELETE (revision
0004). What the chain alone cannot show, a removed tail or a chain recomputed from
an edited row, the signed checkpoints outside the database show
(``treum.registry.checkpoints``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from treum.registry.schema import AuditLog, utcnow

GENESIS = "0" * 64


def row_digest(prev_hash: str, created_at: datetime, actor: str, action: str, entity_type: str,
               entity_id: str, details: Any) -> str:
    payload = json.dumps(
        {
            "prev": prev_hash,
            "at": created_at.replace(microsecond=created_at.microsecond).isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "details": details,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def lock(session: Session) -> None:
    """Serialise writers of the chain for the rest of this transaction.

    ``append`` takes it; a change that checks state before writing (no other running
    experiment on a name, say) takes it first, so two such changes cannot both pass
    the check. PostgreSQL: a transaction-scoped advisory lock. SQLite: the database's
    write lock. ``Registry.transaction`` opens every transaction with ``BEGIN
    IMMEDIATE`` already; a session that has not started one yet (Python's sqlite3
    runs a SELECT outside any transaction until the first INSERT, so two writers
    could both read the same head) starts one here before anything is read.
    """
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7215100)"))
    elif dialect == "sqlite" and not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def append(session: Session, actor: str, action: str, entity_type: str, entity_id: str, details: Any = None) -> AuditLog:
    """Add an audit row to the session's transaction, chained to the last row."""
    lock(session)
    last = session.execute(select(AuditLog.row_hash).order_by(AuditLog.id.desc()).limit(1)).scalar()
    prev = last or GENESIS
    created = utcnow()
    details = json.loads(json.dumps(details, default=str)) if details is not None else None
    row = AuditLog(
        created_at=created,
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        details=details,
        prev_hash=prev,
        row_hash=row_digest(prev, created, actor, action, entity_type, str(entity_id), details),
    )
    session.add(row)
    session.flush()
    return row


@dataclass
class ChainReport:
    """What ``verify`` found: ``ok``, the rows read, the first broken row (if a row is to blame) and why.

    ``head`` is the last row's hash; ``hashes`` the hash at each row number asked for
    (the rows the signed checkpoints cover); ``checkpoints`` how many checkpoints
    agreed; ``checkpoint`` the one written after a successful verification, if any.
    """

    ok: bool
    rows: int
    first_broken_id: int | None = None
    reason: str | None = None
    head: str = GENESIS
    hashes: dict[int, str] = field(default_factory=dict, repr=False)
    checkpoints: int = 0
    checkpoint: Any = None


def verify_chain(session: Session, keep: Collection[int] = ()) -> ChainReport:
    """Recompute every hash in order; report the first row that does not match.

    ``keep``: row numbers (1-based, in id order) whose hash the report keeps in ``hashes``.
    """
    prev = GENESIS
    hashes: dict[int, str] = {}
    n = 0
    for row in session.execute(select(AuditLog).order_by(AuditLog.id)).scalars():
        n += 1
        if row.prev_hash != prev:
            return ChainReport(False, n, row.id, "its prev_hash does not match the row before (a row was removed "
                                                 "or reordered)")
        expected = row_digest(prev, row.created_at, row.actor, row.action, row.entity_type, row.entity_id, row.details)
        if expected != row.row_hash:
            return ChainReport(False, n, row.id, "its content no longer matches its hash (the row was changed)")
        prev = row.row_hash
        if n in keep:
            hashes[n] = prev
    return ChainReport(True, n, head=prev, hashes=hashes)
