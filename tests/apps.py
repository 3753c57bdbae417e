"""Real servers and clients for the application tests: started in-process on 127.0.0.1, port 0, and stopped.

Every request here is bounded in time (the clients' timeouts) and every wait
for a server in count and time, so that a hung server fails the test instead of
hanging the suite. Servers are started without ``asyncio.wait_for`` around the
call: on 3.10/3.11 that would put a task of its own in every traced chain.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any, TypeVar

import pytest

from async_trace import TraceData

T = TypeVar("T")

#: The application tests run on both loops (uvloop where it is installed).
ON_BOTH_LOOPS: pytest.MarkDecorator = pytest.mark.parametrize(
    "loop",
    [
        "asyncio",
        pytest.param(
            "uvloop",
            marks=pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="needs uvloop"),
        ),
    ],
)


def run_on(loop: str, coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on asyncio's own loop or on uvloop, as servers start."""
    if loop == "asyncio":
        return asyncio.run(coro)
    uvloop: Any = importlib.import_module("uvloop")
    if sys.version_info >= (3, 12):
        return asyncio.run(coro, loop_factory=uvloop.new_event_loop)  # type: ignore[call-arg,unused-ignore]
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        return asyncio.run(coro)
    finally:
        asyncio.set_event_loop_policy(None)


#: Seconds any one request, server start or server stop may take.
TIMEOUT = 20.0

Shape = tuple[str, "int | None", "str | None", bool]


def shape(trace: TraceData) -> list[Shape]:
    """``(name, line, basename, is_executor)`` per frame, innermost first."""
    return [
        (f["name"], f["line"], os.path.basename(f["filename"]) if f["filename"] else None, f["is_executor"])
        for f in trace["frames"]
    ]


def source_line(obj: ModuleType | Callable[..., Any], text: str, *, nth: int = 0) -> int:
    """The line number of the ``nth`` line of ``obj``'s source whose stripped text starts with ``text``."""
    lines, start = inspect.getsourcelines(obj)
    start = max(start, 1)
    hits = [start + i for i, line in enumerate(lines) if line.strip().startswith(text)]
    assert len(hits) > nth, f"{text!r} not found {nth + 1} times in {getattr(obj, '__name__', obj)}"
    return hits[nth]


def free_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 with a port the system chose."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def aiohttp_server(app: Any) -> AsyncIterator[str]:
    """Serve the aiohttp ``app`` on 127.0.0.1 (port 0); yield its base URL."""
    from aiohttp import web

    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    sock = free_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await asyncio.wait_for(runner.cleanup(), TIMEOUT)
        sock.close()


@asynccontextmanager
async def uvicorn_server(app: Any, http: str = "h11", **options: Any) -> AsyncIterator[str]:
    """Serve the ASGI ``app`` with uvicorn (``http``: its h11 or httptools protocol; ``options``: more of
    ``uvicorn.Config``'s) on 127.0.0.1 (port 0), in this loop; yield its base URL."""
    import uvicorn

    sock = free_socket()
    config = uvicorn.Config(
        app, log_level="error", lifespan="off", loop="none", http=http, ws="none", access_log=False, **options
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    try:
        for _ in range(int(TIMEOUT / 0.01)):
            if server.started or serving.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, TIMEOUT)
        sock.close()


async def get_aiohttp(url: str) -> tuple[int, str]:
    """GET ``url`` with a real aiohttp client; ``(status, body)``."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(TIMEOUT)) as resp:
        return resp.status, await resp.text()


async def get_httpx(url: str) -> tuple[int, str]:
    """GET ``url`` with a real httpx client; ``(status, body)``."""
    import httpx

    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        resp = await client.get(url)
        return resp.status_code, resp.text


def uvicorn_start(*, fd: bool = False) -> list[Shape]:
    """Where uvicorn's ``Server.serve`` started the server: its ``create_server`` line in ``startup()``
    for the sockets it was given (:func:`uvicorn_server`), or for ``--fd`` with ``fd``, then its frames
    out to ``serve()``."""
    from uvicorn import server

    return [
        (
            "startup",
            source_line(
                server.Server.startup,
                "server = await loop.create_server(create_protocol, sock=sock,",
                nth=1 if fd else 0,
            ),
            "server.py",
            False,
        ),
        ("_serve", source_line(server.Server._serve, "await self.startup(sockets=sockets)"), "server.py", False),
        ("serve", source_line(server.Server.serve, "await self._serve(sockets)"), "server.py", False),
    ]


def connection_tail(serve_line: int, filename: str, root: str = "main") -> list[Shape]:
    """The chain of a request served by :func:`uvicorn_server` (h11), from the protocol's
    ``data_received`` out: the line that started the server (:func:`uvicorn_start`), the serving
    task, the test's ``async with uvicorn_server(...)`` line (``serve_line`` in ``filename``, in a
    function named like the root task) and the root."""
    from uvicorn.protocols.http import h11_impl

    return [
        (
            "data_received",
            source_line(h11_impl.H11Protocol.data_received, "self.handle_events()"),
            "h11_impl.py",
            False,
        ),
        *uvicorn_start(),
        ("uvicorn_server", source_line(uvicorn_server, "serving = asyncio.create_task("), "apps.py", False),
        ("__aenter__", None, "contextlib.py", False),
        (root, serve_line, filename, False),
        (root, None, None, False),
    ]
