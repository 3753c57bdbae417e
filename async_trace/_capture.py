"""Capture: the hooks' wrappers and the nodes they push.

Every stdlib creation path (``asyncio.create_task``, ``ensure_future``,
``gather``, ``TaskGroup``, ``Runner``, anyio's ``start_soon``) ends in
``loop.create_task``, so that is the one hook for tasks; it wraps the loop's
task factory call, so user factories and ``eager_task_factory`` keep working
and see the node. ``loop.run_in_executor`` is the hook for executor hops
(``asyncio.to_thread`` goes through it); ``run_coroutine_threadsafe`` records
the submitting line. uvloop implements the loop methods in Cython, so they are
patched on ``uvloop.Loop`` as well, when uvloop is imported. The wrappers are
one hook set of :mod:`._hooks`.

Everything on the capture path is written for the hot path of
``loop.create_task``: few allocations, identity comparisons only (hashing a
code object walks its bytecode on 3.12+), no string work.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.coroutines
import asyncio.events
import asyncio.tasks
import concurrent.futures
import contextlib
import functools
import sys
import threading
from collections import deque
from collections.abc import Callable
from contextvars import Context, copy_context
from types import CodeType, FrameType
from typing import Any, Final, NamedTuple
from weakref import WeakKeyDictionary
from weakref import ref as _weakref

from . import _anyio, _chain
from ._chain import (
    _EMPTY,
    CURRENT,
    ElidedNode,
    ExecutorNode,
    Frames,
    Node,
    PendingNode,
    RootNode,
    TaskNode,
    config,
    context_of,
    coro_code,
    inherited_chain,
    make,
    make_elided,
    make_root,
    make_thread_root,
    named_copy,
    retagged,
    stop_frame,
    task_name,
    valid_for,
    warn_internal,
)
from ._hooks import HookSet, Target, register

__all__: list[str] = []

_THIS_FILE: Final = __file__.removesuffix("c")  # a .pyc path never shows in tracebacks

#: Read on every hooked call: flipped by enable/disable so that a wrapper left
#: inside someone else's patch becomes a pass-through.
_active = False
_lock: Final = threading.RLock()

#: 3.10/3.11 with eager notes (no unwind hook there): called with each task the
#: wrappers create, and with each executor call's future and node, to add the
#: origin note as it fails (set by :mod:`._exceptions`; ``None`` otherwise).
watch_task: Callable[[Any], None] | None = None
watch_call: Callable[[Any, Node], None] | None = None


# --- task creation --------------------------------------------------------


#: The latest task node and the context it was pushed into, for sharing with
#: the next sibling: ``(node, creator_snapshot, template)``, the last two
#: ``None`` until a second sibling is created. Consecutive
#: spawns from the same place by the same creator (a loop of create_task, a
#: gather of many coroutines) have identical nodes, so they share one node
#: and one template context; each task then gets ``template.copy()``, which
#: shares the template's variables (an O(1) copy) instead of allocating new
#: ones. ``creator_snapshot`` is the creator's context when the template was
#: made: ``Context.__eq__`` is O(1) while the creator's variables are
#: unchanged. Replaced whole, never mutated, so threads race on it harmlessly.
#: The contexts hold the creator's variables, so the entry also holds a weak
#: reference to the creator whose callback drops the entry when the creator
#: dies: nothing a finished task kept in a ContextVar (its loop, a request)
#: outlives it here. ``disable_tracing()`` clears it too.
class _Hot(NamedTuple):
    """The sibling cache (see above); made with ``tuple.__new__`` on the hot path."""

    #: The latest task node.
    node: Node
    #: The creator's context when ``template`` was made, or ``None``.
    snapshot: Context | None
    #: A context holding ``node``, copied for each further sibling, or ``None``.
    template: Context | None
    #: A weak reference to the creator (its callback clears the cache), or ``None``.
    owner_ref: Any


#: Matches no real node: a new one is made on the first creation.
_NO_NODE: Final = make(TaskNode, None, 0, None, _EMPTY)
_EMPTY_HOT: Final = _Hot(_NO_NODE, None, None, None)
_hot: _Hot = _EMPTY_HOT


#: Loops that created a root task while tracing was on (``asyncio.run``,
#: ``run_until_complete``, a loop in a thread), with the thread they did it
#: in. From 3.14 C tasks live in per-thread lists that Python cannot
#: enumerate, so this is how a dump finds a loop running in another thread
#: when no Python frame of it shows (uvloop runs its loop in C, and keeps its
#: thread id where Python cannot read it). Roots are rare: the hot path never
#: touches it.
_loops: Final[WeakKeyDictionary[Any, int]] = WeakKeyDictionary()


def _note_loop_caller(frame: FrameType) -> None:
    """A root task on a loop running in C (uvloop): collection learns where it was started."""
    from ._collect import note_loop_caller  # imported here: _collect imports this module

    try:
        note_loop_caller(frame)
    except Exception as exc:  # noqa: BLE001 - a debugging aid must not break task creation
        warn_internal(exc, "finding where a loop was started")


def _note_loop(loop: Any) -> None:
    with contextlib.suppress(TypeError):  # a loop type without weak references
        _loops[loop] = threading.get_ident()


def seen_loops() -> list[tuple[Any, int]]:
    """``(loop, thread id)`` for the loops :data:`_loops` holds (copied; retried if another thread changes it)."""
    for _ in range(100):
        try:
            return list(_loops.items())
        except RuntimeError:
            continue
    return []


def clear_caches() -> None:
    """Drop the sibling cache and the latest capture (``disable_tracing()``): they hold code objects and contexts."""
    global _hot, _last
    _hot = _EMPTY_HOT
    _last = _EMPTY


def _drop_hot(ref: Any) -> None:
    # Called by the garbage collector, in any thread, when the creator dies.
    global _hot
    if _hot.owner_ref is ref:
        _hot = _EMPTY_HOT


def _make_create_task(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create_task(self: Any, coro: Any, **kwargs: Any) -> Any:
        global _hot
        if not _active:
            return original(self, coro, **kwargs)
        try:
            # The common case inlined (a traced task creating a child); every
            # other case goes through capture(). See _chain for the layout.
            parent = _get_current()
            creator: Any = _current_task(self) if parent is not None else None
            if _pushed_by_outer_wrapper(parent, creator):
                # Our wrapper inside another of ours (a third-party patch that
                # kept the one it replaced): the outer one traces this call.
                return original(self, coro, **kwargs)
            node: Node
            kind = type(parent)
            if parent is not None and creator is not None and (kind is TaskNode or kind is RootNode):
                creator_coro: Any = creator.get_coro()
                if parent.code is creator_coro.cr_code and parent.depth < _config.max_depth:
                    if kind is RootNode and parent.name is None:  # type: ignore[attr-defined]
                        parent = name_root(parent, creator)  # type: ignore[arg-type]
                    if _frame_module is not None:
                        # 3.12+: step over asyncio's own callers (create_task,
                        # gather...) without materialising their frame objects;
                        # collection would drop them anyway.
                        depth = 1
                        while _frame_module(depth) in _ASYNCIO_CALLERS:
                            depth += 1
                        frames = walk(sys._getframe(depth), creator_coro.cr_frame)
                    else:
                        frames = walk(sys._getframe(1), creator_coro.cr_frame)
                    tag = getattr(coro, "cr_code", None)
                    creator_ref = _weakref(creator)  # the existing ref when there is one
                    node = _hot.node
                    if (
                        node.parent is not parent
                        or node.frames is not frames
                        or node.code is not tag
                        or node.creator_ref is not creator_ref
                    ):
                        # make() inlined: one C call (field order as in _chain.Node).
                        node = _tuple_new(TaskNode, (parent, parent.depth + 1, tag, frames, creator_ref))
                else:
                    node = capture(TaskNode, self, sys._getframe(1), coro_code(coro))
            else:
                node = capture(TaskNode, self, sys._getframe(1), coro_code(coro))
            if type(node) is RootNode and kwargs and kwargs.get("name") is not None:
                # Named before the task exists, so also where its context is out of reach.
                node = make_root(node.code, str(kwargs["name"]))
        except Exception as exc:  # noqa: BLE001 - never break task creation
            warn_internal(exc, "capturing a task creation")
            return original(self, coro, **kwargs)
        context = kwargs.get("context") if kwargs else None
        ctx: Context | None = context
        factory = getattr(self, "_task_factory", _UNKNOWN)  # uvloop's is not readable: unknown
        if context is not None:
            # The caller chose the task's context; our private variable is
            # set in it, so the task still runs in exactly that Context.
            try:
                context.run(_set_current, node)
            except Exception as exc:  # noqa: BLE001 - e.g. the context is entered elsewhere
                warn_internal(exc, "entering a caller-supplied context")
            task = original(self, coro, **kwargs)
        elif (
            _HAS_CONTEXT_ARG
            and (not kwargs or kwargs.keys() <= _NAME_AND_CONTEXT)
            and (factory is None or _passes_context(self))
        ):
            # 3.11+: hand the task its context (see _hot).
            ctx = _copy_context()
            hot = _hot
            if hot.node is not node:
                # A new node: this copy becomes the task's context. A template
                # is only made if a sibling follows (see _hot).
                ctx.run(_set_current, node)
                _hot = _tuple_new(_Hot, (node, None, None, None))
            elif hot.snapshot is not None and hot.snapshot == ctx and hot.template is not None:
                ctx = hot.template.copy()
            else:
                owner = creator if creator is not None else _current_task(self)
                template = ctx.copy()
                template.run(_set_current, node)
                if owner is not None:
                    _hot = _tuple_new(_Hot, (node, ctx, template, _weakref(owner, _drop_hot)))
                ctx = template.copy()
            kwargs["context"] = ctx
            task = original(self, coro, **kwargs)
        else:
            # The task copies the current context: put the node there for the
            # duration of the call only.
            token = _set_current(node)
            rooting = type(node) is RootNode
            if rooting:
                _roots_in_flight.node = node
            try:
                task = original(self, coro, **kwargs)
            finally:
                CURRENT.reset(token)
                if rooting:
                    _roots_in_flight.node = None
        if factory is not None and (factory is not _UNKNOWN or self.get_task_factory() is not None):
            _check_coroutine(task, node, coro, ctx)
        if type(node) is RootNode:
            _note_loop(self)
            if not isinstance(self, asyncio.base_events.BaseEventLoop):
                _note_loop_caller(sys._getframe(1))
        if getattr(task, "_source_traceback", None):
            _trim_source_traceback(task)
        if watch_task is not None:
            _watch(watch_task, task)
        return task

    create_task.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return create_task


#: 3.11+ ``create_task`` takes ``context=`` and hands it to the task factory.
_HAS_CONTEXT_ARG: Final = sys.version_info >= (3, 11)
_UNKNOWN: Final = object()
#: What asyncio itself passes (3.13's asyncio.create_task always passes name=).
_NAME_AND_CONTEXT: Final = frozenset({"name", "context"})
_CONTEXT_FACTORIES: Final = tuple(f for f in (getattr(asyncio, "eager_task_factory", None),) if f is not None)
_copy_context: Final = copy_context
_set_current: Final = CURRENT.set
_get_current: Final = CURRENT.get
_current_task: Final = asyncio.current_task
_tuple_new: Final = tuple.__new__
_config: Final = config
_frame_module: Final[Callable[[int], str | None] | None] = getattr(sys, "_getframemodulename", None)
#: Modules whose frames lead from a user's call to loop.create_task.
_ASYNCIO_CALLERS: Final = frozenset({"asyncio.tasks", "asyncio.taskgroups", "asyncio.base_events"})


#: The root node a create_task call of this thread has put in its current
#: context for the duration of the call (the path without ``context=``).
_roots_in_flight: Final = threading.local()


def _pushed_by_outer_wrapper(parent: Any, creator: Any) -> bool:
    """Whether ``parent`` was pushed by a create_task wrapper still on the stack.

    A task's own node never names that task as its creator; a root is in
    flight only while its create_task call runs.
    """
    kind = type(parent)
    if kind is TaskNode:
        ref = parent.creator_ref
        return creator is not None and ref is not None and ref() is creator
    return kind is RootNode and creator is None and getattr(_roots_in_flight, "node", None) is parent


def _passes_context(loop: Any) -> bool:
    """Whether ``loop.create_task(coro, context=ctx)`` is safe to call.

    Only when the loop calls Task() itself, or its factory is asyncio's
    eager_task_factory: a factory written for 3.10 may not accept ``context=``.
    """
    factory = getattr(loop, "_task_factory", _UNKNOWN)
    if factory is _UNKNOWN:  # not a BaseEventLoop (uvloop)
        try:
            factory = loop.get_task_factory()
        except Exception:  # noqa: BLE001 - an exotic loop: do not guess
            return False
    return factory is None or factory in _CONTEXT_FACTORIES


def _trim_source_traceback(obj: Any) -> None:
    # Debug mode records where a future was created and drops the loop's own
    # create_task frame; drop ours too so that the last entry stays the user's.
    try:
        tb = obj._source_traceback
        if tb and isinstance(tb, list):  # a traceback.StackSummary
            tb[:] = [entry for entry in tb if entry.filename != _THIS_FILE]
    except Exception:  # noqa: BLE001 - a Future-like object from a custom factory
        pass


# --- executor hops --------------------------------------------------------

# asyncio's own predicates, as its debug-mode check uses them (public before 3.14).
_is_coroutine: Final = asyncio.coroutines.iscoroutine
_is_coroutine_function: Final[Callable[[Any], bool]] = (
    getattr(asyncio.coroutines, "_iscoroutinefunction", None) or asyncio.coroutines.iscoroutinefunction
)


_ProcessPool: Final = concurrent.futures.ProcessPoolExecutor
_process: Any = None


def _process_module() -> Any:
    """:mod:`._process`, imported by the first process-pool call (it imports collection, which imports us)."""
    global _process
    if _process is None:
        from . import _process as module

        _process = module
    return _process


def _unwrapped(func: Callable[..., Any]) -> Callable[..., Any]:
    return func


class ContextCall(functools.partial):  # type: ignore[type-arg]
    """``func`` run in ``ctx``, for an executor: ``functools.partial(ctx.run, func)``, made picklable.

    A ``functools.partial`` subclass that defines no ``__call__``: calling it
    runs C code only, so an exception raised by ``func`` shows no frame of
    ours in its traceback. A ``contextvars.Context`` cannot be pickled, so an
    executor that pickles its calls (a process pool, whatever the loop's
    default executor is) gets the bare function: such hops run untraced
    instead of failing.
    """

    __slots__ = ()

    def __new__(cls, ctx: Context, func: Callable[..., Any]) -> ContextCall:
        return super().__new__(cls, ctx.run, func)

    @property
    def ctx(self) -> Context:
        """The context the function runs in."""
        return self.func.__self__  # type: ignore[no-any-return,attr-defined]

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Callable[..., Any]]]:
        return _unwrapped, (self.args[0],)

    def __repr__(self) -> str:
        return f"{self.args[0]!r} (in an async_trace context)"


def _check_coroutine(task: Any, node: Node, coro: Any, ctx: Context | None) -> None:
    """A task factory that wrapped the coroutine (as Sentry's asyncio integration does): rename the node.

    The node then names the coroutine the task runs; else the task would not
    recognise its own node, and would take it for its creator's. Stored in
    the task's context if that still holds our node.
    """
    try:
        # A finished task is past caring (and 3.12.1's get_coro() crashes on an eager task that finished).
        if task.done():
            return
        made = task.get_coro()
    except Exception:  # noqa: BLE001 - a Future-like object from a custom factory
        return
    code = coro_code(made) if made is not coro else None
    if code is None or node.code is code:
        return
    try:
        if ctx is None:
            ctx = context_of(task)  # the task copied the creator's context while it held the node
        if ctx is not None and ctx.get(CURRENT) is node:
            ctx.run(_set_current, retagged(node, code))
    except Exception as exc:  # noqa: BLE001 - e.g. an eager task's context, entered elsewhere
        warn_internal(exc, "naming a wrapped coroutine's node")


def _watch(watcher: Callable[..., None], *args: Any) -> None:
    try:
        watcher(*args)
    except Exception as exc:  # noqa: BLE001 - never break what was created
        warn_internal(exc, "watching for an exception's origin")


def context_of_run(func: Any) -> Context | None:
    """The Context of ``functools.partial(ctx.run, ...)``, as asyncio.to_thread builds it."""
    kind = type(func)
    if kind is functools.partial or kind is ContextCall:
        target = func.func
        owner = getattr(target, "__self__", None)
        if type(owner) is Context and getattr(target, "__name__", None) == "run":
            return owner
    return None


def _make_run_in_executor(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_in_executor(self: Any, executor: Any, func: Any, *args: Any) -> Any:
        if not _active:
            return original(self, executor, func, *args)
        on_done: Any = None
        node: Node | None = None
        try:
            debug_rejects = self.get_debug() and (_is_coroutine(func) or _is_coroutine_function(func))
            if debug_rejects or not callable(func):
                # Leave it to the loop: its checks must see exactly what they see untraced.
                return original(self, executor, func, *args)
            node = capture(ExecutorNode, self, sys._getframe(1))
            ctx = context_of_run(func)
            if ctx is None and isinstance(executor, _ProcessPool):
                # A process pool pickles its calls: the chain goes with it, symbolized
                # (the loop's default executor can only be a thread pool).
                func, on_done = _process_module().hop(self, node, func)
            elif ctx is not None:
                # asyncio.to_thread copied the context before calling us:
                # push the node into that copy, not a new one.
                ctx.run(_set_current, node)
            else:
                ctx = copy_context()
                ctx.run(_set_current, node)
                func = ContextCall(ctx, func)
        except Exception as exc:  # noqa: BLE001 - never break the hop
            warn_internal(exc, "capturing an executor call")
        future = original(self, executor, func, *args)
        _trim_source_traceback(future)
        if on_done is not None:
            if future.done():
                # The worker answered before we got the future (3.14 chains the state at once
                # when it can): an await would raise it now, before any callback runs.
                on_done(future)
            else:
                future.add_done_callback(on_done)  # before anyone can await it: see _process.hop
        elif watch_call is not None and node is not None:
            _watch(watch_call, future, node)
        return future

    run_in_executor.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return run_in_executor


# --- anyio worker threads ----------------------------------------------------


def _make_run_sync_in_worker_thread(original: Any) -> Any:
    """Wrap anyio's ``AsyncIOBackend.run_sync_in_worker_thread`` (a classmethod): see :mod:`._anyio`."""
    function: Callable[..., Any] = original.__func__

    def run_sync_in_worker_thread(cls: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        # A plain function returning anyio's coroutine: no frame of ours
        # stays on the stack while the thread runs, or in its tracebacks.
        if _active and callable(func):
            try:
                frame: Any = sys._getframe(1)
                if frame.f_code is _anyio.to_thread_code() and frame.f_back is not None:
                    frame = frame.f_back  # the coroutine awaiting to_thread.run_sync
                node = capture(ExecutorNode, asyncio.events._get_running_loop(), frame)
                ctx = copy_context()
                ctx.run(_set_current, node)
                # What anyio does to the context it runs the function in.
                setter = getattr(sys.modules.get(_anyio.MODULE), "set_current_async_library", None)
                if setter is not None:
                    ctx.run(setter, None)
                func = ContextCall(ctx, func)
            except Exception as exc:  # noqa: BLE001 - never break the hop
                warn_internal(exc, "capturing an anyio worker-thread call")
        return function(cls, func, *args, **kwargs)

    functools.update_wrapper(run_sync_in_worker_thread, function)
    run_sync_in_worker_thread.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper = classmethod(run_sync_in_worker_thread)
    # A classmethod's own __wrapped__ is read-only (the function): the original is kept here.
    wrapper.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    wrapper.__async_trace_original__ = original  # type: ignore[attr-defined]
    return wrapper


# --- run_coroutine_threadsafe ----------------------------------------------


def _make_run_coroutine_threadsafe(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_coroutine_threadsafe(coro: Any, loop: Any) -> Any:
        if not _active:
            return original(coro, loop)
        try:
            # The task is created later by a callback on ``loop``; that
            # callback runs in a copy of this context, where the pending node
            # tells create_task which line submitted it.
            here = asyncio.events._get_running_loop()
            node = capture(PendingNode, here, sys._getframe(1))
            ctx = copy_context()
            ctx.run(CURRENT.set, node)
        except Exception as exc:  # noqa: BLE001
            warn_internal(exc, "capturing run_coroutine_threadsafe")
            return original(coro, loop)
        return ctx.run(original, coro, loop)

    run_coroutine_threadsafe.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return run_coroutine_threadsafe


# --- node making --------------------------------------------------------------

#: The frames tuple of the latest capture. Consecutive spawns from the same
#: place (a loop of create_task, gather of many coroutines) share it: the
#: capture compares the stack against it instead of building a new tuple.
#: Threads race on it harmlessly: it is only ever replaced, never mutated.
_last: Frames = _EMPTY


def walk(frame: FrameType | None, stop: FrameType | None, *, remember: bool = True) -> Frames:
    """Flatten ``frame`` and its callers up to and including ``stop``.

    Without ``stop`` the walk stops at the event loop's ``Handle._run`` (where
    collection would cut it), else (uvloop runs callbacks from C; a thread)
    runs to the outermost frame; collection cuts it there. At most ``config.max_frames``
    frames are kept: the innermost ones and a quarter from the outer end, with
    a ``(None, n)`` marker for the ``n`` in between. ``remember=False`` (for
    collection) leaves the capture cache alone.
    """
    global _last
    if stop is None:
        # A callback's stack (a protocol method, call_soon): collection cuts it
        # at the loop's Handle._run, so walking on to runpy would only cost.
        f = frame
        while f is not None and f.f_code is not _HANDLE_RUN:
            f = f.f_back
        stop = f
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


def adopt_inherited(inherited: Node | None, coro: Any) -> Node | None:
    """The running task's node when it holds its creator's (see :func:`._chain.inherited_chain`), set in its context."""
    node = _bounded(inherited_chain(inherited, coro))
    if node is not None:
        CURRENT.set(node)
    return node


def _bounded(node: Node | None) -> Node | None:
    parent = node.parent if node is not None else None
    if node is None or parent is None or node.depth <= config.max_depth:
        return node
    parent = compact(parent)
    return node.clone(parent, parent.depth + 1)


def store_inherited(task: Any, coro: Any, inherited: Node | None) -> Node | None:
    """:func:`adopt_inherited` for a task that is not the running one: stored in its context, if it can be."""
    node = _bounded(inherited_chain(inherited, coro))
    ctx = context_of(task) if node is not None else None
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


#: 3.12/3.13: the tasks running their eager first step (a set asyncio's C code fills).
_EAGER_TASKS: Final[Any] = getattr(asyncio.tasks, "_eager_tasks", None) if sys.version_info < (3, 14) else None
#: The frame a stdlib loop runs every step from; an eager first step runs from its creator's frame.
_HANDLE_RUN: Final = asyncio.events.Handle._run.__code__


def in_first_step(task: Any, coro: Any, inherited: Node | None) -> Node | None:
    """The node of an eager task built directly, captured during its first step; else ``None``.

    Such a task (``asyncio.Task(coro, loop=loop, eager_start=True)``, as
    aiohttp builds its tasks on 3.12/3.13) runs its first step inside the
    constructor, before it registers, so no hook has run for it: it holds
    ``inherited``, its creator's node. The frames above its coroutine are
    those of the code that built it, up to its creator's coroutine (the frame
    running the code of ``inherited``). The creator task itself cannot be
    told yet: the node names none, and on 3.12/3.13 the registration hook
    (:mod:`._registry`) replaces it if the task registers (its first step
    suspends). The node is stored in the task's context, like a root
    adopted by :func:`adopt_root`.
    """
    if inherited is None or not _active:
        return None
    start = getattr(coro, "cr_frame", None)
    start = start.f_back if start is not None else None
    if start is None:
        return None
    if _EAGER_TASKS is not None:
        if task not in _EAGER_TASKS:
            return None
    elif (
        sys.version_info < (3, 14)
        or start.f_code is _HANDLE_RUN
        or not isinstance(task.get_loop(), asyncio.base_events.BaseEventLoop)
    ):
        return None
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
    if depth > config.max_depth:
        inherited = compact(inherited)
        depth = inherited.depth + 1
    node: Node = _tuple_new(TaskNode, (inherited, depth, coro_code(coro), walk(start, stop), None))
    CURRENT.set(node)
    return node


def weak_task_ref(task: Any) -> Any:
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
            # An eager task built directly, in its first step (no hook has
            # run for it yet); else created untraced: do not let its
            # children claim its creator's origin.
            parent = in_first_step(task, coro, parent) or adopt_inherited(parent, coro) or adopt_root(task, coro)
        elif type(parent) is RootNode and parent.name is None:
            parent = name_root(parent, task)
        stop = stop_frame(coro)
        creator = weak_task_ref(task)
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


# --- the hook set -------------------------------------------------------------


def _targets() -> list[Target]:
    targets: list[Target] = [
        (asyncio.base_events.BaseEventLoop, "create_task", _make_create_task),
        (asyncio.base_events.BaseEventLoop, "run_in_executor", _make_run_in_executor),
        (asyncio.tasks, "run_coroutine_threadsafe", _make_run_coroutine_threadsafe),
        (asyncio, "run_coroutine_threadsafe", _make_run_coroutine_threadsafe),
    ]
    uvloop = sys.modules.get("uvloop")
    loop_cls = getattr(uvloop, "Loop", None) if uvloop is not None else None
    if isinstance(loop_cls, type):
        targets.append((loop_cls, "create_task", _make_create_task))
        targets.append((loop_cls, "run_in_executor", _make_run_in_executor))
    return targets


def _on() -> None:
    global _active
    _active = True


def _anyio_targets() -> list[Target]:
    backend = _anyio.backend()
    return [] if backend is None else [(backend, _anyio.NAME, _make_run_sync_in_worker_thread)]


def _anyio_on() -> None:
    worker_run = _anyio.worker_run_code()
    if worker_run is not None:
        _anyio.entry_codes[id(worker_run)] = worker_run  # anyio's worker loop: collection cuts there


def _off() -> None:
    global _active
    _active = False
    _chain.epoch += 1  # tasks made from now on, until the next enable, are untraced
    clear_caches()
    # Collection's caches and the process hop's (imported by the first process-pool call) hold
    # the program's code objects: nothing of the program outlives tracing in them.
    for name in ("_collect", "_process"):
        module = sys.modules.get(f"{__package__}.{name}")
        if module is not None:
            module.clear_caches()


#: The tracing wrappers, switched by ``enable_tracing()`` / ``disable_tracing()`` through :mod:`._hooks`.
HOOKS: Final = register(HookSet("tracing", _targets, on=_on, off=_off, watch=("uvloop",)))
#: anyio's worker-thread hop (a classmethod, replaced and restored exactly; its wrapper reads
#: ``_active`` like the others), once anyio's asyncio backend is imported, before or after us.
ANYIO_HOOKS: Final = register(HookSet("anyio", _anyio_targets, on=_anyio_on, off=lambda: None, watch=(_anyio.MODULE,)))


def patched_attributes() -> list[tuple[Any, str]]:
    """The (owner, name) pairs tracing replaces (for tests of exact restore)."""
    return HOOKS.patched_attributes()


def is_active() -> bool:
    return _active
