"""Ids made on the serving hot path with one system call per 256 of them.

``uuid.uuid4()`` reads ``os.urandom`` for every id: a system call that releases the GIL,
and on a replica whose log-writer thread is busy the event loop then waits for the GIL
again (up to the interpreter's switch interval) several times per request (the
10,000-connection profile found 9-12% of the event loop's samples there). These ids are
version-4 UUIDs cut from a buffer of ``os.urandom`` bytes refilled 4 KiB at a time: as
unpredictable as ``uuid4`` (no seeded generator that a ``random.seed()`` elsewhere in the
process, such as a model's training, could make repeat), and emptied in a forked child so
parent and child never share bytes.
"""

from __future__ import annotations

import os
import threading
import uuid

_BLOCK = 4096
_lock = threading.Lock()
_buf = b""
_pos = 0


def _reset() -> None:
    global _buf, _pos, _lock
    _buf, _pos, _lock = b"", 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset)


def _random16() -> bytes:
    global _buf, _pos
    with _lock:
        if _pos + 16 > len(_buf):
            _buf, _pos = os.urandom(_BLOCK), 0
        out = _buf[_pos:_pos + 16]
        _pos += 16
        return out


def new_uuid() -> uuid.UUID:
    """A random version-4 UUID."""
    return uuid.UUID(bytes=_random16(), version=4)


def new_hex() -> str:
    """A random version-4 UUID as 32 hex digits (request and prediction ids)."""
    return uuid.UUID(bytes=_random16(), version=4).hex
