"""What the serving benchmarks share: the plain-uvicorn server they compare with, and an HTTP/1.1 reader."""

from __future__ import annotations

import asyncio

# the service with plain uvicorn: no rate limit (one client address sends everything), the configured
# keep-alive (serve.keep_alive_s) for clients that pause between requests, logs flushed on shutdown
UVICORN_APP = """
import sys
from treum.commands.compose import compose_plain, to_dict
from treum.core.plugins import create_plugin_registry
from treum.registry.store import Registry
from treum.serve.api import create_app
from treum.serve.router import Service, tune_gc
from treum.serve.settings import ServeSettings
import uvicorn
plugins = create_plugin_registry()
values = {**to_dict(compose_plain([], plugins).serve), "rate_limit_per_minute": 0}
settings = ServeSettings.from_config(values, plugins)
tune_gc(settings.gc_gen0_threshold)  # before the service loads its models, as the Ray replicas do
service = Service(settings, Registry(), plugins)
uvicorn.run(create_app(lambda: service, plugins, close_on_shutdown=True), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning", timeout_keep_alive=settings.keep_alive_s, backlog=16384)
"""


async def read_response(reader: asyncio.StreamReader, body: bool = False) -> bytes | tuple[bytes, bytes, bool]:
    """Read one HTTP/1.1 response (status line, headers, a Content-Length body); returns the status line,
    or with ``body=True`` the status line, the body and whether the server keeps the connection open."""
    status_line = await reader.readline()
    length = 0
    keep = True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        lower = line.lower()
        if lower.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        elif lower.startswith(b"connection:") and b"close" in lower:
            keep = False
    payload = await reader.readexactly(length)
    return (status_line, payload, keep) if body else status_line
