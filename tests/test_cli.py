"""The `treum` command end to end, in subprocesses, against a registry in a temporary TREUM_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from treum.registry.store import Registry

pytestmark = pytest.mark.integration


def treum(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "treum.cli", *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600
    )


def test_train_registers_a_version_and_says_where_everything_went(treum_home):
    r = treum("train", "model=logit_direction", "eval.bootstrap=0")
    assert r.returncode == 0, r.stderr
    assert "registered logit_direction version 1" in r.stdout
    run_dir = Path(r.stdout.split("outputs: ")[1].split()[0])
    table = pd.read_csv(run_dir / "leaderboard.csv")
    assert set(table["model"]) == {"logit_direction", "majority_class", "always_up", "lagged_logit"}
    assert (run_dir / "leaderboard.md").read_text().startswith("| model")
    reg = Registry()
    (m,) = reg.list_models()
    assert m.model_name == "logit_direction" and str(m.id) in r.stdout
    job = reg.jobs()[0]
    assert job.status == "completed" and job.model_id == m.id and str(job.id) in r.stdout
    reg.close()
    shown = treum("registry", "show", "logit_direction")
    assert shown.returncode == 0 and '"model_version": "1"' in shown.stdout and "baselines" in shown.stdout


def test_a_misspelled_model_stops_before_any_work(treum_home):
    r = treum("train", "model=gbm_directoin")
    assert r.returncode == 2
    assert "error: model 'gbm_directoin' is not registered; did you mean 'gbm_direction'?" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (treum_home / "registry.db").exists()


def test_a_bad_value_names_the_key(treum_home):
    r = treum("evaluate", "model=gbm_direction", "model.learning_rate=fast")
    assert r.returncode == 2 and "model.learning_rate: expected a number, got 'fast'" in r.stderr


def test_multirun_sweeps_models_and_data(treum_home):
    r = treum("train", "--multirun", "model=logit_direction,momentum_sign", "data=sp500,nasdaq", "eval.bootstrap=0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("[multirun ") == 4
    reg = Registry()
    got = sorted((m.model_name, m.model_version, m.model_metadata["data"]) for m in reg.list_models())
    assert got == [("logit_direction", "1", "sp500"), ("logit_direction", "2", "nasdaq"),
                   ("momentum_sign", "1", "sp500"), ("momentum_sign", "2", "nasdaq")]
    reg.close()


def test_third_party_plugin_trains_and_can_be_switched_off(tmp_path):
    r = treum("plugins", "list")
    assert "example_momentum" in r.stdout and "treum-example-plugin" in r.stdout and "momentum_sign" in r.stdout
    (tmp_path / "plugins.toml").write_text('[plugins]\ndisable = ["example_momentum"]\n')
    off = treum("train", "model=momentum_sign", cwd=tmp_path)
    assert off.returncode == 2 and "model 'momentum_sign' is not registered" in off.stderr
    listed = treum("plugins", "list", cwd=tmp_path)
    line = next(ln for ln in listed.stdout.splitlines() if "example_momentum" in ln)
    assert " no " in line


def test_data_commands(tmp_path):
    r = treum("data", "list")
    assert r.returncode == 0 and all(n in r.stdout for n in ("sp500", "nasdaq", "vix", "wti", "sp500_stocks", "csv"))
    ok = treum("data", "validate", "sp500")
    assert ok.returncode == 0 and "sp500: valid; 5,031 rows" in ok.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,close\n2020-01-02,10\n2020-01-03,0\n")
    r = treum("data", "validate", "csv", f"data.path={bad}")
    assert r.returncode == 2 and f"{bad}, row 3, column 'close': price 0.0 is not positive" in r.stderr


def test_a_run_that_fails_half_way_records_the_failure_and_registers_nothing(tmp_path, treum_home):
    # valid data that cannot fill the configured segments: fails after the job was created
    dates = pd.bdate_range("2021-01-01", periods=300)
    pd.DataFrame({"timestamp": dates, "close": range(100, 400)}).to_csv(tmp_path / "short.csv", index=False)
    r = treum("train", "model=garch", "data=csv", f"data.path={tmp_path / 'short.csv'}")
    assert r.returncode == 2 and "data runs 2021-01-01" in r.stderr
    reg = Registry()
    assert reg.list_models() == []
    (job,) = reg.jobs()
    assert job.status == "failed" and "data runs 2021-01-01" in job.error_message
    reg.close()


def test_leaderboard_and_registry_lifecycle_commands(treum_home):
    r = treum("leaderboard", "task=volatility", "eval.bootstrap=0")
    assert r.returncode == 0, r.stderr
    run_dir = Path(r.stdout.split("outputs: ")[1].split()[0])
    table = pd.read_csv(run_dir / "leaderboard.csv")
    assert {"garch", "garch11", "ewma_0.94"} <= set(table["model"])
    assert "volatility leaderboard" in r.stdout
    status = Registry().get("garch").deployment_status
    deploy = treum("registry", "deploy", "garch", "--version", "1", "--force", "--reason", "test")
    assert deploy.returncode == 0 and "deployed garch version 1" in deploy.stdout
    again = treum("registry", "deploy", "garch", "--version", "1", "--force")
    assert again.returncode == 2 and "already deployed" in again.stderr
    hist = treum("registry", "history", "garch")
    assert "deploy" in hist.stdout and "live=   1" in hist.stdout
    assert treum("registry", "retire", "garch", "--version", "1", "--reason", "old").returncode == 0
    assert Registry().get("garch").deployment_status == "retired" and status in ("validated", "registered")
    verify = treum("registry", "verify")
    assert verify.returncode == 0 and "audit log intact" in verify.stdout
    keys = treum("registry", "keys", "create", "ops")
    assert keys.returncode == 0 and "trm_" in keys.stdout


def test_serve_export_writes_a_deployable_config(tmp_path):
    import yaml

    out = tmp_path / "serve.yaml"
    r = treum("serve", "--export", str(out), "serve.port=9100", "serve.members.ts_transformer.placement=remote")
    assert r.returncode == 0, r.stderr
    assert f"serve deploy {out}" in r.stdout
    config = yaml.safe_load(out.read_text())
    app = config["applications"][0]
    assert config["http_options"]["port"] == 9100
    assert app["args"]["settings"]["members"]["ts_transformer"] == {"placement": "remote"}
    bad = treum("serve", "--export", str(out), "serve.weights.bull.gbm_directoin=1.0", "+serve.prot=1")
    assert bad.returncode == 2 and "error:" in bad.stderr and "Traceback" not in bad.stderr


def test_data_show_prints_the_head_and_summary():
    r = treum("data", "show", "sp500_stocks", "data.start=2020-01-01")
    assert r.returncode == 0, r.stderr
    assert "20 entities" in r.stdout and "AAPL" in r.stdout and "2020-01-02" in r.stdout
