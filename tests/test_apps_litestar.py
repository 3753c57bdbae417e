"""Litestar on uvicorn, in-process on 127.0.0.1, driven by httpx: async and ``sync_to_thread`` handlers.

Litestar runs a sync handler (``sync_to_thread=True``) with ``loop.run_in_executor`` in a copy
of the task's context: the hop is marked ``[EXECUTOR]`` at Litestar's ``_run_sync_asyncio``.
A handler's fire-and-forget task that fails names the handler's line. Litestar answers the same
untraced.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, collect_async_trace, exception_trace

from .apps import ON_BOTH_LOOPS, TIMEOUT, Shape, connection_tail, run_on, shape, source_line, uvicorn_server
from .helpers import line_of

litestar = pytest.importorskip("litestar")
litestar_concurrency = pytest.importorskip("litestar.concurrency")
httpx = pytest.importorskip("httpx")
h11_impl = pytest.importorskip("uvicorn.protocols.http.h11_impl")

HERE = "test_apps_litestar.py"
seen: dict[str, Any] = {}


async def notify(user: str) -> None:
    await asyncio.sleep(0)
    raise ConnectionError(f"could not notify {user}")


async def async_handler() -> dict[str, Any]:
    seen["async"] = collect_async_trace()  # capture-async
    asyncio.create_task(notify("ann"))  # fire-and-forget
    return {"handler": "async", "in_loop": threading.current_thread() is threading.main_thread()}


def sync_handler() -> dict[str, Any]:
    seen["sync"] = collect_async_trace()  # capture-sync
    return {"handler": "sync", "in_loop": threading.current_thread() is threading.main_thread()}


def make_app() -> Any:
    routes = [litestar.get("/async")(async_handler), litestar.get("/sync", sync_to_thread=True)(sync_handler)]
    return litestar.Litestar(routes, logging_config=None)


async def main(paths: list[str], out: dict[str, Any]) -> None:
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
    async with uvicorn_server(make_app()) as url, httpx.AsyncClient(timeout=TIMEOUT) as client:  # serve
        for p in paths:
            resp = await client.get(url + p)
            out[p] = (resp.status_code, resp.json())
        for _ in range(int(TIMEOUT / 0.01)):  # the failed task is reported when it is freed
            if reported or "/async" not in paths:
                break
            await asyncio.sleep(0.01)
    out["reported"] = reported


def _serve(paths: list[str], loop: str) -> dict[str, Any]:
    seen.clear()
    out: dict[str, Any] = {}
    run_on(loop, main(paths, out))
    return out


def _tail() -> list[Shape]:
    return [
        ("run_asgi", source_line(h11_impl.RequestResponseCycle.run_asgi, "result = await app("), "h11_impl.py", False),
        ("handle_events", None, "h11_impl.py", False),
        *connection_tail(line_of(main, "serve"), HERE),
    ]


#: Litestar awaits a sync handler's thread here.
_HOP: Shape = (
    "_run_sync_asyncio",
    source_line(litestar_concurrency._run_sync_asyncio, "return await asyncio.get_running_loop().run_in_executor("),
    "concurrency.py",
    True,
)


def _check(trace: TraceData, head: list[Shape], hop: Shape | None) -> None:
    """``head``, Litestar's and uvicorn's frames only (the one hop where it is), then the tail."""
    pinned = {HERE, "apps.py", "h11_impl.py", "server.py"}  # uvicorn's pinned by the tail, handle_events' aside
    got = [(n, line if e or (b in pinned and n != "handle_events") else None, b, e) for n, line, b, e in shape(trace)]
    tail = _tail()
    assert got[: len(head)] == head
    assert got[-len(tail) :] == tail
    middle = trace["frames"][len(head) : -len(tail)]
    assert all(any(f"{os.sep}{d}{os.sep}" in (f["filename"] or "") for d in ("litestar", "uvicorn")) for f in middle)
    assert [row for row in got if row[3]] == ([hop] if hop else [])
    assert trace["in_executor"] is (hop is not None)


@ON_BOTH_LOOPS
def test_async_handler_reaches_the_root_and_its_failed_task_names_the_handler(loop: str) -> None:
    out = _serve(["/async"], loop)
    assert out["/async"] == (200, {"handler": "async", "in_loop": True})
    _check(seen["async"], [("async_handler", line_of(async_handler, "capture-async"), HERE, False)], None)
    (context,) = out["reported"]
    assert context["message"] == "Task exception was never retrieved"
    origin = exception_trace(context["exception"])
    assert origin is not None
    _check(origin, [("async_handler", line_of(async_handler, "fire-and-forget"), HERE, False)], None)
    assert origin["current_task"] is context["future"]


@ON_BOTH_LOOPS
def test_sync_handler_is_a_hop_at_litestars_await(loop: str) -> None:
    out = _serve(["/sync"], loop)
    assert out["/sync"] == (200, {"handler": "sync", "in_loop": False})
    _check(seen["sync"], [("sync_handler", line_of(sync_handler, "capture-sync"), HERE, False), _HOP], _HOP)


def test_litestar_answers_the_same_untraced() -> None:
    paths = ["/async", "/sync"]
    traced = _serve(paths, "asyncio")
    async_trace.disable_tracing()
    try:
        plain = _serve(paths, "asyncio")
    finally:
        async_trace.enable_tracing()
    assert {p: traced[p] for p in paths} == {p: plain[p] for p in paths}
    assert [repr(c["exception"]) for c in traced["reported"]] == [repr(c["exception"]) for c in plain["reported"]]


#: The versions the page's sample was printed with: with these installed the output must match exactly.
SAMPLE_VERSIONS = ("2.25.0", "0.55.0")


def test_the_docs_sample_prints_what_the_page_shows(tmp_path: Any) -> None:
    """docs/real-applications.md's Litestar app, run as is (uvicorn on port 0, real httpx requests)."""
    from importlib.metadata import version

    import uvicorn

    from .doc_blocks import doc_block
    from .helpers import run_python

    (tmp_path / "app.py").write_text(doc_block("litestar-source", "app.py"), encoding="utf-8")
    result = run_python("app.py", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = doc_block("litestar-output", "app.py")
    if (version("litestar"), uvicorn.__version__) == SAMPLE_VERSIONS:
        assert result.stdout == expected
    ours = ("[app.py]", "[EXECUTOR]", "↑ Task-1", "ok")
    assert [line.strip() for line in result.stdout.splitlines() if line.endswith(ours)] == [
        line.strip() for line in expected.splitlines() if line.endswith(ours)
    ]
