"""`treum serve --export`: the Serve config never carries the registry password; the replicas get it from
the environment of the cluster's nodes."""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy.engine import make_url

from treum.cli import main
from treum.serve import ray_app
from treum.serve.ray_app import PASSWORD_ENV, builder_args, export_config, registry_url_from_args

from .conftest import settings

PASSWORD = "s3cr@t-pw"
PG = "postgresql+psycopg://reg:s3cr%40t-pw@db.internal:5432/treum?sslmode=require"  # the password, URL-escaped
BARE = "postgresql+psycopg://reg@db.internal:5432/treum?sslmode=require"


def _leaks(text: str) -> bool:
    return PASSWORD in text or "s3cr%40t-pw" in text or "s3cr" in text


def test_the_exported_config_leaves_the_registry_password_out(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)  # set here too: it must not end up in the file either
    path = export_config(settings(), PG, tmp_path / "home", tmp_path / "serve.yaml")
    text = path.read_text()
    assert not _leaks(text)
    assert PASSWORD_ENV == "TREUM_REGISTRY_PASSWORD" and PASSWORD_ENV in text
    args = yaml.safe_load(text)["applications"][0]["args"]
    assert args["registry_url"] == BARE and args["registry_password_env"] == PASSWORD_ENV


@pytest.mark.parametrize("url", ["sqlite:////srv/treum/registry.db", "postgresql+psycopg://reg@db:5432/treum", None])
def test_a_url_without_a_password_is_exported_as_it_is(tmp_path, url):
    path = export_config(settings(), url, tmp_path / "home", tmp_path / "serve.yaml")
    assert yaml.safe_load(path.read_text())["applications"][0]["args"]["registry_url"] == url


def test_the_replicas_put_the_password_back_from_the_environment(tmp_path, monkeypatch):
    args = builder_args(settings(), PG, tmp_path, keep_password=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    assert registry_url_from_args(args) == BARE  # unset: as exported (the driver may still find one, e.g. PGPASSWORD)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    url = make_url(registry_url_from_args(args))
    assert (url.username, url.password, url.host, url.port, url.database) == ("reg", PASSWORD, "db.internal", 5432,
                                                                              "treum")
    assert url.query == {"sslmode": "require"}
    # a URL with a password of its own keeps it; SQLite and no URL take none
    own = "postgresql+psycopg://reg:own@db/treum"
    assert registry_url_from_args({**args, "registry_url": own}) == own
    assert registry_url_from_args({**args, "registry_url": "sqlite:///r.db"}) == "sqlite:///r.db"
    assert registry_url_from_args({**args, "registry_url": None}) is None
    # the variable the config names
    monkeypatch.setenv("OPS_REGISTRY_PW", "other")
    assert make_url(registry_url_from_args({**args, "registry_password_env": "OPS_REGISTRY_PW"})).password == "other"
    # the replicas open the registry at that URL (Registry connects at once: record the URL instead)
    opened = []
    monkeypatch.setattr("treum.registry.store.Registry", lambda url, home: opened.append((url, home)))
    ray_app._registry(args)
    assert make_url(opened[0][0]).password == PASSWORD and opened[0][1] == tmp_path


def test_serve_export_says_where_the_password_goes_and_never_prints_it(tmp_path, capsys):
    out = tmp_path / "serve.yaml"
    assert main(["serve", "--export", str(out), f"registry.url='{PG}'"]) == 0
    printed = capsys.readouterr()
    assert not _leaks(printed.out + printed.err) and not _leaks(out.read_text())
    assert f"set {PASSWORD_ENV} to it on every node of the Ray cluster" in printed.out
    # nothing to say about a URL without a password
    assert main(["serve", "--export", str(out), f"registry.url='{BARE}'"]) == 0
    assert PASSWORD_ENV not in capsys.readouterr().out


def test_a_password_query_parameter_and_the_cache_password_stay_out_too(tmp_path, monkeypatch):
    """libpq also takes ``?password=``; Redis takes ``redis://:PW@host``: neither reaches the file, and the
    replicas put both back from their environment variables."""
    from treum.serve.cache import make_cache

    url = "postgresql+psycopg://reg@db.internal:5432/treum?password=s3cr%40t-pw&sslmode=require"
    cfg = settings(cache_url="redis://:s3cr%40t-pw@cache.internal:6379/0")
    text = export_config(cfg, url, tmp_path / "home", tmp_path / "serve.yaml").read_text()
    assert not _leaks(text)
    args = yaml.safe_load(text)["applications"][0]["args"]
    assert args["settings"]["cache_url"] == "redis://cache.internal:6379/0"
    assert make_url(args["registry_url"]).query == {"sslmode": "require"}
    import redis

    seen = []

    class FakeRedis:
        def ping(self):
            return True

    monkeypatch.setattr(redis.Redis, "from_url", staticmethod(lambda u: seen.append(u) or FakeRedis()))
    monkeypatch.setenv("TREUM_CACHE_PASSWORD", PASSWORD)
    make_cache(16, args["settings"]["cache_url"])
    assert redis.connection.parse_url(seen[0])["password"] == PASSWORD


def test_router_replicas_is_the_routers_number_of_replicas(tmp_path):
    app = ray_app.build_app(builder_args(settings(router_replicas=2), None, tmp_path))
    assert app._bound_deployment.num_replicas == 2
