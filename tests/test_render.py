"""The one renderer and the one writer: any tree, trace or name, onto any stream, at any depth; the records."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import async_trace
from async_trace import (
    ExecutorThread,
    TaskInfo,
    TaskTree,
    TraceData,
    _dump,
    _pstree,
    _render,
    _writer,
    dump_tasks,
    format_async_trace,
    format_exception,
    format_task_tree,
    format_trace,
    print_async_trace,
    print_exception,
    print_task_tree,
    print_trace,
    trace_to_json,
    tree_to_dict,
    tree_to_json,
)
from async_trace.logging import AsyncTraceFilter, compact_path

from . import strategies
from .strategies import AWKWARD_NAMES, chain, frame, frames_with_lines, make_tree, task_names, task_trees, traces

ENCODINGS = ["ascii", "latin-1", "utf-8"]
EDITOR = re.compile(r'File "(.+)", line (\d+), in (.+)')
STYLES = ["arrows", "traceback"]


def stream(encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="strict", newline="\n")


def text_of(out: io.TextIOWrapper) -> str:
    out.flush()
    data = out.buffer.getvalue()  # type: ignore[attr-defined]
    return str(data.decode(out.encoding, "strict"))


def file_lines(text: str) -> list[tuple[str, int]]:
    """``(file, line)`` of every ``File "...", line N, in name`` line; each must match the editor pattern whole."""
    found = []
    for line in text.splitlines():
        if line.lstrip(" |").startswith('File "'):
            match = EDITOR.fullmatch(line.lstrip(" |"))
            assert match is not None, line
            found.append((match[1], int(match[2])))
    return found


def with_lines(trace: TraceData) -> list[tuple[str, int]]:
    return [(f["filename"], f["line"]) for f in trace["frames"] if f["line"] is not None and f["filename"]]


def snapshot(tree: TaskTree) -> list[tuple[Any, str, TaskTree]]:
    return [(object(), "thread \u00e9\U0001f600", tree)]


async def _raise_in_task(name: str) -> BaseException:
    async def fail() -> None:
        raise ValueError(f"bad {name}")  # raise

    task = asyncio.create_task(fail(), name=name)
    try:
        await task
    except ValueError as exc:
        return exc
    raise AssertionError("no exception")


def _logged_path(name: str) -> str:
    seen: list[logging.LogRecord] = []

    async def main() -> None:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "msg", None, None)
        AsyncTraceFilter().filter(record)
        seen.append(record)

    async def root() -> None:
        await asyncio.create_task(main(), name=name)

    asyncio.run(root())
    return str(seen[0].async_trace)  # type: ignore[attr-defined]


# --- everything, onto every stream ----------------------------------------------------


@given(tree=task_trees, trace=traces(), name=task_names, group=st.booleans())
def test_every_renderer_any_tree_any_name_any_stream(tree: TaskTree, trace: TraceData, name: str, group: bool) -> None:
    exc = asyncio.run(_raise_in_task(name))
    path = _logged_path(name)
    assert "\n" not in path
    assert "\r" not in path
    for encoding in ENCODINGS:
        for style in STYLES:
            out = stream(encoding)
            print_async_trace(trace, file=out, style=style)  # type: ignore[arg-type]
            text = text_of(out)
            assert file_lines(text) == (with_lines(trace)[::-1] if style == "traceback" else [])

            out = stream(encoding)
            print_task_tree(tree, file=out, style=style)  # type: ignore[arg-type]
            text = text_of(out)
            if style == "traceback":  # names are quoted there: every File line is a frame's
                assert file_lines(text) == frames_with_lines(tree)
            assert text.count("\n") == len(format_task_tree(tree, style=style))  # type: ignore[arg-type]

            out = stream(encoding)
            print_task_tree(tree, file=out, style=style, group=True)  # type: ignore[arg-type]
            text_of(out)

            out = stream(encoding)
            with mock.patch.object(_dump, "_snapshot", return_value=snapshot(tree)):
                dump_tasks(out, style=style, summary=group)  # type: ignore[arg-type]
            assert text_of(out).startswith("Async task dump: 1 running event loop\n")

            out = stream(encoding)
            print_exception(exc, file=out, style=style)  # type: ignore[arg-type]
            text = text_of(out)
            assert "ValueError: bad" in text
            file_lines(text)

            out = stream(encoding)
            print_trace(file=out, style=style)  # type: ignore[arg-type]
            file_lines(text_of(out))

        out = stream(encoding)
        _writer.write([path, "\n", trace_to_json(trace), "\n", tree_to_json(tree), "\n"], out)
        json.loads(text_of(out).splitlines()[1])

        # python -m async_trace pstree / ps, from this process's data and from asyncio's await graph.
        result = {"pid": 1, "source": "async_trace", "loops": [tree_to_dict(tree)]}
        out = stream(encoding)

        def pstree_lines(plain: bool, data: dict[str, Any] = result) -> list[str]:
            return _pstree.format_pstree(data, ascii_only=plain)

        _writer.write(pstree_lines, out)
        assert text_of(out).count("\n") == 3 + len(format_task_tree(tree))
        out = stream(encoding)
        _writer.write(_pstree.format_ps(result), out)
        assert text_of(out).count("\n") == 2 + len(tree.walk())
        at = [{"name": "main", "line": 3, "filename": __file__, "indent": 0, "is_executor": False}]
        graph = {
            "pid": 1,
            "source": "remote_debugging",
            "await_graph": [
                {
                    "thread_id": 1,
                    "tasks": [
                        {"id": 1, "name": name, "frames": at, "awaited_by": [{"id": 2, "frames": at}]},
                        {"id": 2, "name": f"{name}-2", "frames": at, "awaited_by": [{"id": 1, "frames": at}]},
                    ],
                }
            ],
        }
        for render, count in ((_pstree.format_pstree, 7), (_pstree.format_ps, 4)):
            out = stream(encoding)
            _writer.write(render(graph), out)
            assert text_of(out).count("\n") == count  # a name with a newline keeps its line

    for style in STYLES:
        unicode = format_task_tree(tree, style=style, group=group)  # type: ignore[arg-type]
        ascii = format_task_tree(tree, style=style, group=group, ascii_only=True)  # type: ignore[arg-type]
        assert all(line.endswith("\n") and line.count("\n") == 1 for line in ascii)  # names stay on one line
        # Only the decorations differ.
        assert [_writer.to_ascii(line) for line in unicode] == [_writer.to_ascii(line) for line in ascii]
        for ascii_only in (False, True):
            format_async_trace(trace, style=style, ascii_only=ascii_only)  # type: ignore[arg-type]
            format_trace(style=style, ascii_only=ascii_only)  # type: ignore[arg-type]
            format_exception(exc, style=style, ascii_only=ascii_only)  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_ascii_stream_gets_ascii_decorations_and_escaped_names(encoding: str) -> None:
    tree = small_tree()
    out = stream(encoding)
    print_task_tree(tree, file=out)
    text = text_of(out)
    if encoding == "utf-8":
        assert text == "".join(format_task_tree(tree))
    else:
        assert text.splitlines()[:3] == ASCII_TREE[:3]
        assert "caf\xe9" in text if encoding == "latin-1" else "caf\\xe9" in text
        assert "\\U0001f600" in text


# --- depth --------------------------------------------------------------------------


def test_a_tree_deeper_than_the_recursion_limit_renders() -> None:
    depth = sys.getrecursionlimit() + 200
    tree = chain(depth)
    arrows = format_task_tree(tree)
    assert arrows[0] == f"Task tree ({depth} live tasks):\n"
    assert sum(1 for line in arrows if "(pending)" in line) == depth
    assert arrows[-1].endswith(f"{_writer.UNICODE.up} wait() at line 20 [strategies.py]\n")
    traceback = format_task_tree(tree, style="traceback")
    assert len(file_lines("".join(traceback))) == 2 * depth - 1
    assert format_task_tree(tree, group=True)[1].startswith(f"{depth - 1} tasks  pending")
    out = stream("ascii")
    print_task_tree(tree, file=out)
    assert text_of(out).count("`-- ") == depth - 1
    with mock.patch.object(_dump, "_snapshot", return_value=snapshot(tree)):
        out = stream("ascii")
        dump_tasks(out)
        assert text_of(out).count("(pending)") == depth
    assert len(json.loads(tree_to_json(tree))["tasks"]) == depth
    assert len(repr(tree)) < 100
    assert len(repr(tree.roots[0])) < 200
    hash(tree)
    hash(tree.roots[0])


def test_a_live_chain_deeper_than_the_recursion_limit_renders() -> None:
    """Real tasks, each created by the one above, deeper than the recursion limit (about a second)."""
    depth = sys.getrecursionlimit() + 100
    async_trace.enable_tracing(max_depth=depth * 2)
    found: list[TaskTree] = []

    async def link(i: int, ready: asyncio.Event) -> None:
        if i < depth:
            asyncio.create_task(link(i + 1, ready), name=f"link-{i + 1}")
            await ready.wait()
        else:
            await asyncio.sleep(0)
            found.append(async_trace.task_tree())
            out = stream("ascii")
            dump_tasks(out)
            assert text_of(out).count("(pending)") == depth
            ready.set()

    async def main() -> None:
        await link(0, asyncio.Event())

    asyncio.run(main())
    tree = found[0]
    assert max(level for level, _ in tree.walk()) == depth
    assert len(repr(tree)) < 100
    assert hash(tree) == hash(tree)
    out = stream("ascii")
    print_task_tree(tree, file=out, style="traceback")
    assert text_of(out).count("Task 'link-") == depth
    assert len(format_task_tree(tree, group=True)) >= 2


def test_a_trace_deeper_than_the_recursion_limit_renders() -> None:
    depth = sys.getrecursionlimit() + 200
    trace: TraceData = {
        "frames": strategies.reindent([frame("f", 5) for _ in range(depth)]),
        "current_task": None,
        "in_executor": False,
    }
    assert len(format_async_trace(trace)) == depth
    out = stream("ascii")
    print_async_trace(trace, file=out, style="traceback")
    assert len(file_lines(text_of(out))) == depth


# --- the records ----------------------------------------------------------------------


def _leaf(name: str) -> TaskInfo:
    return TaskInfo(
        name=name,
        id=1,
        state="pending",
        origin="root",
        task=None,
        created_at=(),
        suspended_at=(),
        executor_threads=(),
        children=(),
    )


def test_records_compare_and_hash_by_identity() -> None:
    a, b = _leaf("same"), _leaf("same")
    assert a != b
    assert a == a
    assert len({a, b, a}) == 2
    assert hash(a) == hash(a)
    assert hash(a) != hash(b)
    ta, tb = make_tree((a,)), make_tree((a,))
    assert ta != tb
    assert len({ta, tb}) == 2
    ea, eb = ExecutorThread("t", 1, ()), ExecutorThread("t", 1, ())
    assert ea != eb
    assert len({ea, eb}) == 2
    # Still immutable and slotted.
    with pytest.raises(AttributeError):
        a.name = "other"  # type: ignore[misc]
    for record in (a, ta, ea):
        assert not hasattr(record, "__dict__")


def test_records_have_short_reprs() -> None:
    info = _leaf("w")
    assert repr(info) == "TaskInfo(name='w', id=0x1, state='pending', origin='root', children=0, awaited_by=0)"
    tree = make_tree((info, info))
    assert repr(tree) == f"TaskTree(loop=NoneType at {id(None):#x}, roots=2)"
    thread = ExecutorThread("pool_0", 42, (frame("f", 1),))
    assert repr(thread) == "ExecutorThread(name='pool_0', ident=42, frames=1)"


def test_the_live_tree_record_hashes_and_reprs() -> None:
    async def main() -> TaskTree:
        return async_trace.task_tree()

    tree = asyncio.run(main())
    assert repr(tree).startswith("TaskTree(loop=")
    assert repr(tree).endswith(", roots=1)")
    assert tree.by_id(tree.roots[0].id or 0) is tree.roots[0]
    assert {tree, *tree.roots}


# --- ascii_only, exactly --------------------------------------------------------------


def small_tree() -> TaskTree:
    """root > (finished) > conn-1, and idle; an executor thread; odd names."""
    spawn = frame("main", 10, filename="/app/app.py")
    conn = TaskInfo(
        name="conn-\U0001f600",
        id=3,
        state="pending",
        origin="traced",
        task=None,
        created_at=(frame("starter", 12, filename="/app/app.py"),),
        suspended_at=(frame("serve", 30, filename="/app/app.py"),),
        executor_threads=(),
        children=(),
        awaited_by=(4,),
    )
    finished = TaskInfo(
        name=None,
        id=None,
        state="finished",
        origin="traced",
        task=None,
        created_at=(spawn,),
        suspended_at=(),
        executor_threads=(),
        children=(conn,),
    )
    idle = TaskInfo(
        name="caf\xe9",
        id=4,
        state="pending",
        origin="traced",
        task=None,
        created_at=(frame("main", 11, filename="/app/app.py"),),
        suspended_at=(frame("sleep", 40, filename="/app/app.py"),),
        executor_threads=(ExecutorThread("pool_0", 7, (frame("block", 50, filename="/app/app.py"),)),),
        children=(),
    )
    root = TaskInfo(
        name="root",
        id=1,
        state="running",
        origin="root",
        task=None,
        created_at=(),
        suspended_at=(frame("main", 20, filename="/app/app.py"),),
        executor_threads=(),
        children=(finished, idle),
    )
    return make_tree((root,))


ASCII_TREE = [
    "Task tree (3 live tasks):",
    "root (running)",
    "|   ^ main() at line 20 [app.py]",
    "|-- <finished task> <- main() at line 10 [app.py]",
    "|   `-- conn-\U0001f600 (pending) <- starter() at line 12 [app.py]  [awaited by caf\xe9, not its creator]",
    "|           ^ serve() at line 30 [app.py]",
    "`-- caf\xe9 (pending) <- main() at line 11 [app.py]",
    "        ^ sleep() at line 40 [app.py]",
    "        executor thread 'pool_0':",
    "          ^ block() at line 50 [app.py]",
]


def test_ascii_only_tree_exactly() -> None:
    tree = small_tree()
    assert format_task_tree(tree, ascii_only=True) == [line + "\n" for line in ASCII_TREE]
    unicode = format_task_tree(tree)
    assert [_writer.to_ascii(line) for line in unicode] == [line + "\n" for line in ASCII_TREE]
    out = stream("utf-8")
    print_task_tree(tree, file=out, ascii_only=True)
    assert text_of(out) == "".join(line + "\n" for line in ASCII_TREE)
    # The traceback style and the grouped view draw nothing non-ASCII of their own.
    assert format_task_tree(tree, style="traceback", ascii_only=True) == format_task_tree(tree, style="traceback")
    assert format_task_tree(tree, group=True, ascii_only=True) == format_task_tree(tree, group=True)


def test_ascii_only_trace_path_and_dump_exactly() -> None:
    trace: TraceData = {
        "frames": strategies.reindent(
            [frame("worker", 3, filename="/a/w.py"), frame("main", None), frame("Task-1", None)]
        ),
        "current_task": None,
        "in_executor": False,
    }
    trace["frames"][1]["is_executor"] = True
    assert format_async_trace(trace, ascii_only=True) == [
        "^ worker() at line 3 [w.py]\n",
        "  ^ main [EXECUTOR]\n",
        "    ^ Task-1\n",
    ]
    assert compact_path(trace, ascii_only=True) == "worker <- main [executor] <- Task-1"
    assert compact_path(trace) == "worker ← main [executor] ← Task-1"
    out = stream("ascii")
    print_async_trace(trace, file=out)
    assert text_of(out) == "".join(format_async_trace(trace, ascii_only=True))
    tree = small_tree()
    with mock.patch.object(_dump, "_snapshot", return_value=[(object(), "main", tree)]):
        out = stream("utf-8")
        dump_tasks(out, ascii_only=True)
    lines = text_of(out).splitlines()
    assert lines[0] == "Async task dump: 1 running event loop"
    assert lines[1] == ""
    assert lines[2].startswith("Loop object at 0x")
    assert lines[2].endswith(" in thread 'main':")
    assert lines[3:] == ASCII_TREE


def test_ascii_only_exception_arrows() -> None:
    exc = asyncio.run(_raise_in_task("job"))
    lines = "".join(format_exception(exc, style="arrows", ascii_only=True)).splitlines()
    at = lines.index("Async trace:")
    assert lines[at + 1].lstrip().startswith("^ ")
    assert "↑" not in "".join(lines)
    out = stream("ascii")
    print_exception(exc, file=out, style="arrows")
    assert text_of(out).splitlines()[at + 1] == lines[at + 1]


def test_the_writer_maps_ready_lines_and_escapes_the_rest() -> None:
    out = stream("ascii")
    _writer.write(["├── ↑ a ← b └── │ ─ caf\xe9\n"], out)
    assert text_of(out) == "|-- ^ a <- b `-- | - caf\\xe9\n"
    out = stream("utf-8")
    _writer.write(["lone \ud800\n"], out)
    assert text_of(out) == "lone \\ud800\n"


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_a_task_label_has_one_rule(name: str) -> None:
    from async_trace import _chain

    assert _render.task_label(strategies.FakeTask(name)) == repr(_chain.task_name(strategies.FakeTask(name)))
    broken = strategies.BrokenTask()
    assert _render.task_label(broken) == repr(f"<BrokenTask at {id(broken):#x}>")
    data: TraceData = {"frames": [], "current_task": broken, "in_executor": False}  # type: ignore[typeddict-item]
    assert json.loads(trace_to_json(data))["current_task"]["name"] == _chain.task_name(broken)
