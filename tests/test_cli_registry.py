"""`treum registry` in-process: keys, checkpoints after every change, verify, prune, no password shown."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from treum.cli import main
from treum.registry.schema import ModelServingLog, utcnow
from treum.registry.store import Registry


@pytest.fixture
def cli(registry_url, capsys):
    """``cli(*args) -> (status, stdout, stderr)`` of ``treum registry --url URL --actor tester ARGS``."""

    def run(*args: str, url: str | None = None) -> tuple[int, str, str]:
        status = main(["registry", "--url", url or registry_url, "--actor", "tester", *args])
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


@pytest.fixture
def reg(registry_url, treum_home):
    r = Registry(url=registry_url, home=treum_home)
    yield r
    r.close()


@pytest.fixture
def versions(reg, tmp_path):
    """gbm_direction versions 1 and 2, validated, as a training run registers them."""
    import numpy as np
    import pandas as pd

    from treum.zoo.logit import LogitDirection, LogitDirectionConfig

    for v in (1, 2):
        rng = np.random.default_rng(v)
        idx = pd.MultiIndex.from_arrays([pd.bdate_range("2020-01-01", periods=120), ["X"] * 120],
                                        names=["timestamp", "entity"])
        data = pd.DataFrame({"f_a": rng.normal(size=120)}, index=idx)
        data["target"] = (data["f_a"] + rng.normal(size=120) > 0).astype(float)
        path = LogitDirection(LogitDirectionConfig()).fit(data).save(tmp_path / f"artifact-{v}")
        reg.register(name="gbm_direction", task="direction", family="linear", config={}, artifact_dir=path,
                     metrics={}, performance={}, baselines={}, validated=True, data_version="x", metadata={})
    return reg


def drop_append_only_triggers(engine) -> None:
    """What someone with DDL rights can do (as in tests/registry/conftest.py)."""
    statements = {
        "sqlite": ["DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"],
        "postgresql": ["DROP TRIGGER audit_log_no_change ON audit_log"],
    }[engine.dialect.name]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _checkpoints(reg) -> list[dict]:
    if not reg.checkpoint_path.exists():
        return []
    return [json.loads(line) for line in reg.checkpoint_path.read_text().splitlines()]


def test_keys_create_list_rotate_revoke(cli, reg):
    status, out, _ = cli("keys", "create", "ops", "--scope", "deploy", "--scope", "read,experiments",
                         "--expires", "30d")
    assert status == 0 and "scopes: read, experiments, deploy" in out
    token = next(w for w in out.split() if w.startswith("trm_"))
    assert reg.check_api_key(token).scopes == frozenset({"read", "experiments", "deploy"})
    expires = reg.check_api_key(token).expires_at
    assert timedelta(days=29) < expires - utcnow() <= timedelta(days=30)
    status, out, _ = cli("keys", "create", "app", "--expires", "2099-01-31")
    assert status == 0 and "scopes: predict;" in out and "expires: 2099-01-31 00:00 UTC" in out
    status, out, _ = cli("keys", "list")
    assert status == 0 and token not in out and token[:12] in out
    assert "ops" in out and "read, experiments, deploy" in out and "active" in out and "2099-01-31" in out
    status, out, _ = cli("keys", "rotate", "ops")
    new = next(w for w in out.split() if w.startswith("trm_"))
    assert status == 0 and new != token and reg.check_api_key(token) is None and reg.check_api_key(new)
    status, out, _ = cli("keys", "revoke", "ops")
    assert status == 0 and "revoked API key 'ops'" in out and reg.check_api_key(new) is None
    assert "revoked" in cli("keys", "list")[1]
    actions = [r.action for r in reversed(reg.audit_rows())]
    assert actions == ["api_key.create", "api_key.create", "api_key.rotate", "api_key.revoke"]
    assert all(r.actor == "tester" for r in reg.audit_rows())
    # one checkpoint after each change, none after a listing
    assert [c["rows"] for c in _checkpoints(reg)] == [1, 2, 3, 4]


@pytest.mark.parametrize("args, message", [
    (("--scope", "deploi"), ("'deploi' is not an API key scope; did you mean 'deploy'? (scopes: predict, read, "
                             "experiments, train, deploy, admin")),
    (("--expires", "soon"), "--expires takes a date"),
    (("--expires", "2001-01-01"), "is in the past"),
])
def test_keys_create_refuses_bad_input_with_a_message(cli, reg, args, message):
    status, out, err = cli("keys", "create", "x", *args)
    assert status == 2 and message in err and "trm_" not in out
    assert reg.list_api_keys() == []


def test_every_lifecycle_command_writes_a_checkpoint(cli, versions):
    assert cli("deploy", "gbm_direction", "--version", "1")[0] == 0
    assert cli("deploy", "gbm_direction", "--version", "2")[0] == 0
    assert cli("rollback", "gbm_direction")[0] == 0
    assert cli("retire", "gbm_direction", "--version", "2", "--reason", "old")[0] == 0
    rows = len(versions.audit_rows())
    cps = _checkpoints(versions)
    assert len(cps) == 4 and cps[-1]["rows"] == rows and all(c["by"] == "tester" for c in cps)
    status, out, _ = cli("verify")
    assert status == 0 and f"audit log intact: {rows} rows" in out and "4 signed checkpoints agree" in out
    assert len(_checkpoints(versions)) == 5


def test_verify_reports_a_deleted_tail_with_status_1(cli, versions):
    cli("deploy", "gbm_direction", "--version", "1")
    drop_append_only_triggers(versions.engine)
    with versions.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)"))
    status, out, _ = cli("verify")
    assert status == 1 and "the audit log has 2 rows but checkpoint of" in out and "covered 3" in out


def test_a_fresh_registry_verifies_and_says_nothing_was_there_to_compare(cli):
    status, out, _ = cli("verify")
    assert status == 0 and "0 signed checkpoints agree" in out and "no earlier checkpoint" in out


def test_checkpoint_export_and_verify_against_the_copy(cli, versions, tmp_path):
    cli("deploy", "gbm_direction", "--version", "1")
    export = tmp_path / "offsite" / "checkpoints.jsonl"
    status, out, _ = cli("checkpoint", "--export", str(export))
    assert status == 0 and "audit checkpoint: 3 rows" in out and export.exists()
    assert len(export.read_text().splitlines()) == 2
    versions.checkpoint_path.unlink()  # the attacker removes the local file too
    drop_append_only_triggers(versions.engine)
    with versions.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)"))
    assert cli("verify")[0] == 0  # nothing left to compare locally
    status, out, _ = cli("verify", "--checkpoints", str(export))
    assert status == 1 and "has 2 rows but checkpoint" in out


def test_prune_older_than(cli, reg):
    with reg.transaction() as s:
        for age in (100, 10):
            s.add(ModelServingLog(request_id=f"r{age}", inference_time_ms=1, timestamp=utcnow() - timedelta(days=age)))
    status, out, _ = cli("prune", "--older-than", "90d")
    assert status == 0 and "1 serving logs, 0 predictions" in out
    assert reg.audit_rows()[0].action == "registry.prune" and _checkpoints(reg)[-1]["rows"] == 1
    for bad in ("90", "0d", "ninety days"):
        status, _, err = cli("prune", "--older-than", bad)
        assert status == 2 and "--older-than takes a positive age such as 90d" in err


def test_the_registry_url_is_shown_without_its_password(cli, registry_url, reg):
    if make_url(registry_url).get_backend_name() != "postgresql":
        assert reg.display_url == registry_url
        secret = make_url("postgresql+psycopg://treum:s3cret-pw@db.example:5432/treum")
        shown = Registry.display_url.fget(type("R", (), {"url": secret.render_as_string(hide_password=False)})())
        assert "s3cret-pw" not in shown and "***" in shown
        return
    # the test server trusts every login, so a URL with a password still connects
    url = make_url(registry_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    for args in (("list",), ("keys", "list"), ("verify",)):
        status, out, err = cli(*args, url=url)
        assert status == 0 and "s3cret-pw" not in out + err
    assert "***" in cli("list", url=url)[1]
