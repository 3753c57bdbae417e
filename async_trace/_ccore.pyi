# The compiled core's functions (async_trace/_ccore.c); see async_trace._speedups.
from collections.abc import Callable
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import Any

from ._chain import Frames, Node

API_VERSION: int
#: Whether the creating stack is read from interpreter frames (3.11+, built with CPython's internal headers).
INTERPRETER_FRAMES: bool

def walk(frame: FrameType | None, stop: FrameType | None, *, remember: bool = True) -> Frames: ...
def forget() -> None: ...
def usable() -> bool: ...
def last() -> Frames: ...
def in_flight() -> Node | None: ...
def setup_walk(handle_run: CodeType, settings: Any, /) -> None: ...
def task_node(loop: Any, coro: Any, shared: Node, /) -> Node | None: ...
def setup_nodes(
    current: ContextVar[Node | None], task_node: type[Node], root_node: type[Node], executor_node: type[Node], /
) -> None: ...
def setup_first_step(in_flight: Any, eager_tasks: set[Any] | None, base_event_loop: type) -> None: ...
def setup_tasks(
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
    repaired_node: Callable[[Any, Any, Node | None], Node],
    /,
) -> None: ...
def on_unwind(code: CodeType, offset: int, exc: BaseException, /) -> object: ...
def setup_unwind(on_unwind: Callable[..., object], coro_flags: int, /) -> None: ...
def append_chain(
    frames: list[Any], node: Node | None, created: Any, known: bool, last_seen: Any, loop: Any, /
) -> tuple[list[int], int]: ...
def setup_collect(
    resolved_cache: dict[int, Any],
    in_app_cache: dict[str, Any],
    in_app: Callable[[str | None], bool],
    resolve: Callable[[Frames], Any],
    frame: Callable[..., Any],
    created_by: Callable[..., Any],
    append_node: Callable[..., bool],
    append_frames: Callable[..., None],
    /,
) -> None: ...
def append_frames(out: list[Any], shown: Any, task: Any, is_executor: bool, pid: int = 0, /) -> None: ...
def resolve_uncached(frames: Frames, /) -> tuple[tuple[str, int | None, str | None], ...]: ...
def setup_resolve(
    kind_cache: dict[int, Any],
    line_cache: dict[tuple[int, int], Any],
    frame_kind: Callable[[CodeType], int],
    line_at: Callable[[CodeType, int], int | None],
    elision_marker: Callable[[int], str],
    runner_codes: frozenset[int],
    task_makers: frozenset[int],
    /,
) -> None: ...
def registry_method(cls: type, /) -> Any: ...
def setup_registry(
    traced_modules: frozenset[str],
    traced_callers: set[int],
    trace_safely: Callable[[Any, FrameType], None],
    /,
) -> None: ...
def set_registry_active(flag: bool, /) -> None: ...
def set_active(flag: bool, /) -> None: ...
def setup_wrapper(
    trim_source_traceback: Callable[[Any], None],
    notify: Callable[..., None],
    task_watchers: list[Any],
    task_codes: dict[int, Any] | None,
    note_task_code: Callable[[Any], None],
    context_factories: tuple[Any, ...],
    check_coroutine: Callable[..., None],
    /,
) -> None: ...
def setup_executor(
    process_pool: type,
    partial: type,
    context_call: type,
    call_watchers: list[Any],
    /,
) -> None: ...

class RunInExecutor:
    __async_trace_fallback__: Callable[..., Any]
    def __init__(self, original: Callable[..., Any], fallback: Callable[..., Any], /) -> None: ...
    def __call__(self, loop: Any, executor: Any, func: Any, /, *args: Any) -> Any: ...
    def __get__(self, obj: Any, objtype: Any = None, /) -> Any: ...

class CreateTask:
    __async_trace_fallback__: Callable[..., Any]
    def __init__(self, original: Callable[..., Any], fallback: Callable[..., Any], /) -> None: ...
    def __call__(self, loop: Any, coro: Any, /, **kwargs: Any) -> Any: ...
    def __get__(self, obj: Any, objtype: Any = None, /) -> Any: ...
