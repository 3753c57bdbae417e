"""``asyncio.start_server``'s connection tasks on both loops: the chain runs through the line that
started the server, and stops at the event loop.

asyncio's streams make the handler's task in ``StreamReaderProtocol.connection_made``, a
callback run under the server's node: the ``start_server`` line, then the chain of the task that
ran it. On uvloop the callback runs from C, with no ``Handle._run`` frame where the trace would
stop: the capture walks on through ``asyncio.run`` to the code that started the loop. Those frames
are never shown: the handler's chain is the same on both loops.
"""

from __future__ import annotations

import asyncio
from typing import Any

from async_trace import TraceData, collect_async_trace

from .apps import ON_BOTH_LOOPS, TIMEOUT, run_on, shape
from .helpers import line_of

HERE = "test_start_server_callbacks.py"


async def serve_once(out: dict[str, Any]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out["handler"] = collect_async_trace()  # capture
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # start
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    out["handler_line"] = line_of(handler, "capture")


async def main(out: dict[str, Any]) -> None:
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    await asyncio.create_task(serve_once(out), name="server")  # spawn


def started_by_the_program(loop: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    run_on(loop, main(out))  # the code that started the loop: never in a chain
    return out


@ON_BOTH_LOOPS
def test_handler_chain_stops_at_the_event_loop(loop: str) -> None:
    out = started_by_the_program(loop)
    trace: TraceData = out["handler"]
    assert shape(trace) == [
        ("handler", out["handler_line"], HERE, False),
        ("serve_once", line_of(serve_once, "start"), HERE, False),
        ("main", line_of(main, "spawn"), HERE, False),
        ("main", None, None, False),
    ]
