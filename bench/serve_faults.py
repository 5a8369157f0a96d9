"""Faults under load: the combined-signal route at about ``--rate`` requests/s for ``--seconds`` through
Ray Serve's proxy, while (a) a router replica is killed with SIGKILL, (b) the remote ensemble member's
replica is killed with SIGKILL, (c) PostgreSQL is stopped for ``--pg-down`` seconds. Prints the failed
share, each fault's recovery time, and, once every log is flushed, how many acknowledged predictions
(a ``prediction_id`` was answered) are missing from ``ml_predictions`` and how many answered requests
are missing from ``model_serving_logs``.

    sudo-less on this machine (root):  .venv/bin/python bench/serve_faults.py            # 10 minutes
    a quick look:                      .venv/bin/python bench/serve_faults.py --seconds 120

It runs against its own PostgreSQL database (``--db``, created on first use and filled by `treum demo`
with ``TREUM_REGISTRY_URL`` pointing at it) and its own ``TREUM_HOME`` (``--home``). The router runs
with ``serve.router_replicas=2`` and one member with ``placement: remote``; the client sends its own
``X-Request-ID`` per request (the service keeps a well-formed client id) and does not retry. Stopping
PostgreSQL uses ``pg_ctlcluster`` (Debian's postgresql-common) and needs the rights to do so.
Figures, not assertions: run it on the machine you care about.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

PATH = "/api/v1/ml/predict/price"
IN_FLIGHT_S = 2.0
ROOT = Path(__file__).resolve().parent.parent


# --- the client (a separate, niced process) --------------------------------------------------------
class Stale(Exception):
    """A reused keep-alive connection the server had closed: nothing was answered on it."""


async def _send(conn, rid: str, reused: bool) -> tuple[bytes, bytes, bool]:
    from _serving import read_response  # bench/ is on sys.path when run as a script

    reader, writer = conn
    body = b'{"instrument": "SPX"}'
    try:
        writer.write(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"X-Request-ID: " + rid.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
                     b"\r\n\r\n" + body)
        await writer.drain()
        status_line, payload, keep = await asyncio.wait_for(read_response(reader, body=True), 30)
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        if reused and not getattr(exc, "partial", b""):
            raise Stale() from exc
        raise
    if not status_line:
        if reused:
            raise Stale()
        raise ConnectionError("closed without an answer")
    return status_line, payload, keep


async def _conn_request(host: str, port: int, pool: asyncio.Queue, rid: str, stats: dict) -> tuple[int, dict | None]:
    """One request on a pooled keep-alive connection; like common HTTP clients, a request whose reused
    connection turns out closed before any answer is sent again once on a fresh connection (counted)."""
    conn = None if pool.empty() else pool.get_nowait()
    try:
        if conn is None:
            raise Stale()
        status_line, payload, keep = await _send(conn, rid, reused=True)
    except Stale:
        if conn is not None:
            conn[1].close()
            stats["fresh_retries"] += 1
        conn = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        status_line, payload, keep = await _send(conn, rid, reused=False)
    status = int(status_line.split()[1])
    if keep:
        pool.put_nowait(conn)
    else:
        conn[1].close()
    answer = None
    if status == 200:
        try:
            answer = json.loads(payload)
        except ValueError:
            answer = None
    return status, answer


async def _client(port: int, rate: float, seconds: float, out_path: str) -> None:
    host = "127.0.0.1"
    pool: asyncio.Queue = asyncio.Queue()
    t0 = time.time()
    tag = f"{random.getrandbits(32):08x}"
    records = []
    stats = {"fresh_retries": 0}

    async def one(i: int, due: float) -> None:
        rid = f"fault-{tag}-{i:07d}"
        try:
            status, answer = await _conn_request(host, port, pool, rid, stats)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as exc:
            status, answer = 0, {"error": type(exc).__name__}
        pid = answer.get("prediction_id") if status == 200 and answer else (answer or {}).get("error")
        records.append((due - t0, status, (time.time() - due) * 1000, rid, pid))

    tasks = []
    i = 0
    while True:
        due = t0 + i / rate
        if due - t0 >= seconds:
            break
        await asyncio.sleep(max(0.0, due - time.time()))
        tasks.append(asyncio.ensure_future(one(i, due)))
        i += 1
    await asyncio.gather(*tasks)
    with open(out_path, "w") as fh:
        json.dump({"records": records, **stats}, fh)


# --- the faults -----------------------------------------------------------------------------------
def _pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def _pg_cluster() -> tuple[str, str]:
    line = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    version, name = line.split()[:2]
    return version, name


def _wait_replicas(pattern: str, n: int, since: float, limit: float = 120.0) -> float | None:
    """Seconds from ``since`` until ``n`` processes match ``pattern`` again (a replacement replica)."""
    while time.time() - since < limit:
        if len(_pids(pattern)) >= n:
            return time.time() - since
        time.sleep(0.2)
    return None


def _prepare(url: str, home: Path) -> None:
    """Create the database and, when it has no deployed model, fill it with `treum demo`."""
    import sqlalchemy as sa

    admin = sa.create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    db = url.rsplit("/", 1)[1]
    with admin.connect() as c:
        if not c.execute(sa.text("select 1 from pg_database where datname = :d"), {"d": db}).first():
            c.execute(sa.text(f'create database "{db}"'))
    admin.dispose()
    engine = sa.create_engine(url)
    with engine.connect() as c:
        has = sa.inspect(c).has_table("ml_models") and c.execute(
            sa.text("select count(*) from ml_models where deployment_status = 'deployed'")).scalar()
    engine.dispose()
    if not has:
        print(f"filling {url.rsplit('@', 1)[-1]} with `treum demo` ...", flush=True)
        env = {**os.environ, "TREUM_REGISTRY_URL": url, "TREUM_HOME": str(home)}
        subprocess.run([str(ROOT / ".venv/bin/treum"), "demo"], env=env, check=True, stdout=subprocess.DEVNULL)


def _flush_spool(url: str, home: Path, limit: float = 120.0) -> int:
    """Replay whatever the replicas left in the spool; returns the rows still there after ``limit``."""
    from treum.registry.store import Registry
    from treum.serve.logwriter import BatchLogWriter

    registry = Registry(url=url, home=home)
    writer = BatchLogWriter(registry.sessions, 1000, 0.2, home=home)
    start = time.time()
    while time.time() - start < limit and writer.spool.files():
        time.sleep(1.0)
    left = len(writer.spool.files())
    writer.close(30.0)
    registry.close()
    return left


def _missing(url: str, records: list) -> tuple[int, int, int, int]:
    import sqlalchemy as sa

    answered = [r for r in records if r[1] == 200]
    pred_ids = [r[4] for r in answered if r[4]]
    req_ids = [r[3] for r in answered]  # a 5xx may come from Ray's proxy, which the service never saw
    engine = sa.create_engine(url)
    have_p, have_r = set(), set()
    with engine.connect() as c:
        for k in range(0, len(pred_ids), 5000):
            chunk = pred_ids[k:k + 5000]
            have_p |= set(c.execute(sa.text("select prediction_id from ml_predictions where prediction_id = any(:ids)"),
                                    {"ids": chunk}).scalars())
        for k in range(0, len(req_ids), 5000):
            chunk = req_ids[k:k + 5000]
            have_r |= set(c.execute(sa.text("select request_id from model_serving_logs where request_id = any(:ids)"),
                                    {"ids": chunk}).scalars())
    engine.dispose()
    return len(pred_ids), len(set(pred_ids) - have_p), len(req_ids), len(set(req_ids) - have_r)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--rate", type=float, default=200.0, help="requests per second, open loop")
    p.add_argument("--pg-down", type=float, default=30.0, help="seconds PostgreSQL stays stopped")
    p.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/treum_faults")
    p.add_argument("--home", default=str(ROOT / ".treum-faults"), help="TREUM_HOME of the run (spool, artifacts)")
    p.add_argument("--port", type=int, default=18700)
    args = p.parse_args()
    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["TREUM_HOME"] = str(home)
    os.environ["TREUM_REGISTRY_URL"] = args.db
    _prepare(args.db, home)

    import dataclasses

    from treum.commands.compose import compose_plain, to_dict
    from treum.core.plugins import create_plugin_registry
    from treum.serve import ray_app
    from treum.serve.settings import ServeSettings

    plugins = create_plugin_registry()
    members = list(compose_plain([], plugins).serve.ensemble.members)
    remote = members[-1]
    overrides = ["serve.router_replicas=2", f"serve.ensemble.members.{remote}.placement=remote"]
    settings = ServeSettings.from_config(to_dict(compose_plain(overrides, plugins).serve), plugins)
    settings = dataclasses.replace(settings, port=args.port, direct_port=args.port + 1, rate_limit_per_minute=0)
    print(f"starting Ray Serve: 2 router replicas, member '{remote}' remote, registry {args.db.rsplit('@', 1)[-1]}",
          flush=True)
    ray_app.start(settings, args.db, home)
    out = home / "faults-requests.json"
    version, cluster = _pg_cluster()
    faults: dict[str, dict] = {}
    try:
        import httpx

        for _ in range(240):
            try:
                if httpx.post(f"http://127.0.0.1:{args.port}{PATH}", json={"instrument": "SPX"},
                              timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        router, member = "ServeReplica:treum:router", f"ServeReplica:treum:member-{remote}"
        print(f"replicas up: router {len(_pids(router))}, member {len(_pids(member))}; load for {args.seconds:g} s "
              f"at {args.rate:g}/s", flush=True)
        client = subprocess.Popen(["nice", "-n", "10", sys.executable, __file__, "--client", str(args.port),
                                   str(args.rate), str(args.seconds), str(out)])
        start = time.time()

        def at(frac: float) -> None:
            time.sleep(max(0.0, start + frac * args.seconds - time.time()))

        at(0.2)
        victim = _pids(router)[0]
        t = time.time()
        os.kill(victim, signal.SIGKILL)
        faults["router replica SIGKILL"] = {"at": t - start, "replaced_s": _wait_replicas(router, 2, t)}
        at(0.45)
        pids = _pids(member)
        if pids:
            t = time.time()
            os.kill(pids[0], signal.SIGKILL)
            faults["remote member SIGKILL"] = {"at": t - start, "replaced_s": _wait_replicas(member, 1, t)}
        at(0.7)
        t = time.time()
        subprocess.run(["pg_ctlcluster", version, cluster, "stop", "-m", "fast"], check=True)
        time.sleep(args.pg_down)
        subprocess.run(["pg_ctlcluster", version, cluster, "start"], check=True)
        faults[f"PostgreSQL stopped {args.pg_down:g} s"] = {"at": t - start, "replaced_s": time.time() - t}
        client.wait()
    finally:
        if subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout.split()[3:4] != ["online"]:
            subprocess.run(["pg_ctlcluster", version, cluster, "start"])
        ray_app.stop()
    left = _flush_spool(args.db, home)
    run = json.loads(out.read_text())
    records = run["records"]
    n = len(records)
    failed = [r for r in records if r[1] != 200]
    lat = sorted(r[2] for r in records if r[1] == 200)
    print(f"\n{n} requests in {args.seconds:g} s ({n / args.seconds:.0f}/s), {len(failed)} failed "
          f"({100 * len(failed) / max(n, 1):.3f}%): {_statuses(failed)}; {run['fresh_retries']} sent again on a "
          "fresh connection after a reused one was found closed")
    if lat:
        print(f"answered: p50 {lat[len(lat) // 2]:.1f} ms, p95 {lat[int(0.95 * len(lat))]:.1f} ms, "
              f"p99 {lat[int(0.99 * len(lat))]:.1f} ms")
    names = list(faults)
    print(f"\n{'fault':28s} {'at s':>6s} {'failed':>7s} {'recovered s':>11s} {'replaced s':>10s}")
    # a fault's window opens IN_FLIGHT_S before it: requests sent earlier and still in flight when it struck
    for k, name in enumerate(names):
        f = faults[name]
        end = faults[names[k + 1]]["at"] - IN_FLIGHT_S if k + 1 < len(names) else args.seconds
        window = [r for r in failed if f["at"] - IN_FLIGHT_S <= r[0] < end]
        recovered = max(0.0, max(r[0] for r in window) - f["at"]) if window else 0.0
        replaced = "-" if f["replaced_s"] is None else f"{f['replaced_s']:.1f}"
        print(f"{name:28s} {f['at']:6.0f} {len(window):7d} {recovered:11.1f} {replaced:>10s}")
    before = [r for r in failed if not names or r[0] < faults[names[0]]["at"] - IN_FLIGHT_S]
    print(f"{'(no fault: before the first)':28s} {'':6s} {len(before):7d}")
    acked, missing_p, answered, missing_r = _missing(args.db, records)
    print(f"\nacknowledged predictions {acked}, missing from ml_predictions {missing_p}")
    print(f"answered requests {answered}, missing from model_serving_logs {missing_r}")
    print(f"spool files left after the flush: {left}")


def _statuses(failed: list) -> dict:
    out: dict = {}
    for r in failed:
        key = r[1] or f"no answer ({r[4]})"
        out[key] = out.get(key, 0) + 1
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        port, rate, secs, out_path = sys.argv[2:6]
        asyncio.run(_client(int(port), float(rate), float(secs), out_path))
    else:
        main()
