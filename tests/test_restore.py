"""disable_tracing() restores asyncio exactly; enable/disable are idempotent, thread-safe, good neighbours."""

from __future__ import annotations

import asyncio
import asyncio.base_events
import functools
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, _capture, collect_async_trace

from .helpers import line_of, rows, run_python

uvloop = pytest.importorskip("uvloop")

BaseEventLoop = asyncio.base_events.BaseEventLoop


def _py(code: str) -> Any:
    """Run ``code`` in a fresh interpreter; return the JSON it prints."""
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def _current() -> list[Any]:
    """What each patched (owner, name) holds right now."""
    return [vars(owner).get(name) for owner, name in _capture.patched_attributes()]


@pytest.fixture
def originals() -> Iterator[list[Any]]:
    """The unpatched value of every patched attribute (``None``: inherited, absent from ``vars``)."""
    async_trace.disable_tracing()
    try:
        yield _current()
    finally:
        async_trace.enable_tracing()


_RESTORE_SCRIPT = """\
import asyncio, asyncio.base_events, asyncio.tasks, json, sys
{first}
MISSING = object()
owners = [asyncio.base_events.BaseEventLoop, asyncio.base_events.Server, asyncio.tasks, asyncio{uvloop_owner}]
before = [dict(vars(o)) for o in owners]
meta_path = list(sys.meta_path)
import async_trace
from async_trace import _capture
{after}
patched = _capture.patched_attributes()
on = {{(id(o), n): vars(o).get(n, MISSING) for o, n in patched}}
def original(o, n):
    return before[owners.index(o)].get(n, MISSING)
UVLOOP_PATCHED = ("create_task", "run_in_executor", "create_server", "create_unix_server")
differ = all(on[id(o), n] is not original(o, n) for o, n in patched)
async_trace.disable_tracing()
async_trace.disable_tracing()
same = all(vars(o).get(n, MISSING) is original(o, n) for o, n in patched)
# Nothing else in those namespaces changed either.
whole = all(
    dict(vars(o)).keys() == b.keys() and all(vars(o)[k] is v for k, v in b.items())
    for o, b in zip(owners, before)
)
print(json.dumps({{
    "patched": sorted(f"{{getattr(o, '__qualname__', o.__name__)}}.{{n}}" for o, n in patched),
    "differ": differ,
    "same": same,
    "whole": whole,
    "uvloop_vars": sorted(k for k in UVLOOP_PATCHED if k in vars(uvloop.Loop)),
    "meta_path": sys.meta_path == meta_path,
}}))
"""

PATCHED = [
    "BaseEventLoop.create_task",
    "BaseEventLoop.run_in_executor",
    "Loop.create_server",
    "Loop.create_task",
    "Loop.create_unix_server",
    "Loop.run_in_executor",
    "Server._start_serving",
    "asyncio.run_coroutine_threadsafe",
    "asyncio.tasks.run_coroutine_threadsafe",
]


def test_disable_restores_every_attribute_exactly() -> None:
    """In a fresh interpreter (uvloop imported first): after disable, every patched attribute is the original."""
    code = _RESTORE_SCRIPT.format(first="import uvloop", uvloop_owner=", uvloop.Loop", after="")
    assert _py(code) == {
        "patched": PATCHED,
        "differ": True,
        "same": True,
        "whole": True,
        "uvloop_vars": [],
        "meta_path": True,
    }


def test_disable_restores_uvloop_imported_after_us() -> None:
    """uvloop imported after async_trace is patched at import and left pristine by disable."""
    code = _RESTORE_SCRIPT.format(
        first="",
        uvloop_owner="",
        after="import uvloop\nowners.append(uvloop.Loop)\n"
        "before.append({k: v for k, v in vars(uvloop.Loop).items()\n"
        "    if k not in ('create_task', 'run_in_executor', 'create_server', 'create_unix_server',\n"
        "                 'default_exception_handler')})",
    )
    assert _py(code) == {
        "patched": PATCHED,
        "differ": True,
        "same": True,
        "whole": True,
        "uvloop_vars": [],
        "meta_path": True,
    }


def test_enable_is_idempotent(originals: list[Any]) -> None:
    """Enabling twice installs each wrapper once: the second call changes nothing."""
    async_trace.enable_tracing()
    wrappers = _current()
    async_trace.enable_tracing()
    assert all(a is b for a, b in zip(_current(), wrappers, strict=True))
    assert not any(w is o for w, o in zip(wrappers, originals, strict=True))
    assert all(getattr(w, "__async_trace_wrapper__", False) for w in wrappers)


def test_disable_is_idempotent(originals: list[Any]) -> None:
    """Disabling twice restores once: every attribute is the original object after both calls."""
    async_trace.enable_tracing()
    async_trace.disable_tracing()
    async_trace.disable_tracing()
    assert all(a is b for a, b in zip(_current(), originals, strict=True))


def test_reenabling_reuses_the_same_wrappers(originals: list[Any]) -> None:
    """disable/enable cycles do not stack wrappers: one wrapper per original, every time."""
    # What each name resolves to untraced (inherited methods included).
    resolved = [getattr(owner, name) for owner, name in _capture.patched_attributes()]
    async_trace.enable_tracing()
    first = _current()
    for _ in range(3):
        async_trace.disable_tracing()
        async_trace.enable_tracing()
    assert all(a is b for a, b in zip(_current(), first, strict=True))
    assert all(w.__wrapped__ is r for w, r in zip(first, resolved, strict=True))


async def _leaf() -> TraceData:
    return collect_async_trace()  # leaf


async def _spawn_one() -> TraceData:
    asyncio.current_task().set_name("root")  # type: ignore[union-attr]
    return await asyncio.create_task(_leaf(), name="child")  # spawn


def _shape(trace: TraceData) -> list[tuple[str, int | None, str | None, bool]]:
    return [(r[0], r[1], r[3], r[4]) for r in rows(trace)]


TRACED = [
    ("_leaf", line_of(_leaf, "leaf"), None, False),
    ("_spawn_one", line_of(_spawn_one, "spawn"), "child", False),
    ("root", None, "root", False),
]
#: What a task created untraced sees: itself as the root.
UNTRACED = [("_leaf", line_of(_leaf, "leaf"), None, False), ("child", None, "child", False)]


def test_enable_disable_from_many_threads(originals: list[Any]) -> None:
    """Hammering enable/disable from 8 threads while tasks are created raises nothing; the end state is consistent."""
    errors: list[BaseException] = []
    started = threading.Barrier(9)

    def toggle() -> None:
        try:
            started.wait(timeout=30)
            for _ in range(300):
                async_trace.disable_tracing()
                async_trace.enable_tracing()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    async def one() -> int:
        return 1

    async def spawn(togglers: list[threading.Thread]) -> int:
        started.wait(timeout=30)
        rounds = 0
        # A fixed amount of toggling, with tasks created all along it (and a
        # few rounds more): bounded work, however the threads are scheduled.
        while rounds < 20 or any(t.is_alive() for t in togglers):
            assert sum(await asyncio.gather(*(asyncio.create_task(one()) for _ in range(5)))) == 5
            assert await asyncio.to_thread(int, "1") == 1
            trace = await asyncio.create_task(_leaf())
            # Either traced or untraced, never anything else.
            assert rows(trace)[0][:2] == ("_leaf", line_of(_leaf, "leaf"))
            rounds += 1
        return rounds

    threads = [threading.Thread(target=toggle) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        assert asyncio.run(spawn(threads)) >= 20
    finally:
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    async_trace.disable_tracing()
    assert all(a is b for a, b in zip(_current(), originals, strict=True))
    assert not _capture.is_active()
    async_trace.enable_tracing()
    assert _capture.is_active()
    assert all(getattr(w, "__async_trace_wrapper__", False) for w in _current())
    assert _shape(asyncio.run(_spawn_one())) == TRACED


def test_toggling_from_another_thread_while_a_loop_runs() -> None:
    """Disable and enable called from another thread take effect for the running loop's next creation."""

    async def main() -> tuple[TraceData, TraceData]:
        await asyncio.to_thread(async_trace.disable_tracing)
        off = await asyncio.create_task(_leaf(), name="child")
        await asyncio.to_thread(async_trace.enable_tracing)
        on = await asyncio.create_task(_leaf(), name="child")  # toggled-on
        return off, on

    off, on = asyncio.run(main())
    assert _shape(off) == UNTRACED
    assert _shape(on)[:2] == [TRACED[0], ("main", line_of(main, "toggled-on"), "child", False)]


def test_third_party_patch_applied_after_us_survives_disable() -> None:
    """A functools.wraps patch applied on top of ours stays after disable, and ours inside it passes through."""
    calls: list[str] = []
    ours = BaseEventLoop.create_task

    @functools.wraps(ours)
    def theirs(self: Any, coro: Any, **kwargs: Any) -> Any:
        calls.append(coro.__qualname__)
        return ours(self, coro, **kwargs)

    BaseEventLoop.create_task = theirs  # type: ignore[method-assign]
    try:
        async_trace.disable_tracing()
        assert BaseEventLoop.create_task is theirs
        assert _shape(asyncio.run(_spawn_one())) == UNTRACED
        async_trace.enable_tracing()
        assert BaseEventLoop.create_task is theirs  # not wrapped a second time
        traced = _shape(asyncio.run(_spawn_one()))
        # One boundary per creation, not doubled. Their wrapper's own frame is
        # shown on 3.10/3.11 but skipped on 3.12+ (functools.wraps gives it
        # asyncio's __module__, which the 3.12+ capture reads): not pinned here.
        assert [r[2] for r in traced].count("child") == 1
        assert [r[:2] for r in traced if r[0] != "theirs"] == [r[:2] for r in TRACED]
        assert [c for c in calls if c in ("_spawn_one", "_leaf")] == ["_spawn_one", "_leaf"] * 2
    finally:
        BaseEventLoop.create_task = ours  # type: ignore[method-assign]


async def _middle() -> TraceData:
    return await asyncio.create_task(_leaf(), name="grandchild")  # middle-spawn


async def _spawn_two(factory: Any = None) -> TraceData:
    asyncio.current_task().set_name("root")  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    loop.set_task_factory(factory)
    try:
        return await asyncio.create_task(_middle(), name="child")  # outer-spawn
    finally:
        loop.set_task_factory(None)


def _plain_factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
    return asyncio.Task(coro, loop=loop, **kwargs)


def _our_wrappers(obj: Any) -> int:
    """How many of our wrappers the ``__wrapped__`` chain starting at ``obj`` holds."""
    count = 0
    while obj is not None:
        count += bool(getattr(obj, "__async_trace_wrapper__", False))
        obj = getattr(obj, "__wrapped__", None)
    return count


def _assert_whole_chain(trace: TraceData) -> None:
    shape = _shape(trace)
    assert [r[2] for r in shape].count("grandchild") == 1
    assert [r[2] for r in shape].count("child") == 1
    assert [r[:2] for r in shape if r[0] != "theirs"] == [
        ("_leaf", line_of(_leaf, "leaf")),
        ("_middle", line_of(_middle, "middle-spawn")),
        ("_spawn_two", line_of(_spawn_two, "outer-spawn")),
        ("root", None),
    ]


@pytest.mark.parametrize("factory", [None, _plain_factory], ids=["no factory", "task factory"])
def test_third_party_patch_without_wraps_keeps_the_chain_whole(originals: list[Any], factory: Any) -> None:
    """A patch without functools.wraps over ours, then disable/enable: the chain stays whole."""
    async_trace.enable_tracing()
    ours = BaseEventLoop.create_task

    def theirs(self: Any, coro: Any, **kwargs: Any) -> Any:
        return ours(self, coro, **kwargs)

    BaseEventLoop.create_task = theirs  # type: ignore[method-assign]
    try:
        async_trace.disable_tracing()
        async_trace.enable_tracing()
        # Our old wrapper is invisible inside their patch, so a new one goes on top.
        assert BaseEventLoop.create_task is not theirs
        _assert_whole_chain(asyncio.run(_spawn_two(factory)))
    finally:
        async_trace.disable_tracing()
        BaseEventLoop.create_task = originals[0]  # type: ignore[method-assign]


def test_our_own_wrapper_put_back_is_not_wrapped_again(originals: list[Any]) -> None:
    """Our wrapper saved while on and put back while off (e.g. by mock.patch) is reused by enable, not wrapped."""
    async_trace.enable_tracing()
    saved = BaseEventLoop.create_task
    async_trace.disable_tracing()
    BaseEventLoop.create_task = saved  # type: ignore[method-assign]
    try:
        async_trace.enable_tracing()
        assert _our_wrappers(BaseEventLoop.create_task) == 1
        _assert_whole_chain(asyncio.run(_spawn_two()))
    finally:
        async_trace.disable_tracing()
        BaseEventLoop.create_task = originals[0]  # type: ignore[method-assign]


def test_third_party_restoring_our_wrapper_while_disabled() -> None:
    """If a third party later puts back what it found (our wrapper) while we are off, it stays a pass-through."""
    ours = BaseEventLoop.create_task

    @functools.wraps(ours)
    def theirs(self: Any, coro: Any, **kwargs: Any) -> Any:
        return ours(self, coro, **kwargs)

    BaseEventLoop.create_task = theirs  # type: ignore[method-assign]
    async_trace.disable_tracing()
    BaseEventLoop.create_task = ours  # type: ignore[method-assign]
    assert _shape(asyncio.run(_spawn_one())) == UNTRACED
    async_trace.enable_tracing()
    assert BaseEventLoop.create_task is ours
    assert _shape(asyncio.run(_spawn_one())) == TRACED


def test_attributes_dropped_by_someone_else_are_wrapped_again(originals: list[Any]) -> None:
    """If another library restores the original over our wrapper, enabling wraps it again."""
    async_trace.enable_tracing()
    BaseEventLoop.create_task = originals[0]  # type: ignore[method-assign]
    async_trace.enable_tracing()
    assert BaseEventLoop.create_task is not originals[0]
    assert _shape(asyncio.run(_spawn_one())) == TRACED


# --- tasks created while tracing is off ------------------------------------------------


def test_task_created_while_off_does_not_claim_its_creators_origin() -> None:
    """A task created while tracing is off is its own root, not its creator's child at a stale line."""

    async def middle() -> TraceData:
        async_trace.disable_tracing()
        try:
            t = asyncio.create_task(_leaf(), name="untraced")
        finally:
            async_trace.enable_tracing()
        return await t

    async def main() -> TraceData:
        return await asyncio.create_task(middle(), name="middle")

    assert _shape(asyncio.run(main())) == [
        ("_leaf", line_of(_leaf, "leaf"), None, False),
        ("untraced", None, "untraced", False),
    ]


def test_children_of_an_untraced_task_chain_to_it() -> None:
    """Tasks created (traced) by a task that was created untraced stop at that task, as their root."""

    async def untraced_parent() -> TraceData:
        return await asyncio.create_task(_leaf(), name="grandchild")  # from-untraced

    async def main() -> TraceData:
        async_trace.disable_tracing()
        try:
            t = asyncio.create_task(untraced_parent(), name="untraced")
        finally:
            async_trace.enable_tracing()
        return await t

    assert _shape(asyncio.run(main())) == [
        ("_leaf", line_of(_leaf, "leaf"), None, False),
        ("untraced_parent", line_of(untraced_parent, "from-untraced"), "grandchild", False),
        ("untraced", None, "untraced", False),
    ]


def test_executor_hop_while_off_is_untraced() -> None:
    """An executor call made while tracing is off sees no chain and is not marked as a hop."""

    def in_thread() -> TraceData:
        return collect_async_trace()  # off-thread

    async def main() -> TraceData:
        async_trace.disable_tracing()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, in_thread)
        finally:
            async_trace.enable_tracing()

    trace = asyncio.run(main())
    assert _shape(trace) == [("in_thread", line_of(in_thread, "off-thread"), None, False)]
    assert trace["in_executor"] is False
