"""Latency and throughput of the combined-signal route: Ray Serve against plain uvicorn.

    .venv/bin/python bench/serve_latency.py [--seconds 8] [--concurrency 1 16 64]

Serves the models the registry in $TREUM_HOME has deployed (run `make demo`
first) three ways: Ray Serve with every member inside the router replica
(placement local), Ray Serve with the transformer in its own deployment
(placement remote), and the same FastAPI handler under plain uvicorn with no
Ray. A separate client process, niced like Ray's workers so it does not starve
them, holds C keep-alive connections open and posts
`{"instrument": "SPX"}` to /api/v1/ml/predict/price for a fixed time. Prints
requests per second and p50 / p95 / p99 latency, and Ray's throughput as a
share of uvicorn's. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time

from _serving import UVICORN_APP, read_response  # bench/ is on sys.path when run as a script

BODY = json.dumps({"instrument": "SPX"}).encode()
PATH = "/api/v1/ml/predict/price"


# the client (runs in its own process) ----------------------------------------
async def _worker(host: str, port: int, deadline: float, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + BODY
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        writer.write(request)
        await writer.drain()
        status_line = await read_response(reader)
        latencies.append(time.perf_counter() - t0)
        if b" 200 " not in status_line:
            errors.append(1)
    writer.close()


async def _client(host: str, port: int, concurrency: int, seconds: float) -> dict:
    # warm-up, not measured
    warm: list[float] = []
    await asyncio.gather(*[_worker(host, port, time.perf_counter() + 1.0, warm, []) for _ in range(concurrency)])
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(*[_worker(host, port, start + seconds, latencies, errors) for _ in range(concurrency)])
    elapsed = time.perf_counter() - start
    latencies.sort()

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"rps": len(latencies) / elapsed, "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "n": len(latencies),
            "errors": len(errors)}


def run_client(url: str, concurrency: int, seconds: float) -> dict:
    """Drive ``url`` from a separate, niced process; returns its figures."""
    host, port = url.split("//")[1].split(":")
    out = subprocess.run(
        [sys.executable, __file__, "--client", host, port, str(concurrency), str(seconds)],
        capture_output=True, text=True, check=True, preexec_fn=lambda: os.nice(15),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# the servers ---------------------------------------------------------------------
def _wait_ready(url: str, timeout: float = 120) -> None:
    import httpx

    end = time.time() + timeout
    while time.time() < end:
        try:
            r = httpx.post(url + PATH, content=BODY, headers={"content-type": "application/json"}, timeout=30)
            if r.status_code == 200 and all(m["status"] == "ok" for m in r.json()["members"]):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer with every member in {timeout}s")





def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--port", type=int, default=18500)
    args = parser.parse_args()

    from treum.commands.compose import compose_plain, to_dict
    from treum.commands.demo import serving_needs
    from treum.core.plugins import create_plugin_registry
    from treum.registry.store import Registry, treum_home
    from treum.serve import ray_app
    from treum.serve.settings import ServeSettings

    plugins = create_plugin_registry()
    base = ServeSettings.from_config(to_dict(compose_plain([], plugins).serve), plugins)
    reg = Registry()
    missing = [n for n in serving_needs(reg, base) if reg.live(n) is None]
    reg.close()
    if missing:
        sys.exit(f"nothing deployed for {missing} in {treum_home()}; run `make demo` first")

    rows = []
    for label, placement in (("ray serve, members local", "local"), ("ray serve, transformer remote", "remote")):
        members = {n: dataclasses.replace(m, placement=placement) if n == "ts_transformer" else m
                   for n, m in base.ensemble.members.items()}
        settings = dataclasses.replace(base, port=args.port, direct_port=args.port + 1, rate_limit_per_minute=0,
                                       ensemble=dataclasses.replace(base.ensemble, members=members))
        ray_app.start(settings, None, treum_home())
        try:
            for name, url in ((f"{label} (direct ingress)", f"http://127.0.0.1:{args.port + 1}"),
                              (f"{label} (proxy)", f"http://127.0.0.1:{args.port}")):
                _wait_ready(url)
                for c in args.concurrency:
                    rows.append((name, c, run_client(url, c, args.seconds)))
                    print(name, c, rows[-1][2], flush=True)
        finally:
            ray_app.stop()

    port = args.port + 20
    server = subprocess.Popen([sys.executable, "-c", UVICORN_APP, str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url)
        for c in args.concurrency:
            rows.append(("plain uvicorn, no ray", c, run_client(url, c, args.seconds)))
            print(rows[-1][0], c, rows[-1][2], flush=True)
    finally:
        server.terminate()
        server.wait(30)

    uvicorn_rps = {c: r["rps"] for name, c, r in rows if name.startswith("plain uvicorn")}
    print()
    print(f"{'server':48s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'errors':>6s} {'vs uvicorn':>10s}")
    for name, c, r in rows:
        share = r["rps"] / uvicorn_rps[c] if uvicorn_rps.get(c) else float("nan")
        print(f"{name:48s} {c:4d} {r['rps']:8.0f} {r['p50']:8.1f} {r['p95']:8.1f} {r['p99']:8.1f} {r['errors']:6d} {share:10.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        host, port, conc, secs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        print(json.dumps(asyncio.run(_client(host, port, conc, secs))))
    else:
        main()
