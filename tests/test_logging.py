"""Logging that knows the async path: the stdlib filter, the structlog processor, JSON-ready traces."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest

from async_trace import collect_async_trace, trace_to_dict, trace_to_json
from async_trace.logging import AsyncTraceFilter, add_async_trace, compact_path

from .helpers import line_of

structlog = pytest.importorskip("structlog")


def _logger(stream: io.StringIO) -> logging.Logger:
    logger = logging.getLogger("async_trace_test")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.addFilter(AsyncTraceFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s [%(async_trace)s]"))
    logger.addHandler(handler)
    return logger


def test_filter_adds_the_async_path_to_log_lines() -> None:
    """%(async_trace)s renders the path innermost first; async_frames holds the frames."""
    stream = io.StringIO()
    logger = _logger(stream)
    seen: list[Any] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    keep.addFilter(AsyncTraceFilter())
    logger.addHandler(keep)

    async def worker() -> None:
        logger.info("hello")  # log-here

    made: list[Any] = []

    async def sub_task() -> None:
        made.append(asyncio.create_task(worker()))  # spawn-worker
        await made[0]

    async def main() -> str:
        await sub_task()
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    root = asyncio.run(main())
    assert stream.getvalue() == f"INFO hello [worker ← sub_task ← main ← {root}]\n"
    frames = seen[0].async_frames
    assert [(f["name"], f["line"]) for f in frames] == [
        ("worker", line_of(worker, "log-here")),
        ("sub_task", line_of(sub_task, "spawn-worker")),
        ("main", frames[2]["line"]),
        (root, None),
    ]
    assert frames[1]["task"] == {"name": made[0].get_name(), "id": id(made[0])}
    json.dumps(frames)


def test_filter_outside_any_task() -> None:
    """Logging from plain code still works; outside any task both fields are empty."""
    stream = io.StringIO()
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    def plain() -> None:
        logger = _logger(stream)
        keep = Keep()
        keep.addFilter(AsyncTraceFilter())
        logger.addHandler(keep)
        logger.warning("sync")

    plain()
    assert stream.getvalue() == "WARNING sync []\n"
    assert (seen[0].async_trace, seen[0].async_frames) == ("", [])  # type: ignore[attr-defined]


def test_filter_in_an_executor_thread() -> None:
    """In a thread reached by to_thread the path shows the [executor] hop."""
    stream = io.StringIO()
    logger = _logger(stream)

    def blocking() -> None:
        logger.info("in thread")

    async def main() -> None:
        await asyncio.to_thread(blocking)

    asyncio.run(main())
    assert stream.getvalue().startswith("INFO in thread [blocking ← main [executor] ← Task-")


def test_structlog_processor() -> None:
    """add_async_trace works as a structlog processor, with JSON output."""
    buf = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(file=buf),
        processors=[add_async_trace, structlog.processors.JSONRenderer(sort_keys=True)],
    )

    async def worker() -> None:
        log.info("event")

    async def main() -> str:
        await asyncio.create_task(worker(), name="w")
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    root = asyncio.run(main())
    event = json.loads(buf.getvalue())
    assert event["event"] == "event"
    assert event["async_trace"] == f"worker ← main ← {root}"
    assert event["async_frames"][1]["task"]["name"] == "w"


def test_trace_to_dict_and_json() -> None:
    """Tasks become {"name", "id"}; everything else is kept; json.dumps works."""

    async def worker() -> Any:
        return collect_async_trace(), asyncio.current_task()

    async def main() -> Any:
        return await asyncio.create_task(worker(), name="the-worker")

    trace, task = asyncio.run(main())
    data = trace_to_dict(trace)
    assert data["current_task"] == {"name": "the-worker", "id": id(task)}
    assert data["frames"][1]["task"] == {"name": "the-worker", "id": id(task)}
    assert [f["name"] for f in data["frames"]] == [f["name"] for f in trace["frames"]]
    assert json.loads(trace_to_json(trace)) == data
    assert compact_path(trace).startswith("worker ← main ← ")
