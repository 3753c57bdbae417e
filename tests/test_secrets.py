"""Traces hold code locations only: no local variable or argument is reachable from them."""

from __future__ import annotations

import asyncio
import gc
import sys
import types
import uuid
from typing import Any

from async_trace import TraceData, collect_async_trace, format_async_trace
from async_trace._chain import CURRENT

#: Enough for every object reachable from a trace or a chain; hitting it fails the test.
_WALK_LIMIT = 200_000


#: Objects that hold locals. gc.get_referents of a running frame does not
#: report its locals (only its owner does), so reaching one of these counts
#: as reaching every secret it could hold.
_HOLDS_LOCALS = (
    types.FrameType,
    types.CoroutineType,
    types.GeneratorType,
    types.AsyncGeneratorType,
    types.TracebackType,
)


def _reaches(root: Any, needle: str) -> bool:
    """Whether ``needle`` (or any frame, coroutine or traceback) is reachable from ``root`` via ``gc.get_referents``.

    Modules and classes are not entered (their namespaces reach everything).
    Tasks and futures are not entered either: a trace names the user's own
    tasks on purpose, and a live task holds its coroutine and so its locals.
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type, asyncio.Future)):
            continue
        seen.add(id(obj))
        assert len(seen) < _WALK_LIMIT, "walk too large: the result would prove nothing"
        if isinstance(obj, _HOLDS_LOCALS) or (type(obj) is str and obj == needle):
            return True
        stack.extend(gc.get_referents(obj))
    return False


def _chain_of(node: Any) -> list[Any]:
    """The node and all its parents (each is walked from anyway; listed to make that explicit)."""
    out = []
    while node is not None:
        out.append(node)
        node = node.parent
    return out


def _secret() -> str:
    # Built at run time: not a constant of any code object.
    return "s3cr3t-" + str(uuid.uuid4())


def test_walk_finds_a_reachable_secret() -> None:
    """The walk used below does find a secret that is reachable (it is not vacuous)."""
    secret = _secret()
    holder = {"a": [("x", {"deep": secret[:]})]}
    assert _reaches(holder, secret)


def test_walk_flags_a_frame() -> None:
    """The walk treats a reachable frame as a leak (a running frame does not report its locals)."""
    assert _reaches([sys._getframe()], _secret())


def test_running_coroutine_reaches_its_secret() -> None:
    """A suspended coroutine holding a secret reaches it: the secret is alive while the trace is checked."""
    secret = _secret()

    async def holder(password: str) -> None:
        await asyncio.sleep(0)

    async def main() -> bool:
        coro = holder(secret)
        task = asyncio.create_task(coro)
        await asyncio.sleep(0)  # holder is now suspended, its argument alive
        found = _reaches(coro, secret)
        await task
        return found

    assert asyncio.run(main()) is True


def test_secret_in_creating_coroutines_is_not_reachable() -> None:
    """Arguments and locals of every coroutine on the chain are unreachable from the trace and the nodes."""
    secret = _secret()
    checked: list[str] = []

    async def leaf(api_key: str) -> None:
        token = api_key + "!"
        trace = collect_async_trace()
        for root in (
            trace,
            _chain_of(CURRENT.get()),
            format_async_trace(trace),
            format_async_trace(trace, style="traceback"),
        ):
            assert not _reaches(root, api_key)
            assert not _reaches(root, token)
        checked.append("leaf")

    async def middle(password: str) -> None:
        local_copy = password[:]
        await asyncio.create_task(leaf(local_copy))

    async def main(credentials: dict[str, str]) -> None:
        key = credentials["key"]
        await asyncio.gather(middle(key))

    asyncio.run(main({"key": secret}))
    assert checked == ["leaf"]


def test_secret_in_executor_functions_is_not_reachable() -> None:
    """Arguments and locals of run_in_executor and to_thread functions are unreachable from the trace and the nodes."""
    secret = _secret()
    checked: list[str] = []

    def in_thread(password: str, how: str) -> None:
        derived = password + "?"
        trace = collect_async_trace()
        assert trace["in_executor"] is True
        for root in (trace, _chain_of(CURRENT.get())):
            assert not _reaches(root, password)
            assert not _reaches(root, derived)
        checked.append(how)

    async def main(api_key: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, in_thread, api_key, "run_in_executor")
        await asyncio.to_thread(in_thread, api_key, "to_thread")
        await asyncio.to_thread(in_thread, password=api_key, how="to_thread kwargs")

    asyncio.run(main(secret))
    assert checked == ["run_in_executor", "to_thread", "to_thread kwargs"]


def test_secret_in_the_creator_of_a_task_in_an_executor_loop() -> None:
    """A loop started in an executor thread: the secrets of both loops' creators stay out of the trace."""
    secret = _secret()
    result: dict[str, bool] = {}

    async def inner(value: str) -> None:
        trace = collect_async_trace()
        result["reached"] = _reaches(trace, value) or _reaches(_chain_of(CURRENT.get()), value)

    def sync_entry(value: str) -> None:
        asyncio.run(inner(value))

    async def main(value: str) -> None:
        await asyncio.to_thread(sync_entry, value)

    asyncio.run(main(secret))
    assert result == {"reached": False}


def test_collected_trace_after_the_fact_holds_no_secret() -> None:
    """A trace kept after its tasks finished reaches no secret and no frame."""
    secret = _secret()

    async def leaf(value: str) -> TraceData:
        await asyncio.sleep(0)
        return collect_async_trace()

    async def main(value: str) -> TraceData:
        return await asyncio.create_task(leaf(value))

    trace = asyncio.run(main(secret))
    assert not _reaches(trace, secret)
