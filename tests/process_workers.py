"""Functions run in process-pool workers by test_process_hop.py (importable under spawn and forkserver).

Nothing here imports async_trace at module level: a worker that unpickles a
traced call must not get it (nor its hooks) unless the function asks.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any


def _hooked() -> bool:
    return bool(getattr(asyncio.BaseEventLoop.create_task, "__async_trace_wrapper__", False))


def report() -> dict[str, Any]:
    """What the worker sees: whether async_trace was loaded and hooked before it asked, and its trace."""
    loaded, hooked = "async_trace" in sys.modules, _hooked()
    import async_trace

    trace = async_trace.collect_async_trace()  # collect
    arrows = async_trace.format_trace()  # arrows
    traceback_style = async_trace.format_trace(style="traceback")  # traceback
    return {
        "loaded": loaded,
        "hooked": hooked,
        "pid": os.getpid(),
        "trace": async_trace.trace_to_dict(trace),
        "pids": [getattr(f["name"], "pid", None) for f in trace["frames"]],
        "arrows": arrows,
        "traceback": traceback_style,
    }


def untraced_report() -> Any:
    """The worker's trace with tracing off in the worker: the parent's chain shows all the same."""
    import async_trace

    async_trace.disable_tracing()
    try:
        return async_trace.trace_to_dict(async_trace.collect_async_trace())  # off
    finally:
        async_trace.enable_tracing()


async def _in_worker_task() -> list[str]:
    import async_trace

    return async_trace.format_trace()  # worker-task


async def _worker_main() -> list[str]:
    root = asyncio.current_task()
    assert root is not None
    lines = await asyncio.create_task(_in_worker_task(), name="inner")  # worker-spawn
    return [root.get_name(), *lines]


def run_loop() -> list[str]:
    """An event loop in the worker: its task chain, then the process hop."""
    import async_trace  # noqa: F401  (tracing on in the worker, for its own tasks)

    return asyncio.run(_worker_main())  # worker-run


def fail(text: str) -> None:
    raise ValueError(text)  # raise


def double(value: int) -> int:
    return 2 * value
