"""The ORM metadata and the Alembic migrations describe the same schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from treum.registry.schema import Base
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
