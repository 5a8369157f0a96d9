"""What stands between a client and the service: request ids, body limits, rate limits, keys with scopes.

All of it is pure ASGI or an async FastAPI dependency, so nothing here costs a
thread hop on the request path, and the key check does no database write on
the event loop (a key is looked up once per ``KEY_TTL_S`` in a worker thread,
and its last use is written later, in batches, by the service).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from treum.registry.keys import key_allows  # noqa: F401  (one list of scopes: the registry's)
from treum.serve.bars import RequestError
from treum.serve.ids import new_hex

KEY_TTL_S = 5.0  # a revoked key stops working within this many seconds on every replica


_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:-]{8,64}")


def request_id(scope: dict) -> str:
    """The request's id, for error bodies and logs: the client's ``X-Request-ID`` when it is 8-64 letters,
    digits or ``._:-`` (so a client can find its request in ``model_serving_logs``), else a new one."""
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        for key, value in scope.get("headers") or ():
            if key == b"x-request-id" and _CLIENT_ID.fullmatch(value):
                rid = value.decode()
                break
        else:
            rid = new_hex()
        state["request_id"] = rid
    return rid


async def send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


class RequestIdMiddleware:
    """Gives every request an id (``X-Request-ID`` in the answer) and counts the body bytes actually received."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = request_id(scope)
        state = scope["state"]
        state["body_bytes"] = 0

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["body_bytes"] += len(message.get("body", b""))
            return message

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, counting_receive, send_with_id)


class BodyLimitMiddleware:
    """413 for a body above ``limit()`` bytes: by its Content-Length before reading, or as it streams in.

    The body is read here, up to the limit, and handed to the app from memory, so an
    oversized or endless body costs at most ``limit`` bytes and never reaches a parser.
    """

    def __init__(self, app, limit: Callable[[], int | None]):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        limit = self.limit() if scope["type"] == "http" else None
        if not limit or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            return await send_json(send, 400, {"error": "Content-Length is not a number",
                                                "request_id": request_id(scope)})
        too_large = {"error": f"the body is larger than {limit} bytes (serve.max_body_bytes): send fewer bars or "
                              "smaller batches", "request_id": request_id(scope)}
        if declared > limit:
            return await send_json(send, 413, too_large)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > limit:
                return await send_json(send, 413, too_large)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: wait for the disconnect as usual
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class RateLimiter:
    """A token bucket per client (API key, else address): ``per_minute`` tokens a minute, ``burst`` at once."""

    def __init__(self, per_minute: int, burst: int, max_clients: int = 100_000):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> float:
        """0 if the request may go on, else the seconds to wait before the next one will."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return (1.0 - tokens) / self.rate
            if len(self._buckets) >= self.max_clients and client not in self._buckets:
                self._buckets.clear()  # bounded memory: a flood of addresses resets the table, it cannot grow it
            self._buckets[client] = (tokens - 1.0, now)
            return 0.0


class RateLimitMiddleware:
    """429 with Retry-After when a client (its key, else its address) exceeds the configured rate."""

    def __init__(self, app, limiter: Callable[[], RateLimiter | None], prefix: str):
        self.app = app
        self.limiter = limiter
        self.prefix = prefix

    async def __call__(self, scope, receive, send):
        limiter = self.limiter() if scope["type"] == "http" and scope["path"].startswith(self.prefix) else None
        if limiter is None:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        client = ("key:" + hashlib.sha256(auth).hexdigest()[:16]) if auth else \
            "ip:" + (scope.get("client") or ("?", 0))[0]
        wait = limiter.allow(client)
        if wait > 0:
            return await send_json(send, 429, {"error": f"too many requests; retry in {wait:.1f} s "
                                                         "(serve.rate_limit_per_minute)",
                                                "request_id": request_id(scope)},
                                    [(b"retry-after", str(max(1, int(wait + 0.999))).encode())])
        await self.app(scope, receive, send)


class KeyCache:
    """Valid keys by token digest, for ``KEY_TTL_S``; last uses collected for a batched write."""

    def __init__(self, registry: Any):
        self.registry = registry
        self._cache: dict[str, tuple[float, Any]] = {}
        self.last_used: dict[Any, datetime] = {}
        self._lock = threading.Lock()

    async def check(self, token: str) -> Any:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < KEY_TTL_S:
            key = hit[1]
        else:
            # the database read runs in a worker thread: the event loop keeps serving meanwhile
            key = await asyncio.to_thread(self.registry.check_api_key, token)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, key)
        if key is not None:
            expires = getattr(key, "expires_at", None)
            if expires is not None and expires <= datetime.now(timezone.utc).replace(tzinfo=None):
                return None
            self.last_used[key.id] = datetime.now(timezone.utc).replace(tzinfo=None)
        return key

    def flush_last_used(self) -> None:
        """Write the collected last uses (called off the request path, by the service's refresh thread)."""
        with self._lock:
            pending, self.last_used = self.last_used, {}
        touch = getattr(self.registry, "touch_api_keys", None)
        if pending and touch is not None:
            touch(pending)


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; the scheme is case-insensitive."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def missing_key_error() -> RequestError:
    return RequestError(401, "this route needs an API key: send 'Authorization: Bearer <key>' "
                             "(create one with `treum registry keys create NAME --scope ...`)")
