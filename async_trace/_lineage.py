"""Lineage: which node in a context is a task's own, and how a node that is not gets repaired.

The rule at the heart of the library. A task's context holds the node its
creation pushed (its *own* node: a task or root node naming the task's
coroutine). A task built where no hook saw it, or created while tracing was
off, holds its creator's node instead, inherited with the context copy: taken
for its own, it would claim its creator's origin. Every reader of a task's
node goes through this module:

- :func:`running_node` for the task running now (capture, collection, the
  integrations): its own node, or the repaired one stored in its context;
- :func:`task_node` for any other task (the task tree, exception origins):
  the same, stored in that task's context if it can be reached;
- :func:`is_own` for the one test itself.

Repair, in order: an eager task built directly, in its first step, gets the
frames that built it (:func:`in_first_step`); a task built directly while
tracing stayed on gets a hop below its creator's node with the line unknown
(:func:`inherited_chain`); otherwise the task is a root of what is known
(:func:`adopt_root`, for captures only). Chains are kept within ``max_depth``
by :func:`compact`.
"""

from __future__ import annotations

import asyncio.base_events
import contextlib
import threading
from types import FrameType
from typing import Any, Final

from ._chain import (
    CURRENT,
    UNKNOWN_LINE,
    ElidedNode,
    ExecutorNode,
    Node,
    RootNode,
    ServerNode,
    TaskNode,
    coro_code,
    make_elided,
    make_root,
    named_copy,
    retagged,
    stop_frame,
    task_name,
)
from ._compat import EAGER_TASKS, coro_of, in_eager_first_step, task_context
from ._config import settings
from ._contexts import call_context, entered_call
from ._frames import creating_code
from ._hooks import on_disable, tracing_enabled
from ._speedups import CORE
from ._stack import walk

__all__: list[str] = []
_tuple_new: Final = tuple.__new__
_set_current: Final = CURRENT.set

#: ``.node``: the node a create_task wrapper of this thread has put in the caller's context for the
#: duration of the loop's call (the path without ``context=``, e.g. through a task factory), so the
#: node of the task being made; else ``None``. The compiled wrapper keeps its own (``in_flight()``).
in_flight: Final = threading.local()


def is_in_flight(node: Node) -> bool:
    """Whether ``node`` is the one a create_task wrapper of this thread holds in flight (see :data:`in_flight`)."""
    if getattr(in_flight, "node", None) is node:
        return True
    return CORE is not None and CORE.in_flight() is node


def inherited_chain(node: Node | None, coro: Any) -> Node | None:
    """The node for a task running ``coro`` that holds its creator's ``node``, or ``None``.

    The task was built where no hook saw it, so its context is a copy of its
    creator's, holding the creator's own node. If tracing has stayed on since
    that chain began, the task was created while tracing was on, by a task
    running with ``node``: it gets a hop below ``node`` whose creation line is
    unknown (``UNKNOWN_LINE``), and its creator is found later among the
    tasks whose own node is ``node``. Otherwise (created while tracing was
    off, or an untraced chain) ``None``: the task is a root of its own.
    """
    kind = type(node)
    if kind is not TaskNode and kind is not RootNode and kind is not ServerNode:
        # (A server's node: a task built directly in a server's protocol callback, on uvloop.)
        return None
    code = coro_code(coro)
    if code is None or node.code is code:  # type: ignore[union-attr]
        return None
    top: Any = node
    for _ in range(4 * settings.max_depth + 16):  # compact() keeps chains shorter than this
        parent = top.parent
        if parent is None:
            break
        top = parent
    if type(top) is not RootNode or top.epoch != settings.epoch:
        return None
    return _tuple_new(TaskNode, (node, node.depth + 1, code, UNKNOWN_LINE, None))  # type: ignore[union-attr]


def is_own(node: Node | None, coro: Any) -> bool:
    """Whether ``node`` was pushed for the task running ``coro`` (not inherited from its creator)."""
    kind = type(node)
    return (kind is TaskNode or kind is RootNode) and node.code is coro_code(coro)  # type: ignore[union-attr]


def adopt_inherited(inherited: Node | None, coro: Any) -> Node | None:
    """The running task's node when it holds its creator's (see :func:`inherited_chain`), set in its context."""
    node = _bounded(inherited_chain(inherited, coro))
    if node is not None:
        CURRENT.set(node)
    return node


def _bounded(node: Node | None) -> Node | None:
    parent = node.parent if node is not None else None
    if node is None or parent is None or node.depth <= settings.max_depth:
        return node
    parent = compact(parent)
    return node.clone(parent, parent.depth + 1)


def store_inherited(task: Any, coro: Any, inherited: Node | None) -> Node | None:
    """:func:`adopt_inherited` for a task that is not the running one: stored in its context, if it can be."""
    node = _bounded(inherited_chain(inherited, coro))
    ctx = task_context(task) if node is not None else None
    if ctx is not None:
        with contextlib.suppress(RuntimeError):  # the context is entered (the task runs in another thread)
            ctx.run(_set_current, node)
    return node


def adopt_root(task: Any, coro: Any) -> RootNode:
    """Make ``task`` the root of the chain seen from its own context.

    Used when the running task was created while tracing was off (or before
    it was on): its context then holds nothing, or a node inherited from its
    creator that would claim the creator's origin. The node is stored in the
    task's context so later captures from it reuse it.
    """
    root = make_root(coro_code(coro), task_name(task), adopted=True)
    CURRENT.set(root)
    return root


def in_first_step(task: Any, coro: Any, inherited: Node | None) -> Node | None:
    """The node of an eager task built directly, captured during its first step; else ``None``.

    Such a task (``asyncio.Task(coro, loop=loop, eager_start=True)``, as
    aiohttp builds its tasks on 3.12/3.13) runs its first step inside the
    constructor, before it registers, so no hook has run for it: it holds
    ``inherited``, its creator's node. The frames above its coroutine are
    those of the code that built it, up to its creator's coroutine (the frame
    running the code of ``inherited``). The creator task itself cannot be
    told yet: the node names none, and on 3.12/3.13 the registration hook
    (:mod:`._direct_tasks`) replaces it if the task registers (its first step
    suspends). The node is stored in the task's context, like a root
    adopted by :func:`adopt_root`.

    Unless ``inherited`` is the node a create_task wrapper holds in flight
    (:data:`in_flight`): then the task is the one that call is making, through
    a task factory that wrapped the coroutine and started it eagerly, and its
    own node is that node named for the coroutine it runs.
    """
    if inherited is None or not tracing_enabled():
        return None
    start = stop_frame(coro)
    start = start.f_back if start is not None else None
    if start is None or not in_eager_first_step(task, start):
        return None
    if is_in_flight(inherited):
        # The task a create_task wrapper is making, whose factory wrapped the coroutine (as
        # Sentry's does) and started it eagerly: its own node, named for what it runs (as
        # _capture._check_coroutine names it once the call returns).
        own = retagged(inherited, coro_code(coro))
        CURRENT.set(own)
        return own
    stop: FrameType | None = None
    if type(inherited) is TaskNode or type(inherited) is RootNode:
        target = inherited.code
        f: FrameType | None = start
        while f is not None:
            if f.f_code is target:
                stop = f
                break
            f = f.f_back
    depth = inherited.depth + 1
    if depth > settings.max_depth:
        inherited = compact(inherited)
        depth = inherited.depth + 1
    node: Node = _tuple_new(TaskNode, (inherited, depth, coro_code(coro), walk(start, stop), None))
    CURRENT.set(node)
    return node


def own_in_first_step(task: Any, node: Node) -> Node:
    """``node``, or ``task``'s own node if ``node`` is the one a wrapper holds for it in flight.

    A task factory that wrapped the coroutine and started the task eagerly runs
    its first step in a copy of the caller's context, which holds the node made
    for the coroutine given (see :func:`in_first_step`). Exception origins
    recorded there (``_record_unwind``) take the task's own node.
    """
    if not is_in_flight(node):
        return node
    coro = coro_of(task)
    if coro is None or is_own(node, coro):
        return node
    return in_first_step(task, coro, node) or node


def compact(parent: Node) -> Node:
    """Return a chain equivalent to ``parent``'s with the middle hops elided.

    Keeps the innermost ``max_depth // 4`` hops (copied, since nodes are
    immutable) and the outermost ``max_depth // 4`` (shared); runs once every
    ``max_depth // 2`` creations at most, so a chain that keeps growing pays
    about half a copied node per task (keeping the innermost half would copy
    two: +120 bytes per live task of a long chain).
    """
    max_depth = settings.max_depth
    keep_inner = max(1, max_depth // 4)
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
    named = named_copy(root, task_name(task))
    _named = (root, named)
    return named


def node_of_task(task: Any) -> Node | None:
    """The chain node in ``task``'s context as it is (maybe inherited: see :func:`task_node`), or ``None``."""
    ctx = task_context(task)
    node = ctx.get(CURRENT) if ctx is not None else None
    return node if isinstance(node, Node) else None


def running_node(task: Any, coro: Any, node: Node | None) -> Node | None:
    """The running ``task``'s own node, when ``node`` (its context's) is not: repaired and stored; else ``None``.

    Call it only when ``is_own(node, coro)`` is false. An eager task built
    directly, in its first step, gets the frames that built it; else a task
    built where no hook saw it gets a hop below its creator's node with the
    line unknown; else (created while tracing was off) ``None``.
    """
    return in_first_step(task, coro, node) or adopt_inherited(node, coro)


def repaired_node(task: Any, coro: Any, node: Node | None) -> Node:
    """The running ``task``'s own node when ``node`` (its context's) is not, stored in its context.

    What a capture in that task starts from: :func:`running_node`, else the
    task adopted as a root (:func:`adopt_root`). Call it only when
    ``is_own(node, coro)`` is false.
    """
    return running_node(task, coro, node) or adopt_root(task, coro)


def task_node(task: Any) -> Node | None:
    """The own node of ``task``, any task (not only the running one), repaired and stored as needed; else ``None``.

    ``None`` for a task created while tracing was off, and for a Future-like
    object that is no task.
    """
    node = node_of_task(task)
    if node is None:
        return None
    coro = coro_of(task)
    if not is_own(node, coro):
        # Built where no hook saw it (its creator's node); else created while tracing was off.
        return store_inherited(task, coro, node)
    return node


def hop_node(node: Node | None, frame: FrameType | None) -> Node | None:
    """In a thread with no running loop: the executor hop the code at ``frame`` runs under, when ``node`` is not it.

    The program may run its function in a context it copied before the call
    (``run_in_executor(None, lambda: ctx.run(f))``, ``ctx.run`` itself, as
    structlog's async methods and asgiref do): ``f`` then sees the node of the
    task that copied it, not the hop's. The hop is in the context the pool's
    work item (or anyio's worker) entered the call with. ``None`` where
    ``node`` is the hop, or a node below it.
    """
    if type(node) is ExecutorNode:
        return None
    entry = entered_call(frame)
    ctx = call_context(entry) if entry is not None else None
    hop = ctx.get(CURRENT) if ctx is not None else None
    if type(hop) is not ExecutorNode:
        return None
    below: Node | None = node
    for _ in range(4 * settings.max_depth + 16):  # compact() keeps chains shorter than this
        if below is None:
            break
        if below is hop:
            return None
        below = below.parent
    return hop


def connection_parent(parent: Node, code: Any, ref: Any) -> tuple[Node, Any]:
    """The parent (and creator reference) of a task a protocol method running ``code`` creates.

    A protocol's requests belong to its connection, not to each other. A
    method that creates a task per request (uvicorn's ``handle_events``) may
    run in an earlier request's context: from a reader callback that request
    re-armed with ``transport.resume_reading()`` (python/cpython#140947), or
    inside that request's task when requests are pipelined. So the tasks that
    this same code created are stepped over: the new task hangs where the
    connection's first request hangs, and every request's chain has the same
    length. ``ref`` is the creator reference the node would get.
    """
    for _ in range(4 * settings.max_depth + 16):  # compact() keeps chains shorter than this
        above = parent.parent
        if type(parent) is not TaskNode or above is None or creating_code(parent.frames) is not code:
            break
        ref = parent.creator_ref
        parent = above
    return parent, ref


def _forget() -> None:
    """Drop the latest named root (``disable_tracing()``)."""
    global _named
    _named = (None, None)


on_disable(_forget)

if CORE is not None:
    # in_first_step's common case, compiled (3.12+, where the core reads interpreter frames).
    CORE.setup_first_step(in_flight, EAGER_TASKS, asyncio.base_events.BaseEventLoop)
