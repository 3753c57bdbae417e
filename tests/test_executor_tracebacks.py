"""Exceptions from executor functions: no frame of ours in their traceback; eager notes for error trackers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import pickle
import sys
import traceback
from typing import Any

import pytest

import async_trace
from async_trace import _capture

anyio = pytest.importorskip("anyio")
pytest.importorskip("anyio.to_thread")

PACKAGE_DIR = os.path.dirname(async_trace.__file__)
MONITORING = sys.version_info >= (3, 12)


def blocking() -> None:
    raise KeyError("in a thread")


async def _raise_through(how: str) -> BaseException:
    loop = asyncio.get_running_loop()
    try:
        if how == "run_in_executor":
            await loop.run_in_executor(None, blocking)
        elif how == "own_pool":
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                await loop.run_in_executor(pool, blocking)
        elif how == "to_thread":
            await asyncio.to_thread(blocking)
        else:
            await anyio.to_thread.run_sync(blocking)
    except KeyError as exc:
        return exc
    raise AssertionError("no exception")


HOWS = pytest.mark.parametrize("how", ["run_in_executor", "own_pool", "to_thread", "anyio"])


@HOWS
def test_no_frame_of_ours_in_the_traceback(how: str) -> None:
    exc = asyncio.run(_raise_through(how))
    files = [entry.filename for entry in traceback.extract_tb(exc.__traceback__)]
    assert [f for f in files if os.path.dirname(f) == PACKAGE_DIR] == []
    assert files[-1] == __file__  # raised in blocking()


def test_the_executor_call_still_pickles_to_the_bare_function() -> None:
    """A wrapped call handed to a pool that pickles (a process pool) arrives as the function itself."""
    captured: list[Any] = []

    class Recording(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            captured.append(fn)
            return super().submit(fn, *args, **kwargs)

    async def main() -> None:
        with Recording(1) as pool:
            await asyncio.get_running_loop().run_in_executor(pool, os.getpid)

    asyncio.run(main())
    (call,) = captured
    assert call is not os.getpid  # wrapped: it carries the hop's context
    assert pickle.loads(pickle.dumps(call)) is os.getpid
    assert isinstance(call, functools.partial)


async def _task_raises() -> None:
    raise ValueError("eager")


def test_eager_notes_switch_is_public() -> None:
    """``enable_tracing(eager_notes=True)``: ``__notes__`` holds the origin before anything prints it."""

    async def main() -> BaseException:
        try:
            await asyncio.create_task(_task_raises(), name="raiser")
        except ValueError as exc:
            return exc
        raise AssertionError("no exception")

    async_trace.enable_tracing(eager_notes=True)
    try:
        exc = asyncio.run(main())
    finally:
        async_trace.enable_tracing(eager_notes=False)
    notes = getattr(exc, "__notes__", [])
    assert len(notes) == 1
    assert "raiser" in notes[0]
    assert _capture.is_active()
