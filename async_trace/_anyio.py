"""anyio's worker threads as executor hops.

``anyio.to_thread.run_sync`` (and so Starlette's ``run_in_threadpool``,
FastAPI's plain ``def`` endpoints and dependencies) runs its function in
anyio's own ``WorkerThread``s, fed by a queue: no ``run_in_executor``. The
hook is the asyncio backend's ``run_sync_in_worker_thread`` classmethod,
replaced by a plain function (no coroutine of ours: an exception from the
thread never passes through a frame of ours) that captures an
:class:`ExecutorNode` at the coroutine awaiting ``to_thread.run_sync`` and
hands anyio the function wrapped in a frameless context call that runs it in a
copy of the task's context holding that node. anyio sets sniffio's current
library to ``None`` in the context it runs the function in; the copy does the
same, so the function sees exactly what it sees untraced.
"""

from __future__ import annotations

import sys
from types import CodeType
from typing import Any, Final

__all__: list[str] = []

#: The module holding anyio's asyncio backend.
MODULE: Final = "anyio._backends._asyncio"
NAME: Final = "run_sync_in_worker_thread"


def backend() -> Any:
    """anyio's asyncio backend class, if anyio's asyncio backend is imported; else ``None``."""
    module = sys.modules.get(MODULE)
    cls = getattr(module, "AsyncIOBackend", None) if module is not None else None
    return cls if isinstance(cls, type) and NAME in vars(cls) else None


def worker_run_code() -> Any:
    """The code of ``WorkerThread.run``: where an anyio worker thread starts running user code."""
    module = sys.modules.get(MODULE)
    run = getattr(getattr(module, "WorkerThread", None), "run", None)
    return getattr(run, "__code__", None)


def to_thread_code() -> Any:
    """The code of ``anyio.to_thread.run_sync``, whose caller is the awaiting coroutine."""
    module = sys.modules.get("anyio.to_thread")
    return getattr(getattr(module, "run_sync", None), "__code__", None)


#: ``WorkerThread.run``'s code once anyio's backend is patched, by id (the code kept in the
#: value): where an anyio worker thread starts running user code, an entry point that
#: collection cuts at like the stdlib pool's.
entry_codes: dict[int, CodeType] = {}
