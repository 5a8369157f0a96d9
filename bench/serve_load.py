"""Load on the combined-signal route: many keep-alive connections, each sending one request every
``--interval`` seconds, for ``--seconds``; prints latency percentiles, errors and the server's memory.

    TREUM_HOME=.treum .venv/bin/python bench/serve_load.py --connections 10000 --interval 10 --seconds 60
    TREUM_HOME=.treum .venv/bin/python bench/serve_load.py --server ray --connections 10000 --seconds 60
    TREUM_HOME=.treum .venv/bin/python bench/serve_load.py --miss --connections 16 --interval 0 --seconds 20

The client is a separate, niced process (Ray's workers run at nice 15; an un-niced client on the
same 2 cores would starve them). Connections open at ``--ramp`` per second.

- ``--client h2load`` (the default where nghttp2-client's ``h2load`` is installed: ``apt install
  nghttp2-client``): HTTP/1.1, ``--rps 1/interval`` per connection, each request's status and
  latency read from its log file. It measures from the moment a request is sent; with one request
  per 10 s per connection and answers far shorter than that, that is the moment it was due.
- ``--client asyncio``: the same in Python over asyncio streams, latency from the moment a request
  was due (open loop: a slow answer delays nothing else and counts in full); costs the client more
  CPU, which it takes from the server on a 2-core machine. ``--interval 0`` makes it closed-loop.

``--miss`` (asyncio client) sends fresh bars in every body (a cache miss per request) instead of the
stored ones. Figures, not assertions: run it on the machine you care about. Needs `make demo` first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import tempfile
import sys
import time

from _serving import UVICORN_APP, read_response  # bench/ is on sys.path when run as a script

PATH = "/api/v1/ml/predict/price"


def _bars(seed: int) -> list[dict]:
    """300 plausible daily bars ending 2018-12-31, different for every seed (so no answer is cached)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    days = pd.bdate_range(end="2018-12-31", periods=300)
    close = 2500 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
    volume = 1e9 * np.exp(rng.normal(0, 0.2, len(days)))  # a constant volume leaves its z-score undefined
    return [{"timestamp": d.isoformat(), "open": c, "high": c * 1.005, "low": c * 0.995, "close": c, "volume": v}
            for d, c, v in zip(days, close, volume, strict=True)]


async def _connection(host: str, port: int, interval: float, until: float, start_at: float, bodies: list[bytes],
                      out: dict) -> None:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        out["connect_errors"] += 1
        return
    due = time.monotonic() + random.random() * interval  # spread the first requests over one interval
    i = 0
    try:
        while due < until:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            body = bodies[i % len(bodies)]
            i += 1
            writer.write(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
            status_line = await read_response(reader)
            latency = (time.monotonic() - due) * 1000
            status = int(status_line.split()[1]) if status_line else 0
            out["latencies"].append(latency)
            if status != 200:
                out["errors"] += 1
                out["statuses"][status] = out["statuses"].get(status, 0) + 1
            due += interval if interval > 0 else 0.0
            if interval <= 0:
                due = time.monotonic()
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        out["errors"] += 1
        out["statuses"]["disconnect"] = out["statuses"].get("disconnect", 0) + 1
    finally:
        writer.close()


async def _client(host: str, port: int, connections: int, interval: float, seconds: float, ramp: float,
                  miss: bool) -> dict:
    out = {"latencies": [], "errors": 0, "connect_errors": 0, "statuses": {}}
    start = time.monotonic()
    ramp_s = connections / ramp if ramp > 0 else 0.0
    until = start + ramp_s + seconds
    if miss:
        bodies = [json.dumps({"instrument": "SPX", "bars": _bars(i)}).encode() for i in range(200)]
    else:
        bodies = [json.dumps({"instrument": "SPX"}).encode()]
    await asyncio.gather(*[
        _connection(host, port, interval, until, start + (k / ramp if ramp > 0 else 0.0),
                    bodies[k % len(bodies):] + bodies[: k % len(bodies)], out)
        for k in range(connections)
    ])
    lat = sorted(out["latencies"])

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {"requests": len(lat), "rps": len(lat) / max(seconds + ramp_s, 1e-9), "p50": pct(0.50), "p95": pct(0.95),
            "p99": pct(0.99), "errors": out["errors"], "connect_errors": out["connect_errors"],
            "statuses": out["statuses"]}


def _h2load(port: int, connections: int, interval: float, seconds: float, ramp: float) -> dict:
    """The load from h2load (nghttp2-client): per-request status and latency from its log file."""
    per_connection = max(1, round(seconds / interval)) if interval > 0 else 1
    with tempfile.TemporaryDirectory() as tmp:
        body, requests_log = os.path.join(tmp, "body.json"), os.path.join(tmp, "requests.log")
        with open(body, "w") as fh:
            json.dump({"instrument": "SPX"}, fh)
        pace = ["--rps", f"{1 / interval:g}"] if interval > 0 else []
        cmd = ["nice", "-n", "15", "h2load", "--h1", *pace, "-c", str(connections), "-n", str(connections * per_connection),
               # connections start a few at a time every 10 ms, not the second's worth at once: h2load paces
               # each connection from its start, so a second's batch would send in step, a burst per period
               "-r", str(max(1, round(ramp / 100))), "--rate-period", "10ms", "-d", body, "-H", "content-type: application/json",
               "--log-file", requests_log, f"http://127.0.0.1:{port}{PATH}"]
        started = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - started
        lat, statuses = [], {}
        with open(requests_log) as fh:
            for line in fh:
                _start, status, micros = line.split()
                lat.append(int(micros) / 1000)
                if status != "200":
                    statuses[status] = statuses.get(status, 0) + 1
    summary = next((ln for ln in done.stdout.splitlines() if ln.startswith("requests:")), "")
    counts = {word: int(n) for n, word in (part.split()[:2] for part in summary[len("requests:"):].split(","))
              if n.isdigit()}
    asked = connections * per_connection
    unanswered = asked - len(lat)  # connection errors, resets, timeouts: no status at all
    if unanswered:
        statuses["no answer"] = unanswered
    lat.sort()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {"requests": len(lat), "rps": len(lat) / max(wall, 1e-9), "p50": pct(0.50), "p95": pct(0.95),
            "p99": pct(0.99), "errors": sum(statuses.values()), "connect_errors": counts.get("errored", 0),
            "statuses": statuses}


def _server_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024





def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--server", choices=["uvicorn", "ray"], default="uvicorn")
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between requests on one connection")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--ramp", type=float, default=500.0, help="connections opened per second")
    p.add_argument("--miss", action="store_true", help="fresh bars in every request (a cache miss each)")
    p.add_argument("--port", type=int, default=18600)
    p.add_argument("--client", choices=["h2load", "asyncio"], default=None,
                   help="the load generator (default: h2load where installed, asyncio for --miss)")
    args = p.parse_args()
    client = args.client or ("h2load" if shutil.which("h2load") and not args.miss else "asyncio")
    if client == "h2load" and args.miss:
        p.error("--miss needs --client asyncio (h2load sends one body)")
    if client == "h2load" and not shutil.which("h2load"):
        p.error("h2load is not installed (apt install nghttp2-client); or use --client asyncio")

    if args.server == "uvicorn":
        server = subprocess.Popen([sys.executable, "-c", UVICORN_APP, str(args.port)])
        pids = [server.pid]
        port = args.port
    else:
        import dataclasses

        from treum.commands.compose import compose_plain, to_dict
        from treum.core.plugins import create_plugin_registry
        from treum.registry.store import treum_home
        from treum.serve import ray_app
        from treum.serve.settings import ServeSettings

        plugins = create_plugin_registry()
        settings = ServeSettings.from_config(to_dict(compose_plain([], plugins).serve), plugins)
        settings = dataclasses.replace(settings, port=args.port, direct_port=args.port + 1, rate_limit_per_minute=0)
        ray_app.start(settings, None, treum_home())
        server, pids, port = None, [], args.port + 1
    try:
        import httpx

        for _ in range(120):  # ready when a prediction answers
            try:
                if httpx.post(f"http://127.0.0.1:{port}{PATH}", json={"instrument": "SPX"}, timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        if not pids:
            pids = [int(x) for x in subprocess.run(["pgrep", "-f", "ray::"], capture_output=True, text=True)
                    .stdout.split()]
        if client == "h2load":
            result = _h2load(port, args.connections, args.interval, args.seconds, args.ramp)
        else:
            run = subprocess.run(
                ["nice", "-n", "15", sys.executable, __file__, "--client", str(port), str(args.connections),
                 str(args.interval), str(args.seconds), str(args.ramp), "1" if args.miss else "0"],
                capture_output=True, text=True, check=True)
            result = json.loads(run.stdout.strip().splitlines()[-1])
        result["server_rss_mb"] = round(_server_rss_mb(pids), 1)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        else:
            from treum.serve import ray_app

            ray_app.stop()
    print(f"server {args.server}  client {client}  connections {args.connections}  interval {args.interval:g} s  seconds {args.seconds:g}"
          f"  {'cache miss' if args.miss else 'cache hit'} requests")
    print(f"{'requests':>9s} {'req/s':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'errors':>7s} "
          f"{'conn err':>8s} {'server MB':>9s}")
    print(f"{result['requests']:9d} {result['rps']:7.0f} {result['p50']:8.1f} {result['p95']:8.1f} {result['p99']:8.1f} "
          f"{result['errors']:7d} {result['connect_errors']:8d} {result['server_rss_mb']:9.0f}")
    if result["statuses"]:
        print("non-200 answers:", result["statuses"])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, conns, interval, secs, ramp, miss = sys.argv[2:8]
        os.environ.setdefault("PYTHONHASHSEED", "0")
        print(json.dumps(asyncio.run(_client("127.0.0.1", int(port), int(conns), float(interval), float(secs),
                                             float(ramp), miss == "1"))))
    else:
        main()
