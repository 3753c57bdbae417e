"""The stall watchdog on real servers: FastAPI on uvicorn and aiohttp, asyncio and uvloop, real clients.

Each test starts the server, warms it up with one request, then starts a watch (threshold 0.15 s)
and sends two requests that only await (in flight during the stall) and one to a handler that
blocks the loop for 0.3 s: ``time.sleep``, a CPU loop, or waiting on a ``threading.Lock`` another
thread holds. The watch must give exactly one report, naming the blocking handler's line, its
request's task and that task's chain to the test's server, the kind, and a duration within
half a heartbeat interval (plus scheduling slack on a loaded machine) of 0.3 s.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from async_trace import StallReport, watch_stalls

from . import apps
from .apps import ON_BOTH_LOOPS, run_on, source_line
from .helpers import automatic_gc_off, line_of

fastapi = pytest.importorskip("fastapi")
h11_impl = pytest.importorskip("uvicorn.protocols.http.h11_impl")
web = pytest.importorskip("aiohttp.web")


@pytest.fixture(autouse=True)
def _no_automatic_gc() -> Iterator[None]:
    """Every test here counts its reports: a collection of the suite's heap inside a window would be one more."""
    with automatic_gc_off():
        yield


HERE = "test_stall_apps.py"
THRESHOLD = 0.15
BLOCK = 0.3
#: How far a duration may be from BLOCK: half the heartbeat interval, plus slack for a loaded machine.
TOLERANCE_BELOW = THRESHOLD / 8 + 0.02
TOLERANCE_ABOVE = THRESHOLD / 8 + 0.2

#: Held by a thread while the ``lock`` handler waits for it.
LOCK = threading.Lock()


def hold_lock(ready: threading.Event) -> None:
    with LOCK:
        ready.set()
        time.sleep(BLOCK + 0.1)  # holder


def block(how: str) -> None:
    """Block the calling (loop) thread for about BLOCK seconds, the way ``how`` says."""
    if how == "sleep":
        time.sleep(BLOCK)  # blocks
    elif how == "cpu":
        end = time.monotonic() + BLOCK
        while time.monotonic() < end:  # spins
            pass
    else:
        ready = threading.Event()
        threading.Thread(target=hold_lock, args=(ready,), name="holder", daemon=True).start()
        assert ready.wait(5)
        with LOCK:  # waits
            pass


MARKERS = {"sleep": "blocks", "cpu": "spins", "lock": "waits"}
KINDS = {"sleep": "blocking", "cpu": "blocking", "lock": "waiting"}


async def exercise(url: str, client: str, how: str) -> list[StallReport]:
    """Warm up, then under a watch: two requests that await and one that blocks; the reports.

    The client is made before the watch starts: making an ``httpx.AsyncClient`` loads the CA
    certificates on the loop, itself a stall of 0.1-0.2 s on a loaded machine (the watchdog
    reported it here before the client moved out).
    """
    if client == "httpx":
        import httpx

        async with httpx.AsyncClient(timeout=apps.TIMEOUT) as session:

            async def get(path: str) -> int:
                return (await session.get(url + path)).status_code

            return await _under_watch(get, how)
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(apps.TIMEOUT)) as http:

        async def get_aiohttp(path: str) -> int:
            async with http.get(url + path) as resp:
                await resp.read()
                return resp.status

        return await _under_watch(get_aiohttp, how)


async def _under_watch(get: Callable[[str], Awaitable[int]], how: str) -> list[StallReport]:
    assert await get("/ok") == 200
    reports: list[StallReport] = []
    with watch_stalls(THRESHOLD, on_stall=reports.append, log=False, dedup_interval=0):
        await asyncio.sleep(0.1)
        statuses = await asyncio.gather(get("/ok"), get("/ok"), get(f"/block/{how}"))
        assert list(statuses) == [200, 200, 200]
        await asyncio.sleep(0.3)  # the watchdog reports within an interval of the loop running again
    return reports


def check_report(reports: list[StallReport], how: str, tasks: dict[str, list[Any]], handler_line: int) -> StallReport:
    assert len(reports) == 1, reports
    report = reports[0]
    assert report.kind == KINDS[how]
    assert report.ongoing is False
    assert BLOCK - TOLERANCE_BELOW <= report.duration <= BLOCK + TOLERANCE_ABOVE, report.duration
    assert report.threshold == THRESHOLD
    # The blocking stack: block()'s line, then the handler's line that called it.
    top = (report.stack[0]["name"], report.stack[0]["line"], os.path.basename(report.stack[0]["filename"] or ""))
    line = line_of(block, MARKERS[how])
    # A CPU loop is sampled on its ``while`` line or on its body's.
    lines = (line, line + 1) if how == "cpu" else (line,)
    assert top in [("block", n, HERE) for n in lines]
    assert report.source == f"{__name__}:block"
    called = [(f["name"], f["line"]) for f in report.stack[1:3]]
    assert ("handler", handler_line) in called or ("endpoint", handler_line) in called, called
    # The blocked request's task, and not one of the requests in flight that only awaited.
    assert report.task is tasks["block"][0]
    assert report.task_name == report.task.get_name()
    assert all(report.task is not task for task in tasks["ok"])
    assert (report.chain[-1]["name"], report.chain[-1]["line"]) == ("main", None)
    if how == "sleep" and report.cpu_time is not None:
        assert report.cpu_time < 0.1
    if how == "lock":
        assert report.waiting_on == "_thread.lock"
        assert [thread.name for thread in report.waiting_for] == ["holder"]
        holder = report.waiting_for[0].frames[0]
        assert (holder["name"], holder["line"]) == ("hold_lock", line_of(hold_lock, "holder"))
    return report


# --- FastAPI on uvicorn ------------------------------------------------------------------------


def fastapi_app(tasks: dict[str, list[Any]]) -> tuple[Any, int]:
    app = fastapi.FastAPI()

    @app.get("/ok")  # type: ignore[untyped-decorator]
    async def ok() -> dict[str, int]:
        tasks["ok"].append(asyncio.current_task())
        await asyncio.sleep(0.6)
        return {"ok": 1}

    @app.get("/block/{how}")  # type: ignore[untyped-decorator]
    async def endpoint(how: str) -> dict[str, int]:
        tasks["block"].append(asyncio.current_task())
        block(how)  # endpoint blocks
        return {"ok": 1}

    return app, line_of(endpoint, "endpoint blocks")


async def serve_fastapi(app: Any, how: str) -> list[StallReport]:
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    async with apps.uvicorn_server(app) as url:  # serve
        return await exercise(url, "httpx", how)


@ON_BOTH_LOOPS
@pytest.mark.parametrize("how", ["sleep", "cpu", "lock"])
def test_fastapi_endpoint_that_blocks_is_named_with_its_request_chain(loop: str, how: str) -> None:
    """One report: the endpoint's line, its request task, uvicorn's chain to the test's server line."""
    tasks: dict[str, list[Any]] = {"ok": [], "block": []}
    app, line = fastapi_app(tasks)
    reports = run_on(loop, serve_fastapi(app, how))
    report = check_report(reports, how, tasks, line)
    # The request task runs uvicorn's run_asgi; it was created in h11_impl, under the server the test started.
    assert report.stack[-1]["name"] == "run_asgi"
    chain = [(f["name"], os.path.basename(f["filename"] or ""), f["line"]) for f in report.chain]
    assert chain[0][:2] == ("handle_events", "h11_impl.py")
    assert (
        "data_received",
        "h11_impl.py",
        source_line(h11_impl.H11Protocol.data_received, "self.handle_events()"),
    ) in chain
    assert ("uvicorn_server", "apps.py", source_line(apps.uvicorn_server, "serving = asyncio.create_task(")) in chain
    assert ("serve_fastapi", HERE, line_of(serve_fastapi, "serve")) in chain


# --- aiohttp -------------------------------------------------------------------------------------


def aiohttp_app(tasks: dict[str, list[Any]]) -> tuple[Any, int]:
    async def ok(request: Any) -> Any:
        tasks["ok"].append(asyncio.current_task())
        await asyncio.sleep(0.6)
        return web.Response(text="ok")

    async def handler(request: Any) -> Any:
        tasks["block"].append(asyncio.current_task())
        block(request.match_info["how"])  # handler blocks
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/block/{how}", handler)
    return app, line_of(handler, "handler blocks")


async def serve_aiohttp(app: Any, how: str) -> list[StallReport]:
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    async with apps.aiohttp_server(app) as url:  # serve
        return await exercise(url, "aiohttp", how)


@ON_BOTH_LOOPS
@pytest.mark.parametrize("how", ["sleep", "cpu", "lock"])
def test_aiohttp_handler_that_blocks_is_named_with_its_request_chain(loop: str, how: str) -> None:
    """One report: the handler's line, its request task, aiohttp's chain to the root."""
    from .test_apps_aiohttp import _server_chain, _site_start

    tasks: dict[str, list[Any]] = {"ok": [], "block": []}
    app, line = aiohttp_app(tasks)
    reports = run_on(loop, serve_aiohttp(app, how))
    report = check_report(reports, how, tasks, line)
    assert report.stack[-1]["name"] == "_handle_request"
    chain = [
        (f["name"], f["line"], os.path.basename(f["filename"]) if f["filename"] else None, False) for f in report.chain
    ]
    # From the line that created the request task (aiohttp's), through the line that started the server, to
    # the root: what a trace in the handler shows (contextlib's own line not pinned).
    chain = [(n, None if b == "contextlib.py" else line, b, e) for n, line, b, e in chain]
    started = _site_start(line_of(serve_aiohttp, "serve"), "test_stall_apps.py", "serve_aiohttp")
    assert chain == [*_server_chain(loop)[1:], *started, ("main", None, None, False)]
