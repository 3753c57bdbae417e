"""Requests on one connection belong to the connection: uvicorn keep-alive and pipelining, h11 and httptools.

uvicorn pauses reading for a body past its high-water mark and resumes it from the request's own
task, so the protocol's next ``data_received`` runs in that task's context (python/cpython#140947);
with pipelined requests it starts request N+1 from inside request N's ``send()``. Either way the
next request would claim the one before it as its creator. Every request's chain and its place in
``task_tree()`` must be those of the first request on the connection.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import httpx
import pytest

from async_trace import TaskTree, collect_async_trace, task_tree

from .apps import ON_BOTH_LOOPS, TIMEOUT, run_on, uvicorn_server

PROTOCOLS = pytest.mark.parametrize(
    "http",
    [
        "h11",
        pytest.param(
            "httptools",
            marks=pytest.mark.skipif(importlib.util.find_spec("httptools") is None, reason="needs httptools"),
        ),
    ],
)

#: What each request saw: the client's port, the body length, its chain's (function, line, file)
#: rows and the id of the entry it hangs under in the task tree.
Seen = tuple[Any, int, list[tuple[str, "int | None", "str | None"]], "int | None"]


def _parent_in(tree: TaskTree, task: Any) -> int | None:
    for _, info in tree.walk():
        for child in info.children:
            if child.task is task:
                return id(info.task) if info.task is not None else hash(info.created_at)
    return None


def make_app(seen: list[Seen]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        trace = collect_async_trace()
        rows = [(f["name"], f["line"], f["filename"]) for f in trace["frames"][:-1]]  # the root's name aside
        seen.append((scope["client"][1], size, rows, _parent_in(task_tree(), asyncio.current_task())))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


Rows = list[tuple[str, "int | None", "str | None"]]


def _parts(rows: Rows) -> tuple[Rows, Rows, Rows]:
    """The request's own frames (to ``run_asgi``), the protocol's creating frames, the connection's chain."""
    own = next(i for i, row in enumerate(rows) if row[0] == "run_asgi") + 1
    end = own
    while end < len(rows) and (rows[end][2] or "").endswith(("h11_impl.py", "httptools_impl.py")):
        end += 1
    return rows[:own], rows[own:end], rows[end:]


def _same(seen: list[Seen], count: int) -> None:
    """One connection; every request's own frames, creating line, chain above and tree place equal.

    The protocol's methods between the creating line and the connection may differ: the first
    request is created from ``data_received``, a pipelined one from the protocol's method that the
    request before it called to finish its response (httptools: one frame fewer, its parser is C).
    """
    assert len(seen) == count
    ports = {port for port, *_ in seen}
    assert len(ports) == 1  # one connection
    first = _parts(seen[0][2])
    assert first[1]  # the protocol's creating line
    assert seen[0][3] is not None
    for _, _, rows, parent in seen[1:]:
        later = _parts(rows)
        assert (later[0], later[1][0], later[2], parent) == (first[0], first[1][0], first[2], seen[0][3])
    # Nothing grows with the requests before: from the second request on, every chain is as long.
    assert len({len(rows) for _, _, rows, _ in seen[1:]}) == 1


@ON_BOTH_LOOPS
@PROTOCOLS
def test_keep_alive_requests_with_bodies_all_hang_under_the_connection(loop: str, http: str) -> None:
    """Six 300 KB POSTs on one keep-alive connection: six equal chains and tree places."""
    seen: list[Seen] = []

    async def main() -> None:
        async with (
            uvicorn_server(make_app(seen), http=http) as url,
            httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=TIMEOUT) as client,
        ):
            for _ in range(6):
                response = await client.post(url + "/", content=b"x" * 300_000)
                assert response.status_code == 200

    run_on(loop, main())
    assert {size for _, size, *_ in seen} == {300_000}
    _same(seen, 6)


@ON_BOTH_LOOPS
@PROTOCOLS
def test_pipelined_requests_all_hang_under_the_connection(loop: str, http: str) -> None:
    """Five GETs written at once on one connection (uvicorn starts each from the one before): equal chains."""
    seen: list[Seen] = []

    async def main() -> None:
        async with uvicorn_server(make_app(seen), http=http) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 5)
            await writer.drain()
            got = b""
            while got.count(b"HTTP/1.1 200") < 5:
                chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT)
                assert chunk, got
                got += chunk
            writer.close()
            await writer.wait_closed()

    run_on(loop, main())
    _same(seen, 5)
