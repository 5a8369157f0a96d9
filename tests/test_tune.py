"""``treum tune`` end to end in subprocesses: a real Ray Tune search with Optuna and ASHA, its registry rows,
the registered best version, Ctrl-C, a fake GPU, and a two-node Ray cluster on this machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from treum.registry.store import Registry

pytestmark = [pytest.mark.integration, pytest.mark.ray]


def treum(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "treum.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def _trials(reg: Registry, search_id) -> list:
    return reg.jobs(100, search=search_id)


def _search_row(reg: Registry):
    rows = [j for j in reg.jobs(100, job_type="tuning") if (j.training_config or {}).get("role") == "search"]
    assert len(rows) == 1, [r.job_name for r in rows]
    return rows[0]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One search of four trials of logit_direction, one at a time so ASHA's decisions are reproducible."""
    home = tmp_path_factory.mktemp("tune") / "home"
    r = treum("tune", "model=logit_direction", "hpo.num_samples=4", "hpo.max_concurrent=1",
              "hpo.space={model.c: {loguniform: [1.0e-05, 100.0]}}", env={"TREUM_HOME": str(home)})
    return home, r


def test_a_search_writes_a_row_per_trial_and_registers_the_best_with_its_provenance(searched, monkeypatch):
    home, r = searched
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    monkeypatch.setenv("TREUM_HOME", str(home))
    reg = Registry()
    search = _search_row(reg)
    trials = _trials(reg, search.id)
    assert search.status == "completed" and len(trials) == 4
    assert all(t.job_type == "tuning" and t.status == "completed" for t in trials)
    assert all(t.compute_resources == {"cpu": 1.0, "gpu": 0.0} for t in trials)
    # the first trial is the model's own YAML: the untuned figure on the same validation blocks
    first = min(trials, key=lambda t: t.training_config["number"])
    assert first.training_config["params"] == {"model.c": 0.05} and first.model_config["c"] == 0.05
    for t in trials:
        m = t.final_metrics
        assert m["objective_metric"] == "auc" and 0 < m["auc"] < 1 and m["blocks"] == 4 and m["node"]
        assert m["blocks_run"] == (m["blocks"] if not m["stopped_early"] else m["blocks_run"]) and m["blocks_run"] >= 1
    stopped = [t for t in trials if t.final_metrics["stopped_early"]]
    assert stopped and all(t.final_metrics["blocks_run"] < 4 for t in stopped), "ASHA stopped no trial"
    assert "stopped by ASHA after" in r.stdout

    (model,) = reg.list_models()
    tuning = model.model_metadata["tuning"]
    full = [t for t in trials if not t.final_metrics["stopped_early"]]
    best = max(full, key=lambda t: t.final_metrics["auc"])
    assert tuning["search_job"] == str(search.id) and tuning["trials"] == 4 and tuning["hpo"] == "logit_direction"
    assert tuning["best_trial_job"] == str(best.id) and tuning["best_trial"] == best.training_config["trial"]
    assert tuning["validation_score"] == pytest.approx(best.final_metrics["auc"])
    assert tuning["untuned_validation_score"] == pytest.approx(first.final_metrics["auc"])
    assert tuning["trials_stopped_early"] == len(stopped)
    assert model.model_config["c"] == pytest.approx(best.training_config["params"]["model.c"])
    assert search.final_metrics["registered"][0]["id"] == str(model.id)
    reg.close()


def test_the_search_never_reads_the_test_segment_and_the_test_segment_is_read_once(searched, monkeypatch):
    home, r = searched
    monkeypatch.setenv("TREUM_HOME", str(home))
    reg = Registry()
    search = _search_row(reg)
    assert "data up to 2010-11-23; the test segment from 2011-01-01 is never read" in r.stdout
    # one walk-forward over the test segment: the best configuration's, beside the baselines
    over_test = [j for j in reg.jobs(100) if j.job_type in ("training", "evaluation")]
    assert len(over_test) == 1 and over_test[0].status == "completed"
    assert over_test[0].final_metrics["n"] > 1000  # 2011-2018, out of sample
    (model,) = reg.list_models()
    assert model.custom_metrics["walk_forward"]["auc"] == pytest.approx(over_test[0].final_metrics["auc"])
    assert "validation blocks 2009-01-02..2010-11-23" in search.final_metrics["validation"]
    reg.close()


def test_bad_search_spaces_stop_before_any_trial_with_the_key_named(treum_home):
    r = treum("tune", "model=logit_direction", "++hpo.space={model.cc: {loguniform: [0.001, 1.0]}}")
    assert r.returncode == 2 and "'model.cc' is not a key of the composed config; did you mean 'model.c'" in r.stderr
    r = treum("tune", "model=logit_direction", "++hpo.space={eval.refit_every: {randint: [21, 252]}}")
    assert r.returncode == 2 and "cannot be searched" in r.stderr
    r = treum("tune", "model=gbm_direction", "hpo.space={model.num_leaves: {randint: [1, 9]}}")
    assert r.returncode == 2 and "model 'gbm_direction' refuses 1: model: num_leaves must be at least 2" in r.stderr
    r = treum("tune", "model=gbm_direction", "hpo.space={model.num_leaves: {uniform: [2.5, 9.0]}}")
    assert r.returncode == 2 and "add a key (or merge into one) with '++hpo.space=" in r.stderr
    r = treum("tune", "model=gbm_direction", "++hpo.space={model.num_leaves: {uniform: [2.5, 9.0]}}")
    assert r.returncode == 2 and "two distributions (randint, uniform)" in r.stderr
    r = treum("tune", "model=gbm_direction", "hpo.num_sample=3")
    assert r.returncode == 2 and "did you mean 'num_samples'" in r.stderr
    r = treum("tune", "model=lagged_logit")  # a baseline, and it has no search anyway
    assert r.returncode == 2 and "is a baseline" in r.stderr
    r = treum("tune", "model=garch")
    assert r.returncode == 2 and "model 'garch' has no search of its own (conf/hpo/garch.yaml)" in r.stderr
    assert not (treum_home / "registry.db").exists() or Registry().jobs() == []


def test_ctrl_c_cancels_the_running_trials_and_registers_nothing(treum_home):
    # gbm trials last seconds (a fit per block), so the signal lands while trials run, not after the search.
    # SIGINT back to its default in the child: a shell that starts the tests in the background (nohup ... &)
    # ignores it, the child inherits that, and Python then installs no KeyboardInterrupt handler at all
    proc = subprocess.Popen([sys.executable, "-m", "treum.cli", "tune", "model=gbm_direction", "hpo.num_samples=40",
                             "hpo.max_concurrent=1", "hpo.scheduler.name=fifo"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    reg = Registry()
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            rows = [j for j in reg.jobs(100, job_type="tuning") if (j.training_config or {}).get("role") != "search"]
            if len(rows) >= 2 and any(j.status == "running" for j in rows):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.3)
        else:
            raise AssertionError("no trial started")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "interrupted:" in out and "nothing registered" in out
    search = _search_row(reg)
    trials = _trials(reg, search.id)
    assert search.status == "cancelled"
    assert not [t for t in trials if t.status in ("queued", "running")]
    assert any(t.status == "cancelled" for t in trials) and any(t.status == "completed" for t in trials)
    assert reg.list_models() == []
    reg.close()


def test_a_gpu_request_reaches_the_trial_on_a_fake_gpu(treum_home):
    # ray.init(num_gpus=1) on a machine without one: Ray schedules the GPU share, CUDA is absent, the model trains on CPU
    r = treum("tune", "model=logit_direction", "hpo.num_samples=2", "hpo.max_concurrent=2", "hpo.resources.gpu=0.5",
              "tune.num_gpus=1", "registry.register=false")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "each trial on 1 CPU and 0.5 GPU (1 GPUs in the cluster)" in r.stdout
    reg = Registry()
    trials = _trials(reg, _search_row(reg).id)
    assert len(trials) == 2
    for t in trials:
        assert t.compute_resources == {"cpu": 1.0, "gpu": 0.5}
        assert t.final_metrics["gpu_ids"] == "0" and t.final_metrics["device"] == "cpu"
    assert reg.list_models() == []  # registry.register=false: the best is evaluated, not registered
    reg.close()  # without a GPU in the cluster the trials run on CPUs and say so (tests/core/test_hpo.py)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_search_on_a_two_node_ray_cluster_lands_trials_on_both_nodes(treum_home):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "gcs_server_port": _free_port(),
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        r = treum("tune", "model=logit_direction", "hpo.num_samples=4", "hpo.max_concurrent=2",
                  f"tune.address={cluster.address}", "registry.register=false")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "(2 CPUs in the cluster)" in r.stdout
        reg = Registry()
        trials = _trials(reg, _search_row(reg).id)
        nodes = {t.final_metrics["node"] for t in trials}
        assert len(trials) == 4 and len(nodes) == 2
        assert nodes == {n.node_id for n in [cluster.head_node, *cluster.worker_nodes]}
        reg.close()
    finally:
        cluster.shutdown()


def test_the_registry_command_lists_shows_and_cancels_jobs(searched):
    home, _ = searched
    env = {"TREUM_HOME": str(home)}
    reg = Registry(home=home)
    search = _search_row(reg)
    reg.close()
    r = treum("registry", "jobs", "list", "--search", str(search.id), env=env)
    assert r.returncode == 0 and r.stdout.count("trial:logit_direction:sp500:") == 4
    r = treum("registry", "jobs", "show", str(search.id), env=env)
    assert r.returncode == 0 and '"role": "search"' in r.stdout and '"best_trial"' in r.stdout
    r = treum("registry", "jobs", "cancel", str(search.id), env=env)
    assert r.returncode == 2 and "already 'completed'" in r.stderr
    r = treum("registry", "show", "logit_direction", env=env)
    assert r.returncode == 0 and '"tuning"' in r.stdout and str(search.id) in r.stdout


@pytest.mark.parametrize("overrides", [["model=logit_direction", "data=sp500"],
                                       ["model=markov_regime", "data=sp500_index"]])  # labels decided after the fact
def test_what_a_search_sees_does_not_move_when_the_test_segment_prices_do(plugins, overrides):
    """Scramble every price of the test segment: the search's frame, labels and blocks stay the same."""
    import dataclasses

    import numpy as np
    import pandas as pd

    from treum.commands.compose import compose_run, to_dict
    from treum.commands.run import prepare
    from treum.commands.tune import build_search, load_hpo

    cfg = compose_run([*overrides, "hpo=logit_direction"], plugins)
    cfg, _, hpo = load_hpo(cfg, plugins, [*overrides, "hpo=logit_direction"])
    prep = prepare(cfg, plugins)
    split, panel, frame, folds = build_search(prep, hpo, plugins, to_dict(cfg.features))
    assert frame.index.get_level_values("timestamp").max() < prep.segments.test[0]
    ts = prep.panel.index.get_level_values("timestamp")
    later = ts >= prep.segments.test[0]
    noisy = prep.panel.copy()
    shock = np.random.default_rng(0).lognormal(0, 0.2, later.sum())
    for col in [c for c in ("open", "high", "low", "close") if c in noisy]:
        noisy.loc[later, col] = noisy.loc[later, col].to_numpy() * shock
    if "volume" in noisy:
        noisy.loc[later, "volume"] = noisy.loc[later, "volume"].to_numpy()[::-1]
    split2, panel2, frame2, folds2 = build_search(dataclasses.replace(prep, panel=noisy), hpo, plugins,
                                                  to_dict(cfg.features))
    assert split2 == split and folds2 == folds
    pd.testing.assert_frame_equal(frame2, frame)
    assert frame[[c for c in frame.columns if c.startswith("target")]].notna().any().all()


def test_a_search_whose_trials_all_fail_says_why_and_leaves_no_row_running(treum_home):
    # hpo=base has an empty space of its own; LightGBM itself refuses a feature fraction above 1 when it trains
    r = treum("tune", "model=gbm_direction", "hpo=base", "hpo.num_samples=2",
              "++hpo.space={model.feature_fraction: {uniform: [1.5, 2.0]}}")
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "no trial of the search completed its 4 validation blocks; first error:" in r.stderr
    reg = Registry()
    search = _search_row(reg)
    trials = _trials(reg, search.id)
    assert search.status == "failed" and len(trials) == 2
    assert all(t.status == "failed" and t.error_message for t in trials)
    assert reg.list_models() == []
    reg.close()


def test_a_time_budget_ends_the_search_and_its_rows(treum_home):
    r = treum("tune", "model=logit_direction", "hpo.num_samples=200", "hpo.max_concurrent=1", "hpo.time_budget_s=12",
              "hpo.scheduler.name=fifo", "registry.register=false")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    reg = Registry()
    search = _search_row(reg)
    trials = _trials(reg, search.id)
    assert search.status == "completed" and 1 <= len(trials) < 200
    assert search.final_metrics["trials"] == len(trials)
    assert not [t for t in trials if t.status in ("queued", "running")]
    reg.close()
