"""The async-frame chain: immutable linked nodes carried in a ContextVar.

Each task-creation point and executor hop pushes one node. A node holds its
parent node, the creating stack as cheap data and a weak reference to the task
that was running there (its creator); the task a node created is the creator
recorded by the node below it. The creating stack is a flat tuple ``(code, lasti, code, lasti,
...)``, innermost first: code objects and instruction offsets only, never
frame objects or locals, and no line numbers (decoding them on 3.11+ costs
about 40% of a frame walk, so :mod:`._collect` resolves them on demand).

Everything on the capture path is written for the hot path of
``loop.create_task``: few allocations, identity comparisons only (hashing a
code object walks its bytecode on 3.12+), no string work.
"""

from __future__ import annotations

import collections
import contextlib
import operator
import sys
import threading
import warnings
from asyncio import current_task as _current_task
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import Any, Final
from weakref import ref as _weakref

from ._types import AsyncTraceWarning

__all__: list[str] = []

#: Flat stack data: ``(code, lasti, code, lasti, ...)``, innermost first. A
#: ``(None, n)`` pair marks ``n`` frames elided by ``max_frames``.
Frames = tuple[CodeType | int | None, ...]

_EMPTY: Final[Frames] = ()

DEFAULT_MAX_FRAMES: Final = 64
DEFAULT_MAX_DEPTH: Final = 256


class _Config:
    """Bounds applied at capture time (module-level singleton ``config``)."""

    __slots__ = ("max_depth", "max_frames")

    def __init__(self) -> None:
        self.max_frames = DEFAULT_MAX_FRAMES
        self.max_depth = DEFAULT_MAX_DEPTH


config: Final = _Config()

_tuple_new: Final = tuple.__new__

# C-level field accessors, as namedtuple uses: reading ``node.parent`` costs
# what ``node[0]`` does. (A Python @property would cost a frame per read.)
_field: Final[Callable[[int, str], Any]] = getattr(
    collections, "_tuplegetter", lambda index, doc: property(operator.itemgetter(index), doc=doc)
)


class Node(tuple):  # type: ignore[type-arg]
    """One hop of the chain, immutable: ``parent``, ``depth``, ``code``, ``frames``, ``creator_ref``.

    A tuple subclass: made by one C call, compared by identity, fields read
    by name through C-level accessors. The layout is private to this module:
    everything else reads fields by name. Nodes never hold tasks, frames or
    locals. The task a node created is the creator of the node below it (or
    the running task), so consecutive siblings created by one task from one
    place can share one node.
    """

    __slots__ = ()

    #: The node of the hop above (the creator's), ``None`` at the top of the chain.
    parent: Node | None
    #: How many nodes the chain ending here has (``compact`` keeps it bounded).
    depth: int
    #: The code of the created task's coroutine (``TaskNode``, ``RootNode``): a
    #: task whose coroutine has another code inherited the node, untraced.
    #: ``None`` for the other kinds.
    code: CodeType | None
    #: The capturing stack, innermost first (see ``Frames``); empty for roots and elided hops.
    frames: Frames
    #: A weak reference to the task running where the node was captured, ``None`` outside a task.
    creator_ref: Any

    @property
    def creator(self) -> Any:
        """The task running where this node was captured, if still alive."""
        ref = self.creator_ref
        return ref() if ref is not None else None

    def clone(self, parent: Node | None, depth: int) -> Node:
        return _tuple_new(type(self), (parent, depth, *self[2:]))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} depth={self.depth} frames={len(self.frames) // 2}>"


for _index, (_name, _doc) in enumerate(
    [
        ("parent", "The node of the hop above, or None."),
        ("depth", "How many nodes the chain ending here has."),
        ("code", "The created coroutine's code (task and root nodes), else None."),
        ("frames", "The capturing stack as (code, lasti, ...) pairs, innermost first."),
        ("creator_ref", "A weak reference to the task running at the capture, or None."),
    ]
):
    setattr(Node, _name, _field(_index, _doc))


class TaskNode(Node):
    """A task created at ``frames[0]``; ``frames`` run up to the creator's coroutine."""

    __slots__ = ()


class ExecutorNode(Node):
    """A call handed to an executor thread by the coroutine at ``frames[0]``; ``creator`` made the call."""

    __slots__ = ()


class PendingNode(Node):
    """``run_coroutine_threadsafe`` called at ``frames[0]``; the task is made later, on the loop."""

    __slots__ = ()


class RootNode(Node):
    """A task with no traced parent: the root of its chain (``frames`` is empty).

    ``name`` is the root task's name, for traces collected after the task is
    gone (``None`` where it could not be known: see :func:`named_root`);
    ``adopted`` marks a root made for a task created untraced (see
    :func:`adopt_root`).
    """

    __slots__ = ()

    name: str | None
    adopted: bool


RootNode.name = _field(5, "The root task's name, or None if not known.")
RootNode.adopted = _field(6, "Whether the root was made for a task created while tracing was off.")


class ThreadRootNode(Node):
    """The root of a chain that starts in a thread no traced hop led to; ``name`` is the thread's.

    Only ever the parent of a ``run_coroutine_threadsafe`` pending node:
    never a task's own node, so ``code`` is ``None``.
    """

    __slots__ = ()

    name: str


ThreadRootNode.name = _field(5, "The thread's name.")


class ElidedNode(Node):
    """Stands for ``hops`` hops dropped to keep the chain within ``max_depth``.

    ``creator`` is that of the outermost dropped hop: the task created by the
    node above this one.
    """

    __slots__ = ()

    hops: int


ElidedNode.hops = _field(5, "How many hops this node stands for.")


def make(kind: type[Node], parent: Node | None, depth: int, code: Any, frames: Frames, creator: Any = None) -> Node:
    return _tuple_new(kind, (parent, depth, code, frames, creator))


def make_root(code: Any, name: str | None = None, *, adopted: bool = False) -> RootNode:
    return _tuple_new(RootNode, (None, 1, code, _EMPTY, None, name, adopted))


#: ``(unnamed root, the same root named)``: the latest root named by
#: :func:`name_root`. Replaced whole, never mutated, so threads race on it
#: harmlessly; it holds two small tuples (a code object and a name), no task.
_named: tuple[RootNode | None, RootNode | None] = (None, None)


def name_root(root: RootNode, task: Any) -> RootNode:
    """``root`` with the name of ``task``, the root task, for the nodes its task creates.

    A root is made before its task exists, so before its name does; nodes are
    immutable and the root task's own context keeps the unnamed root (its
    ContextVar values stay exactly what they were), so the nodes below point
    to a named copy instead, shared by consecutive captures of one root task.
    """
    global _named
    cached = _named
    if cached[0] is root:
        return cached[1]  # type: ignore[return-value]
    named: RootNode = _tuple_new(RootNode, (None, 1, root.code, _EMPTY, None, task_name(task), root.adopted))
    _named = (root, named)
    return named


def make_thread_root(name: str) -> ThreadRootNode:
    return _tuple_new(ThreadRootNode, (None, 1, None, _EMPTY, None, name))


def is_adopted(node: Node) -> bool:
    """Whether ``node`` is the root made for a task created while tracing was off."""
    return type(node) is RootNode and node.adopted


def make_elided(parent: Node | None, count: int, creator: Any) -> ElidedNode:
    depth = 1 if parent is None else parent.depth + 1
    return _tuple_new(ElidedNode, (parent, depth, None, _EMPTY, creator, count))


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
    # A warnings filter set to "error" must not turn this into an exception.
    with contextlib.suppress(Exception):
        warnings.warn(
            f"async_trace: internal error while {where}; this call falls back to "
            f"untraced behaviour ({type(exc).__name__}: {exc})",
            AsyncTraceWarning,
            stacklevel=3,
        )


def reset_warned() -> None:
    """Allow the next internal error to warn again (for tests)."""
    global _warned
    _warned = False


# --- capture --------------------------------------------------------------

#: The frames tuple of the latest capture. Consecutive spawns from the same
#: place (a loop of create_task, gather of many coroutines) share it: the
#: capture compares the stack against it instead of building a new tuple.
#: Threads race on it harmlessly: it is only ever replaced, never mutated.
_last: Frames = _EMPTY


def walk(frame: FrameType | None, stop: FrameType | None, *, remember: bool = True) -> Frames:
    """Flatten ``frame`` and its callers up to and including ``stop``.

    Without ``stop`` (or if it is never met) the walk runs to the outermost
    frame; collection cuts it at the event loop. At most ``config.max_frames``
    frames are kept: the innermost ones and a quarter from the outer end, with
    a ``(None, n)`` marker for the ``n`` in between. ``remember=False`` (for
    collection) leaves the capture cache alone.
    """
    global _last
    last = _last
    n = len(last)
    # Fastest path, for the usual one or two frames (asyncio.create_task and
    # the coroutine calling it): no loop.
    if frame is not None and n >= 2 and frame.f_code is last[0] and frame.f_lasti == last[1]:
        if frame is stop:
            if n == 2:
                return last
        elif n == 4:
            up = frame.f_back
            if up is stop and up is not None and up.f_code is last[2] and up.f_lasti == last[3]:
                return last
    i = 0
    f = frame
    # Fast path: the stack matches the previous capture.
    while f is not None and i < n and f.f_code is last[i] and f.f_lasti == last[i + 1]:
        i += 2
        f = None if f is stop else f.f_back
    if f is None:
        # The whole stack matched the previous capture, or a prefix of it.
        if i == n:
            return last
        prefix = last[:i]
        if remember:
            _last = prefix
        return prefix
    # Slow path: copy the matched prefix, walk the rest.
    out: list[CodeType | int | None] = list(last[:i])
    append = out.append
    remaining = config.max_frames - i // 2
    while f is not None:
        append(f.f_code)
        append(f.f_lasti)
        if f is stop:
            break
        f = f.f_back
        remaining -= 1
        if remaining <= 0 and f is not None:
            return _walk_elided(out, f, stop)
    result = tuple(out)
    if remember:
        _last = result
    return result


def _walk_elided(head: list[CodeType | int | None], frame: FrameType | None, stop: FrameType | None) -> Frames:
    # Slow path for stacks deeper than max_frames: keep walking to the
    # boundary, remembering only the outermost frames.
    keep_outer = max(1, config.max_frames // 4)
    cut = 2 * (config.max_frames - keep_outer)
    tail: deque[tuple[CodeType | int | None, CodeType | int | None]] = deque(
        zip(head[cut::2], head[cut + 1 :: 2], strict=True), maxlen=keep_outer
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


def _coro_code(coro: Any) -> Any:
    try:
        return coro.cr_code
    except AttributeError:
        return getattr(coro, "gi_code", None)


def _stop_frame(coro: Any) -> FrameType | None:
    """The frame of a task's coroutine: where the task's own stack ends."""
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


def valid_for(node: Node | None, coro: Any) -> bool:
    """Whether ``node`` was pushed for the task running ``coro`` (not inherited)."""
    kind = type(node)
    return (kind is TaskNode or kind is RootNode) and node.code is _coro_code(coro)  # type: ignore[union-attr]


def adopt_root(task: Any, coro: Any) -> RootNode:
    """Make ``task`` the root of the chain seen from its own context.

    Used when the running task was created while tracing was off (or before
    it was on): its context then holds nothing, or a node inherited from its
    creator that would claim the creator's origin. The node is stored in the
    task's context so later captures from it reuse it.
    """
    root = make_root(_coro_code(coro), task_name(task), adopted=True)
    CURRENT.set(root)
    return root


def _ref(task: Any) -> Any:
    # weakref.ref returns the existing reference when there is one, so every
    # node captured in one task shares a single weakref object.
    try:
        return _weakref(task)
    except TypeError:  # a Future-like object from a custom factory
        return None


def capture(kind: type[Node], loop: Any, frame: FrameType | None, tag: Any = None) -> Node:
    """Make the node for a task creation or executor hop called from ``frame``.

    ``loop`` is the loop whose current task is the creator (``None``: no
    loop runs here). For tasks ``tag`` is the code of the created coroutine.
    The caller puts the node in the context of what it starts.
    """
    parent = CURRENT.get()
    task = _current_task(loop) if loop is not None else None
    if task is None:
        if parent is None:
            if kind is TaskNode:
                # Created from outside any traced task (asyncio.run, a
                # callback of untraced origin): a root. Named at its first
                # capture, once the task exists (or by the caller's name=).
                return make_root(tag)
            if kind is PendingNode:
                # run_coroutine_threadsafe from a thread no traced hop led to:
                # the chain starts here, at a root named after the thread.
                parent = make_thread_root(threading.current_thread().name)
        elif type(parent) is PendingNode and kind is TaskNode:
            # The callback of run_coroutine_threadsafe: the creation point is
            # the submitting thread's line, captured by the pending node.
            return _tuple_new(TaskNode, (parent.parent, parent.depth, tag, parent.frames, parent.creator_ref))
        stop = None
        creator = None
    else:
        coro = task.get_coro()
        if parent is None or not valid_for(parent, coro):
            # Created untraced: do not let its children claim its creator's origin.
            parent = adopt_root(task, coro)
        elif type(parent) is RootNode and parent.name is None:
            parent = name_root(parent, task)
        stop = _stop_frame(coro)
        creator = _ref(task)
    if parent is None:
        return _tuple_new(kind, (None, 1, tag, walk(frame, stop), creator))
    depth = parent.depth + 1
    if depth > config.max_depth:
        parent = compact(parent)
        depth = parent.depth + 1
    return _tuple_new(kind, (parent, depth, tag, walk(frame, stop), creator))


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
        outer = marker.parent
        count = marker.hops + (elided_at - keep_inner)  # type: ignore[attr-defined]
        creator = marker.creator_ref
    else:
        outer_start = len(chain) - keep_outer
        outer = chain[outer_start]
        count = outer_start - keep_inner
        for n in chain[keep_inner:outer_start]:
            if type(n) is ElidedNode:
                count += n.hops - 1
        creator = chain[outer_start - 1].creator_ref
    rebuilt: Node = make_elided(outer, count, creator)
    for n in reversed(chain[:keep_inner]):
        rebuilt = n.clone(rebuilt, rebuilt.depth + 1)
    return rebuilt


def current_frame(depth: int) -> FrameType | None:
    """``sys._getframe(depth + 1)``, or ``None`` past the outermost frame."""
    try:
        return sys._getframe(depth + 1)
    except ValueError:
        return None
