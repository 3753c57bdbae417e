"""anyio's worker threads are executor hops: ``to_thread.run_sync`` and ``from_thread.run`` inside a task group."""

from __future__ import annotations

import pytest

from async_trace import TraceData, collect_async_trace

from .apps import ON_BOTH_LOOPS, Shape, shape
from .helpers import line_of

anyio = pytest.importorskip("anyio")
pytest.importorskip("anyio.to_thread")
pytest.importorskip("anyio.from_thread")

HERE = "test_apps_anyio.py"
#: anyio's own files: their frames are shown, their lines are anyio's to change.
ANYIO_FILES = {"_asyncio.py", "_tasks.py", "from_thread.py", "to_thread.py"}


def _comparable(trace: TraceData) -> list[Shape]:
    return [(n, None if b in ANYIO_FILES else line, b, e) for n, line, b, e in shape(trace)]


seen: dict[str, TraceData] = {}


async def back_in_loop() -> None:
    seen["from_thread"] = collect_async_trace()  # capture-loop


def in_thread() -> None:
    seen["thread"] = collect_async_trace()  # capture-thread
    anyio.from_thread.run(back_in_loop)  # call-back


async def worker() -> None:
    await anyio.to_thread.run_sync(in_thread)  # hop


async def main() -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)  # spawn


def _spawned() -> list[Shape]:
    """From the hop in ``worker`` to the root: anyio's task and start_soon, ``main``, anyio.run's wrapper, the root."""
    return [
        ("worker", line_of(worker, "hop"), HERE, True),
        ("_run_coro", None, "_tasks.py", False),  # anyio's coroutine around each task's
        ("_spawn", None, "_asyncio.py", False),
        ("create_task", None, "_asyncio.py", False),
        ("start_soon", None, "_tasks.py", False),
        ("main", line_of(main, "spawn"), HERE, False),
        ("wrapper", None, "_asyncio.py", False),
        (f"{__name__}.main", None, None, False),
    ]


@ON_BOTH_LOOPS
def test_to_thread_is_a_hop_and_from_thread_continues_the_chain(loop: str) -> None:
    seen.clear()
    anyio.run(main, backend_options={"use_uvloop": loop == "uvloop"})
    thread = seen["thread"]
    assert thread["in_executor"] is True
    assert _comparable(thread) == [("in_thread", line_of(in_thread, "capture-thread"), HERE, False), *_spawned()]
    back = seen["from_thread"]
    assert back["in_executor"] is False
    assert _comparable(back) == [
        ("back_in_loop", line_of(back_in_loop, "capture-loop"), HERE, False),
        ("task_wrapper", None, "_asyncio.py", False),
        ("run_async_from_thread", None, "_asyncio.py", False),
        ("run", None, "from_thread.py", False),
        ("in_thread", line_of(in_thread, "call-back"), HERE, False),
        *_spawned(),
    ]


def test_disable_restores_anyio_exactly() -> None:
    """``disable_tracing()`` puts anyio's classmethod back, the very object it was."""
    import anyio._backends._asyncio as backend_module

    import async_trace

    backend = backend_module.AsyncIOBackend
    ours = vars(backend)["run_sync_in_worker_thread"]
    assert getattr(ours, "__async_trace_wrapper__", False)
    original = ours.__async_trace_original__
    async_trace.disable_tracing()
    try:
        assert vars(backend)["run_sync_in_worker_thread"] is original
    finally:
        async_trace.enable_tracing()
    assert vars(backend)["run_sync_in_worker_thread"] is ours


IMPORTED_AFTER = """\
import async_trace, anyio, anyio.to_thread
from async_trace import collect_async_trace

async def main():
    trace = await anyio.to_thread.run_sync(collect_async_trace)  # hop
    print(trace["in_executor"], [f["name"] for f in trace["frames"] if f["is_executor"]])

anyio.run(main)
"""


def test_anyio_imported_after_us_is_hooked() -> None:
    import pathlib

    from .helpers import run_python

    result = run_python("-c", IMPORTED_AFTER, cwd=pathlib.Path(__file__).parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True ['main']\n"


def test_task_tree_shows_anyio_worker_threads_under_the_waiting_task() -> None:
    """A task waiting on ``to_thread.run_sync`` has the worker thread's stack in ``executor_threads``."""
    import threading

    import async_trace

    started, release = threading.Event(), threading.Event()
    found: list[async_trace.TaskTree] = []

    def blocked() -> None:
        started.set()
        release.wait(20)  # wait-in-thread

    async def waiter() -> None:
        await anyio.to_thread.run_sync(blocked)

    async def tree_main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, name="waiter")
            for _ in range(2000):  # at most 20 s
                if started.is_set():
                    break
                await anyio.sleep(0.01)
            found.append(async_trace.task_tree())
            release.set()

    anyio.run(tree_main)
    info = found[0].find("waiter")
    assert info is not None
    (thread,) = info.executor_threads
    assert thread.name == "AnyIO worker thread"
    # The thread's own frames, cut at anyio's worker loop (threading's wait is the stdlib's: dropped).
    assert [(f["name"], f["line"], f["filename"]) for f in thread.frames] == [
        ("blocked", line_of(blocked, "wait-in-thread"), __file__)
    ]
