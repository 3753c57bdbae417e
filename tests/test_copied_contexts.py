"""Executor calls that carry a context the program copied keep their hop: line, mark and chain.

``ctx = copy_context()`` then ``run_in_executor(None, lambda: ctx.run(f))`` (structlog's async
log methods, haystack, langchain) runs ``f`` in the copy, not in the context the executor hook
prepared: the hop is found in the context the pool's thread entered the call with.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import MutableMapping
from typing import Any

import structlog

from async_trace import TraceData, collect_async_trace
from async_trace.logging import add_async_trace

from .helpers import line_of

NAME = os.path.basename(__file__)


def _rows(trace: TraceData) -> list[tuple[str, Any, bool]]:
    return [(f["name"], f["line"], f["is_executor"]) for f in trace["frames"]]


def probe() -> TraceData:
    return collect_async_trace()  # probe


async def main() -> list[Any]:
    asyncio.current_task().set_name("root")  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    got = []
    ctx = contextvars.copy_context()
    got.append(await loop.run_in_executor(None, lambda: ctx.run(probe)))  # lambda-run
    ctx = contextvars.copy_context()
    got.append(await loop.run_in_executor(None, ctx.run, probe))  # ctx-run
    ctx = contextvars.copy_context()
    got.append(await loop.run_in_executor(None, functools.partial(ctx.run, probe)))  # partial-run
    got.append(await asyncio.to_thread(contextvars.copy_context().run, probe))  # to-thread-run
    return got


def test_a_function_run_in_a_copied_context_keeps_its_hop() -> None:
    """Each way of running the function in a copy: its frames, then the hop at the calling line, marked."""
    lambda_run, ctx_run, partial_run, to_thread_run = asyncio.run(main())
    probe_row = ("probe", line_of(probe, "probe"), False)
    assert _rows(lambda_run) == [
        probe_row,
        ("<lambda>", line_of(main, "lambda-run"), False),
        ("main", line_of(main, "lambda-run"), True),
        ("root", None, False),
    ]
    for trace, marker in ((ctx_run, "ctx-run"), (partial_run, "partial-run"), (to_thread_run, "to-thread-run")):
        assert _rows(trace) == [probe_row, ("main", line_of(main, marker), True), ("root", None, False)]
    assert all(trace["in_executor"] and trace["current_task"] is None for trace in (lambda_run, ctx_run))


def test_structlog_async_methods_fill_the_field() -> None:
    """``await log.ainfo(...)`` runs the processors in a thread, in a copied context: the field names the line."""
    seen: list[MutableMapping[str, Any]] = []

    def keep(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        seen.append(event_dict)
        return "ok"

    async def logs() -> None:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        log = structlog.get_logger()
        await log.ainfo("hello")  # ainfo

    structlog.configure(processors=[add_async_trace, keep], cache_logger_on_first_use=False)
    try:
        asyncio.run(logs())
    finally:
        structlog.reset_defaults()
    ((event,),) = [seen]
    assert event["async_trace"] == "logs ← root"
    assert [(f["name"], f["line"]) for f in event["async_frames"]] == [
        ("logs", line_of(logs, "ainfo")),
        ("root", None),
    ]
