"""uvicorn, in-process and as ``python -m uvicorn``: the exact task tree and dump with requests in flight.

A plain ASGI app (no framework frames to pin) serves two requests that stay
in flight while the tree is taken: one awaits an ``asyncio.Event``, one waits
in ``asyncio.to_thread`` on a ``threading.Event``. Each request task hangs
directly under the task serving it: no ``<finished task>`` placeholder for
asyncio's own accept task, no frame of the code that started the loop.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import socket
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, collect_async_trace

from . import apps
from .apps import TIMEOUT, free_socket, shape, source_line, uvicorn_server
from .helpers import line_of

uvicorn = pytest.importorskip("uvicorn")
server_mod = pytest.importorskip("uvicorn.server")
h11_impl = pytest.importorskip("uvicorn.protocols.http.h11_impl")
proxy_headers = pytest.importorskip("uvicorn.middleware.proxy_headers")

HERE = "test_apps_uvicorn.py"


class InFlight:
    """Two requests held in flight: ``/event`` on an asyncio.Event, ``/thread`` on a threading.Event."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.gate = threading.Event()
        self.in_thread = threading.Event()
        self.arrived: set[str] = set()

    def blocking(self) -> bytes:
        self.in_thread.set()
        self.gate.wait(TIMEOUT)  # thread-waits
        return b"thread"

    def make_app(self) -> Any:
        """The ASGI 3 app (a plain function: uvicorn takes a bound method for ASGI 2)."""
        flight = self

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            path = scope["path"]
            asyncio.current_task().set_name(f"request {path}")  # type: ignore[union-attr]
            flight.arrived.add(path)
            if path == "/event":
                await flight.release.wait()  # event-waits
                body = b"event"
            else:
                body = await asyncio.to_thread(flight.blocking)  # to-thread
            headers = [(b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return app


async def client(port: int, path: str) -> bytes:
    """A raw HTTP/1.1 GET over asyncio streams (no client library frames in the tree)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    try:
        return await reader.read()  # client-reads
    finally:
        writer.close()


async def hold_two_requests(out: dict[str, Any]) -> None:
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    flight = InFlight()
    async with uvicorn_server(flight.make_app()) as url:  # serve
        port = int(url.rsplit(":", 1)[1])
        clients = [
            asyncio.create_task(client(port, "/event"), name="client /event"),  # client-event
            asyncio.create_task(client(port, "/thread"), name="client /thread"),  # client-thread
        ]
        try:
            for _ in range(int(TIMEOUT / 0.01)):
                if flight.in_thread.is_set() and flight.arrived == {"/event", "/thread"}:
                    break
                await asyncio.sleep(0.01)
            assert flight.in_thread.is_set()
            assert flight.arrived == {"/event", "/thread"}
            await asyncio.sleep(0.05)  # both request tasks now wait where the test expects
            out["tree"] = async_trace.task_tree()  # tree
            out["lines"] = async_trace.format_task_tree(out["tree"])
            dump = io.StringIO()
            async_trace.dump_tasks(dump)  # dump
            out["dump"] = dump.getvalue()
            out["loop"] = asyncio.get_running_loop()
        finally:
            flight.release.set()
            flight.gate.set()
            done, _ = await asyncio.wait(clients, timeout=TIMEOUT)
        assert done == set(clients)
        out["bodies"] = [c.result().split(b"\r\n\r\n", 1)[-1] for c in clients]


_RESETS = "reset_contextvars" in inspect.signature(uvicorn.Config).parameters


@pytest.mark.skipif(not _RESETS, reason="this uvicorn has no reset_contextvars option (0.54+)")
@pytest.mark.xfail(
    sys.version_info < (3, 11),
    reason="3.10 has no create_task(context=): uvicorn calls create_task inside an empty Context, where no node"
    " is, so each request task is a root (its server and connection are not in its chain)",
    strict=True,
)
@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_reset_contextvars_keeps_the_request_chain(http: str) -> None:
    """``reset_contextvars=True`` hands each request task an empty Context (``create_task(..., context=)``):
    its trace is the one it has without the option, but for the line that created it."""
    pytest.importorskip(http)

    async def one(reset: bool) -> list[tuple[str, int | None]]:
        seen: list[TraceData] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.append(collect_async_trace())
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        async with uvicorn_server(app, http=http, reset_contextvars=reset) as url:  # serves
            assert (await client(int(url.rsplit(":", 1)[1]), "/")).endswith(b"ok")
        (trace,) = seen
        return [(f["name"], f["line"]) for f in trace["frames"]]

    async def main() -> tuple[list[tuple[str, int | None]], list[tuple[str, int | None]]]:
        return await one(False), await one(True)

    plain, reset = asyncio.run(main())
    if http == "h11":
        where, made = h11_impl.H11Protocol.handle_events, "task = self.loop.create_task(self.cycle.run_asgi(app)"
    else:
        from uvicorn.protocols.http import httptools_impl

        where = httptools_impl.HttpToolsProtocol._start_asgi_task
        made = "task = self.loop.create_task(cycle.run_asgi(app)"
    with_context, without = source_line(where, made + ", context="), source_line(where, made + ")")
    made_at = (where.__name__, without)
    assert made_at in plain
    assert reset == [(name, with_context if (name, line) == made_at else line) for name, line in plain]
    # Both hang under the task serving them, started in uvicorn_server(), and under the one that started it.
    assert ("uvicorn_server", source_line(apps.uvicorn_server, "serving = ")) in plain
    assert ("one", line_of(one, "serves")) in plain


def _src(func: Any, marker: str) -> int:
    return line_of(func, marker)


#: The middleware's call for a trusted client (127.0.0.1); the first one is for others.
_PROXY_LINE = source_line(proxy_headers.ProxyHeadersMiddleware.__call__, "return await self.app(", nth=1)
_RUN_ASGI_LINE = source_line(h11_impl.RequestResponseCycle.run_asgi, "result = await app(")
_APP_EVENT_LINE = source_line(InFlight.make_app, "await flight.release.wait()")
_APP_THREAD_LINE = source_line(InFlight.make_app, "body = await asyncio.to_thread(")


def _expected_tree(main_line: int, *, live: int) -> list[str]:
    # The default output: library frames by package path, runs of them collapsed.
    h11 = "uvicorn/protocols/http/h11_impl.py"
    handle = source_line(h11_impl.H11Protocol.handle_events, "task = self.loop.create_task(self.cycle.run_asgi(app))")
    server = server_mod.Server
    main_loop = source_line(server.main_loop, "await asyncio.sleep(0.1)")
    request_frames = ["↑ … 2 library frames (uvicorn)"]  # __call__ (proxy headers), run_asgi
    reads = _src(client, "client-reads")
    serving = source_line(apps.uvicorn_server, "serving = ")
    client_event = _src(hold_two_requests, "client-event")
    client_thread = _src(hold_two_requests, "client-thread")
    return [
        f"Task tree ({live} live tasks):\n",
        "main (running)\n",
        f"│   ↑ hold_two_requests() at line {main_line} [{HERE}]\n",
        f"├── uvicorn (pending) ← uvicorn_server() at line {serving} [apps.py]\n",
        f"│   │   ↑ main_loop() at line {main_loop} [uvicorn/server.py]\n",
        "│   │   ↑ … 2 library frames (uvicorn)\n",  # _serve, serve
        f"│   ├── request /event (pending) ← handle_events() at line {handle} [{h11}]\n",
        f"│   │       ↑ app() at line {_APP_EVENT_LINE} [{HERE}]\n",
        *(f"│   │       {line}\n" for line in request_frames),
        f"│   └── request /thread (pending) ← handle_events() at line {handle} [{h11}]\n",
        f"│           ↑ app() at line {_APP_THREAD_LINE} [{HERE}]\n",
        *(f"│           {line}\n" for line in request_frames),
        "│           executor thread 'asyncio_0':\n",
        f"│             ↑ blocking() at line {_src(InFlight.blocking, 'thread-waits')} [{HERE}]\n",
        f"├── client /event (pending) ← hold_two_requests() at line {client_event} [{HERE}]\n",
        f"│       ↑ client() at line {reads} [{HERE}]\n",
        f"└── client /thread (pending) ← hold_two_requests() at line {client_thread} [{HERE}]\n",
        f"        ↑ client() at line {reads} [{HERE}]\n",
    ]


def test_tree_and_dump_with_two_requests_in_flight() -> None:
    out: dict[str, Any] = {}
    asyncio.run(hold_two_requests(out))
    assert out["bodies"] == [b"event", b"thread"]
    assert out["lines"] == _expected_tree(_src(hold_two_requests, "tree"), live=6)
    dump = out["dump"]
    loop = out["loop"]
    expected_dump = [
        "Async task dump: 1 running event loop\n",
        f"\nLoop {type(loop).__name__} at {id(loop):#x} in thread {threading.current_thread().name!r}:\n",
        *_expected_tree(_src(hold_two_requests, "dump"), live=6),
    ]
    assert dump == "".join(expected_dump), dump

    tree = out["tree"]
    uvicorn_task = tree.find("uvicorn")
    assert uvicorn_task is not None
    # The request tasks are the uvicorn task's children, not a placeholder's.
    assert [(c.name, c.state, c.origin) for c in uvicorn_task.children] == [
        ("request /event", "pending", "traced"),
        ("request /thread", "pending", "traced"),
    ]
    assert all(info.state != "finished" for _, info in tree.walk())
    handle = source_line(h11_impl.H11Protocol.handle_events, "task = self.loop.create_task(self.cycle.run_asgi(app))")
    received = source_line(h11_impl.H11Protocol.data_received, "self.handle_events()")
    for child in uvicorn_task.children:
        assert [(f["name"], f["line"], os.path.basename(f["filename"] or "")) for f in child.created_at] == [
            ("handle_events", handle, "h11_impl.py"),
            ("data_received", received, "h11_impl.py"),
        ]
        assert child.created_at[0]["task"] is child.task
    (thread,) = uvicorn_task.children[1].executor_threads
    assert thread.name == "asyncio_0"
    assert [(f["name"], f["line"]) for f in thread.frames] == [
        ("blocking", _src(InFlight.blocking, "thread-waits")),
    ]
    assert uvicorn_task.children[0].executor_threads == ()


# --- uvicorn.Server(config).serve() in asyncio.run: the serving task is the root ---------------


def _request_chain() -> list[tuple[str, int | None, str | None, bool]]:
    return [
        ("__call__", _PROXY_LINE, "proxy_headers.py", False),
        ("run_asgi", source_line(h11_impl.RequestResponseCycle.run_asgi, "result = await app("), "h11_impl.py", False),
        (
            "handle_events",
            source_line(h11_impl.H11Protocol.handle_events, "task = self.loop.create_task(self.cycle.run_asgi(app))"),
            "h11_impl.py",
            False,
        ),
        (
            "data_received",
            source_line(h11_impl.H11Protocol.data_received, "self.handle_events()"),
            "h11_impl.py",
            False,
        ),
    ]


def _get(port: int, results: list[Any]) -> None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=TIMEOUT) as resp:
            results.append(resp.read())
    except Exception as exc:  # reported by the test
        results.append(exc)


def test_server_serve_in_asyncio_run_hangs_requests_under_the_root() -> None:
    seen: dict[str, Any] = {}
    server: Any = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["trace"] = collect_async_trace()  # capture
        seen["tree"] = async_trace.task_tree()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        server.should_exit = True

    async def serve(sock: socket.socket) -> None:
        asyncio.current_task().set_name("serving")  # type: ignore[union-attr]
        await server.serve(sockets=[sock])  # serve

    sock = free_socket()
    config = uvicorn.Config(app, log_level="error", lifespan="off", http="h11", ws="none", access_log=False)
    server = uvicorn.Server(config)
    results: list[Any] = []
    getter = threading.Thread(target=_get, args=(sock.getsockname()[1], results))
    getter.start()
    try:
        asyncio.run(serve(sock))
    finally:
        server.should_exit = True
        getter.join(TIMEOUT)
        sock.close()
    assert results == [b"ok"]
    trace: TraceData = seen["trace"]
    assert shape(trace) == [
        ("app", line_of(app, "capture"), HERE, False),
        *_request_chain(),
        *apps.uvicorn_start(),
        ("serve", line_of(serve, "serve"), HERE, False),
        ("serving", None, None, False),
    ]
    tree = seen["tree"]
    (root,) = tree.roots
    assert (root.name, root.state, root.origin) == ("serving", "pending", "root")
    request = trace["current_task"]
    assert request is not None
    assert [(c.name, c.state, c.origin) for c in root.children] == [(request.get_name(), "running", "traced")]
    assert all(info.state != "finished" for _, info in tree.walk())


# --- python -m async_trace -m uvicorn ---------------------------------------------------------------

APP = """\
import asyncio
import json
import os
import signal
import sys

import async_trace


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    asyncio.current_task().set_name("request")
    trace = async_trace.collect_async_trace()  # capture
    tree = async_trace.format_task_tree()  # tree
    out = {
        "trace": [[f["name"], f["line"], f["filename"] and os.path.basename(f["filename"])] for f in trace["frames"]],
        "tree": tree,
        "loop": type(asyncio.get_running_loop()).__module__,
    }
    with open(os.environ["OUT_FILE"], "w", encoding="utf-8") as f:
        json.dump(out, f)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
    os.kill(os.getpid(), signal.SIGINT)
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_python_m_uvicorn_under_async_trace(tmp_path: Path, loop: str) -> None:
    """``python -m async_trace -m uvicorn app:app``: the request's chain ends at the serving root task."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    import json
    import subprocess

    (tmp_path / "traced_app.py").write_text(APP, encoding="utf-8")
    out_file = tmp_path / "out.json"
    sock = free_socket()
    sock.setblocking(True)
    port = sock.getsockname()[1]
    env = {
        **os.environ,
        "OUT_FILE": str(out_file),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "PYTHONIOENCODING": "utf-8",
    }
    args = [sys.executable, "-m", "async_trace", "-m", "uvicorn", "traced_app:app", "--fd", str(sock.fileno())]
    args += ["--log-level", "error", "--lifespan", "off", "--http", "h11", "--ws", "none", "--loop", loop]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, pass_fds=(sock.fileno(),), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        results: list[Any] = []
        _get(port, results)
        _, stderr = proc.communicate(timeout=TIMEOUT * 3)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sock.close()
    assert results == [b"ok"], (results, stderr)
    assert proc.returncode == 0, stderr
    got = json.loads(out_file.read_text(encoding="utf-8"))
    app_line = next(i for i, text in enumerate(APP.splitlines(), 1) if "# capture" in text)
    tree_line = next(i for i, text in enumerate(APP.splitlines(), 1) if "# tree" in text)
    assert got["loop"].startswith("uvloop" if loop == "uvloop" else "asyncio"), got["loop"]
    assert [tuple(f) for f in got["trace"]] == [
        ("app", app_line, "traced_app.py"),
        *((n, line, b) for n, line, b, _ in [*_request_chain(), *apps.uvicorn_start(fd=True)]),
        ("Task-1", None, None),
    ]
    handle = source_line(h11_impl.H11Protocol.handle_events, "task = self.loop.create_task(self.cycle.run_asgi(app))")
    server = server_mod.Server
    assert got["tree"] == [
        "Task tree (2 live tasks):\n",
        "Task-1 (pending)\n",
        f"│   ↑ main_loop() at line {source_line(server.main_loop, 'await asyncio.sleep(0.1)')} [uvicorn/server.py]\n",
        "│   ↑ … 2 library frames (uvicorn)\n",  # _serve, serve
        f"└── request (running) ← handle_events() at line {handle} [uvicorn/protocols/http/h11_impl.py]\n",
        f"        ↑ app() at line {tree_line} [traced_app.py]\n",
        "        ↑ … 2 library frames (uvicorn)\n",  # __call__ (proxy headers), run_asgi
    ]
    text = "".join(got["tree"]) + stderr.decode("utf-8", "replace")
    for absent in ("<finished task>", "runpy", "runners.py", "main.py", "_compat.py", "core.py"):
        assert absent not in text, text
