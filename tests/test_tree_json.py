"""tree_to_dict / tree_to_json: the task tree as flat, JSON-ready data, linked by key."""

from __future__ import annotations

import asyncio
import json
import threading

import async_trace
from async_trace import JSONTaskTree, TaskTree, task_tree, tree_to_dict, tree_to_json

from .apps import ON_BOTH_LOOPS, run_on
from .helpers import line_of


async def _sleeper() -> None:
    await asyncio.sleep(3600)  # sleeping


async def _starter() -> None:
    asyncio.create_task(_sleeper(), name="orphan")  # spawn-orphan


async def _server() -> None:
    asyncio.create_task(_sleeper(), name="conn")  # spawn-conn
    await asyncio.sleep(3600)  # server-waits


async def _build() -> tuple[TaskTree, JSONTaskTree]:
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    server = asyncio.create_task(_server(), name="server")  # spawn-server
    starter = asyncio.create_task(_starter(), name="starter")  # spawn-starter
    await starter
    await asyncio.sleep(0)
    del starter
    try:
        tree = task_tree()
        return tree, tree_to_dict(tree)
    finally:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        del server


def check_links(data: JSONTaskTree) -> None:
    """Keys are indexes; parent, children, depth and roots agree with each other."""
    tasks = data["tasks"]
    assert [t["key"] for t in tasks] == list(range(len(tasks)))
    assert data["roots"] == [t["key"] for t in tasks if t["parent"] is None]
    for task in tasks:
        for key in task["children"]:
            assert tasks[key]["parent"] == task["key"]
            assert tasks[key]["depth"] == task["depth"] + 1
        if task["parent"] is None:
            assert task["depth"] == 0


def test_flat_depth_first_entries_linked_by_key() -> None:
    tree, data = asyncio.run(_build())
    check_links(data)
    assert [(t["name"], t["state"], t["origin"], t["depth"]) for t in data["tasks"]] == [
        ("main", "running", "root", 0),
        ("server", "pending", "traced", 1),
        ("conn", "pending", "traced", 2),
        (None, "finished", "traced", 1),
        ("orphan", "pending", "traced", 2),
    ]
    assert [(t["name"], t["id"]) for t in data["tasks"]] == [(info.name, info.id) for _, info in tree.walk()]
    assert data["live_count"] == tree.live_count == 4
    finished = data["tasks"][3]
    assert finished["id"] is None
    assert finished["created_at"][0]["line"] == line_of(_build, "spawn-starter")
    assert finished["created_at"][0]["task"] is None  # the task object is gone
    conn = data["tasks"][2]
    assert conn["created_at"][0] == {
        "name": "_server",
        "line": line_of(_server, "spawn-conn"),
        "filename": __file__,
        "indent": 0,
        "task": {"name": "conn", "id": conn["id"]},
        "is_executor": False,
        "is_process": False,
        "in_app": True,
    }
    assert [(f["name"], f["line"]) for f in conn["suspended_at"]] == [("_sleeper", line_of(_sleeper, "sleeping"))]
    assert data["tasks"][1]["children"] == [2]
    assert data["tasks"][0]["children"] == [1, 3]
    assert set(conn) == {
        "key", "parent", "children", "depth", "name", "id", "state", "origin",
        "created_at", "suspended_at", "executor_threads", "awaited_by", "age", "idle",
    }  # fmt: skip
    # The data's awaiters are the tree's (none here: main awaits no task at this point).
    assert [t["awaited_by"] for t in data["tasks"]] == [list(info.awaited_by) for _, info in tree.walk()]


def test_age_and_idle_are_the_tree_s_none_without_a_stall_watch() -> None:
    tree, data = asyncio.run(_build())
    assert [(t["age"], t["idle"]) for t in data["tasks"]] == [(None, None)] * len(data["tasks"])
    assert [(t["age"], t["idle"]) for t in data["tasks"]] == [(info.age, info.idle) for _, info in tree.walk()]


def test_age_and_idle_are_the_census_s_seconds_while_a_stall_watch_runs() -> None:
    async def main() -> tuple[TaskTree, JSONTaskTree]:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        with async_trace.watch_stalls(0.1, log=False, discover_interval=0.1):
            sleeper = asyncio.create_task(_sleeper(), name="sleeper")
            await asyncio.sleep(0.5)  # a few censuses
            tree = task_tree()
            data = tree_to_dict(tree)
            sleeper.cancel()
            await asyncio.gather(sleeper, return_exceptions=True)
        return tree, data

    tree, data = asyncio.run(main())
    by_name = {t["name"]: t for t in data["tasks"]}
    for name in ("main", "sleeper"):
        age, idle = by_name[name]["age"], by_name[name]["idle"]
        assert isinstance(age, float)
        assert isinstance(idle, float)
        assert 0.0 <= idle <= age
        info = tree.find(name)
        assert info is not None
        assert (age, idle) == (info.age, info.idle)
    assert json.loads(tree_to_json(tree))["tasks"] == json.loads(json.dumps(data["tasks"]))


def test_awaited_by_holds_the_awaiting_tasks_ids() -> None:
    async def waiter(task: asyncio.Task[None]) -> None:
        await task

    async def main() -> tuple[TaskTree, JSONTaskTree]:
        sleeper = asyncio.create_task(asyncio.sleep(3600), name="sleeper")
        watcher = asyncio.create_task(waiter(sleeper), name="watcher")
        await asyncio.sleep(0)
        try:
            tree = task_tree()
            return tree, tree_to_dict(tree)
        finally:
            sleeper.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    tree, data = asyncio.run(main())
    by_name = {t["name"]: t for t in data["tasks"]}
    assert by_name["sleeper"]["awaited_by"] == [by_name["watcher"]["id"]] == list(tree.find("sleeper").awaited_by)  # type: ignore[union-attr]
    assert by_name["watcher"]["awaited_by"] == []


def test_loop_description() -> None:
    tree, data = asyncio.run(_build())
    assert data["loop"] == {
        "type": type(tree.loop).__name__,
        "id": id(tree.loop),
        "thread_id": threading.get_ident(),
        "thread_name": threading.current_thread().name,
    }


@ON_BOTH_LOOPS
def test_the_loop_s_thread_in_another_thread(loop: str) -> None:
    """A loop running in another thread (uvloop's keeps its thread id in C) is named by that thread."""
    got: list[JSONTaskTree] = []

    async def look() -> None:
        running = asyncio.get_running_loop()
        worker = threading.Thread(target=lambda: got.append(tree_to_dict(task_tree(running))), name="looker")
        worker.start()
        await asyncio.sleep(0.2)
        worker.join(10)

    thread = threading.Thread(target=run_on, args=(loop, look()), name="loop-thread")
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    ((data,),) = [got]
    assert (data["loop"]["thread_id"], data["loop"]["thread_name"]) == (thread.ident, "loop-thread")


def test_tree_to_json_round_trips_and_takes_dumps_arguments() -> None:
    tree, data = asyncio.run(_build())
    later = tree_to_dict(tree)
    assert json.loads(tree_to_json(tree)) == later
    assert later["tasks"] == data["tasks"]
    assert (later["loop"]["thread_id"], later["loop"]["thread_name"]) == (None, None)  # the loop has stopped
    assert tree_to_json(tree, indent=2).startswith('{\n  "loop": {')


def test_executor_threads_mirror_the_tree() -> None:
    """Each ExecutorThread becomes {"name", "ident", "frames"}, frames as in trace_to_dict."""
    release = threading.Event()
    started = threading.Event()

    def blocking() -> None:
        started.set()
        release.wait(30)  # blocked

    async def main() -> tuple[TaskTree, JSONTaskTree]:
        call = asyncio.create_task(asyncio.to_thread(blocking), name="call")
        while not started.is_set():
            await asyncio.sleep(0.01)
        try:
            tree = task_tree()
            return tree, tree_to_dict(tree)
        finally:
            release.set()
            await call

    tree, data = asyncio.run(main())
    info = tree.find("call")
    assert info is not None
    (entry,) = [t for t in data["tasks"] if t["name"] == "call"]
    assert entry["executor_threads"] == [
        {
            "name": thread.name,
            "ident": thread.ident,
            "frames": async_trace.trace_to_dict(
                {"frames": list(thread.frames), "current_task": None, "in_executor": False}
            )["frames"],
        }
        for thread in info.executor_threads
    ]
    for thread in entry["executor_threads"]:  # where the tree finds them (not on 3.14 yet)
        assert thread["frames"][0]["line"] == line_of(test_executor_threads_mirror_the_tree, "blocked")


def test_an_empty_loop() -> None:
    async def main() -> JSONTaskTree:
        return tree_to_dict(task_tree())

    data = asyncio.run(main())
    check_links(data)
    assert data["roots"] == [0]
    assert len(data["tasks"]) == 1
    assert async_trace.tree_to_dict is tree_to_dict
