"""A durable local spool of log rows: append-only JSON-lines segments under ``TREUM_HOME/logs/spool``.

Every row the log writer accepts is journaled here before (or while) it is written
to the database, so a row that the database cannot take now, that the bounded
in-memory queue had no room for, or that a killed process never wrote, is still
on disk for the next writer to replay.

- ``add(record)`` (the request path) only appends to a list. A journal thread writes
  the list to the active segment in groups, one ``os.write`` per group, and fsyncs
  it: when ``sync_rows`` rows are waiting or the oldest has waited ``sync_seconds``,
  whichever comes first. The write happens while the list's lock is held, so an
  accepted row is at every moment either in the list or in the file; if the journal
  falls ``max_unsynced`` rows behind, ``add`` waits for it (backpressure), so a
  ``kill -9`` loses fewer than ``max_unsynced`` accepted rows (the rows of the last
  group, not yet written); a machine crash can lose the rows written but not yet
  fsynced as well (one more group).
- A segment belongs to one writer, which holds an exclusive ``flock`` on it until the
  segment is deleted; the kernel drops the lock when the process dies, so a segment
  that nobody holds is an orphan any writer on the same ``TREUM_HOME`` may replay.
- A segment is deleted once it is closed (rotated) and every row in it is in the
  database (or in the dead-letter file): rows are counted as they are written to it
  and as the writer commits them, or, for a segment that holds rows the in-memory
  queue did not keep, once it has been replayed from the file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

try:  # POSIX: a segment's owner holds a lock the kernel drops when the process dies
    import fcntl
except ImportError:  # pragma: no cover - Windows: no sibling processes to guard against
    fcntl = None

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"


def json_default(obj: Any) -> Any:
    """What ``json.dumps`` cannot write on its own: UUIDs, datetimes, anything else as text."""
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):  # an array of several values: its text below
            return str(obj)
    return str(obj)


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=json_default, separators=(",", ":"))


class Record:
    """One log row on its way: its table (``kind``), stable id, the cleaned row, where it is.

    ``texts``: the JSON columns already encoded (by the cleaning that checked them), reused in the line.
    """

    __slots__ = ("done", "id", "kind", "mem", "row", "seg", "texts")

    def __init__(self, kind: str, row: dict, mem: bool = True, texts: dict[str, str] | None = None):
        self.kind = kind
        self.id = row["id"]
        self.row = row
        self.mem = mem  # also in the writer's in-memory queue (False: only the spool has it)
        self.done = False  # committed to the database or dead-lettered
        self.seg: Segment | None = None
        self.texts = texts or {}

    def line(self) -> str:
        """``{"k": kind, "r": row}`` on one line, without the row's nulls."""
        texts = self.texts
        scalars = {k: v for k, v in self.row.items() if v is not None and k not in texts}
        body = dumps(scalars)
        parts = [f"{json.dumps(k)}:{t}" for k, t in texts.items() if t != "null"]
        if parts:
            body = body[:-1] + ("," if len(body) > 2 else "") + ",".join(parts) + "}"
        return f'{{"k":{json.dumps(self.kind)},"r":{body}}}'


class Segment:
    __slots__ = ("closed", "deleted", "done", "fd", "opened", "orphan", "path", "replay", "rows")

    def __init__(self, path: Path, fd: int, orphan: bool = False):
        self.path = path
        self.fd = fd
        self.rows = 0  # rows written to it
        self.done = 0  # of those, committed
        self.closed = orphan  # no more rows will be written to it
        self.replay = orphan  # holds rows that only the file has: replay it before deleting it
        self.deleted = False
        self.opened = time.monotonic()
        self.orphan = orphan


def _call(ready: list[tuple[Callable[[bool], None], bool]]) -> None:
    for cb, ok in ready:
        try:
            cb(ok)
        except Exception:  # a waiter whose event loop has gone away
            log.debug("a durable-ack waiter failed", exc_info=True)


def _lock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class Spool:
    def __init__(
        self,
        directory: Path,
        sync_rows: int = 50,
        sync_seconds: float = 0.2,
        max_unsynced: int | None = None,
        segment_rows: int = 10_000,
        segment_seconds: float = 30.0,
    ):
        self.dir = Path(directory)
        self.sync_rows = max(1, int(sync_rows))
        self.sync_seconds = float(sync_seconds)
        self.max_unsynced = max(self.sync_rows + 1, int(max_unsynced or 2 * self.sync_rows))
        self.segment_rows = segment_rows
        self.segment_seconds = segment_seconds
        self._pending: list[Record] = []
        self._first_at = 0.0
        self._plock = threading.Lock()
        self._pcond = threading.Condition(self._plock)
        self._slock = threading.RLock()
        self._active: Segment | None = None
        self._segments: list[Segment] = []  # this spool's, not yet deleted
        self._dirty = False  # written since the last fsync
        self._stopping = False
        self._closed = False
        self._broken_until = 0.0  # the directory could not be written: retry after this
        self.journaled = 0  # rows written to a segment
        self.errors = 0  # failed writes to the spool
        self.lost = 0  # rows only the spool would have kept, when it could not be written
        self.torn = 0  # unreadable last lines of orphaned segments (a write cut short)
        # durable acknowledgements: rows are journaled in the order they were added, so "the first n rows
        # are on disk" is one counter; a waiter asks to be called back once it reaches its row
        self.added = 0
        self._synced = 0  # rows settled: fsynced, or known not to be (a failed write or fsync)
        self._failures = 0  # failed writes or fsyncs so far: a waiter's rows are durable if none came since
        self._waiters: deque[tuple[int, int, Callable[[bool], None]]] = deque()
        self._thread = threading.Thread(target=self._run, name="treum-log-spool", daemon=True)
        self._thread.start()

    # the request path -------------------------------------------------------
    def add(self, rec: Record) -> None:
        with self._pcond:
            self.added += 1
            if self._closed:
                if not self._write_now([rec]):
                    self._failures += 1
                self._synced += 1
                return
            self._pending.append(rec)
            n = len(self._pending)
            if n == 1:  # the journal starts its clock
                self._first_at = time.monotonic()
                self._pcond.notify_all()
            elif n >= self.sync_rows:
                self._pcond.notify_all()
            # backpressure: the journal is a group behind; wait for it rather than hold more unwritten rows
            while (len(self._pending) >= self.max_unsynced and not self._closed and self._thread.is_alive()
                   and time.monotonic() >= self._broken_until):
                self._pcond.wait(0.05)

    def when_synced(self, n: int, callback: Callable[[bool], None]) -> bool | None:
        """Whether the first ``n`` rows added are fsynced: True or False now, or None and, later,
        ``callback(ok)`` from the journal's thread (False: a write or fsync failed meanwhile, or the
        spool closed first).

        A waiter makes the journal write what is pending at once instead of waiting to fill a group
        (a group commit: the rows that arrive during one fsync share the next).
        """
        with self._pcond:
            if self._synced >= n:
                return True
            if self._closed:
                return False
            self._waiters.append((n, self._failures, callback))
            self._pcond.notify_all()
            return None

    def _mark_synced(self, n: int, ok: bool) -> None:
        """The next ``n`` rows are settled: on disk (``ok``), or not, which the journal has logged."""
        ready = []
        with self._pcond:
            self._synced += n
            if not ok:
                self._failures += 1
            while self._waiters and self._waiters[0][0] <= self._synced:  # targets only grow
                _, failures, cb = self._waiters.popleft()
                ready.append((cb, failures == self._failures))
        _call(ready)

    def _release_waiters(self) -> None:
        """At close: the rows still awaited were not confirmed on disk."""
        with self._pcond:
            ready = [(cb, False) for *_, cb in self._waiters]
            self._waiters.clear()
        _call(ready)

    # the journal -------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._pcond:
                while not self._pending and not self._stopping:
                    self._pcond.wait()
                if not self._pending and self._stopping:
                    break
                deadline = self._first_at + self.sync_seconds
                while len(self._pending) < self.sync_rows and not self._stopping and not self._waiters:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._pcond.wait(left)
                wait = self._broken_until - time.monotonic()
                if wait > 0 and not self._stopping:
                    self._pcond.wait(wait)
                    continue
                group = self._pending[:]
            try:
                self._journal(group)
            except Exception:  # never let the journal die: the request path waits on it
                log.exception("the log spool's journal failed")
                time.sleep(0.1)
        with self._slock:
            self._sync()

    def _journal(self, group: list[Record]) -> None:
        """Encode outside the lock, write with it held, fsync after (an accepted row: in the list or the file)."""
        ok = True
        recs, lines = [], []
        for r in group:
            if r.done:
                continue
            try:
                lines.append(r.line() + "\n")
                recs.append(r)
            except Exception:  # a value no encoder takes: never retry it forever; the database may still take it
                ok = False
                log.exception("a %s log row cannot be written to the spool; it is kept in memory only", r.kind)
        data = "".join(lines).encode()
        with self._pcond:
            try:
                with self._slock:
                    self._write(recs, data)
                self._broken_until = 0.0
            except OSError as exc:
                ok = False
                self.errors += 1
                only_here = [r for r in recs if not r.mem and not r.done]
                self.lost += len(only_here)
                self._broken_until = time.monotonic() + 1.0
                log.error("cannot write the log spool under %s (%s): %d rows that only the spool held are lost",
                          self.dir, exc, len(only_here))
            del self._pending[:len(group)]
            if self._pending:
                self._first_at = time.monotonic()
            self._pcond.notify_all()
        with self._slock:
            ok = self._sync() and ok
        self._mark_synced(len(group), ok)

    def _write(self, recs: list[Record], data: bytes) -> None:
        """Under ``_slock``: append the rows to the active segment (a new one when none is open)."""
        if not recs:
            return
        seg = self._active
        if seg is None:
            seg = self._active = self._open()
        try:
            _write_fully(seg.fd, data)
        except OSError:
            # a group cut short (a full disk): it stays the segment's last line, and whatever of it is
            # whole is recovered by replaying the segment rather than deleting it
            seg.replay = True
            self._rotate()
            raise
        self._dirty = True
        seg.rows += len(recs)
        self.journaled += len(recs)
        for rec in recs:
            rec.seg = seg
            if rec.done:
                seg.done += 1
            if not rec.mem:
                seg.replay = True
        if seg.rows >= self.segment_rows or time.monotonic() - seg.opened >= self.segment_seconds:
            self._rotate()

    def _open(self) -> Segment:
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        path = self.dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _lock(fd)
        _fsync_dir(self.dir)
        seg = Segment(path, fd)
        self._segments.append(seg)
        return seg

    def _sync(self) -> bool:
        """fsync the active segment if it was written; False when the fsync failed."""
        ok = True
        if self._dirty and self._active is not None:
            try:
                os.fsync(self._active.fd)
            except OSError as exc:
                ok = False
                self.errors += 1
                log.error("cannot fsync the log spool %s: %s", self._active.path, exc)
        self._dirty = False
        return ok

    def _rotate(self) -> None:
        """Under ``_slock``: close the active segment (fsynced); the next write opens a new one."""
        seg = self._active
        if seg is None:
            return
        self._sync()
        self._active = None
        seg.closed = True
        self._maybe_delete(seg)

    def _maybe_delete(self, seg: Segment) -> None:
        if seg.closed and not seg.replay and not seg.deleted and seg.done >= seg.rows:
            self._delete(seg)

    def _delete(self, seg: Segment) -> None:
        try:
            seg.path.unlink()
        except FileNotFoundError:
            pass  # another writer replayed it first
        except OSError as exc:  # left in place: replayed again later, which writes nothing twice
            log.error("cannot remove the replayed log spool %s: %s", seg.path, exc)
        self._release(seg)
        seg.deleted = True

    def _release(self, seg: Segment) -> None:
        if seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1
        if seg in self._segments:
            self._segments.remove(seg)

    def _write_now(self, recs: list[Record]) -> bool:
        """After ``close``: late rows go straight to a segment of their own, fsynced and released at once
        (an orphan the next writer on this ``TREUM_HOME`` replays). False when they could not be."""
        if not recs:
            return True
        try:
            with self._slock:
                seg = self._open()
                try:
                    _write_fully(seg.fd, "".join(r.line() + "\n" for r in recs).encode())
                    os.fsync(seg.fd)
                finally:
                    seg.rows, seg.closed, seg.replay = len(recs), True, True
                    self._release(seg)
                self.journaled += len(recs)
        except OSError as exc:
            self.errors += 1
            self.lost += len(recs)
            log.error("cannot write the log spool under %s (%s): %d late rows lost", self.dir, exc, len(recs))
            return False
        return True

    # the writer's side --------------------------------------------------------
    def mark_done(self, recs: list[Record]) -> None:
        """The rows are in the database (or dead-lettered): a segment they complete is deleted."""
        touched = set()
        with self._slock:
            for rec in recs:
                if rec.done:
                    continue
                rec.done = True
                seg = rec.seg
                if seg is not None and not seg.deleted:
                    seg.done += 1
                    touched.add(seg)
            for seg in touched:
                self._maybe_delete(seg)

    def flush(self, timeout: float) -> bool:
        """Wait until every accepted row is written and fsynced (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        with self._pcond:
            self._first_at = 0.0  # due now
            self._pcond.notify_all()
            while self._pending and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._pcond.wait(min(left, 0.05))
        with self._slock:
            self._sync()
        return True

    def replayable(self, scan: bool) -> list[Segment]:
        """Closed segments holding rows only the file has: this spool's (the active one rotated) and,
        with ``scan``, orphans that no live writer holds (their process died or closed)."""
        with self._slock:
            if self._active is not None and self._active.replay:
                self._rotate()
            out = [s for s in self._segments if s.closed and s.replay and not s.deleted]
            if not scan or not self.dir.is_dir():
                return out
            mine = {s.path.name for s in self._segments}
            for path in sorted(self.dir.glob(f"*{SUFFIX}")):
                if path.name in mine:
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError:
                    continue
                if not _lock(fd) or not _same_file(fd, path):  # held by a live writer, or replayed meanwhile
                    os.close(fd)
                    continue
                seg = Segment(path, fd, orphan=True)
                self._segments.append(seg)
                out.append(seg)
            return out

    def read(self, seg: Segment, decode: Callable[[str, dict], Record | None]) -> Iterator[Record]:
        """The rows of a closed segment; a line cut short by a crash (only the last can be) is skipped."""
        with open(seg.path, "rb") as f:
            for raw in f:
                try:
                    item = json.loads(raw)
                    rec = decode(item["k"], item["r"])
                except (ValueError, KeyError, TypeError):  # JSON cut short, or not a row
                    self.torn += 1
                    log.warning("skipping an unreadable line of the log spool %s", seg.path.name)
                    continue
                if rec is not None:
                    rec.mem = False
                    yield rec

    def replayed(self, seg: Segment) -> None:
        """Every row of the segment is committed (or dead-lettered): delete it."""
        with self._slock:
            if not seg.deleted:
                self._delete(seg)

    def close(self, timeout: float) -> int:
        """Write and fsync what is pending, close every segment; returns the rows left for the next writer."""
        with self._pcond:
            self._stopping = True
            self._pcond.notify_all()
        self._thread.join(max(0.0, timeout))
        late = None
        with self._pcond:
            self._closed = True
            self._pcond.notify_all()
            if self._pending and not self._thread.is_alive():  # the journal ran out of time: write them here
                group, self._pending = self._pending, []
                late = (len(group), self._write_now([r for r in group if not r.done]))
        if late is not None:
            self._mark_synced(*late)
        self._release_waiters()  # what is still awaited was not confirmed on disk
        with self._slock:
            self._rotate()
            left = 0
            for seg in list(self._segments):
                if seg.orphan and not seg.deleted:
                    self._release(seg)  # another writer may take it now
                    continue
                left += max(0, seg.rows - seg.done)
                self._maybe_delete(seg)
                if not seg.deleted:
                    self._release(seg)
            return left

    def files(self) -> list[Path]:
        return sorted(self.dir.glob(f"*{SUFFIX}")) if self.dir.is_dir() else []


def _write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.fstat(fd)
        return st.st_nlink > 0 and st.st_ino == os.stat(path).st_ino
    except OSError:
        return False


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DeadLetters:
    """``TREUM_HOME/logs/dead-letter.jsonl``: a row the database refused, with its reason, one per line."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def add(self, table: str, rec: Record, reason: str) -> bool:
        line = dumps({"at": datetime.now().astimezone().isoformat(), "table": table, "id": rec.id,
                      "reason": reason, "row": rec.row}) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    _write_fully(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                return True
            except OSError as exc:
                log.error("cannot write the dead-letter file %s: %s", self.path, exc)
                return False
