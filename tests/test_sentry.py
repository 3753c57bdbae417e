"""async_trace.sentry with the real sentry-sdk: events captured by an in-memory transport (no network)."""

from __future__ import annotations

import asyncio
import linecache
import os
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

import async_trace
import async_trace.sentry as at_sentry
from async_trace import AsyncTraceWarning
from async_trace._inapp import is_library
from async_trace.sentry import AsyncTraceIntegration, origin_frames

from .apps import source_line
from .helpers import line_of

FILE = __file__
NAME = "test_sentry.py"


class CaptureTransport(Transport):
    """Keeps every envelope in memory."""

    envelopes: ClassVar[list[Envelope]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        CaptureTransport.envelopes.append(envelope)


def _init(*, integration: bool = True, extra: tuple[Any, ...] = ()) -> None:
    CaptureTransport.envelopes = []
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=CaptureTransport,
        default_integrations=False,
        integrations=[*extra, AsyncTraceIntegration()] if integration else [*extra],
    )


@pytest.fixture
def sentry() -> Iterator[None]:
    _init()
    yield
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def _events() -> list[dict[str, Any]]:
    sentry_sdk.flush()
    return [
        item.payload.json  # type: ignore[misc]
        for envelope in CaptureTransport.envelopes
        for item in envelope.items
        if item.type == "event"
    ]


def _source(line: int) -> str:
    return linecache.getline(FILE, line).rstrip("\n")


def _frame(function: str, line: int) -> dict[str, Any]:
    return {
        "filename": os.path.join("tests", NAME) if _below_sys_path() else NAME,
        "abs_path": FILE,
        "function": function,
        "lineno": line,
        "in_app": True,
        "context_line": _source(line),
    }


def _below_sys_path() -> bool:
    # The name sentry-sdk would give: relative to the longest sys.path entry holding the file.
    return at_sentry._relative(FILE) == os.path.join("tests", NAME)


def _ours(frames: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    keys = ("filename", "abs_path", "function", "lineno", "in_app", "context_line")
    return [{key: frame[key] for key in keys if key in frame} for frame in frames[:count]]


@pytest.mark.usefixtures("sentry")
def test_failing_task_event_carries_its_origin() -> None:
    """contexts['async_trace'] holds the chain; the stacktrace starts with the chain's lines, root first."""

    async def parse() -> None:
        raise ValueError("bad record")

    kept: list[Any] = []  # the tasks stay alive: the context names them (and 3.10/3.11 find the raiser)

    async def handle() -> None:
        kept.append(asyncio.create_task(parse(), name="parse"))  # spawn-parse
        await kept[-1]

    async def main() -> str:
        try:
            await asyncio.create_task(handle(), name="handle")  # spawn-handle
        except ValueError:
            sentry_sdk.capture_exception()
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    root = asyncio.run(main())
    (event,) = _events()
    s_parse, s_handle = line_of(handle, "spawn-parse"), line_of(main, "spawn-handle")
    context = event["contexts"]["async_trace"]
    for frame in context["frames"]:
        if frame["task"] is not None:
            assert isinstance(frame["task"].pop("id"), int)
    assert context == {
        "path": f"handle ({NAME}:{s_parse}) ← main ({NAME}:{s_handle}) ← {root}",
        "frames": [
            {
                "name": "handle",
                "line": s_parse,
                "filename": FILE,
                "indent": 0,
                "task": {"name": "parse"},
                "is_executor": False,
                "is_process": False,
                "in_app": True,
            },
            {
                "name": "main",
                "line": s_handle,
                "filename": FILE,
                "indent": 1,
                "task": {"name": "handle"},
                "is_executor": False,
                "is_process": False,
                "in_app": True,
            },
            {
                "name": root,
                "line": None,
                "filename": None,
                "indent": 2,
                "task": {"name": root},
                "is_executor": False,
                "is_process": False,
                "in_app": True,
            },
        ],
        "in_executor": False,
        "task": "parse",
    }
    (value,) = event["exception"]["values"]
    assert value["type"] == "ValueError"
    frames = value["stacktrace"]["frames"]
    assert _ours(frames, 2) == [_frame("main", s_handle), _frame("handle", s_parse)]
    # Then sentry-sdk's own frames of the traceback, oldest first, ending where it was raised.
    assert [f["function"] for f in frames[2:]] == ["main", "handle", "parse"]


@pytest.fixture
def hop_origins() -> Iterator[None]:
    """3.10/3.11 record an executor call's exception as the call's (not the awaiting task's) with eager notes."""
    if sys.version_info >= (3, 12):
        yield
        return
    async_trace.enable_tracing(eager_notes=True)
    try:
        yield
    finally:
        async_trace.enable_tracing(eager_notes=False)


@pytest.mark.usefixtures("sentry", "hop_origins")
def test_executor_function_event() -> None:
    def blocking() -> None:
        raise OSError("disk")

    async def main() -> str:
        try:
            await asyncio.get_running_loop().run_in_executor(None, blocking)  # hop
        except OSError:
            sentry_sdk.capture_exception()
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    root = asyncio.run(main())
    (event,) = _events()
    hop = line_of(main, "hop")
    context = event["contexts"]["async_trace"]
    assert (context["path"], context["in_executor"], context["task"]) == (
        f"main ({NAME}:{hop}) [executor] ← {root}",
        True,
        None,
    )
    frames = event["exception"]["values"][0]["stacktrace"]["frames"]
    assert _ours(frames, 1) == [_frame("main", hop)]


@pytest.mark.parametrize(
    "eager",
    [
        False,
        pytest.param(True, marks=pytest.mark.skipif(sys.version_info < (3, 14), reason="eager_start= is 3.14's")),
    ],
)
def test_beside_sentrys_asyncio_integration(eager: bool) -> None:
    """Sentry's AsyncioIntegration runs each task's coroutine inside one of its own: the chain stays exact.

    Its task factory wraps every coroutine; the wrapper is the task's outermost frame, a library
    frame of the chain, and no task is taken for its creator. Started eagerly (3.14's
    ``eager_start=True``, passed on by the factory), the wrapped coroutine's first step runs
    before the factory returns: the chain is the same.
    """
    from sentry_sdk.integrations.asyncio import AsyncioIntegration, enable_asyncio_integration

    kwargs: dict[str, Any] = {"eager_start": True} if eager else {}

    async def parse() -> None:
        raise ValueError("bad record")

    async def handle() -> None:
        await asyncio.create_task(parse(), **kwargs)  # aio-spawn-parse

    async def main() -> str:
        _init(extra=(AsyncioIntegration(),))  # patches the running loop's task factory...
        enable_asyncio_integration()  # ...the first time in a process only: this loop's, if not done
        try:
            await asyncio.create_task(handle(), **kwargs)  # aio-spawn-handle
        except ValueError:
            sentry_sdk.capture_exception()
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    try:
        root = asyncio.run(main())
        events = _events()
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
    import sentry_sdk.integrations.asyncio as sentry_asyncio

    wrapper = source_line(sentry_asyncio, "result = await coro")
    s_parse, s_handle = line_of(handle, "aio-spawn-parse"), line_of(main, "aio-spawn-handle")
    path = (
        f"handle ({NAME}:{s_parse}) ← _task_with_sentry_span_creation (asyncio.py:{wrapper})"
        f" ← main ({NAME}:{s_handle}) ← {root}"
    )
    # The integration reports the failure inside each task it leaves (parse's, where it was raised
    # and is caught through an await of parse's coroutine; handle's), then main reports it. 3.10/3.11
    # find the first in parse's task (parse's code runs as no task's coroutine: the wrapper's does),
    # and record it there for the others.
    assert len(events) == 3
    got = [event["contexts"].get("async_trace", {}).get("path") for event in events]
    assert got == [path] * 3


@pytest.mark.usefixtures("sentry")
def test_each_exception_of_the_chain_gets_its_own_origin() -> None:
    """A cause raised in a task keeps its frames; the exception raised in the root task gets none."""

    async def fail() -> None:
        raise KeyError("k")

    async def main() -> str:
        try:
            try:
                await asyncio.create_task(fail())  # spawn-fail
            except KeyError as exc:
                raise RuntimeError("wrapped") from exc
        except RuntimeError:
            sentry_sdk.capture_exception()
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    root = asyncio.run(main())
    (event,) = _events()
    line = line_of(main, "spawn-fail")
    cause, outer = event["exception"]["values"]
    assert (cause["type"], outer["type"]) == ("KeyError", "RuntimeError")
    assert _ours(cause["stacktrace"]["frames"], 1) == [_frame("main", line)]
    assert [f["function"] for f in outer["stacktrace"]["frames"]] == ["main"]
    assert event["contexts"]["async_trace"]["path"] == f"main ({NAME}:{line}) ← {root}"


@pytest.mark.usefixtures("sentry")
def test_no_origin_no_change() -> None:
    """An exception raised in the root task (no creation point) and a message event pass unchanged."""

    async def main() -> None:
        try:
            raise ValueError("root")
        except ValueError:
            sentry_sdk.capture_exception()
        sentry_sdk.capture_message("hello")

    asyncio.run(main())
    failure, message = _events()
    assert "async_trace" not in failure.get("contexts", {})
    assert [f["function"] for f in failure["exception"]["values"][0]["stacktrace"]["frames"]] == ["main"]
    assert "async_trace" not in message.get("contexts", {})


def test_inactive_for_a_client_without_the_integration() -> None:
    """The global processor stays installed, but works only for clients that use the integration."""
    _init()
    _init(integration=False)
    try:

        async def fail() -> None:
            raise ValueError("x")

        async def main() -> None:
            try:
                await asyncio.create_task(fail())
            except ValueError:
                sentry_sdk.capture_exception()

        asyncio.run(main())
        (event,) = _events()
        assert "async_trace" not in event.get("contexts", {})
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


@pytest.mark.usefixtures("sentry")
def test_an_internal_failure_warns_once_and_sends_the_event_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(trace: Any) -> Any:
        raise RuntimeError("broken")

    monkeypatch.setattr(at_sentry, "origin_context", broken)

    async def fail() -> None:
        raise ValueError("x")

    async def main() -> None:
        for _ in range(2):
            try:
                await asyncio.create_task(fail())
            except ValueError:
                sentry_sdk.capture_exception()

    with pytest.warns(AsyncTraceWarning, match="Sentry event") as caught:
        asyncio.run(main())
    assert len([w for w in caught if issubclass(w.category, AsyncTraceWarning)]) == 1
    events = _events()
    assert len(events) == 2
    for event in events:
        assert "async_trace" not in event.get("contexts", {})
        assert [f["function"] for f in event["exception"]["values"][0]["stacktrace"]["frames"]] == ["main", "fail"]


def test_library_frames_are_not_in_app() -> None:
    """Frames from the standard library and from site-packages are marked in_app False."""
    stdlib, package = asyncio.__file__, sentry_sdk.__file__
    assert is_library(stdlib)
    assert is_library(package)
    assert not is_library(FILE)
    frames: list[Any] = [
        {"name": "lib", "line": 3, "filename": package, "indent": 0, "task": None, "is_executor": False},
        {"name": "std", "line": 2, "filename": stdlib, "indent": 1, "task": None, "is_executor": False},
        {"name": "app", "line": 1, "filename": FILE, "indent": 2, "task": None, "is_executor": False},
        {"name": "Task-1", "line": None, "filename": None, "indent": 3, "task": None, "is_executor": False},
    ]
    made = origin_frames({"frames": frames, "current_task": None, "in_executor": False})
    assert [(f["function"], f["lineno"], f["abs_path"], f["in_app"]) for f in made] == [
        ("app", 1, FILE, True),
        ("std", 2, stdlib, False),
        ("lib", 3, package, False),
    ]
