"""Signed checkpoints of the audit log, kept outside the database.

The hash chain shows an edited, removed or reordered row, but not a removed tail
(the rows left still chain), nor a chain that someone who can write to the
database recomputed from an edited row onwards. A checkpoint is the chain's row
count and head hash at a moment, signed with HMAC-SHA256 under a key the database
never sees: ``$TREUM_AUDIT_KEY`` if set, else ``$TREUM_HOME/audit.key`` (created
with mode 0600 on first use). Checkpoints are appended, one JSON line each, to
``$TREUM_HOME/audit-checkpoints.jsonl``; copy that file elsewhere (``treum
registry checkpoint --export FILE``) to keep it out of reach of whoever can change
the machine. ``verify`` checks every checkpoint's signature, then that the chain
still has at least its row count and the same hash at that row: fewer rows is a
truncation, another hash a recomputed or edited chain.

A checkpoint names the database it was taken of (its URL without password), so one
``TREUM_HOME`` can serve several registries without their checkpoints clashing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from treum.core.errors import RegistryError
from treum.registry.schema import utcnow

KEY_ENV = "TREUM_AUDIT_KEY"
KEY_FILE = "audit.key"
CHECKPOINT_FILE = "audit-checkpoints.jsonl"


@dataclass(frozen=True)
class Checkpoint:
    """One signed line: when, by whom, of which database, how many rows, the head hash, the HMAC."""

    at: str
    by: str
    db: str
    rows: int
    head: str
    hmac: str

    def to_line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


def database_identity(url: str) -> str:
    """The database a URL points at, without password or driver: what a checkpoint is of."""
    u = make_url(url)
    u = u.set(drivername=u.get_backend_name(), password=None)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        u = u.set(database=str(Path(u.database).expanduser().resolve()))
    return u.render_as_string(hide_password=True)


def audit_key(home: Path) -> bytes:
    """The HMAC key: ``$TREUM_AUDIT_KEY``, else ``home/audit.key``, created (mode 0600) if missing."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    path = Path(home) / KEY_FILE
    if not path.exists():
        _create_key(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise RegistryError(f"the audit key {path} can be read by others (mode {mode:04o}); run `chmod 600 {path}`")
    key = path.read_bytes().strip()
    if not key:
        raise RegistryError(f"the audit key {path} is empty; restore it from your backup (or set ${KEY_ENV})")
    return key


def _create_key(path: Path) -> None:
    """Write a new random key beside ``path`` and link it into place: whoever links first wins, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)


def signature(key: bytes, at: str, by: str, db: str, rows: int, head: str) -> str:
    """HMAC-SHA256, under ``key``, of the checkpoint's fields as canonical JSON (row count and head among them)."""
    message = json.dumps({"at": at, "by": by, "db": db, "rows": int(rows), "head": head},
                         sort_keys=True, separators=(",", ":"))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, by: str, db: str, rows: int, head: str) -> Checkpoint:
    """A checkpoint of ``rows`` rows ending in ``head``, taken now by ``by``, of database ``db``."""
    at = utcnow().isoformat(timespec="microseconds")
    return Checkpoint(at, by, db, int(rows), head, signature(key, at, by, db, rows, head))


def genuine(key: bytes, cp: Checkpoint) -> bool:
    """Whether ``cp`` was signed with ``key`` and not changed since (constant-time comparison)."""
    return hmac.compare_digest(cp.hmac, signature(key, cp.at, cp.by, cp.db, cp.rows, cp.head))


def append(path: Path, cp: Checkpoint) -> None:
    """Append one line and fsync it (one write call: concurrent writers do not interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (cp.to_line() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot(paths: Iterable[Path]) -> list[tuple[str, Checkpoint | str]]:
    """Every line of the checkpoint files, read now: ``(where, checkpoint or why it is unreadable)``.

    ``verify`` reads them before the chain, so every checkpoint it compares was taken of
    rows that were committed before the chain was read (a checkpoint written meanwhile
    by another process would otherwise look like a truncation).
    """
    lines: list[tuple[str, Checkpoint | str]] = []
    for path in paths:
        if not Path(path).exists():
            continue
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}, line {number}"
                try:
                    fields = json.loads(line)
                    lines.append((where, Checkpoint(str(fields["at"]), str(fields["by"]), str(fields["db"]),
                                                    int(fields["rows"]), str(fields["head"]), str(fields["hmac"]))))
                except (ValueError, KeyError, TypeError) as exc:
                    lines.append((where, f"it is not a checkpoint line ({type(exc).__name__})"))
    return lines


def covered(lines: Iterable[tuple[str, Checkpoint | str]]) -> set[int]:
    """The row counts the checkpoints cover: the rows whose hash ``compare`` needs."""
    return {cp.rows for _, cp in lines if isinstance(cp, Checkpoint)}


def compare(key: bytes, db: str, rows: int, hashes: Mapping[int, str],
            lines: Iterable[tuple[str, Checkpoint | str]]) -> tuple[int, str | None]:
    """Check a chain of ``rows`` rows against every checkpoint of ``db`` among ``lines`` (``snapshot``).

    ``hashes`` maps a row number to the chain's hash there, for every row count in ``covered(lines)``.
    ``(checkpoints that agree, the first problem or None)``. A line that is not a
    checkpoint, or whose HMAC does not match (forged, or signed with another key), is
    a problem: a checkpoint file is written by treum only.
    """
    agreed = 0
    for where, cp in lines:
        if isinstance(cp, str):
            return agreed, f"checkpoint at {where}: {cp}"
        if not genuine(key, cp):
            return agreed, (f"checkpoint of {cp.at} ({where}) is forged: its HMAC does not match (or the audit "
                            f"key changed: ${KEY_ENV} or {KEY_FILE} in TREUM_HOME)")
        if cp.db != db:
            continue
        if rows < cp.rows:
            return agreed, (f"the audit log has {rows} rows but checkpoint of {cp.at} covered {cp.rows}: "
                            "rows were deleted from its end (truncation)")
        if cp.rows and hashes.get(cp.rows) != cp.head:
            return agreed, (f"row {cp.rows} of the audit log does not have the hash that checkpoint of {cp.at} "
                            "signed: the chain was recomputed or edited")
        agreed += 1
    return agreed, None
