"""TaskInfo.awaited_by: which live tasks await each task now, on every version what it can see."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import async_trace
from async_trace import AsyncTraceWarning, TaskTree, _tree, format_task_tree, print_task_tree, task_tree

from .helpers import line_of
from .test_tree import HERE, RUN_MAIN, forever, run, settle

WAIT = line_of(forever, "wait")
ME = "test_awaiters.py"


def awaiters(tree: TaskTree, name: str) -> list[str | None]:
    """The names of the tasks awaiting the task ``name``, in tree order."""
    info = tree.find(name)
    assert info is not None, name
    found = [tree.by_id(i) for i in info.awaited_by]
    assert None not in found
    return [f.name for f in found if f is not None]


def snapshot(start: Callable[[], Awaitable[None]]) -> TaskTree:
    """Run ``start()`` in the root task, let the tasks it made settle, return the tree."""

    async def main() -> TaskTree:
        await start()
        await settle()
        return task_tree()

    tree: TaskTree = run(main)
    return tree


def test_a_task_awaited_by_its_creator() -> None:
    async def parent() -> None:
        await asyncio.create_task(forever(), name="child")

    async def start() -> None:
        asyncio.create_task(parent(), name="parent")

    tree = snapshot(start)
    assert awaiters(tree, "child") == ["parent"]
    assert awaiters(tree, "parent") == []
    assert awaiters(tree, "root") == []  # the running task


def test_a_task_awaited_by_a_task_that_did_not_create_it() -> None:
    async def waiter(task: asyncio.Task[None]) -> None:
        await task

    async def start() -> None:
        job = asyncio.create_task(forever(), name="job")
        asyncio.create_task(waiter(job), name="waiter-1")
        asyncio.create_task(waiter(job), name="waiter-2")

    tree = snapshot(start)
    # Both, in tree order (siblings by creating line, then name).
    assert awaiters(tree, "job") == ["waiter-1", "waiter-2"]
    job = tree.find("job")
    assert job is not None
    assert job.id is not None
    assert tree.by_id(job.id) is job


def test_gather_of_tasks_and_of_coroutines() -> None:
    async def gatherer(a: asyncio.Task[None], b: asyncio.Task[None]) -> None:
        await asyncio.gather(a, asyncio.gather(b, forever()))  # nested gather

    async def start() -> None:
        a = asyncio.create_task(forever(), name="a")
        b = asyncio.create_task(forever(), name="b")
        asyncio.create_task(gatherer(a, b), name="gatherer")

    tree = snapshot(start)
    assert awaiters(tree, "a") == ["gatherer"]
    assert awaiters(tree, "b") == ["gatherer"]
    # gather() wrapped the coroutine in a task of its own, created (and awaited) by the gatherer.
    info = tree.find("gatherer")
    assert info is not None
    (wrapped,) = info.children
    assert wrapped.awaited_by == (info.id,)


def test_shield() -> None:
    async def shielder(task: asyncio.Task[None]) -> None:
        await asyncio.shield(task)

    async def start() -> None:
        inner = asyncio.create_task(forever(), name="inner")
        asyncio.create_task(shielder(inner), name="shielder")

    tree = snapshot(start)
    assert awaiters(tree, "inner") == ["shielder"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup is 3.11+")
def test_task_group_tasks_are_awaited_by_the_task_in_the_async_with() -> None:
    async def owner(ready: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined,unused-ignore]
            tg.create_task(forever(), name="member-1")
            tg.create_task(forever(), name="member-2")
            ready.set()
            await forever()  # still in the body: asyncio counts the members as awaited already

    async def start() -> None:
        ready = asyncio.Event()
        asyncio.create_task(owner(ready), name="owner")
        await ready.wait()

    tree = snapshot(start)
    assert awaiters(tree, "member-1") == ["owner"]
    assert awaiters(tree, "member-2") == ["owner"]


def test_wait_and_wait_for() -> None:
    async def waits(task: asyncio.Task[None]) -> None:
        await asyncio.wait([task])

    async def waits_for(task: asyncio.Task[None]) -> None:
        await asyncio.wait_for(task, 3600)

    async def start() -> None:
        job = asyncio.create_task(forever(), name="job")
        other = asyncio.create_task(forever(), name="other")
        asyncio.create_task(waits(job), name="waits")
        asyncio.create_task(waits_for(other), name="waits-for")

    tree = snapshot(start)
    assert awaiters(tree, "job") == ["waits"]
    assert awaiters(tree, "other") == ["waits-for"]


def test_a_task_waiting_on_an_event_is_not_seen_as_awaiting_its_setter() -> None:
    """A plain future or an Event in between says nothing about tasks: no edge, on every version."""

    async def consumer(event: asyncio.Event) -> None:
        await event.wait()

    async def start() -> None:
        event = asyncio.Event()
        asyncio.create_task(forever(), name="producer")
        asyncio.create_task(consumer(event), name="consumer")

    tree = snapshot(start)
    assert all(info.awaited_by == () for _, info in tree.walk())


@pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio's own awaiter bookkeeping is 3.14+")
def test_registered_awaiter_through_a_future_lands_on_the_task_awaiting_that_future() -> None:
    """3.14's ``future_add_to_awaited_by`` with a plain future as the waiter: resolved to its awaiter."""
    add = asyncio.future_add_to_awaited_by  # type: ignore[attr-defined,unused-ignore]

    async def middle(fut: asyncio.Future[None]) -> None:
        await fut

    async def start() -> None:
        job = asyncio.create_task(forever(), name="job")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        add(job, fut)
        asyncio.create_task(middle(fut), name="middle")

    tree = snapshot(start)
    assert awaiters(tree, "job") == ["middle"]


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14+ sees it through asyncio's bookkeeping")
def test_before_314_a_registration_by_hand_is_not_seen() -> None:
    """Without 3.14's bookkeeping only asyncio's own waiting shapes are known (see docs/task-tree.md)."""

    async def middle(fut: asyncio.Future[None]) -> None:
        await fut

    async def start() -> None:
        asyncio.create_task(forever(), name="job")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.create_task(middle(fut), name="middle")

    tree = snapshot(start)
    assert awaiters(tree, "job") == []


def test_by_id_of_an_unknown_id_is_none() -> None:
    tree = snapshot(settle)
    assert tree.by_id(0) is None
    root = tree.find("root")
    assert root is not None
    assert root.id is not None
    assert tree.by_id(root.id) is root


def test_an_internal_error_leaves_the_tree_without_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(tasks: list[Any]) -> dict[int, list[Any]]:
        raise RuntimeError("asyncio changed")

    async def parent() -> None:
        await asyncio.create_task(forever(), name="child")

    async def start() -> None:
        asyncio.create_task(parent(), name="parent")

    monkeypatch.setattr(_tree, "awaiter_edges", broken)
    with pytest.warns(AsyncTraceWarning, match="finding which tasks await which"):
        tree = snapshot(start)
    assert awaiters(tree, "child") == []
    assert tree.find("parent") is not None


def test_repr_stays_short() -> None:
    async def parent() -> None:
        await asyncio.create_task(forever(), name="child")

    async def start() -> None:
        asyncio.create_task(parent(), name="parent")

    tree = snapshot(start)
    child = tree.find("child")
    assert child is not None
    assert repr(child) == (
        f"TaskInfo(name='child', id={child.id:#x}, state='pending', origin='traced', children=0, awaited_by=1)"
    )
    assert len(repr(tree.roots[0])) < 150


# --- rendering ------------------------------------------------------------------


async def _job_and_waiters() -> None:
    async def waiter(task: asyncio.Task[None]) -> None:
        await task  # waiter-awaits

    async def own() -> None:
        await asyncio.create_task(forever(), name="own-child")  # own-child

    job = asyncio.create_task(forever(), name="job")  # spawn-job
    asyncio.create_task(waiter(job), name="waiter-1")  # spawn-waiter-1
    asyncio.create_task(own(), name="own")  # spawn-own


def test_arrows_show_an_awaiter_only_when_it_is_not_the_creator() -> None:
    async def main() -> list[str]:
        await _job_and_waiters()
        await settle()
        return format_task_tree()  # fmt

    lines: list[str] = run(main)
    at = {m: line_of(_job_and_waiters, m) for m in ("spawn-job", "spawn-waiter-1", "spawn-own")}
    note = "  [awaited by waiter-1, not its creator]"
    assert lines == [
        "Task tree (5 live tasks):\n",
        "root (running)\n",
        f"│   ↑ main() at line {line_of(main, 'fmt')} [{ME}]\n",
        f"│   ↑ root() at line {RUN_MAIN} [{HERE}]\n",
        f"├── job (pending) ← _job_and_waiters() at line {at['spawn-job']} [{ME}]{note}\n",
        f"│       ↑ forever() at line {WAIT} [{HERE}]\n",
        f"├── waiter-1 (pending) ← _job_and_waiters() at line {at['spawn-waiter-1']} [{ME}]\n",
        f"│       ↑ waiter() at line {line_of(_job_and_waiters, 'waiter-awaits')} [{ME}]\n",
        f"└── own (pending) ← _job_and_waiters() at line {at['spawn-own']} [{ME}]\n",
        f"    │   ↑ own() at line {line_of(_job_and_waiters, 'own-child')} [{ME}]\n",
        f"    └── own-child (pending) ← own() at line {line_of(_job_and_waiters, 'own-child')} [{ME}]\n",
        f"            ↑ forever() at line {WAIT} [{HERE}]\n",
    ]


def test_traceback_style_awaited_by_line() -> None:
    async def main() -> list[str]:
        await _job_and_waiters()
        await settle()
        return format_task_tree(style="traceback")

    text = "".join(run(main))
    assert "  Task 'job' (pending)\n    Awaited by: 'waiter-1', not its creator\n    Created at" in text
    assert text.count("Awaited by:") == 1  # own-child is awaited by its creator: nothing


def test_several_awaiters_and_a_root_awaited() -> None:
    async def waiter(task: asyncio.Task[None]) -> None:
        await task

    async def main() -> list[str]:
        job = asyncio.create_task(forever(), name="job")
        for i in range(7):
            asyncio.create_task(waiter(job), name=f"w-{i}")  # spawn-w
        await settle()
        tree = task_tree()
        return [
            *format_task_tree(tree),
            *(line for line in format_task_tree(tree, style="traceback") if "Awaited by" in line),
        ]

    lines = run(main)
    (job_line,) = [line for line in lines if line.startswith("├── job ")]
    assert job_line.endswith("  [awaited by w-0, w-1, w-2, w-3, w-4 and 2 more, not its creator]\n")
    assert lines[-1] == "    Awaited by: 'w-0', 'w-1', 'w-2', 'w-3', 'w-4' and 2 more, not its creator\n"


def test_a_top_level_task_awaited_names_its_awaiters_without_a_creator_comparison() -> None:
    async def waiter(task: asyncio.Task[None]) -> None:
        await task

    async def main() -> list[str]:
        async_trace.disable_tracing()
        try:
            job = asyncio.create_task(forever(), name="untraced-job")
        finally:
            async_trace.enable_tracing()
        asyncio.create_task(waiter(job), name="a")
        asyncio.create_task(waiter(job), name="b")
        await settle()
        return format_task_tree()

    text = "".join(run(main))
    assert "\nuntraced-job (pending, unknown origin)  [awaited by a and b]\n" in text


# --- grouped view ---------------------------------------------------------------


async def _idle_worker() -> None:
    await asyncio.sleep(3600)  # worker-idle


async def _busy_worker() -> None:
    await forever()  # worker-busy


def test_grouped_view_counts_tasks_per_site_largest_group_first() -> None:
    async def main() -> tuple[list[str], list[str]]:
        for i in range(3):
            asyncio.create_task(_busy_worker(), name=f"busy-{i}")  # spawn-busy
        for i in range(50):
            asyncio.create_task(_idle_worker(), name=f"idle-{i}")  # spawn-idle
        await settle()
        tree = task_tree()  # take
        return format_task_tree(tree, group=True), format_task_tree(tree, group=True, style="traceback")

    arrows, traceback = run(main)
    spawn_idle, spawn_busy, take = (line_of(main, m) for m in ("spawn-idle", "spawn-busy", "take"))
    idle = line_of(_idle_worker, "worker-idle")
    assert arrows == [
        "Task groups (54 live tasks in 3 groups, largest first):\n",
        f"50 tasks  pending at _idle_worker() at line {idle} [{ME}], created at main() at line {spawn_idle} [{ME}]\n",
        # The innermost frame of the task's own code: forever(), where all three wait.
        f"3 tasks  pending at forever() at line {WAIT} [{HERE}], created at main() at line {spawn_busy} [{ME}]\n",
        f"1 task  running at main() at line {take} [{ME}], a root task\n",
    ]
    me, there = __file__, sys.modules[forever.__module__].__file__
    assert traceback == [
        "Task groups (54 live tasks in 3 groups, largest first):\n",
        f'50 tasks (pending) at File "{me}", line {idle}, in _idle_worker; '
        f'created at File "{me}", line {spawn_idle}, in main\n',
        f'3 tasks (pending) at File "{there}", line {WAIT}, in forever; '
        f'created at File "{me}", line {spawn_busy}, in main\n',
        f'1 task (running) at File "{me}", line {take}, in main; a root task\n',
    ]


def test_grouped_view_of_done_and_unknown_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    async def starter() -> None:
        asyncio.create_task(_idle_worker(), name="kid")  # spawn-kid

    async def main() -> asyncio.Task[None]:
        async_trace.disable_tracing()
        try:
            asyncio.create_task(asyncio.sleep(3600), name="untraced")
        finally:
            async_trace.enable_tracing()
        done = asyncio.create_task(starter(), name="starter")  # spawn-starter
        await settle()
        print_task_tree(group=True)  # print
        return done  # a done task still referenced is a live entry (as the kid's parent)

    run(main)
    at = {m: line_of(main, m) for m in ("spawn-starter", "print")}
    assert capsys.readouterr().out.splitlines() == [
        "Task groups (4 live tasks in 4 groups, largest first):",
        f"1 task  running at main() at line {at['print']} [{ME}], a root task",
        f"1 task  done, created at main() at line {at['spawn-starter']} [{ME}]",
        f"1 task  pending at _idle_worker() at line {line_of(_idle_worker, 'worker-idle')} [{ME}], "
        f"created at starter() at line {line_of(starter, 'spawn-kid')} [{ME}]",
        "1 task  pending, origin unknown",  # asyncio.sleep: no frame of its own code
    ]


def test_awaiter_of_a_task_whose_creator_finished_and_a_creator_among_awaiters() -> None:
    async def waiter(task: asyncio.Task[None]) -> None:
        await task

    async def starter(jobs: list[asyncio.Task[None]]) -> None:
        jobs.append(asyncio.create_task(forever(), name="orphan-job"))

    async def parent() -> None:
        shared = asyncio.create_task(forever(), name="shared")
        asyncio.create_task(waiter(shared), name="helper")
        await shared

    async def main() -> list[str]:
        jobs: list[asyncio.Task[None]] = []
        await asyncio.create_task(starter(jobs))
        asyncio.create_task(waiter(jobs[0]), name="adopter")
        asyncio.create_task(parent(), name="parent")
        await settle()
        gc.collect()
        return format_task_tree()

    text = "".join(run(main))
    assert "── orphan-job (pending) ← starter() at line" in text
    assert "  [awaited by adopter, not its creator]\n" in text  # its creator finished
    assert "  [awaited by parent and helper]\n" in text  # the creator is one of them: named, no remark
