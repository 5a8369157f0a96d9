"""``treum report`` end to end, in-process: train a small ranking model on SIMULATED users, deploy it with a
hostile reason, write release t1, then read the page, its JSON twin, the registry record and the audit log.

One module-scoped TREUM_HOME holds the trained, deployed and reported model (about 30 s to build); the
tests that read it do not change it, and the refusals leave it as it was (each checks so). A PostgreSQL
variant of the record/list/show round trip runs where TREUM_TEST_PG_URL is set.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path

import pandas as pd
import pytest
from report_fixture import HOSTILE, sample_report

from treum.cli import main
from treum.commands.report_html import SIMULATED_BANNER, render_html
from treum.core.errors import NotFoundError, RegistryError
from treum.registry.store import Registry

pytestmark = pytest.mark.integration

TRAIN = ["train", "model=ltr_lambdarank", "data=users_sim", "features=personal", "data.n_users=40",
         "model.num_threads=1"]  # one LightGBM thread: the same trees, and no slowdown on a busy shared machine


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """A TREUM_HOME with ltr_lambdarank trained on 40 simulated users, deployed with a hostile reason, and
    release t1 reported."""
    root = tmp_path_factory.mktemp("report")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TREUM_HOME", str(home))
        mp.delenv("TREUM_REGISTRY_URL", raising=False)
        mp.delenv("TREUM_PLUGINS_TOML", raising=False)
        mp.chdir(root)
        assert main(TRAIN) == 0
        reg = Registry()
        try:
            assert reg.get("ltr_lambdarank").deployment_status == "validated"  # it beat its baselines
        finally:
            reg.close()
        assert main(["registry", "--actor", "alice", "deploy", "ltr_lambdarank", "--reason", HOSTILE]) == 0
        assert main(["report", "release=t1"]) == 0
    return home


@pytest.fixture
def home(released, monkeypatch) -> Path:
    monkeypatch.setenv("TREUM_HOME", str(released))
    return released


@pytest.fixture
def copied_home(released, tmp_path, monkeypatch) -> Path:
    """A copy of the released home, for a test that may write to it (its audit checkpoints name the original)."""
    import shutil

    copy = tmp_path / "copied"
    shutil.copytree(released, copy)
    (copy / "audit-checkpoints.jsonl").unlink(missing_ok=True)
    monkeypatch.setenv("TREUM_HOME", str(copy))
    return copy


@pytest.fixture
def reg(home):
    r = Registry()
    yield r
    r.close()


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (status, stdout, stderr)`` of ``treum ARGS`` in-process."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(args))
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


def page_and_twin(home: Path) -> tuple[str, dict]:
    folder = home / "reports" / "t1"
    return (folder / "report.html").read_text(encoding="utf-8"), json.loads((folder / "report.json").read_text())


def unchanged(reg: Registry, home: Path) -> None:
    """The refusals write nothing: one release, one page."""
    assert [r.release for r in reg.releases()] == ["t1"]
    assert sorted(p.name for p in (home / "reports").iterdir()) == ["t1"]


# --- what release t1 wrote --------------------------------------------------------------------------------


def test_the_page_and_its_json_twin_are_written_and_recorded(home, reg):
    page, twin = page_and_twin(home)
    record = reg.release("t1")
    assert twin == record.document  # the twin is the registry's document, key for key
    assert record.html_sha256 == hashlib.sha256((home / "reports/t1/report.html").read_bytes()).hexdigest()
    assert render_html(record.document) == page  # the page is a pure function of the stored document
    (model,) = twin["models"]
    assert record.models == [{"name": "ltr_lambdarank", "version": "1", "id": model["id"]}]
    assert twin["release"] == "t1" and twin["created_by"] == record.created_by
    assert model["name"] == "ltr_lambdarank" and model["task"] == "ranking" and model["status"] == "deployed"


def test_the_report_says_the_data_is_simulated(home):
    page, twin = page_and_twin(home)
    (model,) = twin["models"]
    assert twin["simulated_data"] is True and model["data"]["simulated"] is True
    assert model["data"]["name"] == "users_sim" and "SIMULATED" in model["data"]["caveat"]
    assert model["data"]["caveat"] in model["card"]["limitations"]
    assert html.escape(SIMULATED_BANNER) in page


def test_fairness_checks_each_pass_or_fail_against_a_threshold(home):
    _, twin = page_and_twin(home)
    fair = twin["models"][0]["fairness"]
    assert {c["fairness_check"] for c in fair["checks"]} == {"segments"}
    assert fair["segments"] == ["risk_tolerance", "account_size", "region", "experience", "age_band"]
    assert len(fair["checks"]) == 15
    judged = [c for c in fair["checks"] if c["passed"] is not None]
    assert judged and all(isinstance(c["passed"], bool) and c["threshold"] is not None for c in judged)
    assert all(c["passed"] == (c["value"] <= c["threshold"]) for c in judged)
    assert fair["passed"] == all(c["passed"] for c in judged)
    for seg in fair["segments"]:
        assert sum(g["n"] for g in fair["by_group"][seg]) == fair["rows"]


def test_explanations_and_what_was_skipped(home):
    _, twin = page_and_twin(home)
    ex = twin["models"][0]["explanations"]
    assert {"shap", "importance", "decision_tree"} <= set(ex)
    fidelity = ex["decision_tree"]["fidelity"]
    assert fidelity["n_held_out"] > 0 and fidelity["n_fit"] > 0 and fidelity["r2"] is not None
    assert fidelity["held_out"]  # says which rows it was measured on
    features = {r["feature"] for r in ex["importance"]["importances"]} | {r["feature"] for r in ex["shap"]["ranking"]}
    assert features and all(f.startswith("f_") for f in features)
    assert abs(ex["shap"]["additivity_error"]) < 1e-6  # tree SHAP values add up to the score
    # ranking gives its score no calibrated label: conformal is skipped, and says why
    assert "conformal" not in ex and "ranking" in ex["skipped"]["conformal"]


def test_the_card_says_a_version_that_beat_its_baselines_is_validated(home):
    _, twin = page_and_twin(home)
    assert twin["models"][0]["card"]["validated"] is True


def test_the_card_states_the_primary_metrics_interval(home):
    _, twin = page_and_twin(home)
    model = twin["models"][0]
    assert model["metrics"]["rows"][0]["metrics"]["ndcg_at_5_ci_low"] is not None  # the interval was measured
    assert any("95% interval" in line for line in model["card"]["limitations"])


def test_the_audit_excerpt_shows_the_deploy_with_its_reason_escaped(home):
    page, twin = page_and_twin(home)
    deploys = [a for a in twin["audit"] if a["action"] == "deploy"]
    assert deploys == [{**deploys[0], "actor": "alice", "model": "ltr_lambdarank", "version": "1",
                        "reason": HOSTILE, "forced": False}]
    audit = page[page.index('<section id="audit">'):]
    assert html.escape(HOSTILE) in audit
    assert HOSTILE not in page and "alert(1)</script>" not in page
    assert page.count("<script") == 1  # the page's own hashed script, nothing else


def test_the_report_is_audited_and_the_chain_still_verifies(home, reg, cli):
    rows = [r for r in reg.audit_rows() if r.action == "report"]
    assert [(r.entity_type, r.entity_id) for r in rows] == [("release", "t1")]
    assert rows[0].details["html_sha256"] == reg.release("t1").html_sha256
    assert rows[0].details["models"] == ["ltr_lambdarank v1"]
    assert reg.verify_audit(checkpoint=False).ok
    status, out, _ = cli("registry", "verify")
    assert status == 0 and "audit log intact" in out


def test_list_and_show_read_the_record_back(home, reg, cli, tmp_path):
    status, out, _ = cli("report", "list")
    assert status == 0 and out.split()[0] == "t1"
    fair = reg.release("t1").document["models"][0]["fairness"]
    assert {True: "fairness: pass", False: "fairness: FAIL", None: "fairness: not judged"}[fair["passed"]] in out
    again = tmp_path / "again.html"
    status, out, _ = cli("report", "show", "t1", "--html", str(again))
    assert status == 0 and "ltr_lambdarank v1 (ranking)" in out and f"wrote {again}" in out
    assert hashlib.sha256(again.read_bytes()).hexdigest() == reg.release("t1").html_sha256
    status, _, err = cli("report", "show", "t9")
    assert status == 2 and "no report for release 't9'; recent: t1" in err


def test_list_names_the_models_of_each_release(home, cli):
    status, out, _ = cli("report", "list")
    assert status == 0 and "ltr_lambdarank v1" in out


def test_fairness_judges_every_out_of_sample_decision_with_its_own_users_segments(home, reg):
    from treum.core.plugins import create_plugin_registry
    from treum.core.task import build_task
    from treum.plugins.datasets.users_sim import load

    row = reg.get("ltr_lambdarank")
    (kept,) = reg.artifacts.get(row.artifact_sha256).rglob("oos.parquet")  # the walk-forward's rows, in the artifact
    oos = pd.read_parquet(kept)
    task = build_task(create_plugin_registry().task("ranking"), row.model_metadata["task_config"])
    decisions = task.decisions(oos)
    fair = reg.release("t1").document["models"][0]["fairness"]
    trained_on = load({"n_users": 40})
    regions = {g["group"]: g["n"] for g in fair["by_group"]["region"]}
    expected = trained_on.loc[decisions.index, "region"].value_counts().to_dict()
    assert fair["rows"] == len(decisions) and regions == expected


# --- refusals -------------------------------------------------------------------------------------------


def test_a_release_is_reported_once(home, reg, cli):
    before = (home / "reports/t1/report.html").read_bytes()
    status, _, err = cli("report", "release=t1")
    assert status == 2 and "release 't1' already has a report" in err and "treum report show t1" in err
    assert (home / "reports/t1/report.html").read_bytes() == before
    unchanged(reg, home)


@pytest.mark.parametrize("words", [["release=../x"], ["release="], ["release=.hidden"], ["release=a/b"],
                                   ["release=" + "x" * 101]])
def test_bad_tags_are_refused(home, reg, cli, words):
    status, _, err = cli("report", *words)
    assert status == 2 and "is not valid: use 1-100 letters, digits" in err
    unchanged(reg, home)
    assert not (home / "x").exists() and not (home / "reports" / "a").exists()


def test_a_release_must_be_named(home, reg, cli):
    status, _, err = cli("report")
    assert status == 2 and "name the release: treum report release=TAG" in err
    status, _, err = cli("report", "release=t2", "release=t3")
    assert status == 2 and "name the release" in err
    unchanged(reg, home)


def test_bad_fairness_overrides_name_the_key(home, reg, cli):
    status, _, err = cli("report", "release=t2", "fairness.quality_difference=2")
    assert status == 2 and "quality_difference must be in [0, 1] or null, got 2" in err
    status, _, err = cli("report", "release=t2", "fairness.nope=1")
    assert status == 2 and "fairness has no key 'nope'" in err
    status, _, err = cli("report", "release=t2", "fairness.segments=[]")
    assert status == 2 and "segments must name at least one" in err
    unchanged(reg, home)


def test_an_unknown_fairness_key_lists_the_known_ones(home, cli):
    status, _, err = cli("report", "release=t2", "fairness.nope=1")
    assert status == 2 and "min_group_rows" in err and "none" not in err


def test_overrides_other_than_fairness_are_refused(copied_home, cli):
    status, _, err = cli("report", "release=stray", "model.x=1")
    assert status == 2 and "fairness.KEY=VALUE overrides, not 'model.x=1'" in err
    assert not (copied_home / "reports" / "stray").exists()


def test_no_deployed_model_says_how_to_deploy(treum_home, cli):
    status, _, err = cli("report", "release=t1")
    assert status == 2 and "no model is deployed" in err and "treum registry deploy NAME" in err
    assert not (treum_home / "reports").exists()
    status, out, _ = cli("report", "list")
    assert status == 0 and "no release reports yet" in out


# --- the registry record, on SQLite and PostgreSQL ---------------------------------------------------------


def record(registry_url: str, home: Path, tag: str = "2026-12-01") -> tuple[dict, str]:
    """Record the sample report document as ``tag``; (the document, the sha256 of the page rendered from it)."""
    document = json.loads(json.dumps(sample_report()))
    digest = hashlib.sha256(render_html(document).encode("utf-8")).hexdigest()
    models = [{"name": "ltr_lambdarank", "version": "3", "id": "00000000-0000-0000-0000-000000000001"}]
    reg = Registry(url=registry_url, home=home)
    try:
        reg.record_release(tag, document, models, digest, "alice")
    finally:
        reg.close()
    return document, digest


def test_record_list_show_round_trip(registry_url, treum_home, cli):
    document, digest = record(registry_url, treum_home)
    reg = Registry(url=registry_url, home=treum_home)
    try:
        with pytest.raises(RegistryError, match="release '2026-12-01' already has a report"):
            reg.record_release("2026-12-01", document, [], digest, "bob")
        with pytest.raises(RegistryError, match="is not valid"):
            reg.record_release("../up", document, [], digest, "bob")
        row = reg.release("2026-12-01")
        assert row.document == document and row.html_sha256 == digest and row.created_by == "alice"
        assert row.models == [{"name": "ltr_lambdarank", "version": "3", "id": "00000000-0000-0000-0000-000000000001"}]
        assert [r.release for r in reg.releases()] == ["2026-12-01"]
        with pytest.raises(NotFoundError, match="no report for release 'nope'; recent: 2026-12-01"):
            reg.release("nope")
        audit = [r for r in reg.audit_rows() if r.action == "report"]
        assert [(r.actor, r.entity_id, r.details["html_sha256"]) for r in audit] == [("alice", "2026-12-01", digest)]
        assert reg.verify_audit(checkpoint=False).ok
    finally:
        reg.close()
    status, out, _ = cli("report", "list", "--url", registry_url)
    assert status == 0 and out.split()[0] == "2026-12-01" and "by alice" in out
    status, out, _ = cli("report", "show", "2026-12-01", "--url", registry_url)
    assert status == 0 and f"page sha256 {digest[:12]}" in out and "ltr_lambdarank v3 (ranking)" in out
    status, _, err = cli("report", "show", "nope", "--url", registry_url)
    assert status == 2 and "no report for release 'nope'" in err


def test_show_writes_the_recorded_page_again(registry_url, treum_home, cli, tmp_path):
    _, digest = record(registry_url, treum_home)
    shown = tmp_path / "shown.html"
    status, out, _ = cli("report", "show", "2026-12-01", "--url", registry_url, "--html", str(shown))
    assert status == 0 and f"wrote {shown}" in out
    assert hashlib.sha256(shown.read_bytes()).hexdigest() == digest  # the same page, rendered again
