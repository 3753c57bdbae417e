"""The async-frame chain: immutable linked nodes carried in a ContextVar.

Each task-creation point and executor hop pushes one node. A node holds its
parent node, the creating stack as cheap data and a weak reference to the task
it created. The creating stack is a flat tuple ``(code, lasti, code, lasti,
...)``, innermost first: code objects and instruction offsets only, never
frame objects or locals, and no line numbers (decoding them on 3.11+ costs
about 40% of a frame walk, so :mod:`._collect` resolves them on demand).

Everything on the capture path is written for the hot path of
``loop.create_task``: few allocations, identity comparisons only (hashing a
code object walks its bytecode on 3.12+), no string work.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from asyncio import current_task as _current_task
from collections import deque
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import Any, Callable, Final, Union

from ._types import AsyncTraceWarning

__all__: list[str] = []

#: A weak reference to a created task, ``None`` while the task is being
#: constructed (an eager task's first step), or ``_NO_REF`` when the object the
#: task factory returned cannot be weakly referenced.
TaskRef = Union["weakref.ReferenceType[Any]", Callable[[], None], None]

#: Flat stack data: ``(code, lasti, code, lasti, ...)``, innermost first. A
#: ``(None, n)`` pair marks ``n`` frames elided by ``max_frames``.
Frames = tuple[Union[CodeType, int, None], ...]

_EMPTY: Final[Frames] = ()


def _no_ref() -> None:
    return None


_NO_REF: Final = _no_ref

DEFAULT_MAX_FRAMES: Final = 64
DEFAULT_MAX_DEPTH: Final = 256


class _Config:
    """Bounds applied at capture time (module-level singleton ``config``)."""

    __slots__ = ("max_depth", "max_frames")

    def __init__(self) -> None:
        self.max_frames = DEFAULT_MAX_FRAMES
        self.max_depth = DEFAULT_MAX_DEPTH


config: Final = _Config()


class Node:
    """One hop of the chain. Frozen once published (see ``task`` below)."""

    __slots__ = ("depth", "frames", "parent", "task")

    parent: Node | None
    frames: Frames
    #: Set once, right after the task is constructed: the node must already be
    #: in the context the task copies (eager tasks run their first step in the
    #: constructor), so the task cannot exist when the node is made.
    task: TaskRef
    #: Number of nodes in the chain ending here (an elision node counts one).
    depth: int

    def __init__(self, parent: Node | None, frames: Frames, task: TaskRef, depth: int) -> None:
        self.parent = parent
        self.frames = frames
        self.task = task
        self.depth = depth

    def clone(self, parent: Node | None, depth: int) -> Node:
        return type(self)(parent, self.frames, self.task, depth)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} depth={self.depth} frames={len(self.frames) // 2}>"


class TaskNode(Node):
    """A task created at ``frames[0]``; ``frames`` run up to the parent task's coroutine."""

    __slots__ = ()


class ExecutorNode(Node):
    """A call handed to an executor thread by the coroutine at ``frames[0]``."""

    __slots__ = ()


class PendingNode(Node):
    """``run_coroutine_threadsafe`` called at ``frames[0]``; the task is made later, on the loop."""

    __slots__ = ()


class RootNode(Node):
    """A task with no traced parent: the root of its chain (``frames`` is empty)."""

    __slots__ = ("name",)

    #: The task's name when it was seen; used once the task is gone.
    name: str

    def __init__(self, parent: Node | None, frames: Frames, task: TaskRef, depth: int, name: str = "") -> None:
        super().__init__(parent, frames, task, depth)
        self.name = name

    def clone(self, parent: Node | None, depth: int) -> Node:
        return RootNode(parent, self.frames, self.task, depth, self.name)


class ElidedNode(Node):
    """Stands for ``count`` hops dropped to keep the chain within ``max_depth``."""

    __slots__ = ("count",)

    count: int

    def __init__(self, parent: Node | None, count: int) -> None:
        super().__init__(parent, _EMPTY, None, 1 if parent is None else parent.depth + 1)
        self.count = count

    def clone(self, parent: Node | None, depth: int) -> Node:
        return ElidedNode(parent, self.count)


#: The node of the innermost hop of the code running in this context.
CURRENT: Final[ContextVar[Node | None]] = ContextVar("async_trace.current_node", default=None)


# --- warnings -------------------------------------------------------------

_warned = False


def warn_internal(exc: BaseException, where: str) -> None:
    """Report an internal failure once per process; the caller falls back."""
    global _warned
    if _warned:
        return
    _warned = True
    try:
        warnings.warn(
            f"async_trace: internal error while {where}; this call falls back to "
            f"untraced behaviour ({type(exc).__name__}: {exc})",
            AsyncTraceWarning,
            stacklevel=3,
        )
    except Exception:  # noqa: BLE001 - warnings turned into errors must not escape
        pass


def reset_warned() -> None:
    """Allow the next internal error to warn again (for tests)."""
    global _warned
    _warned = False


# --- capture --------------------------------------------------------------


def walk(frame: FrameType | None, stop: FrameType | None) -> Frames:
    """Flatten ``frame`` and its callers up to and including ``stop``.

    Without ``stop`` (or if it is never met) the walk runs to the outermost
    frame; collection cuts it at the event loop. At most ``config.max_frames``
    frames are kept: the innermost ones and a quarter from the outer end, with
    a ``(None, n)`` marker for the ``n`` in between.
    """
    out: list[CodeType | int | None] = []
    append = out.append
    remaining = config.max_frames
    while frame is not None:
        append(frame.f_code)
        append(frame.f_lasti)
        if frame is stop:
            break
        frame = frame.f_back
        remaining -= 1
        if remaining == 0 and frame is not None:
            return _walk_elided(out, frame, stop)
    return tuple(out)


def _walk_elided(head: list[CodeType | int | None], frame: FrameType | None, stop: FrameType | None) -> Frames:
    # Slow path for stacks deeper than max_frames: keep walking to the
    # boundary, remembering only the outermost frames.
    keep_outer = max(1, config.max_frames // 4)
    cut = 2 * (config.max_frames - keep_outer)
    tail: deque[tuple[CodeType | int | None, CodeType | int | None]] = deque(
        zip(head[cut::2], head[cut + 1 :: 2]), maxlen=keep_outer
    )
    del head[cut:]
    pushed = len(tail)
    while frame is not None:
        tail.append((frame.f_code, frame.f_lasti))
        pushed += 1
        if frame is stop:
            break
        frame = frame.f_back
    head.append(None)
    head.append(pushed - len(tail))
    for code, lasti in tail:
        head.append(code)
        head.append(lasti)
    return tuple(head)


def _stop_frame(task: Any) -> FrameType | None:
    """The coroutine frame of ``task``: where its own stack ends."""
    coro = task.get_coro()
    try:
        return coro.cr_frame  # type: ignore[no-any-return]
    except AttributeError:
        # Generator-based coroutines and other awaitables: no cr_frame.
        return getattr(coro, "gi_frame", None)


def task_name(task: Any) -> str:
    try:
        return str(task.get_name())
    except Exception:  # noqa: BLE001 - a Future subclass from a custom factory
        return f"<{type(task).__name__} at {id(task):#x}>"


def adopt_root(task: Any) -> RootNode:
    """Make ``task`` the root of the chain seen from its own context.

    Used when the running task was created while tracing was off (or before
    it was on): its context then holds nothing, or a node inherited from its
    creator that would claim the creator's origin. The node is stored in the
    task's context so later captures from it reuse it.
    """
    root = RootNode(None, _EMPTY, _ref(task), 1, task_name(task))
    CURRENT.set(root)
    return root


def _ref(obj: Any) -> TaskRef:
    try:
        return weakref.ref(obj)
    except TypeError:
        return _NO_REF


def capture(kind: type[Node], loop: Any, frame: FrameType | None) -> Node:
    """Make the node for a task creation or executor hop called from ``frame``.

    ``loop`` is the loop whose current task is the creator. The caller puts the
    node in the context of what it starts and, for tasks, sets ``node.task``.
    """
    parent = CURRENT.get()
    task = _current_task(loop) if loop is not None else None
    if task is None:
        if parent is None:
            if kind is TaskNode:
                # Created from outside any traced task (asyncio.run, a
                # callback of untraced origin): a root. Its name is filled in
                # by the caller once the task exists.
                return RootNode(None, _EMPTY, None, 1)
            stop = None
        elif type(parent) is PendingNode:
            # The callback of run_coroutine_threadsafe: the creation point is
            # the submitting thread's line, captured by the pending node.
            if kind is TaskNode:
                return TaskNode(parent.parent, parent.frames, None, parent.depth)
            stop = None
        else:
            stop = None
    else:
        if parent is None:
            parent = adopt_root(task)
        else:
            ref = parent.task
            if ref is not None and ref() is not task or type(parent) is ExecutorNode:
                # Stale: this task was created untraced and inherited its
                # creator's node. Do not let its children claim that origin.
                parent = adopt_root(task)
        stop = _stop_frame(task)
    depth = parent.depth + 1 if parent is not None else 1
    if depth > config.max_depth and parent is not None:
        parent = compact(parent)
        depth = parent.depth + 1
    return kind(parent, walk(frame, stop), None, depth)


def publish_task(node: Node, task: Any) -> None:
    """Point ``node`` at the task it created (after construction)."""
    node.task = _ref(task)
    if type(node) is RootNode:
        node.name = task_name(task)


def compact(parent: Node) -> Node:
    """Return a chain equivalent to ``parent``'s with the middle hops elided.

    Keeps the innermost ``max_depth // 2`` hops (copied, since nodes are
    immutable) and the outermost ``max_depth // 4``; runs once every
    ``max_depth // 4`` creations at most, so its cost is amortised.
    """
    max_depth = config.max_depth
    keep_inner = max(1, max_depth // 2)
    keep_outer = max(1, max_depth // 4)
    chain: list[Node] = []
    node: Node | None = parent
    elided_at = -1
    while node is not None:
        if type(node) is ElidedNode and elided_at < 0:
            elided_at = len(chain)
        chain.append(node)
        node = node.parent
    if len(chain) <= keep_inner + keep_outer + 1:
        return parent
    if elided_at >= keep_inner:
        marker = chain[elided_at]
        assert isinstance(marker, ElidedNode)
        outer = marker.parent
        count = marker.count + (elided_at - keep_inner)
    else:
        outer_start = len(chain) - keep_outer
        outer = chain[outer_start]
        count = outer_start - keep_inner
        for n in chain[keep_inner:outer_start]:
            if isinstance(n, ElidedNode):
                count += n.count - 1
    rebuilt: Node = ElidedNode(outer, count)
    for n in reversed(chain[:keep_inner]):
        rebuilt = n.clone(rebuilt, rebuilt.depth + 1)
    return rebuilt


def current_frame(depth: int) -> FrameType | None:
    """``sys._getframe(depth + 1)``, or ``None`` past the outermost frame."""
    try:
        return sys._getframe(depth + 1)
    except ValueError:
        return None
