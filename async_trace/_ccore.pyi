# The compiled core's functions (async_trace/_ccore.c); see async_trace._speedups.
from collections.abc import Callable
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import Any

from ._chain import Frames, Node

def walk(frame: FrameType | None, stop: FrameType | None, *, remember: bool = True) -> Frames: ...
def forget() -> None: ...
def last() -> Frames: ...
def setup_walk(handle_run: CodeType, settings: Any, walk_elided: Callable[..., Frames], /) -> None: ...
def task_node(loop: Any, coro: Any, shared: Node, /) -> Node | None: ...
def setup_tasks(
    current: ContextVar[Node | None],
    task_node: type[Node],
    root_node: type[Node],
    current_task: Callable[[Any], Any],
    frame_module: Callable[[int], str | None] | None,
    getframe: Callable[[int], FrameType],
    asyncio_callers: frozenset[str],
    asyncio_creators: dict[int, CodeType],
    protocol_cache: dict[int, tuple[CodeType, bool]],
    /,
) -> None: ...
def on_unwind(code: CodeType, offset: int, exc: BaseException, /) -> object: ...
def setup_unwind(
    current: ContextVar[Node | None], executor_node: type[Node], on_unwind: Callable[..., object], coro_flags: int, /
) -> None: ...
