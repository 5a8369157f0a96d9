"""API keys: scopes, creation, listing, revocation, rotation, expiry, and the read-only check.

A key is a random token shown once; only its SHA-256 is stored, with the first
characters as a prefix to recognise it in a listing. A key carries scopes, the
narrowest (``predict``) by default; ``admin`` implies every other scope. Every
change of a key writes the audit log in the same transaction. Checking a key
writes nothing: the serving layer collects when each key was last used and hands
that over in batches (``touch``), off the request path and not audited.
"""

from __future__ import annotations

import difflib
import hashlib
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from treum.core.errors import NotFoundError, RegistryError, did_you_mean
from treum.registry import audit
from treum.registry.schema import ApiKey, utcnow
from treum.registry.values import as_uuid

# what a key may do; a route asks for one of these (admin implies all of them)
SCOPES: tuple[str, ...] = ("predict", "read", "experiments", "train", "deploy", "admin")
ADMIN = "admin"
DEFAULT_SCOPES: tuple[str, ...] = ("predict",)
TOKEN_PREFIX = "trm_"
PREFIX_CHARS = 12
# a token is "trm_" and 43 characters; anything much longer is not one of ours and is not even hashed
MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class ApiKeyRecord:
    """What a valid key may do: the answer of ``Registry.check_api_key``."""

    id: uuid.UUID
    name: str
    scopes: frozenset[str]
    expires_at: datetime | None

    def allows(self, scope: str) -> bool:
        return key_allows(self, scope)


@dataclass(frozen=True)
class ApiKeyInfo:
    """One key as ``Registry.list_api_keys`` shows it (never its hash)."""

    id: uuid.UUID
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        """``revoked``, ``expired`` or ``active``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


def check_scope(scope: str) -> str:
    """The scope itself, or a RegistryError naming the closest scope and listing them all."""
    if scope in SCOPES:
        return scope
    hint = did_you_mean(str(scope), SCOPES)
    if not hint:
        closest = difflib.get_close_matches(str(scope), SCOPES, n=1, cutoff=0.0)
        hint = f"; the closest is '{closest[0]}'" if closest else ""
    raise RegistryError(f"'{scope}' is not an API key scope{hint} (scopes: {', '.join(SCOPES)}; admin implies all)")


def check_scopes(scopes: Iterable[str] | None) -> tuple[str, ...]:
    """Scopes checked and put in the order of ``SCOPES``; None means the default, ``predict``."""
    if scopes is None:
        return DEFAULT_SCOPES
    if isinstance(scopes, str):
        scopes = [scopes]
    chosen = {check_scope(s.strip()) for s in scopes}
    if not chosen:
        raise RegistryError(f"an API key needs at least one scope (scopes: {', '.join(SCOPES)})")
    return tuple(s for s in SCOPES if s in chosen)


def key_allows(key: Any, scope: str) -> bool:
    """Whether a key (anything with ``scopes``, e.g. an ``ApiKeyRecord``) may act in ``scope``.

    ``admin`` implies every scope; no key allows nothing. Asking for a scope that does
    not exist is a programming error of the caller and raises RegistryError.
    """
    check_scope(scope)
    if key is None:
        return False
    scopes = getattr(key, "scopes", None) or ()
    return scope in scopes or ADMIN in scopes


def digest(token: str) -> str:
    """What is stored of a token: its SHA-256 (a token has 256 random bits, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """``trm_`` and 32 random bytes, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def naive_utc(moment: datetime | None) -> datetime | None:
    """Datetimes are stored as naive UTC: an aware one is converted, a naive one taken as UTC."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _key(s: Session, name: str) -> ApiKey:
    key = s.execute(select(ApiKey).where(ApiKey.name == name).with_for_update()).scalar_one_or_none()
    if key is None:
        names = list(s.execute(select(ApiKey.name)).scalars())
        raise NotFoundError(f"no API key named '{name}'{did_you_mean(name, names)} (treum registry keys list)")
    return key


def _usable(key: ApiKey, what: str) -> None:
    if key.revoked_at is not None:
        raise RegistryError(f"API key '{key.name}' was revoked on {key.revoked_at:%Y-%m-%d %H:%M}; "
                            f"a revoked key cannot be {what}; create a new one")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise RegistryError(f"API key '{key.name}' expired on {key.expires_at:%Y-%m-%d %H:%M}; "
                            f"an expired key cannot be {what}; create a new one")


def create(s: Session, name: str, scopes: Iterable[str] | None, expires_at: datetime | None,
           actor: str) -> tuple[str, ApiKey]:
    """Add a key; ``(token, row)``. See ``Registry.create_api_key``."""
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise RegistryError(f"an API key needs a name of 1 to 100 characters, got {name!r}")
    chosen = check_scopes(scopes)
    expires = naive_utc(expires_at)
    if expires is not None and expires <= utcnow():
        raise RegistryError(f"the expiry {expires:%Y-%m-%d %H:%M} UTC of API key '{name}' is in the past")
    audit.lock(s)
    existing = s.execute(select(ApiKey).where(ApiKey.name == name)).scalar_one_or_none()
    if existing is not None:
        state = " (revoked)" if existing.revoked_at is not None else ""
        raise RegistryError(f"an API key named '{name}' already exists{state}; pick another name")
    token = new_token()
    key = ApiKey(name=name, key_prefix=token[:PREFIX_CHARS], key_hash=digest(token), scopes=list(chosen),
                 expires_at=expires)
    s.add(key)
    s.flush()
    audit.append(s, actor, "api_key.create", "api_keys", key.id,
                 {"name": name, "prefix": key.key_prefix, "scopes": list(chosen),
                  "expires_at": expires.isoformat() if expires else None})
    return token, key


def revoke(s: Session, name: str, actor: str) -> ApiKey:
    """Revoke a key for good; revoking it twice is refused."""
    audit.lock(s)
    key = _key(s, name)
    if key.revoked_at is not None:
        raise RegistryError(f"API key '{name}' is already revoked (on {key.revoked_at:%Y-%m-%d %H:%M})")
    key.revoked_at = utcnow()
    audit.append(s, actor, "api_key.revoke", "api_keys", key.id, {"name": name, "prefix": key.key_prefix})
    return key


def rotate(s: Session, name: str, actor: str) -> str:
    """A new token for a key (same name, scopes and expiry); the old token stops working."""
    audit.lock(s)
    key = _key(s, name)
    _usable(key, "rotated")
    token = new_token()
    old_prefix = key.key_prefix
    key.key_prefix, key.key_hash, key.last_used_at = token[:PREFIX_CHARS], digest(token), None
    audit.append(s, actor, "api_key.rotate", "api_keys", key.id,
                 {"name": name, "old_prefix": old_prefix, "prefix": key.key_prefix})
    return token


def listing(s: Session) -> list[ApiKeyInfo]:
    """Every key, oldest first, without its hash."""
    rows = s.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.name)).scalars()
    return [ApiKeyInfo(k.id, k.name, k.key_prefix, tuple(k.scopes or ()), k.created_at, k.expires_at,
                       k.last_used_at, k.revoked_at) for k in rows]


def check(s: Session, token: str) -> ApiKeyRecord | None:
    """The record of a valid, unrevoked, unexpired key; None otherwise. Reads only."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    row = s.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.scopes, ApiKey.expires_at)
        .where(ApiKey.key_hash == digest(token), ApiKey.revoked_at.is_(None))
    ).one_or_none()
    if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    # scopes a key was given before scopes existed (e.g. 'write') grant nothing
    return ApiKeyRecord(row.id, row.name, frozenset(sc for sc in (row.scopes or ()) if sc in SCOPES), row.expires_at)


def touch(s: Session, last_used: Mapping[uuid.UUID | str, datetime]) -> int:
    """Set ``last_used_at`` of each key (never backwards); the number of keys updated. Not audited."""
    updated = 0
    for key_id, moment in last_used.items():
        when = naive_utc(moment)
        updated += s.execute(
            update(ApiKey)
            .where(ApiKey.id == as_uuid(key_id, "API key"),
                   or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < when))
            .values(last_used_at=when)
            .execution_options(synchronize_session=False)
        ).rowcount
    return updated
