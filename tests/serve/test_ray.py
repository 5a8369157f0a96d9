"""Ray Serve booted for real on loopback: predictions over HTTP, a deploy picked up live, a member failure, A/B."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from treum.registry.schema import MLPrediction, ModelServingLog
from treum.registry.store import Registry

from .conftest import fit_and_register, settings

pytestmark = [pytest.mark.integration, pytest.mark.ray, pytest.mark.slow]
API = "/api/v1/ml"


def _free_port_block(n: int = 12) -> int:
    for start in range(24000, 29000, 37):
        socks = []
        try:
            for p in range(start, start + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports")


def _wait(fn, timeout=90.0, every=0.5):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = fn()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"condition not met in {timeout}s; last: {last!r}")


@pytest.fixture(scope="module")
def live(deployed_home, tmp_path_factory, serve_plugins):
    from treum.serve import ray_app

    root = tmp_path_factory.mktemp("ray")
    home = root / "home"
    shutil.copytree(deployed_home, home)
    # a local plugin with a serve route: the replica mounts it when it builds its app
    (root / "plugins").mkdir()
    (root / "plugins" / "ping_route.py").write_text(PING_PLUGIN)
    toml = root / "plugins.toml"
    toml.write_text('[plugins]\npaths = ["plugins"]\n')
    base = _free_port_block()
    s = settings(port=base, direct_port=base + 1, refresh_seconds=0.5,
                 ensemble={"members": {"ts_transformer": {"placement": "remote"}}})
    ray_app.start(s, None, home, toml)
    state = {"home": home, "proxy": f"http://127.0.0.1:{base}", "direct": f"http://127.0.0.1:{base + 1}",
             "answers": [], "requests": 0}

    def ready():
        r = httpx.post(f"{state['direct']}{API}/predict/price", json={"instrument": "SPX"}, timeout=30)
        state["requests"] += 1
        if r.status_code == 200:
            state["answers"].append(r.json())
        return r.status_code == 200 and all(m["status"] == "ok" for m in r.json()["members"])

    _wait(ready)
    yield state
    ray_app.stop()


PING_PLUGIN = """
from fastapi import Request

from treum.core.hookspecs import hookimpl
from treum.core.specs import ServeRouteSpec


def ping(request: Request) -> dict:
    return {"pong": sorted(request.app.state.get_service().live)}


@hookimpl
def treum_serve_routes():
    return [ServeRouteSpec("ping", "/plugins/ping", ping, scope=None)]  # open: the test calls it without a key
"""


def _price(state, base="direct", **body):
    r = httpx.post(f"{state[base]}{API}/predict/price", json={"instrument": "SPX", **body}, timeout=30)
    state["requests"] += 1
    if r.status_code == 200:
        state["answers"].append(r.json())
    return r


def test_a_prediction_over_http_through_the_proxy_and_direct(live):
    for base in ("proxy", "direct"):
        r = _price(live, base)
        assert r.status_code == 200, r.text
        body = r.json()
        assert {m["name"]: m["status"] for m in body["members"]} == {
            "gbm_direction": "ok", "logit_direction": "ok", "ts_transformer": "ok"}
        assert 0 < body["p_up"] < 1 and body["regime"]["model"] == "markov_regime"
    bad = httpx.post(f"{live['direct']}{API}/predict/price", json={"instrument": "NOPE"}, timeout=30)
    live["requests"] += 1
    assert bad.status_code == 404 and "unknown instrument" in bad.json()["error"]


def test_idle_keep_alive_connections_stay_open_on_both_ports(live):
    """serve.keep_alive_s (120 s) reaches the proxy and the direct-ingress replica: a client that pauses for
    longer than uvicorn's default 5 s finds its connection still open."""
    import http.client
    import json
    from urllib.parse import urlsplit

    conns = {}
    for base in ("proxy", "direct"):
        u = urlsplit(live[base])
        conns[base] = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    for conn in conns.values():
        conn.request("POST", f"{API}/predict/volatility", json.dumps({"instrument": "SPX"}),
                     {"Content-Type": "application/json"})
        assert conn.getresponse().read() and conn.sock is not None
        live["requests"] += 1
        live["singles"] = live.get("singles", 0) + 1
    time.sleep(6.5)
    for base, conn in conns.items():
        sock = conn.sock
        conn.request("POST", f"{API}/predict/volatility", json.dumps({"instrument": "SPX"}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()  # RemoteDisconnected if the server had closed the idle connection
        assert r.status == 200 and conn.sock is sock, base
        r.read()
        live["requests"] += 1
        live["singles"] = live.get("singles", 0) + 1
        conn.close()


def test_any_task_an_alias_and_a_plugin_route_over_http(live):
    vol = httpx.post(f"{live['direct']}{API}/predict/volatility", json={"instrument": "SPX"}, timeout=30)
    regime = httpx.post(f"{live['direct']}{API}/predict/regime", json={"instrument": "SP500"}, timeout=30)
    market = httpx.post(f"{live['direct']}{API}/predict/market-regime", json={"instrument": "SPX"}, timeout=30)
    ping = httpx.get(f"{live['proxy']}{API}/plugins/ping", timeout=30)
    live["requests"] += 4
    live["singles"] = live.get("singles", 0) + 3
    assert vol.status_code == 200 and vol.json()["task"] == "volatility" and vol.json()["var_h21"] > 0
    assert regime.status_code == 200 and regime.json()["label"] in ("bull", "bear")
    assert market.status_code == 200 and market.json()["market"] == "SP500"
    assert ping.status_code == 200 and "garch" in ping.json()["pong"]


def test_a_deployment_change_is_picked_up_without_restarting(live, serve_plugins, tmp_path):
    reg = Registry(home=live["home"])
    new = fit_and_register(reg, serve_plugins, "gbm_direction", tmp_path, num_leaves=5)
    reg.deploy("gbm_direction", new.model_version, actor="test", force=True, reason="live swap")
    reg.close()

    def swapped():
        body = _price(live).json()
        return next(m for m in body["members"] if m["name"] == "gbm_direction")["version"] == new.model_version

    _wait(swapped, timeout=30)


def test_a_failing_remote_member_is_dropped_with_its_weight_renormalised(live, serve_plugins, tmp_path):
    reg = Registry(home=live["home"])
    new = fit_and_register(reg, serve_plugins, "ts_transformer", tmp_path, seed=7)
    weights = Path(new.model_file_path) / "weights.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # the artifact changes after registration
    reg.deploy("ts_transformer", new.model_version, actor="test", force=True, reason="broken on purpose")
    reg.close()

    def dropped():
        body = _price(live).json()
        member = next(m for m in body["members"] if m["name"] == "ts_transformer")
        return body if member["status"] == "failed" else None

    body = _wait(dropped, timeout=30)
    member = next(m for m in body["members"] if m["name"] == "ts_transformer")
    assert "ArtifactIntegrityError" in member["error"] and "/" not in member["error"]  # no server path in answers
    assert set(body["weights"]) == {"gbm_direction", "logit_direction"}
    assert sum(body["weights"].values()) == pytest.approx(1.0)


def test_an_ab_split_over_http(live, serve_plugins, tmp_path):
    reg = Registry(home=live["home"])
    token = reg.create_api_key(f"ab-{time.time_ns()}", scopes=["admin"])
    treatment = fit_and_register(reg, serve_plugins, "logit_direction", tmp_path, c=3.0)
    control = reg.live("logit_direction")
    reg.close()
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{live['direct']}{API}/experiments", headers=headers, timeout=30, json={
        "name": "logit strength", "control_model_id": str(control.id), "treatment_model_id": str(treatment.id)})
    live["requests"] += 1
    assert r.status_code == 201, r.text
    arms = {}
    for i in range(30):
        body = _price(live, user_id=f"user-{i}").json()
        arms[i] = next(m["arm"] for m in body["members"] if m["name"] == "logit_direction")
    assert set(arms.values()) == {"control", "treatment"}
    assert _price(live, user_id="user-3").json()["members"][1]["arm"] == arms[3]
    res = httpx.get(f"{live['direct']}{API}/experiments/{r.json()['id']}/results", headers=headers, timeout=30)
    live["requests"] += 1
    assert res.status_code == 200 and res.json()["arms"]["treatment"]["model_id"] == str(treatment.id)


def test_zz_shutdown_flushes_every_log_row(live):
    """Runs last in this module: stop the service and count what reached the database."""
    from treum.serve import ray_app

    expected_predictions = sum(1 + sum(m["status"] == "ok" for m in a["members"]) for a in live["answers"])
    expected_predictions += live.get("singles", 0)
    ray_app.stop()
    reg = Registry(home=live["home"])
    with reg.sessions() as s:
        predictions = s.execute(select(func.count()).select_from(MLPrediction)).scalar()
        requests = s.execute(select(func.count()).select_from(ModelServingLog)).scalar()
    assert predictions == expected_predictions
    assert requests == live["requests"]


def test_the_serve_command_answers_and_stops_cleanly_on_ctrl_c(deployed_home, tmp_path):
    """`treum serve` as a user runs it: a subprocess, a request over HTTP, SIGINT, exit 0, logs flushed."""
    import os
    import signal
    import subprocess
    import sys

    home = tmp_path / "home"
    shutil.copytree(deployed_home, home)
    base = _free_port_block()
    proc = subprocess.Popen(
        [sys.executable, "-m", "treum.cli", "serve", f"serve.port={base}", f"serve.direct_port={base + 1}"],
        env={**os.environ, "TREUM_HOME": str(home), "COLUMNS": "200"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    def p_up():
        try:
            r = httpx.post(f"http://127.0.0.1:{base + 1}{API}/predict/price", json={"instrument": "SPX"}, timeout=30)
        except httpx.HTTPError:
            return None  # not listening yet
        return r.json().get("p_up") if r.status_code == 200 else None

    try:
        body = _wait(p_up, timeout=120)
        assert 0 < body < 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert f"direct ingress on http://127.0.0.1:{base + 1}/api/v1/ml/" in out and "flushing logs" in out
    reg = Registry(home=home)
    with reg.sessions() as s:
        assert s.execute(select(func.count()).select_from(MLPrediction)).scalar() >= 4
    reg.close()
