"""The log writer on both registry databases (SQLite here, PostgreSQL with TREUM_TEST_PG_URL, as in CI):
rows PostgreSQL refuses are cleaned, a refused row is isolated, an outage of PostgreSQL (its connections
cut, then refused) loses nothing, and a writer killed while PostgreSQL refused is made good by the next."""

from __future__ import annotations

import math
import os
import socket
import threading
import time

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from treum.registry.schema import MLPrediction, ModelServingLog
from treum.registry.store import Registry
from treum.serve.logwriter import BatchLogWriter

from .test_logwriter import (
    acked,
    counts,
    kill,
    prediction,
    prediction_ids,
    replay_once_each,
    serving,
    serving_ids,
    sessions_for,
    spool_files,
    spool_rows,
    start_child,
    synced_all,
    wait_for,
)

PG_URL = os.environ.get("TREUM_TEST_PG_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="set TREUM_TEST_PG_URL (make test-services runs these; CI does)")


@pytest.fixture
def pg_url():
    """A fresh schema on PostgreSQL (the URL selects it), dropped afterwards."""
    import uuid

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_rows_postgres_would_refuse_are_cleaned_and_written(registry_url, treum_home):
    """NUL in text and in JSON, an overlong string, NaN in JSON, an overflowing numeric or integer, a lone
    surrogate: each used to fail its whole batch on PostgreSQL (every other client's rows with it)."""
    reg = Registry(url=registry_url, home=treum_home)
    w = BatchLogWriter(reg.sessions, 200, 0.5)
    hostile = [
        {"entity_id": "SPX\x00"}, {"input_features": {"note": "a\x00b", "k\x00": 1}}, {"entity_id": "S" * 300},
        {"input_features": {"x": math.nan}}, {"prediction_value": 1e30}, {"inference_time_ms": 10**12},
        {"prediction_class": "up\ud800"}, {"ensemble_weights": {"w": [math.inf, -math.inf]}},
    ]
    for i in range(40):
        w.prediction(**prediction(i, **hostile[i % len(hostile)]))
        w.serving(**serving(i, input_size_bytes=10**15 if i % 2 else 10, client_ip="x\x00" * 40))
    w.close()
    assert counts(reg.sessions) == (40, 40) and w.dead_letters == 0 and w.written == 80
    with reg.sessions() as s:
        spx = s.execute(select(MLPrediction).where(MLPrediction.prediction_id == "p0")).scalar_one()
        assert spx.entity_id == "SPX"
        assert s.execute(select(func.max(func.length(MLPrediction.entity_id)))).scalar() == 100
        assert s.execute(select(func.count()).select_from(ModelServingLog)
                         .where(ModelServingLog.input_size_bytes.is_(None))).scalar() == 20
    reg.close()


def test_a_refused_row_is_dead_lettered_on_either_database(registry_url, treum_home):
    import uuid

    reg = Registry(url=registry_url, home=treum_home)
    w = BatchLogWriter(reg.sessions, 500, 0.5)
    postgres = registry_url.startswith("postgresql")
    bad = {5: {"entity_type": None}, 17: {"entity_id": None}}
    if postgres:  # SQLite does not enforce foreign keys
        bad[30] = {"model_id": uuid.uuid4()}
    for i in range(40):
        w.prediction(**prediction(i, **bad.get(i, {})))
    w.close()
    assert sorted(prediction_ids(reg.sessions)) == sorted(f"p{i}" for i in range(40) if i not in bad)
    assert w.dead_letters == len(bad)
    lines = (treum_home / "logs" / "dead-letter.jsonl").read_text().splitlines()
    assert len(lines) == len(bad)
    reg.close()


class Proxy:
    """A TCP proxy in front of PostgreSQL that can be cut (connections reset, then refused) and restored."""

    def __init__(self, port: int):
        self.target = port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while self.listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.mark.postgres
@needs_pg
def test_a_postgres_outage_loses_nothing(pg_url, treum_home):
    """Connections cut mid-life, then refused for a while: rows are spooled meanwhile and all written
    exactly once when PostgreSQL answers again."""
    reg = Registry(url=pg_url, home=treum_home)  # the schema, through the real port
    url = make_url(pg_url)
    proxy = Proxy(url.port or 5432)
    proxy.start()
    sessions = sessions_for(url.set(port=proxy.port).render_as_string(hide_password=False))
    w = BatchLogWriter(sessions, 200, 0.1)
    try:
        for i in range(20):
            w.prediction(**prediction(i))
            w.serving(**serving(i))
        assert wait_for(lambda: counts(reg.sessions) == (20, 20))
        proxy.stop()  # the pooled connection is cut, new ones are refused
        for i in range(20, 50):
            w.prediction(**prediction(i))
            w.serving(**serving(i))
        time.sleep(2.0)
        assert counts(reg.sessions) == (20, 20)
        spooled = {r.get("prediction_id") for k, r in spool_rows(treum_home) if k == "prediction"}
        assert {f"p{i}" for i in range(20, 50)} <= spooled
        proxy.start()
        assert wait_for(lambda: counts(reg.sessions) == (50, 50))
    finally:
        w.close()
        proxy.stop()
    assert sorted(prediction_ids(reg.sessions)) == sorted(f"p{i}" for i in range(50))
    assert sorted(serving_ids(reg.sessions)) == sorted(f"r{i}" for i in range(50))
    assert w.retries >= 1 and w.dead_letters == 0 and spool_files(treum_home) == []
    sessions.kw["bind"].dispose()
    reg.close()


@pytest.mark.postgres
@needs_pg
def test_kill_9_while_postgres_refuses_then_a_new_writer_writes_every_row_once(pg_url, treum_home, tmp_path):
    n = 301
    refusing = make_url(pg_url).set(port=1).render_as_string(hide_password=False)  # nothing listens there
    proc, ack = start_child(tmp_path, refusing, n)
    try:
        assert wait_for(lambda: acked(ack)[1] or proc.poll() is not None, timeout=60)
        assert acked(ack) == (n - 1, True)
        time.sleep(0.6)  # the fsync interval, three times
        synced_all(treum_home, n)
    finally:
        kill(proc)
    reg = Registry(url=pg_url, home=treum_home)
    replay_once_each(reg, treum_home, n)
    reg.close()
