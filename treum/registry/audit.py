"""The append-only, hash-chained audit log.

Each row's hash covers the previous row's hash and the row's own content, so
changing, deleting or reordering any row breaks every hash after it;
``verify_chain`` names the first row that no longer matches. Rows are written in
the same transaction as the change they record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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
    """Serialise writers of the chain for the rest of this transaction (PostgreSQL).

    ``append`` takes it; a change that checks state before writing (no other running
    experiment on a name, say) takes it first, so two such changes cannot both pass
    the check. SQLite has one writer at a time already.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7215100)"))


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
    ok: bool
    rows: int
    first_broken_id: int | None = None
    reason: str | None = None


def verify_chain(session: Session) -> ChainReport:
    """Recompute every hash in order; report the first row that does not match."""
    prev = GENESIS
    n = 0
    for row in session.execute(select(AuditLog).order_by(AuditLog.id)).scalars():
        n += 1
        if row.prev_hash != prev:
            return ChainReport(False, n, row.id, "its prev_hash does not match the row before (a row was removed or reordered)")
        expected = row_digest(prev, row.created_at, row.actor, row.action, row.entity_type, row.entity_id, row.details)
        if expected != row.row_hash:
            return ChainReport(False, n, row.id, "its content no longer matches its hash (the row was changed)")
        prev = row.row_hash
    return ChainReport(True, n)
