"""docs/logging.md: ``AsyncTraceFilter`` goes on the handler; on a logger, other loggers' records fail to format."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from async_trace.logging import AsyncTraceFilter

FORMAT = "%(name)s %(message)s [%(async_trace)s]"


@pytest.fixture
def loggers() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    """A handler writing FORMAT to a string, on the logger ``placement`` (which does not propagate)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    top = logging.getLogger("placement")
    top.addHandler(handler)
    top.setLevel(logging.INFO)
    top.propagate = False
    try:
        yield stream, handler
    finally:
        top.removeHandler(handler)
        top.filters.clear()
        top.propagate = True


async def _log_all() -> None:
    async def worker() -> None:
        logging.getLogger("placement").info("own")
        logging.getLogger("placement.db").info("child")

    await asyncio.create_task(worker(), name="w")
    logging.getLogger("placement.db").info("outside the worker")


def test_filter_on_the_handler_fills_every_record(loggers: tuple[io.StringIO, logging.Handler]) -> None:
    stream, handler = loggers
    handler.addFilter(AsyncTraceFilter())
    asyncio.run(_log_all())
    logging.getLogger("placement.db").info("not in a task")
    root = _root(stream)
    assert stream.getvalue().splitlines() == [
        f"placement own [worker ← _log_all ← {root}]",
        f"placement.db child [worker ← _log_all ← {root}]",
        f"placement.db outside the worker [_log_all ← {root}]",
        "placement.db not in a task []",
    ]


def _root(stream: io.StringIO) -> str:
    """The root task's name as logged (the task counter depends on the tests run before)."""
    root = stream.getvalue().splitlines()[0].rsplit(" ← ", 1)[1].removesuffix("]")
    assert root.startswith("Task-"), root
    return root


def test_filter_on_a_logger_fails_for_the_other_loggers(
    loggers: tuple[io.StringIO, logging.Handler], capsys: pytest.CaptureFixture[str]
) -> None:
    """The logger's own records have the field; a child logger's record reaches the handler without it."""
    stream, _ = loggers
    logging.getLogger("placement").addFilter(AsyncTraceFilter())
    asyncio.run(_log_all())
    root = _root(stream)
    assert stream.getvalue().splitlines() == [f"placement own [worker ← _log_all ← {root}]"]
    err = capsys.readouterr().err.splitlines()
    assert err.count("--- Logging error ---") == 2
    assert err.count("ValueError: Formatting field not found in record: 'async_trace'") == 2
    assert [line for line in err if line.startswith("Message: ")] == [
        "Message: 'child'",
        "Message: 'outside the worker'",
    ]
