"""What the serving benchmarks share: the plain-uvicorn server they compare with, and an HTTP/1.1 reader."""

from __future__ import annotations

import asyncio

# the service without Ray (serve.engine=uvicorn) with no rate limit: one client address sends everything
UVICORN_APP = """
import dataclasses, sys
from treum.commands.compose import compose_plain, to_dict
from treum.core.plugins import create_plugin_registry
from treum.serve import standalone
from treum.serve.settings import ServeSettings
plugins = create_plugin_registry()
values = {**to_dict(compose_plain([], plugins).serve), "rate_limit_per_minute": 0, "engine": "uvicorn"}
settings = dataclasses.replace(ServeSettings.from_config(values, plugins), port=int(sys.argv[1]))
standalone.run(settings, None, plugins)  # what `treum serve serve.engine=uvicorn` runs
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
