"""style="traceback": most recent call last, editor-linkable File lines, stable separators."""

from __future__ import annotations

import asyncio
import gc
import io
import linecache
import re

import pytest

import async_trace
from async_trace import TraceData, TraceFrame, collect_async_trace, format_async_trace, format_trace, print_trace

from .helpers import line_of

FILE_LINE = re.compile(r'File "(.+)", line (\d+), in (\S+)')


def _in_thread() -> list[str]:
    return format_trace(style="traceback")  # thread-here


async def _worker() -> tuple[list[str], list[str]]:
    here = format_trace(style="traceback")  # worker-here
    there = await asyncio.to_thread(_in_thread)  # hop
    return here, there


async def _main() -> tuple[list[str], list[str], str, str]:
    child = asyncio.create_task(_worker(), name="the-worker")  # spawn
    here, there = await child
    root = asyncio.current_task()
    assert root is not None
    return here, there, child.get_name(), root.get_name()


def _src(line: int) -> str:
    return linecache.getline(__file__, line).strip()


def test_traceback_style_in_a_task() -> None:
    """Outermost first: root task, creating frame, separator naming the task, the asking frame."""
    here, _, child, root = asyncio.run(_main())
    spawn, ask = line_of(_main, "spawn"), line_of(_worker, "worker-here")
    assert here == [
        "Async trace (most recent call last):\n",
        f"  Root task {root!r}\n",
        f'  File "{__file__}", line {spawn}, in _main\n    {_src(spawn)}\n  --- task {child!r} created here ---\n',
        f'  File "{__file__}", line {ask}, in _worker\n    {_src(ask)}\n',
    ]


def test_traceback_style_across_an_executor_hop() -> None:
    """An executor hop gets its own separator after the coroutine line that made it."""
    _, there, _, _ = asyncio.run(_main())
    hop, ask = line_of(_worker, "hop"), line_of(_in_thread, "thread-here")
    assert there[-2:] == [
        f'  File "{__file__}", line {hop}, in _worker\n    {_src(hop)}\n  --- executor thread started here ---\n',
        f'  File "{__file__}", line {ask}, in _in_thread\n    {_src(ask)}\n',
    ]


def test_editor_regex_finds_every_frame_and_real_lines() -> None:
    """`File "(.+)", line (\\d+)` matches once per frame, each pointing at the line shown under it."""
    trace = asyncio.run(_run_collect())
    text = "".join(format_async_trace(trace, style="traceback"))
    matches = FILE_LINE.findall(text)
    framed = [f for f in trace["frames"] if f["line"] is not None]
    assert len(matches) == len(framed)
    assert [(m[0], int(m[1]), m[2]) for m in matches] == [
        (f["filename"], f["line"], f["name"]) for f in reversed(framed)
    ]
    for filename, line, _ in matches:
        source = linecache.getline(filename, int(line)).strip()
        assert f"\n    {source}\n" in text


async def _run_collect() -> TraceData:
    async def inner() -> TraceData:
        return collect_async_trace()

    return await asyncio.create_task(inner())


def test_print_trace_traceback_style_to_file() -> None:
    """print_trace(style="traceback") writes the same lines as format_trace."""

    async def main() -> tuple[str, list[str]]:
        buf = io.StringIO()
        print_trace(file=buf, style="traceback")
        lines = format_trace(style="traceback")
        return buf.getvalue(), lines

    printed, lines = asyncio.run(main())
    assert printed.splitlines()[:2] == "".join(lines).splitlines()[:2]
    assert printed.startswith("Async trace (most recent call last):\n")


def test_limit_applies_before_reversing() -> None:
    """limit keeps the innermost frames, which the traceback style then prints last."""
    here, _, _, _ = asyncio.run(_main())
    assert len(here) == 4

    async def main() -> list[str]:
        return await asyncio.create_task(_limited())

    lines = asyncio.run(main())
    assert len(lines) == 2
    assert "in _limited" in lines[1]


async def _limited() -> list[str]:
    return format_trace(style="traceback", limit=1)


def test_unknown_style_is_a_value_error() -> None:
    """An unknown style is rejected with a clear ValueError."""
    with pytest.raises(ValueError, match="style must be one of 'arrows', 'traceback'"):
        format_async_trace({"frames": [], "current_task": None, "in_executor": False}, style="json")  # type: ignore[arg-type]


def _sync_leaf() -> tuple[list[str], TraceData]:
    return format_trace(style="traceback"), collect_async_trace()  # leaf


async def _task_b() -> tuple[list[str], TraceData]:
    return await asyncio.to_thread(_sync_leaf)  # hop-b


async def _task_a() -> tuple[list[str], TraceData]:
    return await asyncio.create_task(_task_b(), name="b")  # spawn-b


async def _deep_main() -> tuple[list[str], TraceData]:
    return await asyncio.create_task(_task_a(), name="a")  # spawn-a


def _assert_linkable(text: str, frames: list[TraceFrame]) -> None:
    """Each framed frame is one `File` line, outermost first, followed by its real source line."""
    framed = [f for f in reversed(frames) if f["line"] is not None]
    matches = FILE_LINE.findall(text)
    assert [(m[0], int(m[1]), m[2]) for m in matches] == [(f["filename"], f["line"], f["name"]) for f in framed]
    for filename, line, name in matches:
        source = linecache.getline(filename, int(line)).strip()
        assert source
        assert f'File "{filename}", line {line}, in {name}\n    {source}\n' in text


def test_editor_regex_across_tasks_and_an_executor_hop() -> None:
    """Through two tasks and a to_thread hop, the regex finds every frame, each at a real line."""
    lines, trace = asyncio.run(_deep_main())
    text = "".join(lines)
    _assert_linkable(text, trace["frames"])
    hop, spawn_b, spawn_a = line_of(_task_b, "hop-b"), line_of(_task_a, "spawn-b"), line_of(_deep_main, "spawn-a")
    assert text.index(f"line {spawn_a},") < text.index("--- task 'a' created here ---")
    assert text.index("--- task 'a' created here ---") < text.index(f"line {spawn_b},")
    assert text.index("--- task 'b' created here ---") < text.index(f"line {hop},")
    assert text.endswith(
        f'  File "{__file__}", line {hop}, in _task_b\n    {_src(hop)}\n'
        "  --- executor thread started here ---\n"
        f'  File "{__file__}", line {line_of(_sync_leaf, "leaf")}, in _sync_leaf\n'
        f"    {_src(line_of(_sync_leaf, 'leaf'))}\n"
    )


async def _chain_link(n: int) -> tuple[list[str], TraceData]:
    if n:
        return await asyncio.create_task(_chain_link(n - 1))
    return format_trace(style="traceback"), collect_async_trace()


def test_elided_hops_are_not_taken_for_frames() -> None:
    """With hops elided by max_depth, the marker line is no File line and every frame still links."""
    async_trace.enable_tracing(max_depth=8)
    lines, trace = asyncio.run(_chain_link(20))
    text = "".join(lines)
    markers = [f["name"] for f in trace["frames"] if f["line"] is None and "elided" in f["name"]]
    assert len(markers) == 1
    assert [line for line in text.splitlines() if "elided" in line] == [f"  {markers[0]}"]
    _assert_linkable(text, trace["frames"])


async def _orphan(started: asyncio.Event, go: asyncio.Event) -> tuple[list[str], TraceData]:
    started.set()
    await go.wait()
    return format_trace(style="traceback"), collect_async_trace()  # orphan-here


async def _middle(
    started: asyncio.Event, go: asyncio.Event, out: list[asyncio.Task[tuple[list[str], TraceData]]]
) -> None:
    out.append(asyncio.create_task(_orphan(started, go), name="orphan"))  # spawn-orphan


async def _gone_main() -> tuple[list[str], TraceData]:
    started, go = asyncio.Event(), asyncio.Event()
    out: list[asyncio.Task[tuple[list[str], TraceData]]] = []
    await asyncio.create_task(_middle(started, go, out), name="middle")  # spawn-middle
    await started.wait()
    gc.collect()  # the finished middle task is gone
    go.set()
    return await out[0]


def test_a_boundary_whose_task_is_gone_keeps_its_separator() -> None:
    """The task created at a line may be gone when the trace is printed: its separator still shows."""
    lines, trace = asyncio.run(_gone_main())
    middle = line_of(_gone_main, "spawn-middle")
    orphan = line_of(_middle, "spawn-orphan")
    here = line_of(_orphan, "orphan-here")
    assert trace["frames"][2]["task"] is None  # the frame that created 'middle': that task is gone
    assert lines[2:] == [
        f'  File "{__file__}", line {middle}, in _gone_main\n    {_src(middle)}\n  --- task created here ---\n',
        f"  File \"{__file__}\", line {orphan}, in _middle\n    {_src(orphan)}\n  --- task 'orphan' created here ---\n",
        f'  File "{__file__}", line {here}, in _orphan\n    {_src(here)}\n',
    ]
    # format_async_trace on the collected data marks it the same way; a plain copy of the frames does not.
    text = format_async_trace(trace, style="traceback")
    assert text[2].endswith("  --- task created here ---\n")
    copied: TraceData = {**trace, "frames": list(trace["frames"])}
    assert not format_async_trace(copied, style="traceback")[2].endswith("  --- task created here ---\n")
