"""task_tree(): live tasks by creation parent, finished parents, unknown origins, executor threads, formats."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import async_trace
from async_trace import TaskInfo, TaskTree, format_task_tree, print_task_tree, task_tree

from .helpers import line_of

HERE = "test_tree.py"


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main`` as the root task named 'root'; cancel what it leaves behind."""

    async def root() -> Any:
        asyncio.current_task().set_name("root")  # type: ignore[union-attr]
        try:
            return await main()  # run-main
        finally:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

    return asyncio.run(root())


RUN_MAIN = line_of(run, "run-main")


def shape(info: TaskInfo) -> tuple[Any, ...]:
    """``(name, state, origin, creating line, children...)``: what most tests compare."""
    line = info.created_at[0]["line"] if info.created_at else None
    return (info.name, info.state, info.origin, line, *(shape(c) for c in info.children))


def by_name(tree: TaskTree, name: str) -> TaskInfo:
    found = tree.find(name)
    assert found is not None, name
    return found


async def forever() -> None:
    await asyncio.sleep(3600)  # wait


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_children_hang_under_their_creator_with_creation_and_suspension_lines() -> None:
    async def worker() -> None:
        asyncio.create_task(forever(), name="leaf")  # spawn-leaf
        await forever()  # worker-waits

    async def main() -> TaskTree:
        asyncio.create_task(worker(), name="worker")  # spawn-worker
        await settle()
        return task_tree()  # take

    tree = run(main)
    assert [shape(r) for r in tree.roots] == [
        (
            "root",
            "running",
            "root",
            None,
            (
                "worker",
                "pending",
                "traced",
                line_of(main, "spawn-worker"),
                ("leaf", "pending", "traced", line_of(worker, "spawn-leaf")),
            ),
        )
    ]
    root = tree.roots[0]
    assert root.created_at == ()
    assert [(f["name"], f["line"]) for f in root.suspended_at] == [
        ("main", line_of(main, "take")),
        ("root", RUN_MAIN),
    ]
    worker_info = by_name(tree, "worker")
    assert worker_info.task is not None
    assert worker_info.id == id(worker_info.task)
    # Innermost first: forever() waits inside worker().
    assert [(f["name"], f["line"]) for f in worker_info.suspended_at] == [
        ("forever", line_of(forever, "wait")),
        ("worker", line_of(worker, "worker-waits")),
    ]
    created = worker_info.created_at[0]
    assert (created["name"], created["task"], created["is_executor"]) == ("main", worker_info.task, False)
    assert created["filename"] is not None
    assert created["filename"].endswith(HERE)
    assert tree.live_count == 3
    assert [(depth, info.name) for depth, info in tree.walk()] == [(0, "root"), (1, "worker"), (2, "leaf")]


def test_a_finished_parent_still_holds_its_children() -> None:
    async def starter() -> None:
        asyncio.create_task(forever(), name="orphan")  # spawn-orphan

    async def main() -> TaskTree:
        asyncio.create_task(starter(), name="starter")  # spawn-starter
        await settle()
        gc.collect()
        return task_tree()

    tree = run(main)
    (root,) = tree.roots
    (finished,) = root.children
    assert shape(finished) == (
        None,
        "finished",
        "traced",
        line_of(main, "spawn-starter"),
        ("orphan", "pending", "traced", line_of(starter, "spawn-orphan")),
    )
    assert finished.task is None
    assert finished.id is None
    assert finished.suspended_at == ()


def test_finished_siblings_from_one_line_stay_apart() -> None:
    """Two finished parents created at the same line by the same task: two entries, one child each."""

    async def starter(i: int) -> None:
        asyncio.create_task(forever(), name=f"orphan-{i}")

    async def main() -> TaskTree:
        for i in range(2):
            asyncio.create_task(starter(i))  # same-line
        await settle()
        gc.collect()
        return task_tree()

    (root,) = run(main).roots
    assert len(root.children) == 2
    assert sorted(c.children[0].name or "" for c in root.children) == ["orphan-0", "orphan-1"]
    assert all(c.state == "finished" and len(c.children) == 1 for c in root.children)


def test_finished_root_keeps_its_name() -> None:
    """A task outliving asyncio's root task hangs under the finished root, named."""
    loop = asyncio.new_event_loop()
    try:
        holder: list[asyncio.Task[None]] = []

        async def first() -> None:
            holder.append(asyncio.create_task(forever(), name="survivor"))

        loop.run_until_complete(loop.create_task(first(), name="first-root"))
        gc.collect()

        async def look() -> TaskTree:
            return task_tree()

        tree = loop.run_until_complete(look())
        survivor_root = next(r for r in tree.roots if r.children and r.children[0].name == "survivor")
        assert (survivor_root.name, survivor_root.state, survivor_root.origin) == ("first-root", "finished", "root")
        holder[0].cancel()
        loop.run_until_complete(asyncio.gather(*holder, return_exceptions=True))
    finally:
        loop.close()


def test_tasks_created_while_tracing_was_off_have_unknown_origin() -> None:
    async def untraced_parent() -> None:
        asyncio.create_task(forever(), name="child-of-untraced")  # traced, from an untraced task
        await forever()

    async def main() -> TaskTree:
        async_trace.disable_tracing()
        try:
            asyncio.create_task(forever(), name="untraced")
            asyncio.create_task(untraced_parent(), name="untraced-parent")
        finally:
            async_trace.enable_tracing()
        await settle()
        return task_tree()

    tree = run(main)
    assert [(r.name, r.origin) for r in tree.roots] == [
        ("root", "root"),
        ("untraced", "unknown"),
        ("untraced-parent", "unknown"),
    ]
    assert [c.name for c in by_name(tree, "untraced-parent").children] == ["child-of-untraced"]
    assert by_name(tree, "root").children == ()
    assert "untraced (pending, unknown origin)\n" in "".join(format_task_tree(tree))


def test_executor_threads_show_under_the_task_that_made_the_call() -> None:
    inside = threading.Event()
    release = threading.Event()

    def blocking() -> None:
        inside.set()
        release.wait(30)  # in-thread

    async def caller() -> None:
        await asyncio.get_running_loop().run_in_executor(None, blocking)

    async def via_to_thread() -> None:
        await asyncio.to_thread(blocking)

    async def main() -> TaskTree:
        asyncio.create_task(caller(), name="caller")
        asyncio.create_task(via_to_thread(), name="to-thread")
        while not inside.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # both threads inside blocking()
        try:
            return task_tree()
        finally:
            release.set()

    tree = run(main)
    caller_info = by_name(tree, "caller")
    (thread,) = caller_info.executor_threads
    assert [(f["name"], f["line"]) for f in thread.frames] == [("blocking", line_of(blocking, "in-thread"))]
    assert thread.ident != threading.get_ident()
    assert thread.name
    # asyncio.to_thread runs in a task of its own (the coroutine's), which made the call.
    (thread2,) = by_name(tree, "to-thread").executor_threads
    assert thread2.frames[0]["name"] == "blocking"
    assert by_name(tree, "root").executor_threads == ()


def test_task_submitted_from_an_executor_thread_hangs_under_the_task_that_made_the_call() -> None:
    made = threading.Event()

    def in_thread(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.run_coroutine_threadsafe(forever(), loop)  # submit
        made.set()

    async def caller() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, in_thread, loop)  # hop
        await forever()

    async def main() -> TaskTree:
        asyncio.create_task(caller(), name="caller")
        while not made.is_set():
            await asyncio.sleep(0.01)
        await settle()
        return task_tree()

    tree = run(main)
    (child,) = by_name(tree, "caller").children
    assert [(f["name"], f["line"], f["is_executor"]) for f in child.created_at if f["line"] is not None] == [
        ("in_thread", line_of(in_thread, "submit"), False),
        ("caller", line_of(caller, "hop"), True),
    ]
    assert "← in_thread() at line" in "".join(format_task_tree(tree))


def test_task_created_by_a_callback_hangs_under_the_task_that_scheduled_it() -> None:
    async def scheduler() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: loop.create_task(forever(), name="from-callback"))  # callback
        await forever()

    async def main() -> TaskTree:
        asyncio.create_task(scheduler(), name="scheduler")
        await settle()
        return task_tree()

    tree = run(main)
    assert [c.name for c in by_name(tree, "scheduler").children] == ["from-callback"]


def test_a_chain_deeper_than_the_recursion_limit() -> None:
    depth = sys.getrecursionlimit() + 200

    async def link(n: int, ready: asyncio.Event, stop: asyncio.Event) -> None:
        # Each link waits on its own (not on its child), so cancelling them all does not recurse.
        if n == depth:
            ready.set()
        else:
            asyncio.create_task(link(n + 1, ready, stop), name=f"link-{n + 1}")
        await stop.wait()

    async def main() -> TaskTree:
        ready, stop = asyncio.Event(), asyncio.Event()
        asyncio.create_task(link(0, ready, stop), name="link-0")
        await ready.wait()
        try:
            return task_tree()
        finally:
            stop.set()

    tree = run(main)
    deepest = max(d for d, _ in tree.walk())
    assert deepest == depth + 1  # root, then link-0 ... link-depth
    assert tree.live_count == depth + 2


def test_state_of_a_done_parent_that_is_still_referenced() -> None:
    async def failing() -> None:
        asyncio.create_task(forever(), name="kid")
        raise ValueError("boom")

    async def main() -> tuple[TaskTree, asyncio.Task[None]]:
        parent = asyncio.create_task(failing(), name="failing")
        await settle()
        return task_tree(), parent

    tree, parent = run(main)
    info = by_name(tree, "failing")
    assert (info.state, info.task, [c.name for c in info.children]) == ("failed", parent, ["kid"])
    assert isinstance(parent.exception(), ValueError)  # not marked retrieved by task_tree()


def test_task_tree_of_a_loop_running_in_another_thread() -> None:
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def serve() -> None:
        asyncio.current_task().set_name("server-root")  # type: ignore[union-attr]
        asyncio.create_task(forever(), name="conn")
        started.set()
        await forever()

    def target() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(serve())

    thread = threading.Thread(target=target)
    thread.start()
    try:
        assert started.wait(10)
        tree = task_tree(loop)
        assert [(r.name, [c.name for c in r.children]) for r in tree.roots] == [("server-root", ["conn"])]
    finally:
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        thread.join(10)
        loop.close()


def test_no_running_loop_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError):
        task_tree()
    with pytest.raises(RuntimeError):
        format_task_tree()


# --- formats --------------------------------------------------------------------


async def _serve_one() -> None:
    await forever()  # serve-wait


def test_arrows_format_exactly() -> None:
    async def starter() -> None:
        asyncio.create_task(_serve_one(), name="conn-1")  # spawn-conn

    async def main() -> list[str]:
        asyncio.create_task(starter(), name="starter")  # spawn-starter
        asyncio.create_task(forever(), name="idle")  # spawn-idle
        await settle()
        gc.collect()
        return format_task_tree()  # fmt

    lines = run(main)
    assert lines == [
        "Task tree (3 live tasks):\n",
        "root (running)\n",
        f"│   ↑ main() at line {line_of(main, 'fmt')} [{HERE}]\n",
        f"│   ↑ root() at line {RUN_MAIN} [{HERE}]\n",
        f"├── <finished task> ← main() at line {line_of(main, 'spawn-starter')} [{HERE}]\n",
        f"│   └── conn-1 (pending) ← starter() at line {line_of(starter, 'spawn-conn')} [{HERE}]\n",
        f"│           ↑ forever() at line {line_of(forever, 'wait')} [{HERE}]\n",
        f"│           ↑ _serve_one() at line {line_of(_serve_one, 'serve-wait')} [{HERE}]\n",
        f"└── idle (pending) ← main() at line {line_of(main, 'spawn-idle')} [{HERE}]\n",
        f"        ↑ forever() at line {line_of(forever, 'wait')} [{HERE}]\n",
    ]


def test_traceback_format_exactly_and_every_file_line_is_linkable() -> None:
    async def main() -> list[str]:
        asyncio.create_task(_serve_one(), name="conn")  # spawn
        await settle()
        return format_task_tree(style="traceback")  # fmt

    lines = run(main)
    path = __file__
    text = "".join(lines)
    spawn, fmt = line_of(main, "spawn"), line_of(main, "fmt")
    wait, serve = line_of(forever, "wait"), line_of(_serve_one, "serve-wait")
    assert text == (
        "Task tree (2 live tasks; most recent call last):\n"
        "Task 'root' (running)\n"
        "  Running at (most recent call last):\n"
        f'    File "{path}", line {RUN_MAIN}, in root\n'
        "      return await main()  # run-main\n"
        f'    File "{path}", line {fmt}, in main\n'
        '      return format_task_tree(style="traceback")  # fmt\n'
        "  Task 'conn' (pending)\n"
        "    Created at (most recent call last):\n"
        f'      File "{path}", line {RUN_MAIN}, in root\n'
        "        return await main()  # run-main\n"
        f'      File "{path}", line {spawn}, in main\n'
        '        asyncio.create_task(_serve_one(), name="conn")  # spawn\n'
        "    Suspended at (most recent call last):\n"
        f'      File "{path}", line {serve}, in _serve_one\n'
        "        await forever()  # serve-wait\n"
        f'      File "{path}", line {wait}, in forever\n'
        "        await asyncio.sleep(3600)  # wait\n"
    )
    found = re.findall(r'File "(.+)", line (\d+)', text)
    assert [int(n) for _, n in found] == [RUN_MAIN, fmt, RUN_MAIN, spawn, serve, wait]


def test_print_task_tree_writes_format_task_tree(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> tuple[list[str], TaskTree]:
        tree = task_tree()
        print_task_tree(tree)
        return format_task_tree(tree), tree

    lines, _ = run(main)
    assert capsys.readouterr().out == "".join(lines)


def test_unknown_style_is_a_value_error() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="style must be one of"):
            format_task_tree(style="pstree")  # type: ignore[arg-type]

    run(main)


def test_tree_does_not_keep_finished_tasks_alive() -> None:
    """Building (and dropping) a tree leaves no reference to a task behind."""
    import weakref

    refs: list[weakref.ref[Any]] = []

    async def child() -> None:
        pass

    async def main() -> None:
        task = asyncio.create_task(child(), name="short")
        refs.append(weakref.ref(task))
        task_tree()
        format_task_tree()
        await task
        del task

    run(main)
    gc.collect()
    assert refs[0]() is None
