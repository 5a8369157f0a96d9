"""Prediction and serving logs, written in batches by a background thread, none lost.

The request path cleans a row, gives it a stable id, and hands it to two places:
the bounded in-memory queue the writer thread drains into the database, and the
durable spool (``treum.serve.spool``) under ``TREUM_HOME/logs/spool`` that a journal
thread appends to and fsyncs in small groups. Neither blocks on the database.

- Cleaning, before a row is queued: strings are clamped to their column's length
  (read from the table), NUL characters are removed from every string, JSON values
  included, a number that does not fit its column (NUMERIC precision, integer range,
  not finite) becomes NULL and the row says so (``input_features["log_cleaned"]`` for
  a prediction; the log says so for both tables); ``serving(received_bytes=n)`` logs
  the bytes actually received instead of what a header claimed.
- Inserts are ``INSERT ... ON CONFLICT DO NOTHING`` on the row's primary key (set on
  the request path) and ``prediction_id``: writing a row twice writes it once, so the
  spool can be replayed whatever part of it the database already has.
- A batch the database refuses is split in halves until the rows it refuses are
  alone; those go to ``TREUM_HOME/logs/dead-letter.jsonl`` with the database's reason,
  the others are written.
- The database down (``OperationalError``, a dropped connection, a locked SQLite
  file, a missing table): the batch is retried with backoff (0.1 s doubling to 5 s)
  without limit; the queue fills and further rows stay in the spool only; once the
  database answers again, the spool is replayed.
- The spool is replayed on start too: a writer replays the segments that no live
  writer holds (left by a process that was killed or that closed within its budget).
- ``close(budget_s)`` writes what it can within the budget; everything else is
  already in the spool, fsynced, for the next writer on this ``TREUM_HOME``.

What a ``kill -9`` can lose: the rows accepted since the journal's last write, fewer
than ``max_unsynced`` (2 x ``sync_rows`` = 100 by default: at most the last group, one
``sync_rows`` group or ``sync_seconds`` of rows, plus the group being gathered); a
machine crash can lose the rows written but not yet fsynced as well (one more group).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Uuid,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.types import JSON

from treum.registry.schema import MLModel, MLPrediction, ModelServingLog, utcnow
from treum.serve.ids import new_uuid
from treum.serve.spool import DeadLetters, Record, Segment, Spool

log = logging.getLogger(__name__)

CLOSE_BUDGET_S = 10.0  # ray_app gives the router's replica more than this to shut down
MAX_QUEUE = 10_000
TABLES = {"prediction": MLPrediction.__table__, "serving": ModelServingLog.__table__}
_STOP = object()
_MISSING = object()
_INT_RANGE = {SmallInteger: 2**15 - 1, Integer: 2**31 - 1, BigInteger: 2**63 - 1}


def _utcnow() -> datetime:  # a marker: columns defaulting to the schema's utcnow share one value per row
    return utcnow()


# cleaning -----------------------------------------------------------------
def _text(value: Any) -> tuple[str, bool]:
    """NUL removed, lone surrogates (which no database encodes) replaced; whether it changed."""
    if value.__class__ is not str:  # numbers, numpy strings: plain text
        value = str(value)
    changed = False
    if "\x00" in value:
        value, changed = value.replace("\x00", ""), True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value, changed = value.encode("utf-8", "replace").decode("utf-8"), True
    return value, changed


def _json_slow(value: Any, notes: list[str]) -> Any:
    if value is None or isinstance(value, (bool, int)) and type(value) in (bool, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        notes.append(f"{value!r} in JSON")
        return None
    if isinstance(value, str):
        text, changed = _text(value)
        if changed:
            notes.append("NUL or invalid characters in JSON")
        return text
    if isinstance(value, dict):
        return {_text(k)[0] if isinstance(k, str) else _text(str(k))[0]: _json_slow(v, notes)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_slow(v, notes) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        try:
            return _json_slow(tolist(), notes)
        except (TypeError, ValueError):  # not numpy's tolist: its text below
            return _text(str(value))[0]
    if isinstance(value, int):  # an int subclass (numpy's are handled above)
        return int(value)
    return _text(str(value))[0]


def _json(value: Any, notes: list[str]) -> tuple[Any, str]:
    """A JSON value every database stores, and its text: the check in C, the walk only when it fails."""
    if value is None:
        return None, "null"
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        if "\\u0000" not in text:
            text.encode("utf-8")
            return value, text
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
        pass
    value = _json_slow(value, notes)
    return value, json.dumps(value, ensure_ascii=False)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _c_str(length: int | None):
    def conv(value, name, notes, texts):
        if value.__class__ is str and "\x00" not in value and (length is None or len(value) <= length):
            try:
                value.encode("utf-8")
                return value, False
            except UnicodeEncodeError:
                pass
        text, dirty = _text(value)
        if length and len(text) > length:
            notes[name] = f"cut from {len(text)} to {length} characters"
            text = text[:length]
        return text, dirty
    return conv


def _c_json(value, name, notes, texts):
    found: list[str] = []
    value, texts[name] = _json(value, found)
    if found and any(not n.startswith("NUL") for n in found):
        notes[name] = "; ".join(sorted(set(found)))[:200] + " replaced by null"
    return value, bool(found)


def _c_numeric(limit: float | None, scale: int):
    def conv(value, name, notes, texts):
        f = _number(value)
        if f is None or not math.isfinite(f):
            notes[name] = f"{str(value)[:40]!r} is not a finite number: null"
            return None, True
        if limit is not None and abs(round(f, scale)) >= limit:
            notes[name] = f"{f!r} overflows the column (|x| < {limit:.0e}): null"
            return None, True
        return f, False
    return conv


def _c_int(limit: int):
    def conv(value, name, notes, texts):
        n = value
        if n.__class__ is not int:
            f = _number(value)
            if f is None or not math.isfinite(f):
                notes[name] = f"{str(value)[:40]!r} is not a finite number: null"
                return None, True
            n = round(f)
        if -limit <= n <= limit:
            return n, False
        notes[name] = f"{n} is out of the column's range (|x| <= {limit}): null"
        return None, True
    return conv


def _c_uuid(value, name, notes, texts):
    if isinstance(value, uuid.UUID):
        return value, False
    try:
        return uuid.UUID(str(value)), False
    except ValueError:
        notes[name] = f"{str(value)[:40]!r} is not a UUID: null"
        return None, True


def _c_datetime(value, name, notes, texts):
    out = _datetime(value)
    if out is None:
        notes[name] = f"{str(value)[:40]!r} is not a date and time: null"
        return None, True
    return out, out is not value


def _c_bool(value, name, notes, texts):
    return bool(value), False


def _c_any(value, name, notes, texts):
    return value, False


def _converter(t):
    """The cleaning of a column's values, from its SQLAlchemy type (and length, precision, scale)."""
    if isinstance(t, JSON):
        return _c_json
    if isinstance(t, Uuid):
        return _c_uuid
    if isinstance(t, DateTime):
        return _c_datetime
    if isinstance(t, Boolean):
        return _c_bool
    if isinstance(t, Numeric):
        p, s = t.precision, t.scale or 0
        if p and not isinstance(t, Float):
            return _c_numeric(10.0 ** (p - s), s)
        return _c_numeric(None, 0)
    if isinstance(t, Integer):
        return _c_int(_INT_RANGE[BigInteger] if isinstance(t, BigInteger) else
                      _INT_RANGE[SmallInteger] if isinstance(t, SmallInteger) else _INT_RANGE[Integer])
    if isinstance(t, String):
        return _c_str(t.length)
    return _c_any


class RowCleaner:
    """A row as the table takes it: every column (defaults filled), each value of the column's type and size.

    Column types, lengths, precisions and defaults come from the SQLAlchemy table itself.
    """

    def __init__(self, table):
        self.table = table
        self.columns = []
        for col in table.columns:
            default = col.default
            if default is not None and getattr(default, "is_callable", False):
                fn = default.arg
                fn = getattr(fn, "__wrapped__", fn)
                # ids without a system call (treum.serve.ids); SQLAlchemy wraps a default as fn(context)
                make = _utcnow if fn is utcnow else new_uuid if fn is uuid.uuid4 else (lambda fn=fn: fn(None))
            elif default is not None and getattr(default, "is_scalar", False):
                make = (lambda v=default.arg: v)
            else:
                make = None
            self.columns.append((col.name, _converter(col.type), make))
        self.names = frozenset(c[0] for c in self.columns)
        self.noted = "input_features" if "input_features" in self.names else None

    def __call__(self, row: dict) -> tuple[dict, dict[str, str], bool, dict[str, str]]:
        """The cleaned row, what was replaced or cut (column: why), whether anything changed, and the
        JSON columns' text."""
        notes: dict[str, str] = {}
        texts: dict[str, str] = {}
        changed = False
        if not self.names.issuperset(row):
            for key in row:
                if key not in self.names:
                    notes[str(key)[:100]] = "not a column of the table: dropped"
        out: dict[str, Any] = {}
        now = None
        for name, conv, make in self.columns:
            value = row.get(name)
            if value is None:
                if name in row or make is None:
                    out[name] = None
                elif make is _utcnow:
                    out[name] = now = now or utcnow()
                else:
                    out[name] = make()
                continue
            out[name], dirty = conv(value, name, notes, texts)
            changed |= dirty
        if out.get("id") is None and "id" in self.names:
            out["id"] = new_uuid()
        if notes and self.noted and isinstance(out.get(self.noted), dict):
            out[self.noted] = {**out[self.noted], "log_cleaned": notes}
            texts[self.noted] = json.dumps(out[self.noted], ensure_ascii=False)
        return out, notes, changed or bool(notes), texts


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return None


# errors -------------------------------------------------------------------
class _Transient(Exception):
    """The database cannot take anything now (down, locked, not migrated): retry, do not split."""


_SCHEMA_WORDS = ("does not exist", "no such table", "no such column", "undefined")


def is_transient(exc: BaseException) -> bool:
    """Whether an error is about the database (retry the batch later) rather than about a row (split it)."""
    if isinstance(exc, (sa_exc.DisconnectionError, sa_exc.TimeoutError, sa_exc.PendingRollbackError,
                        sa_exc.ResourceClosedError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            return True
        if isinstance(exc, sa_exc.ProgrammingError):  # a missing table or column: the schema, not the row
            return any(w in str(exc.orig).lower() for w in _SCHEMA_WORDS)
        return False
    return isinstance(exc, (ConnectionError, TimeoutError))


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {orig}".strip()[:2000]


class _Every:
    """Log the first occurrence of a kind of trouble, then at most once a minute."""

    def __init__(self, seconds: float = 60.0):
        self.seconds = seconds
        self.last: dict[str, float] = {}

    def __call__(self, key: str) -> bool:
        now = time.monotonic()
        if now - self.last.get(key, -math.inf) >= self.seconds:
            self.last[key] = now
            return True
        return False


# the writer ---------------------------------------------------------------
class BatchLogWriter:
    """Log rows to ``ml_predictions`` and ``model_serving_logs`` off the request path; see the module doc.

    Counters (for the health route): ``written`` rows inserted, ``replayed`` of them from the spool,
    ``spooled`` rows that only the spool held (the queue was full, or left at ``close``),
    ``dead_letters`` rows the database refused, ``failed_batches`` batches whose first write failed,
    ``retries`` writes retried after a database error, ``duplicates`` rows the database had already,
    ``cleaned`` rows changed by cleaning, ``lost`` rows that neither the database nor a file could keep
    (only when the spool directory cannot be written).
    """

    def __init__(
        self,
        sessions,
        batch_size: int = 200,
        flush_seconds: float = 0.5,
        *,
        home: Path | str | None = None,
        max_queue: int = MAX_QUEUE,
        sync_rows: int = 50,
        sync_seconds: float = 0.2,
        max_unsynced: int | None = None,
        close_budget_s: float = CLOSE_BUDGET_S,
        backoff_s: tuple[float, float] = (0.1, 5.0),
        rescan_seconds: float = 30.0,
    ):
        if home is None:
            from treum.registry.store import treum_home

            home = treum_home()
        self.sessions = sessions
        self.batch_size = max(1, int(batch_size))
        self.flush_seconds = flush_seconds
        self.max_queue = max(1, int(max_queue))
        self.close_budget_s = close_budget_s
        self.backoff_s = backoff_s
        self.rescan_seconds = rescan_seconds
        self.home = Path(home)
        self.spool_dir = self.home / "logs" / "spool"
        self.dead_letter_path = self.home / "logs" / "dead-letter.jsonl"
        self.written = 0
        self.replayed = 0
        self.spooled = 0
        self.dead_letters = 0
        self.failed_batches = 0
        self.retries = 0
        self.duplicates = 0
        self.cleaned = 0
        self._lost = 0
        self._cleaners = {kind: RowCleaner(table) for kind, table in TABLES.items()}
        self._statements: dict[tuple[str, str], Any] = {}
        self._count = threading.Lock()
        self._every = _Every()
        self._queue: queue.Queue = queue.Queue(maxsize=self.max_queue)
        self._dead = DeadLetters(self.dead_letter_path)
        self.spool = Spool(self.spool_dir, sync_rows=sync_rows, sync_seconds=sync_seconds,
                           max_unsynced=max_unsynced)
        self._stop = threading.Event()
        self._close_lock = threading.Lock()
        self._closed = False
        self._abandoned = False  # close() returned while a database call still hung: stop after it
        self._deadline = math.inf  # close(): stop retrying then (the rows are in the spool)
        self._recovered = False  # the database answered after failing: replay the spool now
        self._thread = threading.Thread(target=self._run, name="treum-log-writer", daemon=True)
        self._thread.start()

    # the request path -------------------------------------------------------
    async def durable(self) -> bool:
        """Wait until every row accepted so far is fsynced to the spool (a durable acknowledgement);
        False when they could not be (a write or fsync failed, or the writer closed first).

        An answer sent after True survives a ``kill -9`` of the process: its rows are on disk,
        and the next writer on this ``TREUM_HOME`` replays them. Waiters share fsyncs. Bound the
        wait with ``asyncio.wait_for``: a disk that stalls stalls this too.
        """
        target = self.spool.added
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def wake(ok: bool) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(ok))

        now = self.spool.when_synced(target, wake)
        return now if now is not None else await done

    def prediction(self, **row: Any) -> None:
        self._accept("prediction", row)

    def serving(self, received_bytes: int | None = None, **row: Any) -> None:
        """A request's row; ``received_bytes``: the body's bytes as received, logged as ``input_size_bytes``
        in place of what the caller computed from a header."""
        if received_bytes is not None:
            row["input_size_bytes"] = received_bytes
        self._accept("serving", row)

    def _accept(self, kind: str, row: dict) -> None:
        try:
            clean, notes, changed, texts = self._cleaners[kind](row)
        except Exception as exc:  # never fail a request for its log row: keep it for a person to read
            log.exception("cannot clean a %s log row; it goes to the dead-letter file", kind)
            raw = Record(kind, {"id": str(uuid.uuid4()), **{str(k): v for k, v in row.items()}})
            with self._count:
                self.dead_letters += 1
            self._dead.add(TABLES[kind].name, raw, f"cleaning failed: {_reason(exc)}")
            return
        if changed:
            with self._count:
                self.cleaned += 1
            if notes and self._every(f"clean-{kind}"):
                log.warning("a %s log row was cleaned before queueing: %s", kind, notes)
        rec = Record(kind, clean, texts=texts)
        if self._closed:
            rec.mem = False
        else:
            try:
                self._queue.put_nowait(rec)
            except queue.Full:
                rec.mem = False
                if self._every("queue-full"):
                    log.warning("the log queue is full (%d rows): rows go to the spool until the database "
                                "catches up", self.max_queue)
        if not rec.mem:
            with self._count:
                self.spooled += 1
        self.spool.add(rec)

    # the writer thread --------------------------------------------------------
    def _take(self, timeout: float) -> list[Record]:
        try:
            first = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return []
        batch = [] if first is _STOP else [first]
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                batch.append(item)
        return batch

    def _run(self) -> None:
        pending: list[Segment] = []  # segments to replay, oldest first
        current: tuple[Segment, Any] | None = None
        next_scan = 0.0  # orphans: at start, when the database comes back, every rescan_seconds
        next_own = 0.0  # this writer's segments with rows the queue had no room for: every second
        checked_at_stop = False
        while not self._abandoned:
            try:
                stopping = self._stop.is_set()
                if stopping and time.monotonic() >= self._deadline:
                    return  # close()'s budget is spent: what is left is in the spool
                now = time.monotonic()
                scan = self._recovered or now >= next_scan
                if scan or now >= next_own or (stopping and not checked_at_stop):
                    checked_at_stop = stopping
                    if scan:
                        self._recovered = False
                        next_scan = now + self.rescan_seconds
                    next_own = now + 1.0
                    held = {id(s) for s in pending} | ({id(current[0])} if current else set())
                    pending += [s for s in self.spool.replayable(scan) if id(s) not in held]
                busy = bool(pending) or current is not None
                batch = self._take(0.0 if busy or stopping else min(self.flush_seconds, 1.0))
                if batch:  # live rows first
                    self._commit(batch)
                    continue
                if current is None and pending:
                    seg = pending.pop(0)
                    current = (seg, self.spool.read(seg, self._decode))
                if current is not None:
                    seg, rows = current
                    chunk = list(itertools.islice(rows, self.batch_size))
                    if chunk and not self._commit(chunk, replay=True):
                        continue  # stopping with the database down: the segment stays for the next writer
                    if len(chunk) < self.batch_size:
                        self.spool.replayed(seg)
                        current = None
                    continue
                if stopping:
                    return
            except Exception:  # a bug must not stop logging: the rows are in the spool
                log.exception("the log writer failed; retrying")
                time.sleep(0.5)

    def _decode(self, kind: str, raw: dict) -> Record | None:
        if kind not in TABLES or not isinstance(raw, dict):
            raise ValueError(f"not a log row: {kind!r}")
        row, _notes, _changed, texts = self._cleaners[kind](raw)
        return Record(kind, row, mem=False, texts=texts)

    def _commit(self, batch: list[Record], replay: bool = False) -> bool:
        """Write the batch (splitting off rows the database refuses), retrying while the database is down.

        False when it gave up because ``close`` ran out of budget: the rows are in the spool.
        """
        delay, failed = self.backoff_s[0], False
        while True:
            todo = [r for r in batch if not r.done]
            if not todo:
                return True
            try:
                self._bisect(todo, replay, first=not failed)
                if failed:
                    log.warning("the database takes log rows again; replaying the spool")
                    self._recovered = True
                return True
            except _Transient as exc:
                if not failed:
                    self.failed_batches += 1
                failed = True
                self.retries += 1
                if self._every("transient"):
                    log.warning("the database cannot take log rows (%s); retrying with backoff, rows are kept "
                                "in %s", _reason(exc.__cause__ or exc)[:300], self.spool_dir)
                if self._abandoned:
                    return False
                if self._stop.is_set():
                    left = self._deadline - time.monotonic()
                    if left <= 0:
                        return False
                    time.sleep(min(delay, left))
                else:
                    self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])

    def _bisect(self, batch: list[Record], replay: bool, first: bool = True) -> None:
        try:
            self._insert(batch, replay)
        except Exception as exc:
            if is_transient(exc):
                raise _Transient() from exc
            if first:
                self.failed_batches += 1
            if len(batch) == 1:
                self._dead_letter(batch[0], exc)
                return
            mid = len(batch) // 2
            self._bisect(batch[:mid], replay, first=False)
            self._bisect(batch[mid:], replay, first=False)

    def _statement(self, kind: str, dialect: str):
        key = (kind, dialect)
        if key not in self._statements:
            table = TABLES[kind]
            returning = (table.c.id, table.c.model_id)
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                stmt = pg_insert(table).on_conflict_do_nothing().returning(*returning)
            elif dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                stmt = sqlite_insert(table).on_conflict_do_nothing().returning(*returning)
            else:
                stmt = None  # another database: look the ids up first
            self._statements[key] = stmt
        return self._statements[key]

    def _insert(self, batch: list[Record], replay: bool) -> None:
        """One transaction: the rows the database does not have yet, and the served counts of their models."""
        inserted = 0
        served: Counter = Counter()
        with self.sessions.begin() as s:
            dialect = s.get_bind().dialect.name
            for kind, table in TABLES.items():
                rows = [r.row for r in batch if r.kind == kind]
                if not rows:
                    continue
                stmt = self._statement(kind, dialect)
                if stmt is None:
                    have = set(s.execute(select(table.c.id).where(table.c.id.in_([r["id"] for r in rows]))).scalars())
                    rows = [r for r in rows if r["id"] not in have]
                    if rows:
                        s.execute(insert(table), rows)
                    new = [(r["id"], r.get("model_id")) for r in rows]
                else:
                    new = s.execute(stmt, rows).all()
                inserted += len(new)
                if kind == "prediction":
                    served.update(model_id for _id, model_id in new if model_id is not None)
            for model_id, n in served.items():
                s.execute(update(MLModel).where(MLModel.id == model_id)
                          .values(served_predictions=MLModel.served_predictions + n))
        self.written += inserted
        self.duplicates += len(batch) - inserted
        if replay:
            self.replayed += inserted
        self.spool.mark_done(batch)

    def _dead_letter(self, rec: Record, exc: BaseException) -> None:
        reason = _reason(exc)
        kept = self._dead.add(TABLES[rec.kind].name, rec, reason)
        with self._count:
            if kept:
                self.dead_letters += 1
            else:
                self._lost += 1
        if self._every(f"dead-{type(exc).__name__}"):
            log.error("the database refused a %s log row (%s); it is in %s", rec.kind, reason[:300],
                      self.dead_letter_path)
        self.spool.mark_done([rec])

    # shutdown and health ---------------------------------------------------------
    def close(self, budget_s: float | None = None) -> None:
        """Write what the budget allows (``close_budget_s`` by default); the rest is in the spool, fsynced."""
        budget = self.close_budget_s if budget_s is None else float(budget_s)
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        start = time.monotonic()
        reserve = min(1.0, budget * 0.1)  # for the spool's last write and fsync
        self._deadline = start + budget - reserve
        self._stop.set()
        try:
            self._queue.put_nowait(_STOP)  # wake the writer if it waits for rows
        except queue.Full:
            pass
        # every accepted row on disk first: whatever the budget does not cover is then already spooled
        self.spool.flush(max(0.0, self._deadline - time.monotonic()))
        self._thread.join(max(0.0, self._deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abandoned = True
            log.warning("the log writer did not finish within %.1f s; the rest stays in %s", budget,
                        self.spool_dir)
        left = self.spool.close(max(0.1, start + budget - time.monotonic()))
        if left:
            with self._count:
                self.spooled += left
            log.warning("%d log rows are left in %s for the next start", left, self.spool_dir)

    @property
    def lost(self) -> int:
        return self._lost + self.spool.lost

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def stats(self) -> dict[str, int]:
        """The counters, for the health route."""
        return {"written": self.written, "replayed": self.replayed, "spooled": self.spooled,
                "dead_letters": self.dead_letters, "failed_batches": self.failed_batches, "retries": self.retries,
                "duplicates": self.duplicates, "cleaned": self.cleaned, "lost": self.lost, "queued": self.queued,
                "spool_files": len(self.spool.files())}
