"""Shared fixtures: an isolated TREUM_HOME, the plugin registry, real data, registries on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pytest

PG_URL = os.environ.get("TREUM_TEST_PG_URL")


@pytest.fixture(autouse=True)
def treum_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own TREUM_HOME, and no plugins.toml from the working directory."""
    home = tmp_path / "home"
    monkeypatch.setenv("TREUM_HOME", str(home))
    monkeypatch.delenv("TREUM_REGISTRY_URL", raising=False)
    monkeypatch.delenv("TREUM_PLUGINS_TOML", raising=False)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(scope="session")
def plugins():
    from treum.core.plugins import PluginSettings, create_plugin_registry

    return create_plugin_registry(PluginSettings())


@pytest.fixture(scope="session")
def sp500(plugins) -> pd.DataFrame:
    return plugins.dataset("sp500").load({})


@pytest.fixture(scope="session")
def direction_frame(plugins, sp500) -> pd.DataFrame:
    """S&P 500 2004-2012 with technical features and direction targets at 1, 5 and 21 bars."""
    from treum.core.data import slice_time
    from treum.core.task import build_task

    feats = plugins.feature_set("technical").compute(sp500, {})
    tg = build_task(plugins.task("direction"), {"horizon": 1, "horizons": [1, 5, 21]}).make_targets(sp500)
    return slice_time(sp500.join(feats).join(tg), pd.Timestamp("2004-01-01"), pd.Timestamp("2012-12-31"))


def _pg_schema_url(base: str) -> tuple[str, str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not PG_URL, reason="set TREUM_TEST_PG_URL (make test-services runs these; CI does)"),
            ],
        ),
    ]
)
def registry_url(request, tmp_path) -> str:
    """A fresh, empty registry database: SQLite in tmp, or a new schema on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    from sqlalchemy import create_engine, text

    url, schema = _pg_schema_url(PG_URL)
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield url
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def registry(registry_url, treum_home):
    from treum.registry.store import Registry

    reg = Registry(url=registry_url, home=treum_home)
    yield reg
    reg.close()
