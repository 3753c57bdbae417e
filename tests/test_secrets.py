"""Traces hold code locations only: no local variable or argument is reachable from them."""

from __future__ import annotations

import asyncio
import gc
import types
import uuid
from typing import Any

from async_trace import TraceData, collect_async_trace
from async_trace._chain import CURRENT


def _reaches(root: Any, needle: str, limit: int = 50_000) -> bool:
    """Whether an object equal to needle is reachable from root via gc.get_referents."""
    seen: set[int] = set()
    stack = [root]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type)):
            continue
        seen.add(id(obj))
        if isinstance(obj, str) and obj == needle:
            return True
        stack.extend(gc.get_referents(obj))
    return False


def test_secret_locals_are_not_reachable() -> None:
    """Secrets in locals and arguments of creating coroutines and executor functions stay out."""
    secret = "s3cr3t-" + uuid.uuid4().hex  # built at run time: not a code constant
    found: dict[str, Any] = {}

    def in_thread(password: str) -> None:
        token = password + "!"  # noqa: F841 - a local the trace must not reach
        found["thread_trace"] = collect_async_trace()
        found["thread_node"] = CURRENT.get()

    async def leaf(api_key: str) -> TraceData:
        await asyncio.to_thread(in_thread, api_key)
        found["node"] = CURRENT.get()
        return collect_async_trace()

    async def main(credentials: dict[str, str]) -> TraceData:
        key = credentials["key"]
        return await asyncio.create_task(leaf(key))

    trace = asyncio.run(main({"key": secret}))

    def strip(t: TraceData) -> Any:
        # The Task objects are the caller's own (alive, and they hold their coroutines).
        return [{k: v for k, v in f.items() if k != "task"} for f in t["frames"]]

    for root in (strip(trace), strip(found["thread_trace"]), found["node"], found["thread_node"]):
        assert not _reaches(root, secret)
        assert not _reaches(root, secret + "!")
