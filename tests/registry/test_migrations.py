"""The ORM metadata and the Alembic migrations describe the same schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from treum.registry.schema import ApiKey, Base
from treum.registry.store import MIGRATIONS

# compare_type and compare_server_default are off by default in Alembic; a type or a default that
# differs between the models and the migrations is exactly what this test is for, so both are on.
OPTIONS = {"compare_type": True, "compare_server_default": True}


def _differences(engine: sa.Engine, metadata: sa.MetaData) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts=OPTIONS), metadata)


def _alembic(engine: sa.Engine, action, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        action(cfg, revision)


def test_the_migrated_schema_is_the_orm_schema(registry):
    # no exceptions for cosmetic differences are needed: with the options above there are none
    assert _differences(registry.engine, Base.metadata) == []


def test_the_comparison_would_see_a_difference(registry):
    """A control: the same comparison reports a column the migrations lack and a changed type."""
    metadata = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    deployments = metadata.tables["model_deployments"]
    deployments.append_column(sa.Column("approved_by_risk", sa.Boolean(), nullable=True))
    deployments.c.reason.type = sa.String(20)
    diffs = _differences(registry.engine, metadata)
    assert [d[0] for d in diffs if isinstance(d, tuple)] == ["add_column"]
    assert any(isinstance(d, list) and d[0][0] == "modify_type" and d[0][3] == "reason" for d in diffs)


def test_0002_adds_forced_to_an_existing_registry_and_comes_off_again(registry_url):
    engine = create_engine(registry_url)
    try:
        _alembic(engine, command.upgrade, "0001")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO model_deployments (model_name, route, action, actor, created_at) "
                "VALUES ('gbm', 'default', 'deploy', 'old', CURRENT_TIMESTAMP)"
            ))
        assert "forced" not in {c["name"] for c in inspect(engine).get_columns("model_deployments")}
        _alembic(engine, command.upgrade, "head")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT actor, forced FROM model_deployments")).one() == ("old", False)
        assert _differences(engine, Base.metadata) == []
        _alembic(engine, command.downgrade, "0001")
        assert "forced" not in {c["name"] for c in inspect(engine).get_columns("model_deployments")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT actor FROM model_deployments")).scalar() == "old"
    finally:
        engine.dispose()


def test_0003_adds_expires_at_and_narrows_the_old_catch_all_scope(registry_url):
    engine = create_engine(registry_url)
    try:
        _alembic(engine, command.upgrade, "0002")
        with engine.begin() as conn:
            for i, scopes in enumerate(('["write"]', '["write", "read"]', '["admin"]')):
                conn.execute(text(
                    "INSERT INTO api_keys (id, name, key_prefix, key_hash, scopes, created_at) "
                    f"VALUES ('{uuid.UUID(int=i + 1)}', 'k{i}', 'trm_x', 'h{i}', '{scopes}', CURRENT_TIMESTAMP)"
                ))
        _alembic(engine, command.upgrade, "0003")
        assert "expires_at" in {c["name"] for c in inspect(engine).get_columns("api_keys")}
        keys = sa.table("api_keys", sa.column("name"), sa.column("scopes", ApiKey.__table__.c.scopes.type))
        with engine.connect() as conn:
            stored = dict(conn.execute(sa.select(keys.c.name, keys.c.scopes).order_by(keys.c.name)).all())
        assert stored == {"k0": ["predict"], "k1": ["predict", "read"], "k2": ["admin"]}
        _alembic(engine, command.downgrade, "0002")
        assert "expires_at" not in {c["name"] for c in inspect(engine).get_columns("api_keys")}
    finally:
        engine.dispose()


def test_0004_makes_the_audit_log_append_only_and_comes_off_again(registry_url):
    engine = create_engine(registry_url)
    insert = text("INSERT INTO audit_log (created_at, actor, action, entity_type, entity_id, prev_hash, row_hash) "
                  "VALUES (CURRENT_TIMESTAMP, 'a', 'x', 't', '1', :prev, :row)")
    try:
        _alembic(engine, command.upgrade, "head")
        with engine.begin() as conn:
            conn.execute(insert, {"prev": "0", "row": "1"})  # appending is what stays allowed
        for statement in ("UPDATE audit_log SET actor = 'b'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
        assert _differences(engine, Base.metadata) == []
        _alembic(engine, command.downgrade, "0003")
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET actor = 'b'"))
            conn.execute(text("DELETE FROM audit_log"))
        _alembic(engine, command.upgrade, "head")
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(insert, {"prev": "1", "row": "2"})
            conn.execute(text("DELETE FROM audit_log"))
    finally:
        engine.dispose()


def test_0005_renames_an_older_registry_s_metric_column(registry_url):
    """A registry made before 0001 said return_volatility keeps its data under the new name."""
    engine = create_engine(registry_url)
    try:
        _alembic(engine, command.upgrade, "0004")
        with engine.begin() as conn:  # as the first migration used to create it
            conn.execute(text("ALTER TABLE model_performance_metrics RENAME COLUMN return_volatility TO volatility"))
        _alembic(engine, command.upgrade, "head")
        columns = {c["name"] for c in inspect(engine).get_columns("model_performance_metrics")}
        assert "return_volatility" in columns and "volatility" not in columns
        assert _differences(engine, Base.metadata) == []
        _alembic(engine, command.upgrade, "head")  # a second upgrade has nothing left to do
    finally:
        engine.dispose()
