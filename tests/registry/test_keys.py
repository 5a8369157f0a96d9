"""API keys: scopes (narrowest by default), expiry, revocation, rotation, a check that writes nothing, batched touches."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, text, update

from treum.core.errors import NotFoundError, RegistryError
from treum.registry.keys import SCOPES, ApiKeyRecord, key_allows
from treum.registry.schema import ApiKey, utcnow


def _key_rows(registry) -> list:
    return [r for r in registry.audit_rows() if r.action.startswith("api_key.")]


class Statements:
    """Every SQL statement the registry's engine runs inside the block."""

    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def _record(self, conn, cursor, statement, *args):
        self.seen.append(" ".join(statement.split()).upper())

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._record)


def test_the_scopes_and_the_narrowest_default(registry):
    assert SCOPES == ("predict", "read", "experiments", "train", "deploy", "admin")
    key = registry.check_api_key(registry.create_api_key("app"))
    assert key.scopes == frozenset({"predict"})
    assert key_allows(key, "predict") and not key_allows(key, "read") and not key_allows(key, "deploy")


def test_admin_implies_every_scope_and_no_key_allows_nothing(registry):
    admin = registry.check_api_key(registry.create_api_key("root", scopes=["admin"]))
    assert all(key_allows(admin, scope) for scope in SCOPES) and admin.allows("deploy")
    ops = registry.check_api_key(registry.create_api_key("ops", scopes=["deploy", "read", "deploy"]))
    assert ops.scopes == frozenset({"read", "deploy"}) and not ops.allows("train")
    assert not key_allows(None, "predict")
    with pytest.raises(RegistryError, match="'write' is not an API key scope"):
        key_allows(ops, "write")


@pytest.mark.parametrize("bad, hint", [("deploi", "did you mean 'deploy'"), ("xyz", "the closest is '")])
def test_an_unknown_scope_names_the_closest_and_lists_them_all(registry, bad, hint):
    with pytest.raises(RegistryError) as err:
        registry.create_api_key("app", scopes=["predict", bad])
    assert f"'{bad}' is not an API key scope" in str(err.value) and hint in str(err.value)
    assert "scopes: predict, read, experiments, train, deploy, admin" in str(err.value)
    with pytest.raises(RegistryError, match="at least one scope"):
        registry.create_api_key("app", scopes=[])
    assert registry.list_api_keys() == [] and _key_rows(registry) == []


def test_checking_a_key_writes_nothing_and_answers_an_immutable_record(registry):
    token = registry.create_api_key("app", scopes=["read"])
    rows = len(registry.audit_rows())
    with Statements(registry.engine) as sql:
        key = registry.check_api_key(token)
        assert registry.check_api_key(token + "x") is None
        assert registry.check_api_key("x" * 10_000) is None
    assert sql.seen and all(s.startswith("SELECT") for s in sql.seen), sql.seen
    assert isinstance(key, ApiKeyRecord) and key.name == "app" and key.expires_at is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.scopes = frozenset(SCOPES)
    assert not hasattr(key, "key_hash")
    assert registry.list_api_keys()[0].last_used_at is None and len(registry.audit_rows()) == rows


def test_an_expired_key_stops_working(registry):
    token = registry.create_api_key("temp", expires_at=utcnow() + timedelta(days=1))
    assert registry.check_api_key(token).expires_at is not None
    with registry.transaction() as s:
        s.execute(update(ApiKey).where(ApiKey.name == "temp").values(expires_at=utcnow() - timedelta(seconds=1)))
    assert registry.check_api_key(token) is None
    assert registry.list_api_keys()[0].status() == "expired"
    with pytest.raises(RegistryError, match="expired on .*cannot be rotated"):
        registry.rotate_api_key("temp")


def test_an_expiry_is_in_the_future_and_stored_as_utc(registry):
    with pytest.raises(RegistryError, match="is in the past"):
        registry.create_api_key("old", expires_at=utcnow() - timedelta(minutes=1))
    paris = timezone(timedelta(hours=1))
    registry.create_api_key("tz", expires_at=datetime(2099, 1, 31, 1, 0, tzinfo=paris))
    assert registry.list_api_keys()[0].expires_at == datetime(2099, 1, 31, 0, 0)


def test_revoke_stops_a_key_once_and_for_all(registry):
    token = registry.create_api_key("app", actor="alice")
    info = registry.revoke_api_key("app", actor="bob")
    assert info.revoked_at is not None and info.status() == "revoked"
    assert registry.check_api_key(token) is None
    with pytest.raises(RegistryError, match="already revoked"):
        registry.revoke_api_key("app")
    with pytest.raises(RegistryError, match="revoked .*cannot be rotated"):
        registry.rotate_api_key("app")
    with pytest.raises(RegistryError, match=r"already exists \(revoked\)"):
        registry.create_api_key("app")
    with pytest.raises(NotFoundError, match="no API key named 'ap'; did you mean 'app'"):
        registry.revoke_api_key("ap")
    assert [(r.action, r.actor) for r in reversed(_key_rows(registry))] == [("api_key.create", "alice"),
                                                                          ("api_key.revoke", "bob")]


def test_rotate_keeps_name_scopes_and_expiry_and_retires_the_old_token(registry):
    expires = utcnow() + timedelta(days=30)
    old = registry.create_api_key("app", scopes=["predict", "read"], expires_at=expires)
    before = registry.check_api_key(old)
    registry.touch_api_keys({before.id: utcnow()})
    new = registry.rotate_api_key("app", actor="carol")
    assert new != old and new.startswith("trm_")
    assert registry.check_api_key(old) is None
    after = registry.check_api_key(new)
    assert (after.id, after.name, after.scopes, after.expires_at) == (before.id, "app", before.scopes, before.expires_at)
    (info,) = registry.list_api_keys()
    assert info.prefix == new[:12] and info.last_used_at is None
    row = _key_rows(registry)[0]
    assert (row.action, row.actor, row.details["old_prefix"], row.details["prefix"]) == (
        "api_key.rotate", "carol", old[:12], new[:12])


def test_no_token_or_hash_reaches_the_audit_log_or_the_listing(registry):
    tokens = [registry.create_api_key("a", scopes=["admin"]), registry.rotate_api_key("a")]
    registry.revoke_api_key("a")
    with registry.engine.connect() as conn:
        stored_hash = conn.execute(text("SELECT key_hash FROM api_keys")).scalar()
    for row in _key_rows(registry):
        blob = str(row.details)
        assert stored_hash not in blob and not any(t in blob for t in tokens)
    (info,) = registry.list_api_keys()
    assert stored_hash not in str(info) and not any(t in str(info) for t in tokens)
    assert (info.name, info.scopes) == ("a", ("admin",)) and info.created_at is not None


def test_touch_sets_last_used_one_update_per_key_never_backwards_not_audited(registry):
    a = registry.check_api_key(registry.create_api_key("a"))
    b = registry.check_api_key(registry.create_api_key("b"))
    rows = len(registry.audit_rows())
    now = utcnow().replace(microsecond=0)
    with Statements(registry.engine) as sql:
        assert registry.touch_api_keys({a.id: now, str(b.id): now.replace(tzinfo=timezone.utc)}) == 2
    assert len([s for s in sql.seen if s.startswith("UPDATE API_KEYS")]) == 2
    assert not any("AUDIT_LOG" in s for s in sql.seen)
    assert registry.touch_api_keys({a.id: now - timedelta(hours=1)}) == 0
    assert registry.touch_api_keys({}) == 0
    assert {k.name: k.last_used_at for k in registry.list_api_keys()} == {"a": now, "b": now}
    assert len(registry.audit_rows()) == rows


def test_a_key_from_before_scopes_grants_nothing_it_was_not_given(registry):
    """Rows with the old catch-all 'write' (migration 0003 narrows them; a row written by hand is not trusted)."""
    from treum.registry.keys import digest

    with registry.transaction() as s:
        s.add(ApiKey(name="legacy", key_prefix="trm_legacy00", key_hash=digest("trm_legacy"), scopes=["write"]))
    key = registry.check_api_key("trm_legacy")
    assert key.scopes == frozenset() and not key_allows(key, "predict")
