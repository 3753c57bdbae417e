"""FastAPI ``BackgroundTasks`` that fail, on uvicorn: the report names the request's task it ran in.

A background function runs after the response, in the request's own task
(an ``async def`` one) or, through Starlette's ``run_in_threadpool``, in one of
anyio's worker threads (a ``def`` one). Its exception leaves the ASGI app and
uvicorn logs it ("Exception in ASGI application") with ``logger.error(...,
exc_info=...)``: the note under that traceback names the request's task (the
one uvicorn created in ``handle_events`` for the request) and the chain that
created it, down to the line that started the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
from typing import Any

import pytest

from async_trace import exception_trace

from . import apps
from .apps import ON_BOTH_LOOPS, TIMEOUT, Shape, connection_tail, run_on, shape, source_line, uvicorn_server
from .helpers import line_of

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
starlette_concurrency = pytest.importorskip("starlette.concurrency")
h11_impl = pytest.importorskip("uvicorn.protocols.http.h11_impl")

from fastapi import BackgroundTasks  # noqa: E402 - after the skip: FastAPI may be missing

HERE = "test_apps_fastapi_background.py"

#: anyio's worker thread reports the exception through a future of its own, which no callback of
#: ours sees: 3.10/3.11 (no unwind hook) name the request's task that caught it, not the hop.
ANYIO_HOP_BEFORE_312 = pytest.mark.xfail(
    sys.version_info < (3, 12),
    reason="3.10/3.11: an exception from anyio's worker thread names the awaiting task, not the hop",
)

seen: dict[str, Any] = {}


async def send_receipt(order: int) -> None:
    await asyncio.sleep(0)
    raise ConnectionError(f"no receipt for order {order}")


def audit(order: int) -> None:
    raise PermissionError(f"audit of {order} refused")


def make_app() -> Any:
    app = fastapi.FastAPI()

    @app.post("/orders/{order}")  # type: ignore[untyped-decorator]
    async def create_order(order: int, background: BackgroundTasks) -> dict[str, int]:
        seen["task"] = asyncio.current_task()
        background.add_task(send_receipt, order)
        return {"order": order}

    @app.post("/audits/{order}")  # type: ignore[untyped-decorator]
    async def audit_order(order: int, background: BackgroundTasks) -> dict[str, int]:
        seen["task"] = asyncio.current_task()
        background.add_task(audit, order)
        return {"order": order}

    return app


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def main(path: str, out: dict[str, Any]) -> None:
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    async with uvicorn_server(make_app()) as url, httpx.AsyncClient(timeout=TIMEOUT) as client:  # serve
        handler = _Records()
        logger = logging.getLogger("uvicorn.error")
        logger.addHandler(handler)
        try:
            resp = await client.post(url + path)
            out["response"] = (resp.status_code, resp.json())
            for _ in range(int(TIMEOUT / 0.01)):  # the response is sent before the background function runs
                if handler.records:
                    break
                await asyncio.sleep(0.01)
        finally:
            logger.removeHandler(handler)
        out["records"] = handler.records


def _report(path: str, loop: str) -> tuple[dict[str, Any], BaseException, str]:
    seen.clear()
    out: dict[str, Any] = {}
    run_on(loop, main(path, out))
    (record,) = out["records"]
    assert record.getMessage() == "Exception in ASGI application\n"  # uvicorn's own words
    assert record.exc_info is not None
    exc = record.exc_info[1]
    assert exc is not None
    return out, exc, logging.Formatter().format(record)


def _note(text: str) -> list[str]:
    """The note under the logged traceback, its lines without indentation (contextlib's line blanked)."""
    _, _, note = text.partition("\nAsync trace (most recent call last):\n")
    assert note, text
    lines = [line.strip() for line in note.splitlines()]
    return [
        re.sub(r", line \d+, in __aenter__$", ", line N, in __aenter__", line)
        if line.endswith("in __aenter__") and "contextlib.py" in line
        else line
        for line in lines
    ]


def _request_note(task_name: str) -> list[str]:
    """From the root to the request's task: the server's task, the line that started the server and the
    protocol's callback (folded), then uvicorn's request task."""
    run_asgi = source_line(h11_impl.H11Protocol.handle_events, "task = self.loop.create_task(self.cycle.run_asgi(app))")
    serving = source_line(apps.uvicorn_server, "serving = asyncio.create_task(")
    return [
        "Root task 'main'",
        f'File "{__file__}", line {line_of(main, "serve")}, in main',
        "async with uvicorn_server(make_app()) as url, httpx.AsyncClient(timeout=TIMEOUT) as client:  # serve",
        f'File "{contextlib.__file__}", line N, in __aenter__',
        "...",  # contextlib's own line
        f'File "{apps.__file__}", line {serving}, in uvicorn_server',
        'serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")',
        "--- task 'uvicorn' created here ---",
        # The serving task's frames to its create_server line, then data_received: one run of uvicorn's.
        f"… {len(apps.uvicorn_start()) + 1} library frames (uvicorn)",
        f'File "{h11_impl.__file__}", line {run_asgi}, in handle_events',
        "task = self.loop.create_task(self.cycle.run_asgi(app))",
        f"--- task '{task_name}' created here ---",
    ]


def _same(note: list[str], expected: list[str]) -> bool:
    return len(note) == len(expected) and all(e == "..." or n == e for n, e in zip(note, expected, strict=True))


def _tail() -> list[Shape]:
    return [
        (
            "handle_events",
            source_line(h11_impl.H11Protocol.handle_events, "task = self.loop.create_task(self.cycle.run_asgi(app))"),
            "h11_impl.py",
            False,
        ),
        *connection_tail(line_of(main, "serve"), HERE),
    ]


def _blank_contextlib(rows: list[Shape]) -> list[Shape]:
    return [(n, None if b == "contextlib.py" else line, b, e) for n, line, b, e in rows]


@ON_BOTH_LOOPS
def test_async_background_function_names_its_request(loop: str) -> None:
    out, exc, text = _report("/orders/7", loop)
    assert out["response"] == (200, {"order": 7})
    assert isinstance(exc, ConnectionError)
    request = seen["task"]
    assert _same(_note(text), _request_note(request.get_name())), _note(text)
    origin = exception_trace(exc)
    assert origin is not None
    assert origin["current_task"] is request
    assert [f["task"] for f in origin["frames"] if f["name"] == "handle_events"] == [request]
    assert origin["in_executor"] is False
    assert _blank_contextlib(shape(origin)) == _tail()


@ON_BOTH_LOOPS
@ANYIO_HOP_BEFORE_312
def test_sync_background_function_names_its_request_through_the_thread_hop(loop: str) -> None:
    out, exc, text = _report("/audits/8", loop)
    assert out["response"] == (200, {"order": 8})
    assert isinstance(exc, PermissionError)
    request = seen["task"]
    origin = exception_trace(exc)
    assert origin is not None
    assert origin["in_executor"] is True
    rows = _blank_contextlib(shape(origin))
    hop = source_line(starlette_concurrency.run_in_threadpool, "return await anyio.to_thread.run_sync(")
    assert rows[0] == ("run_in_threadpool", hop, "concurrency.py", True)
    assert rows[-len(_tail()) :] == _tail()
    assert origin["current_task"] is None  # raised in a worker thread
    # The frame where a task was created names it: the request's task, at uvicorn's line.
    assert [f["task"] for f in origin["frames"] if f["name"] == "handle_events"] == [request]
    # The note: the hop's line and the library frames between (the traceback shows them), then the request.
    note, expected = _note(text), _request_note(request.get_name())
    assert _same(note[-len(expected) :], expected), note


def test_the_page_shows_the_notes_start_and_end() -> None:
    """docs/real-applications.md shows the note's first lines and its last three (the path shortened)."""
    from .doc_blocks import doc_block

    _, _, text = _report("/orders/7", "asyncio")
    note = text[text.index("Async trace (most recent call last):") :].splitlines()
    shown = doc_block("fastapi-background-output", "note").splitlines()
    cut = shown.index("  ...")
    assert note[:cut] == shown[:cut]
    site = os.path.dirname(h11_impl.__file__.rsplit(os.sep + "protocols", 1)[0])  # site-packages
    line = source_line(h11_impl.H11Protocol.handle_events, "task = self.loop.create_task(self.cycle.run_asgi(app))")
    tail = [text.replace(site, "...") for text in note[cut - len(shown) + 1 :]]
    page = (
        "\n".join(shown[cut + 1 :])
        .replace("line 254", f"line {line}")
        .replace("'Task-4'", f"'{seen['task'].get_name()}'")
    )
    assert tail == page.splitlines()
