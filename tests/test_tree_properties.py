"""Property: task_tree() taken inside a random live task tree is that tree (parents, names, creation lines).

The generated trees mix every way of creating a task, same-task awaits, executor hops back to the
loop, fire-and-forget children, and parents that finish before their children. All leaves wait
until the last one arrives; the last one takes the tree while every task is alive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import sys
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from async_trace import TaskInfo, TaskTree, task_tree

from .helpers import line_of
from .strategies import LifeTree, life_trees

HAS_TASK_GROUP = sys.version_info >= (3, 11)
TASK_EDGES = ["create_task", "ensure_future", "loop_create_task", "gather", "detached", "executor"]
if HAS_TASK_GROUP:
    TASK_EDGES.append("task_group")
EDGES = [*TASK_EDGES, "await"]

# A node: (finishes early, [(edge, child node), ...]). A node that finishes early creates all its
# children "detached" and returns at once, so its task ends while they live on.
Node = LifeTree


def trees() -> st.SearchStrategy[Node]:
    return life_trees(EDGES, _normalise)


def _normalise(node: Node) -> Node:
    """At most one same-task await per node (it runs last and blocks); early finish over detached edges only."""
    finish, children = node
    finish = finish and bool(children)
    out: list[tuple[str, Node]] = []
    awaited = False
    for edge, sub in children:
        if finish:
            edge = "detached"
        elif edge == "await":
            if awaited:
                edge = "create_task"
            awaited = True
        out.append((edge, _normalise(sub)))
    return (finish, out)


def _edges(node: Node) -> list[tuple[str, Node]]:
    return [item for edge, sub in node[1] for item in [(edge, sub), *_edges(sub)]]


def _leaves(node: Node) -> int:
    return 1 if not node[1] else sum(_leaves(sub) for _, sub in node[1])


class Run:
    def __init__(self, leaves: int, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        self.leaves = leaves
        self.arrived = 0
        self.pool = pool
        self.all_in = asyncio.Event()
        self.tree: TaskTree | None = None
        self.last: str | None = None

    async def node(self, node: Node, path: tuple[int, ...], new_task: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        if new_task:
            task.set_name(_name(path))
        finish, children = node
        if not children:
            self.arrived += 1
            if self.arrived == self.leaves:
                gc.collect()  # finished parents nothing references are gone
                self.last = task.get_name()
                self.tree = task_tree()
                self.all_in.set()
            await self.all_in.wait()
            return
        group: Any = asyncio.TaskGroup() if HAS_TASK_GROUP else contextlib.AsyncExitStack()  # type: ignore[attr-defined]
        async with group:
            waits: list[asyncio.Future[Any]] = []
            awaited: tuple[Node, tuple[int, ...]] | None = None
            for i, (edge, sub) in enumerate(children):
                child = (*path, i)
                if edge == "await":
                    awaited = (sub, child)
                    continue
                waits.extend(self.spawn(edge, sub, child, group))
            if finish:
                return
            if awaited is not None:
                await self.node(awaited[0], awaited[1], False)  # await
            await self.all_in.wait()
            for w in waits:
                await w

    def spawn(self, edge: str, sub: Node, path: tuple[int, ...], group: Any) -> list[asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        if edge == "create_task":
            return [asyncio.create_task(self.node(sub, path, True))]  # create_task
        if edge == "ensure_future":
            return [asyncio.ensure_future(self.node(sub, path, True))]  # ensure_future
        if edge == "loop_create_task":
            return [loop.create_task(self.node(sub, path, True))]  # loop_create_task
        if edge == "gather":
            return [asyncio.gather(self.node(sub, path, True))]  # gather
        if edge == "detached":
            asyncio.create_task(self.node(sub, path, True))  # detached
            return []
        if edge == "task_group":
            group.create_task(self.node(sub, path, True))  # task_group
            return []
        assert edge == "executor"
        return [loop.run_in_executor(self.pool, self.in_thread, loop, sub, path)]  # executor

    def in_thread(self, loop: asyncio.AbstractEventLoop, sub: Node, path: tuple[int, ...]) -> None:
        asyncio.run_coroutine_threadsafe(self.node(sub, path, True), loop).result(60)  # submit


def _name(path: tuple[int, ...]) -> str:
    return "t" + ".".join(map(str, path))


def _line(edge: str) -> int:
    return line_of(Run.spawn, edge)


# Canonical form: (name or "<gone>", running?, creation boundaries, sorted children).
Canon = tuple[str, bool, tuple[tuple[str, int, bool], ...], tuple[Any, ...]]


def expected(node: Node, path: tuple[int, ...], last: str) -> list[Canon]:
    """The canonical entries for the tasks ``node`` creates (directly, or through same-task awaits)."""
    out: list[Canon] = []
    for i, (edge, sub) in enumerate(node[1]):
        child = (*path, i)
        if edge == "await":
            out.extend(expected(sub, child, last))
            continue
        created: tuple[tuple[str, int, bool], ...]
        if edge == "executor":
            created = (("in_thread", line_of(Run.in_thread, "submit"), False), ("spawn", _line("executor"), True))
        else:
            created = (("spawn", _line(edge), False),)
        gone = sub[0]  # finished early: its task is gone, its children are not
        name = "<gone>" if gone else _name(child)
        out.append((name, name == last, created, tuple(sorted(expected(sub, child, last)))))
    return out


def actual(info: TaskInfo) -> Canon:
    created = tuple(
        (f["name"], f["line"] or 0, f["is_executor"])
        for i, f in enumerate(info.created_at)
        if f["line"] is not None and (i == 0 or f["is_executor"])
    )
    gone = info.state in ("finished", "done")
    name = "<gone>" if gone else (info.name or "?")
    return (name, info.state == "running", created, tuple(sorted(actual(c) for c in info.children)))


@given(trees())
def test_task_tree_is_the_generated_tree(tree: Node) -> None:
    """Parent links, names, creation lines (executor hops included) and finished parents match."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        run = Run(_leaves(tree), pool)

        async def main() -> None:
            asyncio.current_task().set_name("root")  # type: ignore[union-attr]
            await run.node(tree, (), False)
            await run.all_in.wait()  # the root may finish its part early, the run may not
            # Let every task end on its own (asyncio.run would cancel the stragglers).
            for _ in range(1000):
                if len(asyncio.all_tasks()) == 1:
                    break
                await asyncio.sleep(0.005)

        asyncio.run(main())
    assert run.tree is not None
    assert run.last is not None
    kinds = {info.state for _, info in run.tree.walk()} | {e for e, _ in _edges(tree)}
    for kind in sorted(kinds):
        event(kind)  # shown by --hypothesis-show-statistics: how often each case came up
    (root,) = run.tree.roots
    assert (root.name, root.origin, root.created_at) == ("root", "root", ())
    assert actual(root)[3] == tuple(sorted(expected(tree, (), run.last)))
    assert root.state == ("running" if run.last == "root" else "pending")
    live = sum(1 for _, info in run.tree.walk() if info.state != "finished")
    assert run.tree.live_count == live
