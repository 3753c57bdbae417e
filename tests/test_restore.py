"""disable_tracing() restores asyncio exactly; enable/disable are idempotent, thread-safe, good neighbours."""

from __future__ import annotations

import asyncio
import asyncio.base_events
import functools
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import async_trace
from async_trace import TraceData, _patch, collect_async_trace

from .helpers import rows


def test_disable_restores_every_attribute_exactly() -> None:
    """In a fresh interpreter: after disable, every patched attribute is the original object again."""
    code = textwrap.dedent(
        """
        import asyncio, asyncio.base_events, asyncio.tasks
        import uvloop
        owners = {"BaseEventLoop": asyncio.base_events.BaseEventLoop, "tasks": asyncio.tasks,
                  "asyncio": asyncio, "uvloop.Loop": uvloop.Loop}
        before = {(k, n): vars(o).get(n, "<absent>") for k, o in owners.items()
                  for n in ("create_task", "run_in_executor", "run_coroutine_threadsafe")}
        import async_trace
        from async_trace import _patch
        patched = _patch.patched_attributes()
        assert len(patched) == 6, patched
        changed = [(o, n) for o, n in patched if vars(o).get(n, "<absent>") is before[
            next(k for k, v in owners.items() if v is o), n]]
        assert not changed, changed
        async_trace.disable_tracing()
        async_trace.disable_tracing()
        after = {(k, n): vars(o).get(n, "<absent>") for k, o in owners.items()
                 for n in ("create_task", "run_in_executor", "run_coroutine_threadsafe")}
        assert after == before and all(after[k] is before[k] for k in before)
        assert "create_task" not in vars(uvloop.Loop)
        print("restored", len(before))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "restored 12\n"


def test_enable_and_disable_are_idempotent() -> None:
    """Enabling twice installs one wrapper; disabling twice restores once."""
    async_trace.enable_tracing()
    wrapper = asyncio.base_events.BaseEventLoop.create_task
    async_trace.enable_tracing()
    assert asyncio.base_events.BaseEventLoop.create_task is wrapper
    async_trace.disable_tracing()
    original = asyncio.base_events.BaseEventLoop.create_task
    async_trace.disable_tracing()
    assert asyncio.base_events.BaseEventLoop.create_task is original
    assert original is not wrapper
    async_trace.enable_tracing()


def test_enable_disable_from_many_threads() -> None:
    """Hammering enable/disable from 8 threads while tasks are created raises nothing."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def toggle() -> None:
        try:
            while not stop.is_set():
                async_trace.disable_tracing()
                async_trace.enable_tracing()
        except BaseException as exc:
            errors.append(exc)

    async def spawn() -> int:
        async def one() -> int:
            return 1

        total = 0
        for _ in range(300):
            total += sum(await asyncio.gather(*(asyncio.create_task(one()) for _ in range(5))))
            collect_async_trace()
        return total

    threads = [threading.Thread(target=toggle) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        assert asyncio.run(spawn()) == 1500
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    async_trace.enable_tracing()
    assert _patch.is_active()


def test_third_party_patch_applied_after_us_survives_disable() -> None:
    """A patch someone applies on top of ours stays after disable; ours inside it passes through."""
    calls: list[int] = []
    ours = asyncio.base_events.BaseEventLoop.create_task

    @functools.wraps(ours)
    def theirs(self: Any, coro: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return ours(self, coro, **kwargs)

    asyncio.base_events.BaseEventLoop.create_task = theirs  # type: ignore[method-assign]
    try:
        async_trace.disable_tracing()
        assert asyncio.base_events.BaseEventLoop.create_task is theirs

        async def leaf() -> TraceData:
            return collect_async_trace()

        async def main() -> TraceData:
            return await asyncio.create_task(leaf())

        untraced = asyncio.run(main())
        assert rows(untraced)[0][0] == "leaf"
        assert rows(untraced)[1][1] is None  # leaf's task is its own root: no creation line
        async_trace.enable_tracing()
        assert asyncio.base_events.BaseEventLoop.create_task is theirs  # not wrapped twice
        traced = asyncio.run(main())
        boundaries = [r for r in rows(traced) if r[3] is not None and r[1] is not None]
        assert len(boundaries) == 1  # one boundary per creation, not doubled
        assert calls
    finally:
        asyncio.base_events.BaseEventLoop.create_task = ours  # type: ignore[method-assign]
        async_trace.enable_tracing()


def test_attributes_dropped_by_someone_else_are_wrapped_again() -> None:
    """If another library restores the original over our wrapper, enabling wraps it again."""
    async_trace.disable_tracing()
    original = asyncio.base_events.BaseEventLoop.create_task
    async_trace.enable_tracing()
    asyncio.base_events.BaseEventLoop.create_task = original  # type: ignore[method-assign]
    async_trace.enable_tracing()
    assert asyncio.base_events.BaseEventLoop.create_task is not original


def test_disabled_import_state_in_subprocess() -> None:
    """A program that disables tracing at start runs with asyncio exactly as shipped."""
    code = (
        "import asyncio.base_events as b; o = b.BaseEventLoop.create_task; import async_trace; "
        "async_trace.disable_tracing(); assert b.BaseEventLoop.create_task is o; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ})
    assert out.stdout == "ok\n"
