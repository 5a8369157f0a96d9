"""What the serving benchmarks share: the plain-uvicorn server they compare with, and an HTTP/1.1 reader."""

from __future__ import annotations

import asyncio

# the service with plain uvicorn: no rate limit (one client address sends everything), keep-alive for
# clients that pause between requests, logs flushed on shutdown
UVICORN_APP = """
import sys
from treum.commands.compose import compose_plain, to_dict
from treum.core.plugins import create_plugin_registry
from treum.registry.store import Registry
from treum.serve.api import create_app
from treum.serve.router import Service
from treum.serve.settings import ServeSettings
import uvicorn
plugins = create_plugin_registry()
values = {**to_dict(compose_plain([], plugins).serve), "rate_limit_per_minute": 0}
settings = ServeSettings.from_config(values, plugins)
service = Service(settings, Registry(), plugins)
uvicorn.run(create_app(lambda: service, plugins, close_on_shutdown=True), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning", timeout_keep_alive=120, backlog=16384)
"""


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """Read one HTTP/1.1 response (status line, headers, a Content-Length body); returns the status line."""
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status_line
