# The compiled core's functions (async_trace/_ccore.c); see async_trace._speedups.
from collections.abc import Callable
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import Any

from ._chain import Frames, Node

API_VERSION: int

def walk(frame: FrameType | None, stop: FrameType | None, *, remember: bool = True) -> Frames: ...
def forget() -> None: ...
def usable() -> bool: ...
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
    name_root: Callable[[Any, Any], Node],
    protocol_method: Callable[[FrameType], bool],
    connection_parent: Callable[[Node, Any, Any], tuple[Node, Any]],
    protocol_frames: Callable[[Frames, FrameType], Frames],
    /,
) -> None: ...
def on_unwind(code: CodeType, offset: int, exc: BaseException, /) -> object: ...
def setup_unwind(
    current: ContextVar[Node | None], executor_node: type[Node], on_unwind: Callable[..., object], coro_flags: int, /
) -> None: ...
def set_active(flag: bool, /) -> None: ...
def setup_wrapper(
    trim_source_traceback: Callable[[Any], None],
    notify: Callable[..., None],
    task_watchers: list[Any],
    registry_hook: bool,
    task_codes: dict[int, Any] | None,
    note_task_code: Callable[[Any], None],
    /,
) -> None: ...

class CreateTask:
    __async_trace_fallback__: Callable[..., Any]
    def __init__(self, original: Callable[..., Any], fallback: Callable[..., Any], /) -> None: ...
    def __call__(self, loop: Any, coro: Any, /, **kwargs: Any) -> Any: ...
    def __get__(self, obj: Any, objtype: Any = None, /) -> Any: ...
