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
    assert "multirun: 4 of 4 runs succeeded" in r.stderr
    assert len(list((treum_home / "sweeps").glob("*/*/.hydra/overrides.yaml"))) == 4
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
    # the data failed before the model's work started: the job failed, saying why
    assert job.status == "failed" and "data runs 2021-01-01" in job.error_message
    reg.close()


def test_leaderboard_registers_only_when_asked(treum_home):
    r = treum("leaderboard", "task=volatility", "eval.bootstrap=0", "eval.refit_every=1000")
    assert r.returncode == 0, r.stderr
    assert "registered" not in r.stdout and Registry().list_models() == []
    jobs = {job.model_config["name"]: job for job in Registry().jobs()}  # each model's own config, not the default's
    assert set(jobs) == {"garch", "garch_hybrid"} and all(job.status == "completed" for job in jobs.values())


def test_leaderboard_and_registry_lifecycle_commands(treum_home):
    r = treum("leaderboard", "task=volatility", "eval.bootstrap=0", "registry.register=true")
    assert r.returncode == 0, r.stderr
    run_dir = Path(r.stdout.split("outputs: ")[1].split()[0])
    table = pd.read_csv(run_dir / "leaderboard.csv")
    assert {"garch", "garch11", "ewma_0.94"} <= set(table["model"])
    assert "volatility leaderboard" in r.stdout
    status = Registry().get("garch").deployment_status
    deploy = treum("registry", "deploy", "garch", "--version", "1", "--force", "--reason", "test")
    assert deploy.returncode == 0 and "deployed garch version 1" in deploy.stdout
    again = treum("registry", "deploy", "garch", "--version", "1", "--force", "--reason", "again")
    assert again.returncode == 2 and "already deployed" in again.stderr
    no_reason = treum("registry", "deploy", "garch", "--version", "1", "--force")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    hist = treum("registry", "history", "garch")
    assert "deploy" in hist.stdout and "live=   1" in hist.stdout and "FORCED" in hist.stdout
    listed = treum("registry", "list", "--data", "sp500")
    assert listed.returncode == 0 and "garch" in listed.stdout and "sp500" in listed.stdout
    assert "garch" not in treum("registry", "list", "--data", "nasdaq").stdout
    assert treum("registry", "retire", "garch", "--version", "1", "--reason", "old").returncode == 0
    assert Registry().get("garch").deployment_status == "retired" and status in ("validated", "registered")
    verify = treum("registry", "verify")
    assert verify.returncode == 0 and "audit log intact" in verify.stdout
    keys = treum("registry", "keys", "create", "ops")
    assert keys.returncode == 0 and "trm_" in keys.stdout


def test_serve_export_writes_a_deployable_config(tmp_path):
    import yaml

    out = tmp_path / "serve.yaml"
    r = treum("serve", "--export", str(out), "serve.port=9100", "serve.ensemble.members.ts_transformer.placement=remote")
    assert r.returncode == 0, r.stderr
    assert f"serve deploy {out}" in r.stdout
    config = yaml.safe_load(out.read_text())
    app = config["applications"][0]
    assert config["http_options"]["port"] == 9100
    assert app["args"]["settings"]["ensemble"]["members"]["ts_transformer"] == {"placement": "remote"}
    bad = treum("serve", "--export", str(out), "serve.ensemble.weights.bull.gbm_directoin=1.0", "+serve.prot=1")
    assert bad.returncode == 2 and "error:" in bad.stderr and "Traceback" not in bad.stderr


def test_data_show_prints_the_head_and_summary():
    r = treum("data", "show", "sp500_stocks", "data.start=2020-01-01")
    assert r.returncode == 0, r.stderr
    assert "20 entities" in r.stdout and "AAPL" in r.stdout and "2020-01-02" in r.stdout


def test_run_commands_are_hydra_applications(treum_home):
    help_ = treum("train", "--help")
    assert help_.returncode == 0 and "== Configuration groups ==" in help_.stdout
    assert "task: anomaly, cross_section, direction, drawdown, forecast, portfolio, ranking, recommendation, regime, risk, risk_profile, segmentation, sentiment, volatility" in help_.stdout  # the plugin's task is a choice
    cfg = treum("train", "model=garch", "--cfg", "job")
    assert cfg.returncode == 0 and "name: volatility" in cfg.stdout  # the task follows the model
    info = treum("evaluate", "--info", "searchpath")
    assert info.returncode == 0 and "pkg://treum_example_plugin.conf" in info.stdout
    out = treum_home / "elsewhere"
    r = treum("evaluate", "model=logit_direction", "eval.bootstrap=0", f"hydra.run.dir={out}")
    assert r.returncode == 0, r.stderr
    assert (out / "leaderboard.csv").is_file() and (out / ".hydra" / "overrides.yaml").is_file()


def test_bad_values_stop_with_the_key_named_before_any_work(treum_home):
    r = treum("evaluate", "model=garch", "eval.refit_every=abc")
    assert r.returncode == 2 and "eval.refit_every: expected an integer, got 'abc'" in r.stderr
    assert "Traceback" not in r.stderr and not (treum_home / "registry.db").exists()
    r = treum("evaluate", "model=garch", "task.horizons=[1,0]")
    assert r.returncode == 2 and "horizons must be positive" in r.stderr
    r = treum("train", "-m", "model=logit_direction,gbm_directoin")
    assert r.returncode == 2 and "did you mean 'gbm_direction'" in r.stderr


def test_one_failing_combination_of_a_sweep_does_not_stop_the_others(treum_home):
    # a valid config whose data (from 2017 on) cannot fill the training segment: it fails at run time
    r = treum("evaluate", "-m", "model=logit_direction", "data.start=null,2017-01-01", "eval.bootstrap=0",
              "hydra/launcher=joblib")
    assert r.returncode == 2, r.stderr
    assert "multirun: 1 of 2 runs succeeded" in r.stderr and "data runs 2017-01-03" in r.stderr
    statuses = sorted(j.status for j in Registry().jobs())
    assert statuses == ["completed", "failed"]


def test_volatility_horizons_come_from_the_task(treum_home):
    r = treum("evaluate", "model=garch", "task.horizons=[1,5]", "eval.bootstrap=0", "eval.refit_every=1000")
    assert r.returncode == 0, r.stderr
    run_dir = Path(r.stdout.split("outputs: ")[1].split()[0])
    table = pd.read_csv(run_dir / "leaderboard.csv")
    assert {"qlike_h1", "qlike_h5"} <= set(table.columns) and "qlike_h21" not in table.columns
    pred = pd.read_csv(run_dir / "predictions-garch.csv")
    assert {"var_h1", "var_h5"} <= set(pred.columns)


PEEKER = '''
import numpy as np, pandas as pd
from dataclasses import dataclass
from treum.core.hookspecs import hookimpl
from treum.core.specs import ModelSpec
from treum.core.estimators import JsonStateModel, NoConfig


class Peeker(JsonStateModel):
    """Reads tomorrow's close: the contract must catch it."""
    def fit(self, data, valid=None):
        self.state_ = {}

    def predict(self, data):
        nxt = data["close"].groupby(level="entity").shift(-1)
        return pd.DataFrame({"p_up": np.where(nxt > data["close"], 0.9, 0.1)}, index=data.index)


Peeker.spec = ModelSpec(name="peeker", family="cheat", task="direction", capabilities=frozenset({"sequential"}),
                        config_cls=NoConfig, factory=Peeker)


@hookimpl
def treum_models():
    return [Peeker.spec]


@hookimpl
def treum_config_searchpath():
    return ["file://CONF"]
'''


def test_plugins_check_runs_the_contract_on_an_outside_model(tmp_path):
    ok = treum("plugins", "check", "momentum_sign")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok    no look-ahead" in ok.stdout and "every check passed" in ok.stdout
    folder = tmp_path / "local"
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "peeker.yaml").write_text("name: peeker\n")
    folder.mkdir()
    (folder / "peeker.py").write_text(PEEKER.replace("CONF", str(tmp_path / "conf")))
    (tmp_path / "plugins.toml").write_text('[plugins]\npaths = ["local"]\n')
    bad = treum("plugins", "check", "peeker", cwd=tmp_path)
    assert bad.returncode == 1
    assert "FAIL  no look-ahead" in bad.stdout and "ok    save/load round trip" in bad.stdout


def test_shell_completion_completes_groups_and_plugin_choices():
    script = treum("train", "-sc", "install=bash")
    assert script.returncode == 0 and "complete -p treum " in script.stdout
    env = {"COMP_LINE": "treum train model=momen", "COMP_POINT": "23"}
    r = treum("-sc", "query=bash", env=env)
    assert r.returncode == 0 and "model=momentum_sign" in r.stdout  # a third-party plugin's model
    r = treum("-sc", "query=bash", env={"COMP_LINE": "treum lead", "COMP_POINT": "10"})
    assert r.stdout.split() == ["leaderboard"]


COIN = '''
from dataclasses import dataclass
import numpy as np, pandas as pd
from treum.core.estimators import JsonStateModel, NoConfig
from treum.core.hookspecs import hookimpl
from treum.core.specs import Baseline, ModelSpec, TaskExample, TaskSpec
from treum.core.task import Task


class Coin(Task):
    """P(up), scored by accuracy: a small task of a local plugin."""
    def make_targets(self, panel):
        r = np.log(panel["close"]).groupby(level="entity").shift(-1) - np.log(panel["close"])
        return pd.DataFrame({"target": np.where(r.isna(), np.nan, (r > 0).astype(float))}, index=panel.index)
    def label_horizon(self):
        return 1
    def prediction_columns(self):
        return ("p_heads",)
    def score(self, oos, n_boot, seed):
        sub = oos.dropna(subset=["target", "p_heads"])
        return {"n": float(len(sub)), "accuracy": float(((sub["p_heads"] > 0.5) == (sub["target"] > 0.5)).mean())}


class Half(JsonStateModel):
    def fit(self, data, valid=None):
        self.state_ = {}
    def predict(self, data):
        return pd.DataFrame({"p_heads": 0.6}, index=data.index)


class Boom(Half):
    def fit(self, data, valid=None):
        raise RuntimeError("the baseline broke")


Coin.spec = TaskSpec(name="coin", description="a coin", config_cls=NoConfig, factory=Coin, primary_metric="accuracy",
                     higher_is_better=True, baselines=(Baseline("boom", "boom"),), headline=("accuracy",),
                     example=TaskExample("sp500", "2003-01-01", "2012-12-31"))


@hookimpl
def treum_tasks():
    return [Coin.spec]


@hookimpl
def treum_models():
    return [ModelSpec(name="half", family="rule", task="coin", capabilities=frozenset(), config_cls=NoConfig,
                      factory=Half),
            ModelSpec(name="boom", family="baseline", task="coin", capabilities=frozenset(), config_cls=NoConfig,
                      factory=Boom, baseline=True)]


@hookimpl
def treum_config_searchpath():
    return ["file://CONF"]
'''


def test_a_failing_baseline_stops_the_run_and_fails_the_jobs_it_never_started(tmp_path):
    conf = tmp_path / "conf"
    for group, name in (("task", "coin"), ("model", "half"), ("model", "boom")):
        (conf / group).mkdir(parents=True, exist_ok=True)
        (conf / group / f"{name}.yaml").write_text(f"name: {name}\n")
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "coin.py").write_text(COIN.replace("CONF", str(conf)))
    (tmp_path / "plugins.toml").write_text('[plugins]\npaths = ["local"]\n')
    home = tmp_path / "home2"
    r = treum("evaluate", "model=half", "eval.bootstrap=0", cwd=tmp_path, env={"TREUM_HOME": str(home)})
    assert r.returncode == 2
    assert "baseline 'boom' (boom) failed: RuntimeError: the baseline broke" in r.stderr and "Traceback" not in r.stderr
    reg = Registry(home=home)
    (job,) = reg.jobs()
    assert job.status == "failed" and "the baseline broke" in job.error_message
    reg.close()


def test_model_overrides_reach_the_model_that_is_fitted(treum_home):
    # before, the run rebuilt the model's config from its YAML alone and dropped model.* overrides
    r = treum("train", "model=garch", "model.vol=garch", "model.dist=normal", "eval.bootstrap=0", "eval.refit_every=1000")
    assert r.returncode == 0, r.stderr
    reg = Registry()
    (m,) = reg.list_models()
    assert m.model_config["vol"] == "garch" and m.model_config["dist"] == "normal"
    assert reg.jobs()[0].model_config["vol"] == "garch"
    reg.close()
