"""TaskInfo.awaited_by: which live tasks await each task now, on every version what it can see."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from async_trace import AsyncTraceWarning, TaskTree, _tree, task_tree

from .test_tree import forever, run, settle


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
    """Without 3.14's bookkeeping only asyncio's own waiting shapes are known (see README)."""

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
