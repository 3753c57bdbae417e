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
import contextlib
from typing import Any

import pytest

import async_trace
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


# --- the server hop -------------------------------------------------------------------


async def serve_later(out: dict[str, Any], how: str) -> None:
    """A server made with ``start_serving=False``, started by ``start_serving()`` or ``serve_forever()``."""
    seen: list[TraceData] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(collect_async_trace())
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, start_serving=False)  # made
    port = server.sockets[0].getsockname()[1]
    forever: asyncio.Task[None] | None = None
    if how == "start_serving":
        await server.start_serving()  # started
    else:
        forever = asyncio.create_task(server.serve_forever())  # forever
        await asyncio.sleep(0)
    for _ in range(2):  # two connections: one chain
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    if forever is not None:
        forever.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forever
    server.close()
    await server.wait_closed()
    out["seen"] = seen


@ON_BOTH_LOOPS
@pytest.mark.parametrize("how", ["start_serving", "serve_forever"])
def test_a_server_started_later_chains_to_where_it_started_listening(loop: str, how: str) -> None:
    """asyncio's own loop starts listening at ``start_serving()`` / ``serve_forever()``: that line;
    uvloop's hop is taken at ``create_server``: the ``start_server`` line. Every connection alike."""
    out: dict[str, Any] = {}

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        await serve_later(out, how)  # serve

    run_on(loop, main())
    first, second = out["seen"]
    # serve_forever() runs in a task of its own, whose frames are asyncio's: the line that created it.
    started = "made" if loop == "uvloop" else "started" if how == "start_serving" else "forever"
    assert shape(first)[1:] == [
        ("serve_later", line_of(serve_later, started), HERE, False),
        ("main", line_of(main, "serve"), HERE, False),
        ("main", None, None, False),
    ]
    assert shape(second) == shape(first)


def test_the_starting_task_keeps_its_own_context() -> None:
    """create_server leaves the calling task's node as it was: what it creates afterwards hangs under it,
    and a ``call_soon`` from it still runs under it, with no server hop between."""
    out: dict[str, Any] = {}

    async def child() -> None:
        out["child"] = collect_async_trace()  # capture

    def callback() -> None:
        out["callback"] = collect_async_trace()
        out["done"].set()

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        async with server:
            await asyncio.create_task(child())  # child
            out["done"] = asyncio.Event()
            asyncio.get_running_loop().call_soon(callback)  # call_soon
            await out["done"].wait()

    asyncio.run(main())
    assert shape(out["child"]) == [
        ("child", line_of(child, "capture"), HERE, False),
        ("main", line_of(main, "child"), HERE, False),
        ("main", None, None, False),
    ]
    # The callback's own frame, down to the loop, then the task whose context scheduled it.
    assert shape(out["callback"])[1:] == [("main", None, None, False)]


@ON_BOTH_LOOPS
def test_a_unix_server_chains_to_its_line(loop: str, tmp_path: Any) -> None:
    out: dict[str, Any] = {}
    path = str(tmp_path / "s.sock")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out["trace"] = collect_async_trace()  # capture
        writer.close()

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        server = await asyncio.start_unix_server(handler, path)  # start
        async with server:
            reader, writer = await asyncio.open_unix_connection(path)
            await asyncio.wait_for(reader.read(), TIMEOUT)
            writer.close()

    run_on(loop, main())
    assert shape(out["trace"]) == [
        ("handler", line_of(handler, "capture"), HERE, False),
        ("main", line_of(main, "start"), HERE, False),
        ("main", None, None, False),
    ]


def test_off_while_serving_then_on_again() -> None:
    """A server started while tracing is on serves untraced after ``disable_tracing()``, traced again after."""
    out: dict[str, Any] = {"traces": []}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out["traces"].append(collect_async_trace())
        writer.close()

    async def connect(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            async_trace.disable_tracing()
            try:
                await connect(port)
            finally:
                async_trace.enable_tracing()
            await connect(port)

    asyncio.run(main())
    untraced, traced = out["traces"]
    # Made while tracing was off: a root of its own (no server hop while off).
    assert [f["line"] is None for f in untraced["frames"]] == [False, True]
    assert [f["name"] for f in traced["frames"]] == ["handler", "main", "main"]  # the start_server line


@ON_BOTH_LOOPS
def test_task_tree_hangs_the_handler_under_the_task_that_started_the_server(loop: str) -> None:
    """The server hop is passed over in ``task_tree()``: the handler hangs under the task that started the
    server (on asyncio's loop through asyncio's accepting task, still live here, as before), its
    ``created_at`` holds no line of the server's start (on both loops alike)."""
    out: dict[str, Any] = {}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out["tree"] = async_trace.task_tree()
        out["task"] = asyncio.current_task()
        writer.close()

    async def serving() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)  # start
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.wait_for(reader.read(), TIMEOUT)
            writer.close()

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        await asyncio.create_task(serving(), name="server")

    run_on(loop, main())
    tree = out["tree"]
    path: list[Any] = []

    def find(info: Any, above: list[Any]) -> None:
        if info.task is out["task"]:
            path.extend([*above, info])
        for child in info.children:
            find(child, [*above, info])

    for root in tree.roots:
        find(root, [])
    # An unnamed task by its coroutine's name: asyncio's accepting task.
    names = [coro_name(info) if (info.name or "").startswith("Task-") else info.name for info in path]
    accepting = ["_accept_connection2"] if loop == "asyncio" else []
    assert names[:-1] == ["main", "server", *accepting]
    assert all(f["line"] != line_of(serving, "start") for f in path[-1].created_at)


def coro_name(info: Any) -> str:
    return info.task.get_coro().__name__ if info.task is not None else "<finished>"
