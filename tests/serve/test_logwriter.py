"""The log writer loses no row: rows cleaned before they are queued, a refused row isolated and
dead-lettered, outages retried without limit, a bounded queue that overflows to the durable spool,
the spool replayed exactly once, shutdown within a budget Ray allows, and what a ``kill -9`` costs."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from treum.registry.schema import MLPrediction, ModelServingLog
from treum.registry.store import Registry
from treum.serve.logwriter import BatchLogWriter

ROOT = Path(__file__).resolve().parents[2]


# helpers ------------------------------------------------------------------------
def prediction(i, **extra) -> dict:
    return {"prediction_id": f"p{i}", "input_features": {"i": i, "task": "direction"}, "entity_type": "instrument",
            "entity_id": "SPX", "prediction_value": 0.25, **extra}


def serving(i, **extra) -> dict:
    return {"request_id": f"r{i}", "inference_time_ms": 1, "api_endpoint": "/api/v1/ml/predict/price", **extra}


def sessions_for(url: str, timeout: float = 0.2):
    """An engine without migrations (the database may not exist yet), SQLite waiting ``timeout`` for a lock."""
    engine = create_engine(url, connect_args={"timeout": timeout} if url.startswith("sqlite") else {})
    return sessionmaker(engine, expire_on_commit=False)


def down_url(home: Path) -> str:
    """A SQLite registry in a folder that does not exist yet: every connection fails until ``bring_up``."""
    return f"sqlite:///{home / 'db-later' / 'registry.db'}"


def bring_up(url: str, home: Path) -> Registry:
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return Registry(url=url, home=home)


def counts(sessions) -> tuple[int, int]:
    with sessions() as s:
        return (s.execute(select(func.count()).select_from(MLPrediction)).scalar(),
                s.execute(select(func.count()).select_from(ModelServingLog)).scalar())


def prediction_ids(sessions) -> list[str]:
    with sessions() as s:
        return list(s.execute(select(MLPrediction.prediction_id)).scalars())


def serving_ids(sessions) -> list[str]:
    with sessions() as s:
        return list(s.execute(select(ModelServingLog.request_id)).scalars())


def spool_rows(home: Path) -> list[tuple[str, dict]]:
    rows = []
    for path in sorted((home / "logs" / "spool").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a line cut short by the kill
            rows.append((item["k"], item["r"]))
    return rows


def spool_files(home: Path) -> list[Path]:
    return sorted((home / "logs" / "spool").glob("*.jsonl"))


def wait_for(condition, timeout: float = 30.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@pytest.fixture
def registry(treum_home) -> Registry:
    reg = Registry(home=treum_home)
    yield reg
    reg.close()


# 1. cleaning ---------------------------------------------------------------------------
def _string_columns(table) -> dict[str, int]:
    return {c.name: c.type.length for c in table.columns
            if getattr(c.type, "length", None) and c.name not in ("id",)}


def test_rows_are_cleaned_to_what_their_columns_take(registry):
    """Lengths from the table itself, NUL removed everywhere (JSON too), numbers that overflow their column
    NULL and noted, the bytes actually received logged rather than a header's claim."""
    w = BatchLogWriter(registry.sessions)
    lengths = _string_columns(MLPrediction.__table__)
    row = {name: f"c0-{name}-" + "x" * (length + 50) for name, length in lengths.items()}
    row.update(input_features={"task": "direction", "nul\x00key": "a\x00b", "deep": [{"v": "x\x00"}],
                               "nan": math.nan, "inf": [math.inf]},
               entity_type="instr\x00ument", prediction_value=1e12, prediction_probability=1000.0,
               inference_time_ms=2**40, confidence_interval={"low": -math.inf, "high": 1.0})
    w.prediction(**row)
    w.prediction(**prediction(1, prediction_value=1e10))  # numeric(18, 8) holds |x| < 10^10
    w.prediction(**prediction(2, prediction_value=9_999_999_999.99))
    serving_lengths = _string_columns(ModelServingLog.__table__)
    w.serving(**{name: f"{name}-" + "y" * (length + 50) for name, length in serving_lengths.items()},
              inference_time_ms=3, input_size_bytes=10**12, error_message="bad\x00request")
    w.serving(**serving(1, input_size_bytes=10**12), received_bytes=512)  # what the middleware counted
    w.close()
    with registry.sessions() as s:
        got = {p.prediction_id[:3]: p for p in s.execute(select(MLPrediction)).scalars()}
        logs = list(s.execute(select(ModelServingLog).order_by(ModelServingLog.request_id)).scalars())
    assert len(got) == 3 and len(logs) == 2
    cleaned = got["c0-"]
    for name, length in lengths.items():
        value = getattr(cleaned, name)
        assert "\x00" not in value and len(value) == (length if name != "entity_type" else len("instrument"))
    assert cleaned.entity_type == "instrument"
    assert cleaned.input_features["nulkey"] == "ab" and cleaned.input_features["deep"] == [{"v": "x"}]
    assert cleaned.input_features["nan"] is None and cleaned.input_features["inf"] == [None]
    assert cleaned.confidence_interval == {"low": None, "high": 1.0}
    assert cleaned.prediction_value is None and cleaned.prediction_probability is None
    assert cleaned.inference_time_ms is None
    noted = cleaned.input_features["log_cleaned"]
    assert {"prediction_value", "prediction_probability", "inference_time_ms", "entity_id"} <= set(noted)
    assert "overflows" in noted["prediction_value"] and "cut from" in noted["entity_id"]
    assert got["p1"].prediction_value is None and "overflows" in got["p1"].input_features["log_cleaned"][
        "prediction_value"]
    assert got["p2"].prediction_value == pytest.approx(9_999_999_999.99)
    assert "log_cleaned" not in got["p2"].input_features
    long_row, received = (logs[0], logs[1]) if logs[1].request_id == "r1" else (logs[1], logs[0])
    for name, length in serving_lengths.items():
        assert len(getattr(long_row, name)) == length
    assert long_row.input_size_bytes is None and long_row.error_message == "badrequest"
    assert received.input_size_bytes == 512
    assert w.cleaned == 3 and w.written == 5


# 2. a refused row ---------------------------------------------------------------------
def test_a_row_the_database_refuses_is_dead_lettered_and_the_others_written(registry, treum_home):
    w = BatchLogWriter(registry.sessions, 500, 0.5)
    for i in range(40):
        w.prediction(**prediction(i, **({"entity_type": None} if i in (7, 23) else {})))
        w.serving(**serving(i))
    w.close()
    assert counts(registry.sessions) == (38, 40)
    assert sorted(prediction_ids(registry.sessions)) == sorted(f"p{i}" for i in range(40) if i not in (7, 23))
    lines = [json.loads(x) for x in (treum_home / "logs" / "dead-letter.jsonl").read_text().splitlines()]
    assert sorted(x["row"]["prediction_id"] for x in lines) == ["p23", "p7"]
    assert all(x["table"] == "ml_predictions" and "NOT NULL" in x["reason"] for x in lines)
    assert w.dead_letters == 2 and w.failed_batches >= 1 and w.written == 78


# 3. outages -------------------------------------------------------------------------------
def test_an_outage_is_retried_without_limit_and_loses_nothing(treum_home):
    url = down_url(treum_home)
    sessions = sessions_for(url)
    w = BatchLogWriter(sessions, 200, 0.2)
    for i in range(30):
        w.prediction(**prediction(i))
        w.serving(**serving(i))
    time.sleep(2.5)  # longer than three attempts
    assert len(spool_rows(treum_home)) == 60  # on disk meanwhile
    reg = bring_up(url, treum_home)
    assert wait_for(lambda: counts(reg.sessions) == (30, 30))
    w.close()
    assert counts(reg.sessions) == (30, 30)
    assert sorted(serving_ids(reg.sessions)) == sorted(f"r{i}" for i in range(30))
    assert w.retries >= 3 and w.failed_batches >= 1 and w.written == 60 and w.dead_letters == 0
    assert spool_files(treum_home) == []
    reg.close()


def test_a_locked_sqlite_file_is_waited_for(registry):
    url = str(registry.engine.url)
    blocker = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        w = BatchLogWriter(sessions_for(url, timeout=0.05), 200, 0.2)
        for i in range(20):
            w.prediction(**prediction(i))
        time.sleep(2.0)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert wait_for(lambda: counts(registry.sessions) == (20, 0))
    w.close()
    assert w.retries >= 2 and counts(registry.sessions) == (20, 0)


def test_retries_back_off_from_a_tenth_of_a_second_doubling_to_five(treum_home):
    class Down:
        def begin(self):
            raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))

    class Recorder:  # the writer's stop event, recording the waits instead of sleeping
        def __init__(self):
            self.event, self.waits = threading.Event(), []

        def wait(self, seconds):
            self.waits.append(seconds)
            time.sleep(0.001)
            return self.event.is_set()

        def set(self):
            self.event.set()

        def is_set(self):
            return self.event.is_set()

    w = BatchLogWriter(Down(), 10, 0.05)
    w._stop = recorder = Recorder()
    w.prediction(**prediction(0))
    assert wait_for(lambda: len(recorder.waits) >= 12, timeout=10)
    w.close(budget_s=0.3)
    assert recorder.waits[:8] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert max(recorder.waits) == 5.0
    assert len(spool_rows(treum_home)) == 1


# 4. the spool -------------------------------------------------------------------------------
def test_the_spool_is_replayed_on_start_and_no_row_is_written_twice(treum_home, tmp_path):
    url = down_url(treum_home)
    first = BatchLogWriter(sessions_for(url), 200, 0.2)
    for i in range(25):
        first.prediction(**prediction(i))
        first.serving(**serving(i))
    first.close(0.5)  # the database is down: everything stays in the spool
    assert first.spooled == 50 and first.written == 0
    saved = {p.name: p.read_bytes() for p in spool_files(treum_home)}
    assert saved and len(spool_rows(treum_home)) == 50
    reg = bring_up(url, treum_home)
    second = BatchLogWriter(reg.sessions)  # a new process on the same TREUM_HOME
    second.close()
    assert counts(reg.sessions) == (25, 25) and second.replayed == 50
    assert {"written", "replayed", "spooled", "dead_letters", "failed_batches"} <= set(second.stats())
    assert spool_files(treum_home) == []  # removed once their rows were committed
    for name, data in saved.items():  # as if the first writer had died after its rows were committed
        (treum_home / "logs" / "spool" / name).write_bytes(data)
    third = BatchLogWriter(reg.sessions)
    third.close()
    assert counts(reg.sessions) == (25, 25) and third.duplicates == 50 and third.replayed == 0
    assert sorted(serving_ids(reg.sessions)) == sorted(f"r{i}" for i in range(25))
    assert spool_files(treum_home) == []
    reg.close()


def test_a_live_writers_spool_is_left_alone_and_taken_over_once_it_closes(treum_home, tmp_path):
    """Two replicas on one TREUM_HOME: a writer replays only segments no live writer holds."""
    url = down_url(treum_home)
    live = BatchLogWriter(sessions_for(url), 200, 0.2)
    for i in range(20):
        live.prediction(**prediction(i))
    assert wait_for(lambda: len(spool_rows(treum_home)) == 20)
    other = Registry(url=f"sqlite:///{tmp_path / 'other.db'}", home=treum_home)
    sibling = BatchLogWriter(other.sessions)
    sibling.close()
    assert sibling.replayed == 0 and counts(other.sessions) == (0, 0)  # the live writer's rows stay its own
    live.close(0.3)  # its database still down: it leaves them
    with open(spool_files(treum_home)[0], "a") as f:
        f.write('{"k":"prediction","r":{"id":"0b')  # and a line cut short, as a kill mid-write leaves it
    taker = BatchLogWriter(other.sessions)
    taker.close()
    assert counts(other.sessions) == (20, 0) and taker.replayed == 20 and taker.spool.torn == 1
    assert spool_files(treum_home) == []
    other.close()


def test_the_queue_is_bounded_and_overflows_to_the_spool(treum_home):
    url = down_url(treum_home)
    w = BatchLogWriter(sessions_for(url), 50, 0.2, max_queue=20)
    start = time.perf_counter()
    for i in range(300):
        w.prediction(**prediction(i))
    assert time.perf_counter() - start < 5  # never waits for the database
    assert w.queued <= 20 and w.spooled >= 300 - 20 - 50
    reg = bring_up(url, treum_home)
    assert wait_for(lambda: counts(reg.sessions) == (300, 0))
    w.close()
    assert sorted(prediction_ids(reg.sessions)) == sorted(f"p{i}" for i in range(300))
    assert spool_files(treum_home) == []
    reg.close()


def test_a_few_rows_reach_the_disk_within_the_sync_interval(treum_home):
    """Fewer rows than a group are written and fsynced by time (sync_seconds = 0.2 s), not held back."""
    w = BatchLogWriter(sessions_for(down_url(treum_home)), 200, 0.2)
    start = time.monotonic()
    for i in range(3):
        w.prediction(**prediction(i))
    assert wait_for(lambda: len(spool_rows(treum_home)) == 3, timeout=5.0, step=0.01)
    print(f"3 rows on disk after {time.monotonic() - start:.3f} s")
    w.close(0.2)


# 5. shutdown ------------------------------------------------------------------------------
def test_close_keeps_its_budget_and_spools_the_rest(treum_home):
    url = down_url(treum_home)
    w = BatchLogWriter(sessions_for(url), 200, 0.2)
    for i in range(40):
        w.prediction(**prediction(i))
    start = time.monotonic()
    w.close(1.0)  # the budget
    assert time.monotonic() - start < 2.0
    assert sorted(r["prediction_id"] for _k, r in spool_rows(treum_home)) == sorted(f"p{i}" for i in range(40))
    w.prediction(**prediction(40))  # a row that arrives after close is spooled too
    reg = bring_up(url, treum_home)
    after = BatchLogWriter(reg.sessions)
    after.close()
    assert sorted(prediction_ids(reg.sessions)) == sorted(f"p{i}" for i in range(41))
    reg.close()


def test_ray_gives_the_router_more_time_than_the_writers_budget():
    from treum.serve.logwriter import CLOSE_BUDGET_S
    from treum.serve.ray_app import Router, build_app

    assert BatchLogWriter.__init__.__kwdefaults__["close_budget_s"] == CLOSE_BUDGET_S == 10.0
    request_timeout = 10.0  # serve.request_timeout_s: requests in flight are drained before __del__
    assert Router._deployment_config.graceful_shutdown_timeout_s > 1 + request_timeout + CLOSE_BUDGET_S
    app = build_app({"settings": {"request_timeout_s": 30.0}, "registry_url": None, "home": None})
    assert app._bound_deployment._deployment_config.graceful_shutdown_timeout_s > 1 + 30 + CLOSE_BUDGET_S


# 6. kill -9 --------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import asyncio, os, sys, time
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker
    from treum.serve.logwriter import BatchLogWriter

    url, n, ack_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    durable = sys.argv[4:] == ["durable"]  # acknowledge only once the rows are fsynced (serve.durable_ack)
    loop = asyncio.new_event_loop()
    writer = BatchLogWriter(sessionmaker(create_engine(url)))
    ack = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    i = 0
    while n < 0 or i < n:
        writer.prediction(prediction_id=f"k{i}", input_features={"i": i}, entity_type="instrument",
                          entity_id="SPX", prediction_value=0.5)
        if i % 3 == 0:
            writer.serving(request_id=f"k{i}", inference_time_ms=1)
        if durable:
            loop.run_until_complete(writer.durable())
        os.write(ack, b"%d\\n" % i)  # acknowledged: prediction() returned
        i += 1
    os.write(ack, b"done\\n")
    time.sleep(3600)
""")


def start_child(tmp_path: Path, url: str, n: int, durable: bool = False) -> tuple[subprocess.Popen, Path]:
    script, ack = tmp_path / "child.py", tmp_path / "acks"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), url, str(n), str(ack), *(["durable"] if durable else [])],
                            env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, ack


def acked(ack: Path) -> tuple[int, bool]:
    """The highest index the child acknowledged, and whether it finished."""
    lines = ack.read_text().split("\n")[:-1] if ack.exists() else []  # the last piece may be cut short
    done = bool(lines) and lines[-1] == "done"
    numbers = [int(x) for x in lines if x.isdigit()]
    return (max(numbers) if numbers else -1), done


def synced_all(home: Path, n: int) -> None:
    """Every row the child logged is in its spool (on a loaded machine the journal thread may need longer
    than its interval to be scheduled: wait for it rather than fail on the scheduler)."""
    def count():
        return len({r["prediction_id"] for k, r in spool_rows(home) if k == "prediction"})

    assert wait_for(lambda: count() == n, timeout=20), f"{count()} of {n} rows in the spool"


def replay_once_each(reg: Registry, home: Path, n: int) -> BatchLogWriter:
    """A new writer on the killed child's TREUM_HOME writes its n predictions (and every third request) once each."""
    writer = BatchLogWriter(reg.sessions)
    writer.close()
    ids = prediction_ids(reg.sessions)
    assert len(ids) == n and set(ids) == {f"k{i}" for i in range(n)}, (len(ids), writer.stats())
    requests = serving_ids(reg.sessions)
    assert len(requests) == len(set(requests)) == len(range(0, n, 3))
    assert spool_files(home) == []
    return writer


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]


def test_kill_9_while_the_database_is_down_loses_no_synced_row(treum_home, tmp_path):
    """The database is unavailable, N rows are logged, the fsync interval passes, SIGKILL: a new writer
    with a working database on the same TREUM_HOME writes all N, each once."""
    n = 497  # not a whole number of groups: the last one is synced by time
    url = down_url(treum_home)
    proc, ack = start_child(tmp_path, url, n)
    try:
        assert wait_for(lambda: acked(ack)[1] or proc.poll() is not None, timeout=60), "the child did not log"
        assert acked(ack) == (n - 1, True), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ""
        time.sleep(0.6)  # the fsync interval (0.2 s), three times
        synced_all(treum_home, n)
    finally:
        kill(proc)
    reg = bring_up(url, treum_home)
    writer = replay_once_each(reg, treum_home, n)
    assert writer.replayed == n + len(range(0, n, 3))
    reg.close()


# 2 x sync_rows (50 by default): what a kill -9 can cost at most, by construction
MAX_UNSYNCED = 2 * (BatchLogWriter.__init__.__kwdefaults__ or {}).get("sync_rows", 50)


def test_kill_9_while_writing_loses_at_most_the_last_unsynced_group(treum_home, tmp_path):
    """The database works and the child logs as fast as it can (the queue overflows, the journal is the
    bottleneck); after SIGKILL every acknowledged row is in the database or the spool, except at most the
    last group not yet written to the spool (< MAX_UNSYNCED rows, the most recent ones)."""
    reg = Registry(home=treum_home)
    url = str(reg.engine.url)
    proc, ack = start_child(tmp_path, url, -1)
    try:
        assert wait_for(lambda: acked(ack)[0] >= 3000 or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.3)
    finally:
        kill(proc)
    last, _ = acked(ack)
    in_db = set(prediction_ids(reg.sessions))
    in_spool = {r["prediction_id"] for k, r in spool_rows(treum_home) if k == "prediction"}
    lost = sorted(i for i in range(last + 1) if f"k{i}" not in in_db | in_spool)
    print(f"acknowledged {last + 1}, in the database {len(in_db)}, spooled {len(in_spool)}, lost {len(lost)}")
    assert len(lost) < MAX_UNSYNCED
    assert all(i > last - MAX_UNSYNCED for i in lost)  # only the most recent rows
    writer = BatchLogWriter(reg.sessions)  # the next start writes what the killed one left
    writer.close(budget_s=120)
    ids = prediction_ids(reg.sessions)
    assert len(ids) == len(set(ids)) and set(ids) >= {f"k{i}" for i in range(last + 1)} - {f"k{i}" for i in lost}
    requests = serving_ids(reg.sessions)
    assert len(requests) == len(set(requests))
    assert spool_files(treum_home) == []
    reg.close()


def test_kill_9_with_durable_acks_loses_no_acknowledged_row(treum_home, tmp_path):
    """serve.durable_ack: a row is acknowledged only once ``durable()`` says it is fsynced, so after SIGKILL
    every acknowledged row is in the database or the spool, and the next writer writes each once."""
    reg = Registry(home=treum_home)
    url = str(reg.engine.url)
    proc, ack = start_child(tmp_path, url, -1, durable=True)
    try:
        assert wait_for(lambda: acked(ack)[0] >= 1500 or proc.poll() is not None, timeout=90)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    finally:
        kill(proc)
    last, _ = acked(ack)
    in_db = set(prediction_ids(reg.sessions))
    in_spool = {r["prediction_id"] for k, r in spool_rows(treum_home) if k == "prediction"}
    lost = [i for i in range(last + 1) if f"k{i}" not in in_db | in_spool]
    assert lost == [], f"{len(lost)} acknowledged rows lost, the first {lost[:5]}"
    writer = BatchLogWriter(reg.sessions)
    writer.close(budget_s=120)
    ids = prediction_ids(reg.sessions)
    assert len(ids) == len(set(ids)) and set(ids) >= {f"k{i}" for i in range(last + 1)}
    assert spool_files(treum_home) == []
    reg.close()


def test_durable_waits_for_the_fsync_and_waiters_share_one(treum_home):
    """``durable()`` returns only once the spool has fsynced every row accepted before the call; many
    waiters at once are woken by the same group write, not one fsync each."""
    import asyncio

    writer = BatchLogWriter(sessions_for(down_url(treum_home)))  # the database is down: only the spool
    writer.spool.sync_seconds = 30.0  # a group would wait 30 s to fill: only a waiter makes it write now
    fsyncs = []
    real_sync = writer.spool._sync

    def counting_sync():
        fsyncs.append(writer.spool._dirty)
        real_sync()

    writer.spool._sync = counting_sync

    async def burst():
        for i in range(40):
            writer.prediction(**prediction(i))
        await asyncio.gather(*[writer.durable() for _ in range(40)])

    started = time.monotonic()
    asyncio.run(burst())
    assert time.monotonic() - started < 5.0
    assert writer.spool._synced >= 40  # every row accepted before the waits is on disk
    assert len({r["prediction_id"] for k, r in spool_rows(treum_home) if k == "prediction"}) == 40
    assert sum(fsyncs) <= 3, fsyncs  # a group commit: the 40 waiters shared the writes
    writer.close(budget_s=0.5)


def test_durable_says_false_when_the_spool_cannot_write_and_at_close(treum_home, monkeypatch):
    """A failed fsync, or a writer closed before the rows were confirmed, is reported, never a false True."""
    import asyncio

    import treum.serve.spool as spool_module

    writer = BatchLogWriter(sessions_for(down_url(treum_home)))
    writer.prediction(**prediction(0))
    assert asyncio.run(writer.durable()) is True

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(spool_module.os, "fsync", broken_fsync)
    writer.prediction(**prediction(1))
    assert asyncio.run(writer.durable()) is False
    monkeypatch.undo()
    writer.prediction(**prediction(2))
    assert asyncio.run(writer.durable()) is True  # the next group is on disk again
    writer.close(budget_s=0.5)
    writer.prediction(**prediction(3))  # after close: written to a segment of its own at once
    assert asyncio.run(writer.durable()) is True


def test_a_row_no_encoder_takes_does_not_stall_the_journal(tmp_path):
    """A value whose text cannot be made (its __str__ raises) is reported as not durable once, and the rows
    after it are journaled as usual: the journal never retries it forever with every waiter hanging."""
    import asyncio

    from treum.serve.spool import Record, Spool

    class Unprintable:
        def __str__(self):
            raise RuntimeError("no text")

    spool = Spool(tmp_path / "spool", sync_rows=1, sync_seconds=0.01)

    def durable() -> bool:
        async def wait():
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            now = spool.when_synced(spool.added, lambda ok: loop.call_soon_threadsafe(done.set_result, ok))
            return now if now is not None else await asyncio.wait_for(done, 5)
        return asyncio.run(wait())

    spool.add(Record("prediction", {"id": "a", "input_features": {"x": Unprintable()}}))
    assert durable() is False
    spool.add(Record("prediction", {"id": "b", "prediction_value": 1.0}))
    assert durable() is True
    spool.close(2.0)
