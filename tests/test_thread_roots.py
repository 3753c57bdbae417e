"""A chain that starts in a plain thread (no traced hop led there) ends in a root frame named after the thread."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from async_trace import (
    TraceData,
    collect_async_trace,
    format_async_trace,
    format_exception,
    print_async_trace,
    task_tree,
    trace_to_dict,
)

from .helpers import line_of

T = TypeVar("T")


def _submit_from_thread(make: Callable[[], Coroutine[Any, Any, T]], name: str = "submitter") -> T:
    """Run ``make()`` on a loop, submitted with run_coroutine_threadsafe from a plain thread named ``name``."""
    out: list[T] = []

    def submit(loop: asyncio.AbstractEventLoop) -> None:
        out.append(asyncio.run_coroutine_threadsafe(make(), loop).result(10))  # submit

    async def main() -> T:
        thread = threading.Thread(target=submit, args=(asyncio.get_running_loop(),), name=name)
        thread.start()
        for _ in range(1000):
            if not thread.is_alive():
                break
            await asyncio.sleep(0.01)
        thread.join(10)
        return out[0]

    _submit_from_thread.submit_line = line_of(submit, "submit")  # type: ignore[attr-defined]
    return asyncio.run(main())


async def _leaf() -> TraceData:
    return collect_async_trace()  # leaf


def _shape(trace: TraceData) -> list[tuple[str, int | None, str | None, bool]]:
    return [(f["name"], f["line"], f["filename"], f["task"] is not None) for f in trace["frames"]]


def test_the_last_frame_is_a_root_frame_named_after_the_thread() -> None:
    trace = _submit_from_thread(_leaf, name="feeder-1")
    submit = _submit_from_thread.submit_line  # type: ignore[attr-defined]
    assert _shape(trace) == [
        ("_leaf", line_of(_leaf, "leaf"), __file__, False),
        ("submit", submit, __file__, True),
        ("feeder-1", None, None, False),
    ]
    root = trace["frames"][-1]
    assert root["task"] is None
    assert root["is_executor"] is False
    assert root["indent"] == 2
    assert trace["current_task"] is not None
    assert trace["in_executor"] is False


def test_every_printed_style_shows_the_thread_root() -> None:
    trace = _submit_from_thread(_leaf, name="feeder-1")
    submit = _submit_from_thread.submit_line  # type: ignore[attr-defined]
    task = trace["frames"][1]["task"]
    assert task is not None
    assert format_async_trace(trace) == [
        f"↑ _leaf() at line {line_of(_leaf, 'leaf')} [test_thread_roots.py]\n",
        f"  ↑ submit() at line {submit} [test_thread_roots.py]\n",
        "    ↑ thread 'feeder-1'\n",
    ]
    text = "".join(format_async_trace(trace, style="traceback"))
    assert text.startswith("Async trace (most recent call last):\n  Root thread 'feeder-1'\n")
    assert f'  File "{__file__}", line {submit}, in submit\n' in text
    assert f"  --- task {task.get_name()!r} created here ---\n" in text
    out = io.StringIO()
    print_async_trace(trace, file=out, ascii_only=True)
    assert out.getvalue().splitlines()[-1] == "    ^ thread 'feeder-1'"
    data = trace_to_dict(trace)
    assert json.loads(json.dumps(data))["frames"][-1] == {
        "name": "feeder-1",
        "line": None,
        "filename": None,
        "indent": 2,
        "task": None,
        "is_executor": False,
        "is_process": False,
        "in_app": True,
    }


async def _fails() -> None:
    raise KeyError("from a submitted task")  # raise


def test_an_exception_note_ends_at_the_thread() -> None:
    async def submitted() -> list[str]:
        try:
            await asyncio.create_task(_fails(), name="worker")  # spawn-worker
        except KeyError as exc:
            return format_exception(exc)
        raise AssertionError("no exception")

    text = "".join(_submit_from_thread(submitted, name="feeder-2"))
    submit = _submit_from_thread.submit_line  # type: ignore[attr-defined]
    assert text.startswith("Traceback (most recent call last):\n")
    assert "KeyError: 'from a submitted task'\nAsync trace (most recent call last):\n  Root thread 'feeder-2'\n" in text
    assert f'  File "{__file__}", line {submit}, in submit\n' in text
    assert f'  File "{__file__}", line {line_of(submitted, "spawn-worker")}, in submitted\n' in text


def test_the_task_tree_shows_the_submitted_task_at_the_top_level() -> None:
    """No placeholder parent for the thread: the task is a top-level entry whose creation is the thread's line."""

    async def submitted() -> list[tuple[str | None, str, list[int | None]]]:
        tree = task_tree()
        return [(info.name, info.origin, [f["line"] for f in info.created_at]) for info in tree.roots]

    me = threading.current_thread().name
    assert me  # the submitting thread is another one
    roots = _submit_from_thread(submitted)
    submit = _submit_from_thread.submit_line  # type: ignore[attr-defined]
    traced = [r for r in roots if r[1] == "traced"]
    assert len(traced) == 1
    assert traced[0][2] == [submit]
