"""Code running in an eager task's first step, and in its second, names the line that built the task.

aiohttp builds its tasks directly on 3.12+, ``asyncio.Task(coro, loop=loop, eager_start=True)``: the
first step runs inside the constructor, before any hook of ours has seen the task. Whatever reads the
origin there (a span through :class:`async_trace.otel.AsyncTraceSpanProcessor`, a log record through
:class:`async_trace.logging.AsyncTraceFilter`, :func:`async_trace.collect_async_trace`) must name the line
of ``asyncio.Task(...)``, the same as after the task's first ``await``, and the same as for a task made by
``loop.create_task`` under ``asyncio.eager_task_factory`` (the control: our create_task hook runs there).

Each probe runs in a fresh task: a probe may store a node in the task's context, which the next would read.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, NamedTuple

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from async_trace import collect_async_trace
from async_trace._frames import UNKNOWN_LINE_TEXT
from async_trace.logging import AsyncTraceFilter
from async_trace.otel import AsyncTraceSpanProcessor

from .helpers import Row, line_of, rows

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="asyncio.Task(eager_start=) and asyncio.eager_task_factory are 3.12+"
)

FILE = __file__
NAME = os.path.basename(__file__)

Probe = Callable[[], Any]
Steps = list[str]
Spawned = tuple["asyncio.Task[Any]", Steps, Any]


async def probed(probe: Probe, after_await: bool, steps: Steps) -> tuple[str, Any]:
    """The task's coroutine: runs ``probe`` in its first step, or after its first ``await``.

    Returns the task's name when it probed, and what the probe returned. (A task's name can change
    after its first step: ``loop.create_task`` with a factory names it once the factory returns,
    3.13.0 even "None" when given no name.)
    """
    steps.append("started")
    if after_await:
        await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None
    name = task.get_name()
    result = probe()  # probe
    steps.append("probed")
    return name, result


async def spawn_direct(coro: Coroutine[Any, Any, Any], steps: Steps) -> Spawned:
    """As aiohttp does: the task built directly, eagerly; no create_task hook runs."""
    task = asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)  # type: ignore[call-arg,unused-ignore]  # build
    seen = list(steps)
    return task, seen, await task


async def spawn_factory(coro: Coroutine[Any, Any, Any], steps: Steps) -> Spawned:
    """The control: ``loop.create_task`` under ``asyncio.eager_task_factory``."""
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    try:
        task = loop.create_task(coro)  # build
    finally:
        loop.set_task_factory(None)
    seen = list(steps)
    return task, seen, await task


Spawn = Callable[[Coroutine[Any, Any, Any], Steps], Coroutine[Any, Any, Spawned]]
SPAWNS = pytest.mark.parametrize("spawn", [spawn_direct, spawn_factory], ids=["asyncio.Task", "eager_task_factory"])
STEPS = pytest.mark.parametrize("after_await", [False, True], ids=["first-step", "second-step"])
#: Whether the creator (the task running main) is the root task or a task the root created: then a
#: wrong origin can be the creator's own creation line.
CREATORS = pytest.mark.parametrize("nested", [False, True], ids=["by-root", "by-child"])


class Outcome(NamedTuple):
    root: asyncio.Task[Any]
    #: The task running main: the root, or a task the root created (``nested``).
    creator: asyncio.Task[Any]
    #: The task built, and its name when it probed.
    task: asyncio.Task[Any]
    name: str
    #: What the probe returned.
    result: Any
    nested: bool
    after_await: bool


async def main(spawn: Spawn, probe: Probe, after_await: bool) -> Outcome:
    steps: Steps = []
    creator = asyncio.current_task()
    assert creator is not None
    task, seen, (name, result) = await spawn(probed(probe, after_await, steps), steps)  # call
    # The probe ran where it should: inside the constructor (first step), or only after it returned.
    assert seen == (["started"] if after_await else ["started", "probed"])
    return Outcome(creator, creator, task, name, result, False, after_await)


async def nested_main(spawn: Spawn, probe: Probe, after_await: bool) -> Outcome:
    """main in a task of its own."""
    root = asyncio.current_task()
    assert root is not None
    got = await asyncio.create_task(main(spawn, probe, after_await))  # spawn-main
    return got._replace(root=root, nested=True)


def run(spawn: Spawn, probe: Probe, after_await: bool, nested: bool = False) -> Outcome:
    """``asyncio.run(main(...))`` (``nested``: main in a task the root created)."""
    top = nested_main if nested else main
    # 3.12+: wait_for awaits its coroutine in asyncio.run's own task (the root), bounded in time.
    return asyncio.run(asyncio.wait_for(top(spawn, probe, after_await), 10))


#: 3.14+ keeps tasks in C lists: no hook sees a task built directly. Its line is known only if something
#: read it in its first step (a span, a log record, a trace there store it); else it is unknown, the
#: documented loss (docs/guarantees.md), and the chain goes on from its creator's creation line.
LINE_LOST_AFTER_FIRST_STEP = sys.version_info >= (3, 14)


def line_unknown(spawn: Spawn, got: Outcome) -> bool:
    return LINE_LOST_AFTER_FIRST_STEP and spawn is spawn_direct and got.after_await


def expected_rows(spawn: Spawn, got: Outcome, name: str) -> list[Row]:
    """The probe's line, the line that built task ``name`` (the task boundary), the line that called it,
    where the creator was created (``nested``), the root."""
    if line_unknown(spawn, got):
        return [
            ("probed", line_of(probed, "probe"), NAME, None, False),
            (UNKNOWN_LINE_TEXT, None, None, None, False),
            *([("nested_main", line_of(nested_main, "spawn-main"), NAME, got.creator.get_name(), False)] * got.nested),
            (got.root.get_name(), None, None, got.root.get_name(), False),
        ]
    return [
        ("probed", line_of(probed, "probe"), NAME, None, False),
        (spawn.__name__, line_of(spawn, "build"), NAME, name, False),
        ("main", line_of(main, "call"), NAME, None, False),
        *([("nested_main", line_of(nested_main, "spawn-main"), NAME, got.creator.get_name(), False)] * got.nested),
        (got.root.get_name(), None, None, got.root.get_name(), False),
    ]


def expected_span_attributes(spawn: Spawn, got: Outcome) -> dict[str, Any]:
    """The creation site: the line that built the task; the chain from there to the root.

    Where that line is unknown, no creation site (not the creator's line) and the chain as known;
    nothing at all when the chain holds no line.
    """
    build = line_of(spawn, "build")
    shown = expected_rows(spawn, got, got.name)[1:]
    chain = " ← ".join(
        f"{func} ({filename}:{line})" if line is not None else func for func, line, filename, _, _ in shown
    )
    if line_unknown(spawn, got):
        return {"async_trace.chain": chain} if any(line is not None for _, line, *_ in shown) else {}
    return {
        "code.function.name": spawn.__name__,
        "code.file.path": FILE,
        "code.line.number": build,
        "async_trace.chain": chain,
    }


def _tracer() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(AsyncTraceSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("async-trace-test"), exporter


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(AsyncTraceFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, _Keep]]:
    """A logger whose records are kept, after going through :class:`AsyncTraceFilter`."""
    logger = logging.getLogger("async_trace_test_first_step")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    keep = _Keep()
    logger.addHandler(keep)
    yield logger, keep
    logger.removeHandler(keep)


def _frames(record: logging.LogRecord) -> list[tuple[Any, ...]]:
    frames: list[dict[str, Any]] = record.async_frames  # type: ignore[attr-defined]
    return [
        (f["name"], f["line"], os.path.basename(f["filename"]) if f["filename"] else None, f["task"]) for f in frames
    ]


def _expected_log(spawn: Spawn, got: Outcome) -> tuple[str, list[tuple[Any, ...]]]:
    """``%(async_trace)s`` and ``async_frames`` (as :func:`_frames` shows them) for a record made at the probe line."""
    expected = expected_rows(spawn, got, got.name)
    path = " ← ".join(name for name, *_ in expected)
    tasks = {got.name: got.task, got.creator.get_name(): got.creator, got.root.get_name(): got.root}
    frames = [
        (name, line, filename, {"name": owner, "id": id(tasks[owner])} if owner else None)
        for name, line, filename, owner, _ in expected
    ]
    return path, frames


@SPAWNS
@STEPS
@CREATORS
def test_a_span_names_the_line_that_built_its_task(spawn: Spawn, after_await: bool, nested: bool) -> None:
    """``code.*`` and ``async_trace.chain`` on the span name the line of ``asyncio.Task(...)``."""
    tracer, exporter = _tracer()

    def start_span() -> None:
        with tracer.start_as_current_span("probe"):
            pass

    got = run(spawn, start_span, after_await, nested)
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == expected_span_attributes(spawn, got)


@SPAWNS
@STEPS
@CREATORS
def test_a_log_record_names_the_line_that_built_its_task(
    spawn: Spawn, after_await: bool, nested: bool, logged: tuple[logging.Logger, _Keep]
) -> None:
    """``%(async_trace)s`` and ``async_frames`` go through the line of ``asyncio.Task(...)``."""
    logger, keep = logged
    got = run(spawn, functools.partial(logger.info, "hello"), after_await, nested)
    (record,) = keep.records
    path, frames = _expected_log(spawn, got)
    assert (record.async_trace, _frames(record)) == (path, frames)  # type: ignore[attr-defined]


@SPAWNS
@STEPS
@CREATORS
def test_collect_names_the_line_that_built_its_task(spawn: Spawn, after_await: bool, nested: bool) -> None:
    """At the task boundary, ``collect_async_trace()`` names the line of ``asyncio.Task(...)`` and the task."""
    got = run(spawn, collect_async_trace, after_await, nested)
    assert got.result["current_task"] is got.task
    # rows() reads each task's name now.
    assert rows(got.result) == expected_rows(spawn, got, got.task.get_name())


@SPAWNS
@CREATORS
def test_span_log_and_collect_in_one_first_step(
    spawn: Spawn, nested: bool, logged: tuple[logging.Logger, _Keep]
) -> None:
    """A span started first, as a request handler does, then a log record and a trace: all three right."""
    tracer, exporter = _tracer()
    logger, keep = logged

    def handler() -> Any:
        with tracer.start_as_current_span("probe"):
            logger.info("hello")  # log
            return collect_async_trace()  # collect

    got = run(spawn, handler, False, nested)
    (span,) = exporter.get_finished_spans()
    (record,) = keep.records
    path, frames = _expected_log(spawn, got)
    # One comparison, so that a failure shows all three.
    seen = (dict(span.attributes or {}), record.async_trace, _frames(record), rows(got.result))  # type: ignore[attr-defined]
    assert seen == (
        expected_span_attributes(spawn, got),
        f"handler ← {path}",
        [("handler", line_of(handler, "log"), NAME, None), *frames],
        [
            ("handler", line_of(handler, "collect"), NAME, None, False),
            *expected_rows(spawn, got, got.task.get_name()),
        ],
    )
