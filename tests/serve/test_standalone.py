"""`treum serve serve.engine=uvicorn`: the service in one process without Ray, as a user runs it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import func, select

from treum.core.errors import ConfigError
from treum.registry.schema import MLPrediction, ModelServingLog
from treum.registry.store import Registry
from treum.serve import standalone

from .conftest import settings

API = "/api/v1/ml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_uvicorn_engine_answers_and_flushes_its_logs_on_ctrl_c(deployed_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(deployed_home, home)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "treum.cli", "serve", "serve.engine=uvicorn", f"serve.port={port}"],
        env={**os.environ, "TREUM_HOME": str(home), "COLUMNS": "200"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    answered = 0
    try:
        end = time.time() + 120
        while time.time() < end:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}{API}/predict/price", json={"instrument": "SPX"}, timeout=30)
                if r.status_code == 200:
                    answered += 1
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        assert answered and 0 < r.json()["p_up"] < 1
        r = httpx.post(f"http://127.0.0.1:{port}{API}/predict/volatility", json={"instrument": "SPX"}, timeout=30)
        assert r.status_code == 200 and r.json()["task"] == "volatility"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "one process, no Ray" in out and "stopped: logs flushed" in out
    reg = Registry(home=home)
    with reg.sessions() as s:  # the ensemble's row and its 3 members, the volatility answer
        assert s.execute(select(func.count()).select_from(MLPrediction)).scalar() == 5
        assert s.execute(select(func.count()).select_from(ModelServingLog)).scalar() == 2
    reg.close()


@pytest.mark.parametrize("overrides,message", [
    ({"ensemble": {"members": {"ts_transformer": {"placement": "remote"}}}}, "placement 'remote' \\(Ray only\\)"),
    ({"router_replicas": 2}, "router_replicas > 1 needs serve.engine=ray"),
])
def test_what_only_ray_can_do_is_refused_before_start(overrides, message):
    with pytest.raises(ConfigError, match=message):
        standalone.check(settings(engine="uvicorn", **overrides))


def test_an_unknown_engine_gets_a_suggestion():
    with pytest.raises(ConfigError, match="engine: must be one of \\['ray', 'uvicorn'\\], got 'uvicron'"):
        settings(engine="uvicron")
