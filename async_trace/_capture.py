"""Capture: the hooks' wrappers and the nodes they push.

Every stdlib creation path (``asyncio.create_task``, ``ensure_future``,
``gather``, ``TaskGroup``, ``Runner``, anyio's ``start_soon``) ends in
``loop.create_task``, so that is the one hook for tasks; it wraps the loop's
task factory call, so user factories and ``eager_task_factory`` keep working
and see the node. ``loop.run_in_executor`` is the hook for executor hops
(``asyncio.to_thread`` goes through it); ``run_coroutine_threadsafe`` records
the submitting line; where a server starts listening (asyncio's
``Server._start_serving``, uvloop's ``create_server``), a server node is put
where its connections' callbacks will run. uvloop implements the loop methods
in Cython, so they are patched on ``uvloop.Loop`` as well, when uvloop is
imported. The wrappers are one hook set of :mod:`._hooks`.

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
import functools
import sys
import threading
from collections.abc import Callable
from contextvars import Context, copy_context
from types import CoroutineType, FrameType
from typing import Any, Final, NamedTuple
from weakref import ref as _weakref

from . import _process
from ._chain import (
    _EMPTY,
    CURRENT,
    KEEP_TASK_CODES,
    ExecutorNode,
    Node,
    PendingNode,
    RootNode,
    ServerNode,
    TaskNode,
    coro_code,
    creator_ref,
    make,
    make_root,
    make_thread_root,
    note_task_code,
    retagged,
    stop_frame,
    task_codes,
)
from ._compat import HAS_CONTEXT_ARG, HAS_EAGER_TASKS, frame_module, is_coroutine_function, task_context
from ._config import new_epoch, settings
from ._contexts import ContextCall, context_of_run
from ._failsafe import warn_internal
from ._frames import (
    ASYNCIO_CREATORS,
    creating_frame,
    note_loop_caller,
    protocol_cache,
    protocol_frames,
    protocol_get,
    protocol_method,
)
from ._hooks import HookSet, Target, call_watchers, on_disable, task_watchers
from ._lineage import compact, connection_parent, is_own, name_root, repaired_node
from ._lineage import in_flight as _in_flight
from ._loops import (
    CONTEXT_FACTORIES,
    TASK_FACTORY_ATTR,
    UNREADABLE,
    UVLOOP_MODULE,
    UVLOOP_SERVER_METHODS,
    note_loop,
    passes_context,
    runs_in_c,
    uvloop_loop_class,
)
from ._speedups import CORE
from ._stack import walk

__all__: list[str] = []

_THIS_FILE: Final = __file__.removesuffix("c")  # a .pyc path never shows in tracebacks

#: Read on every hooked call: flipped by enable/disable so that a wrapper left
#: inside someone else's patch becomes a pass-through.
_active = False
_lock: Final = threading.RLock()


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
class _SiblingCache(NamedTuple):
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
_NO_SIBLINGS: Final = _SiblingCache(_NO_NODE, None, None, None)
_siblings: _SiblingCache = _NO_SIBLINGS


def _forget() -> None:
    """Drop the sibling cache (``disable_tracing()``): it holds code objects and contexts."""
    global _siblings
    _siblings = _NO_SIBLINGS


on_disable(_forget)


def _drop_siblings(ref: Any) -> None:
    # Called by the garbage collector, in any thread, when the creator dies.
    global _siblings
    if _siblings.owner_ref is ref:
        _siblings = _NO_SIBLINGS


def _make_create_task(original: Callable[..., Any]) -> Callable[..., Any]:
    """The create_task wrapper: the compiled one in front of the Python one where the core runs (3.11+)."""
    wrapper = _make_py_create_task(original)
    if CORE is None or not HAS_CONTEXT_ARG:
        return wrapper
    return _compiled(CORE.CreateTask, original, wrapper)


def _compiled(
    kind: Callable[..., Any], original: Callable[..., Any], wrapper: Callable[..., Any]
) -> Callable[..., Any]:
    """A compiled wrapper of ``original`` (``CORE.CreateTask``, ``CORE.RunInExecutor``) in front of ``wrapper``."""
    compiled: Callable[..., Any] = kind(original, wrapper)
    functools.update_wrapper(compiled, original)
    compiled.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return compiled


def _make_py_create_task(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create_task(self: Any, coro: Any, **kwargs: Any) -> Any:
        global _siblings
        if not _active:
            return original(self, coro, **kwargs)
        try:
            # The compiled core's version of the common case below (None outside it).
            node: Node | None = _c_task_node(self, coro, _siblings.node) if _c_task_node is not None else None
            creator: Any = None
            if node is None:
                # The common case inlined (a traced task creating a child); every
                # other case goes through capture(). See _chain for the layout.
                parent = _get_current()
                creator = _current_task(self) if parent is not None else None
                if _pushed_by_outer_wrapper(parent, creator):
                    # Our wrapper inside another of ours (a third-party patch that
                    # kept the one it replaced): the outer one traces this call.
                    return original(self, coro, **kwargs)
                kind = type(parent)
                if creator is not None:
                    creator_coro: Any = creator.get_coro()
                    own = (kind is TaskNode or kind is RootNode) and parent.code is creator_coro.cr_code  # type: ignore[union-attr]
                    if not own and type(creator_coro) is _CoroutineType:
                        # Not the creator's own node (an eager task built directly, in its first step,
                        # as aiohttp builds its handlers; a task built untraced): repaired as capture()
                        # repairs it, stored in its context, and on with the common case.
                        parent = repaired_node(creator, creator_coro, parent)
                        kind = type(parent)
                        own = True
                    if own and parent is not None and parent.depth < _settings.max_depth:
                        if kind is RootNode and parent.name is None:  # type: ignore[attr-defined]
                            parent = name_root(parent, creator)  # type: ignore[arg-type]
                        if _frame_module is not None:
                            # 3.12+: step over asyncio's own callers (create_task,
                            # gather...) without materialising their frame objects;
                            # collection would drop them anyway.
                            depth = 1
                            while _frame_module(depth) in _ASYNCIO_CALLERS:
                                depth += 1
                            start = sys._getframe(depth)
                            frames = walk(start, creator_coro.cr_frame)
                            asker: Any = start
                        else:
                            start = sys._getframe(1)
                            frames = walk(start, creator_coro.cr_frame)
                            asker = creating_frame(start)
                        made_code = coro.cr_code if type(coro) is _CoroutineType else coro_code(coro)
                        ref = _weakref(creator)  # the existing ref when there is one
                        # protocol_method(asker), its cache hit inlined: a task a protocol method creates
                        # belongs to the connection (see _lineage.connection_parent).
                        asked = asker.f_code
                        hit = _protocol_get(id(asked))
                        if hit[1] if hit is not None and hit[0] is asked else protocol_method(asker):
                            parent, ref = connection_parent(parent, asked, ref)
                            frames = protocol_frames(frames, asker)
                        node = _siblings.node
                        if (
                            node.parent is not parent
                            or node.frames is not frames
                            or node.code is not made_code
                            or node.creator_ref is not ref
                        ):
                            # make() inlined: one C call (field order as in _chain.Node).
                            node = _tuple_new(TaskNode, (parent, parent.depth + 1, made_code, frames, ref))
                    else:
                        node = capture(TaskNode, self, sys._getframe(1), coro_code(coro))
                else:
                    node = capture(TaskNode, self, sys._getframe(1), coro_code(coro))
            if type(node) is RootNode and kwargs and kwargs.get("name") is not None:
                # Named before the task exists, so also where its context is out of reach.
                node = make_root(node.code, str(kwargs["name"]))
            context = kwargs.get("context") if kwargs else None
            factory = getattr(self, TASK_FACTORY_ATTR, UNREADABLE)  # _loops.loop_factory(self), inlined
        except Exception as exc:  # noqa: BLE001 - never break task creation
            warn_internal(exc, "capturing a task creation")
            return original(self, coro, **kwargs)
        ctx: Context | None = context
        if context is not None:
            # The caller chose the task's context; our private variable is
            # set in it, so the task still runs in exactly that Context.
            try:
                context.run(_set_current, node)
            except Exception as exc:  # noqa: BLE001 - e.g. the context is entered elsewhere
                warn_internal(exc, "entering a caller-supplied context")
            if _HAS_EAGER_TASKS:
                # A factory may start the task eagerly inside the call, its first step reading the node
                # from that context: said, as below, so that step takes the node as the task's own.
                outer = getattr(_in_flight, "node", None)
                _in_flight.node = node
                try:
                    task = original(self, coro, **kwargs)
                finally:
                    _in_flight.node = outer
            else:
                task = original(self, coro, **kwargs)
        elif (
            HAS_CONTEXT_ARG
            and (not kwargs or kwargs.keys() <= _NAME_AND_CONTEXT)
            and (factory is None or passes_context(self))
        ):
            # 3.11+: hand the task its context (see _siblings).
            try:
                ctx = _copy_context()
                cached = _siblings
                if cached.node is not node:
                    # A new node: this copy becomes the task's context. A template
                    # is only made if a sibling follows (see _siblings).
                    ctx.run(_set_current, node)
                    _siblings = _tuple_new(_SiblingCache, (node, None, None, None))
                elif cached.snapshot is not None and cached.snapshot == ctx and cached.template is not None:
                    ctx = cached.template.copy()
                else:
                    owner = creator if creator is not None else _current_task(self)
                    template = ctx.copy()
                    template.run(_set_current, node)
                    if owner is not None:
                        _siblings = _tuple_new(_SiblingCache, (node, ctx, template, _weakref(owner, _drop_siblings)))
                    ctx = template.copy()
            except Exception as exc:  # noqa: BLE001 - a creator that is no weakly referenceable task
                warn_internal(exc, "preparing a task's context")
                return original(self, coro, **kwargs)
            kwargs["context"] = ctx
            task = original(self, coro, **kwargs)
        else:
            # The task copies the current context: put the node there for the
            # duration of the call only.
            token = _set_current(node)
            # Said for roots (_pushed_by_outer_wrapper), where a first step can run inside the call
            # (3.12+: _lineage.in_first_step), and for a node made where no task runs (a task factory
            # that builds the task directly: the registration hook, 3.10-3.13, knows it by that);
            # 3.10 takes this path for every task.
            tell = _HAS_EAGER_TASKS or type(node) is RootNode or creator is None
            if tell:
                outer = getattr(_in_flight, "node", None)
                _in_flight.node = node
            try:
                task = original(self, coro, **kwargs)
            finally:
                CURRENT.reset(token)
                if tell:
                    _in_flight.node = outer
        try:
            if factory is not None and (factory is not UNREADABLE or self.get_task_factory() is not None):
                _check_coroutine(task, node, coro, ctx)  # remembers the code the task runs
            elif _KEEP_TASK_CODES and id(node.code) not in _task_codes:
                note_task_code(node.code)  # 3.10/3.11: see _chain.task_codes
            if type(node) is RootNode:
                _note_root(self, sys._getframe(1))
            if getattr(task, "_source_traceback", None):
                _trim_source_traceback(task)
            if _task_watchers:
                _notify(_task_watchers, task)
        except Exception as exc:  # noqa: BLE001 - the task exists: hand it over, whatever it is
            warn_internal(exc, "finishing a task creation")
        return task

    create_task.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return create_task


#: What asyncio itself passes (3.13's asyncio.create_task always passes name=).
_NAME_AND_CONTEXT: Final = frozenset({"name", "context"})
_copy_context: Final = copy_context
_set_current: Final = CURRENT.set
_get_current: Final = CURRENT.get
_current_task: Final = asyncio.current_task
_tuple_new: Final = tuple.__new__
_settings: Final = settings
_CoroutineType: Final = CoroutineType
_frame_module: Final = frame_module
_protocol_get: Final = protocol_get
_task_watchers: Final = task_watchers
#: The compiled common case (see ``_ccore.task_node``), or ``None`` on the Python path.
_c_task_node: Final[Callable[[Any, Any, Node], Node | None] | None] = None if CORE is None else CORE.task_node
_KEEP_TASK_CODES: Final = KEEP_TASK_CODES
_HAS_EAGER_TASKS: Final = HAS_EAGER_TASKS
_task_codes: Final = task_codes
#: Modules whose frames lead from a user's call to loop.create_task.
_ASYNCIO_CALLERS: Final = frozenset({"asyncio.tasks", "asyncio.taskgroups", "asyncio.base_events"})


def _pushed_by_outer_wrapper(parent: Any, creator: Any) -> bool:
    """Whether ``parent`` was pushed by a create_task wrapper still on the stack.

    A task's own node never names that task as its creator; a root is in
    flight only while its create_task call runs.
    """
    kind = type(parent)
    if kind is TaskNode:
        ref = parent.creator_ref
        return creator is not None and ref is not None and ref() is creator
    return kind is RootNode and creator is None and getattr(_in_flight, "node", None) is parent


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

# asyncio's own predicate, as its debug-mode check uses it.
_is_coroutine: Final = asyncio.coroutines.iscoroutine
_ProcessPool: Final = concurrent.futures.ProcessPoolExecutor


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
    note_task_code(node.code if code is None else code)  # 3.10/3.11: the code the task runs
    if code is None or node.code is code:
        return
    try:
        if ctx is None:
            ctx = task_context(task)  # the task copied the creator's context while it held the node
        if ctx is not None and ctx.get(CURRENT) is node:
            ctx.run(_set_current, retagged(node, code))
    except Exception as exc:  # noqa: BLE001 - e.g. an eager task's context, entered elsewhere
        warn_internal(exc, "naming a wrapped coroutine's node")


def _make_run_in_executor(original: Callable[..., Any]) -> Callable[..., Any]:
    """The run_in_executor wrapper: the compiled one in front of the Python one where the core runs."""
    wrapper = _make_py_run_in_executor(original)
    if CORE is None:
        return wrapper
    return _compiled(CORE.RunInExecutor, original, wrapper)


def _make_py_run_in_executor(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_in_executor(self: Any, executor: Any, func: Any, *args: Any) -> Any:
        if not _active:
            return original(self, executor, func, *args)
        on_done: Any = None
        node: Node | None = None
        given = func
        try:
            debug_rejects = self.get_debug() and (_is_coroutine(func) or is_coroutine_function(func))
            if debug_rejects or not callable(func):
                # Leave it to the loop: its checks must see exactly what they see untraced.
                return original(self, executor, func, *args)
            node = capture(ExecutorNode, self, sys._getframe(1))
            ctx = context_of_run(func)
            if ctx is None and isinstance(executor, _ProcessPool):
                # A process pool pickles its calls: the chain goes with it, symbolized
                # (the loop's default executor can only be a thread pool).
                func, on_done = _process.hop(self, node, func)
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
            func, on_done, node = given, None, None
        future = original(self, executor, func, *args)
        try:
            _trim_source_traceback(future)
            if on_done is not None:
                if future.done():
                    # The worker answered before we got the future (3.14 chains the state at once
                    # when it can): an await would raise it now, before any callback runs.
                    on_done(future)
                else:
                    future.add_done_callback(on_done)  # before anyone can await it: see _process.hop
            elif call_watchers and node is not None:
                _notify(call_watchers, future, node)
        except Exception as exc:  # noqa: BLE001 - the call is under way: hand its future over
            warn_internal(exc, "finishing an executor call")
        return future

    run_in_executor.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return run_in_executor


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


# --- servers ----------------------------------------------------------------


def _make_start_serving(original: Callable[..., Any]) -> Callable[..., Any]:
    """asyncio's ``Server._start_serving``: the listening sockets' accept callbacks run under a server node.

    Called by ``create_server`` (so ``start_server``), ``start_serving()`` and
    ``serve_forever()``; the loop registers each accept callback with a copy
    of the context current then, so the node goes in a copy of the caller's
    context for the duration of the call: the caller's own is left as it is.
    """

    @functools.wraps(original)
    def _start_serving(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _active or getattr(self, "_serving", True):  # already serving: nothing starts
            return original(self, *args, **kwargs)
        try:
            node = capture(ServerNode, getattr(self, "_loop", None), sys._getframe(1))
            ctx = _copy_context()
            ctx.run(_set_current, node)
        except Exception as exc:  # noqa: BLE001 - never break a server's start
            warn_internal(exc, "capturing a server's start")
            return original(self, *args, **kwargs)
        return ctx.run(original, self, *args, **kwargs)

    _start_serving.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return _start_serving


class _ServingFactory:
    """A server's protocol factory that puts the server's node in the context uvloop calls it in.

    uvloop copies the context once, when the server starts listening, and
    runs the factory and every connection's protocol callbacks in that one
    context: set there, the node is seen by all of them. A pass-through
    while tracing is off.
    """

    __slots__ = ("factory", "node")

    def __init__(self, node: Node, factory: Callable[[], Any]) -> None:
        self.node = node
        self.factory = factory

    def __call__(self) -> Any:
        if _active and _get_current() is not self.node:
            try:
                _set_current(self.node)
            except Exception as exc:  # noqa: BLE001 - never break a connection
                warn_internal(exc, "entering a server's node")
        return self.factory()

    def __repr__(self) -> str:
        return repr(self.factory)


def _make_create_server(original: Callable[..., Any]) -> Callable[..., Any]:
    """uvloop's ``create_server`` / ``create_unix_server``: the server node, captured at the caller.

    uvloop's server starts listening in C (no ``Server._start_serving`` to
    wrap); its protocol factory carries the node instead (see
    :class:`_ServingFactory`).
    """

    @functools.wraps(original)
    def create_server(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _active:
            return original(self, *args, **kwargs)
        try:
            node = capture(ServerNode, self, sys._getframe(1))
            if args and callable(args[0]):
                args = (_ServingFactory(node, args[0]), *args[1:])
            elif callable(kwargs.get("protocol_factory")):
                kwargs["protocol_factory"] = _ServingFactory(node, kwargs["protocol_factory"])
        except Exception as exc:  # noqa: BLE001 - never break a server's start
            warn_internal(exc, "capturing a server's start")
        return original(self, *args, **kwargs)

    create_server.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return create_server


# --- node making --------------------------------------------------------------


def capture(kind: type[Node], loop: Any, frame: FrameType | None, made_code: Any = None) -> Node:
    """Make the node for a task creation or executor hop called from ``frame``.

    ``loop`` is the loop whose current task is the creator (``None``: no
    loop runs here). For tasks ``made_code`` is the code of the created coroutine.
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
                return make_root(made_code)
            if kind is PendingNode:
                # run_coroutine_threadsafe from a thread no traced hop led to:
                # the chain starts here, at a root named after the thread.
                parent = make_thread_root(threading.current_thread().name)
        elif type(parent) is PendingNode and kind is TaskNode:
            # The callback of run_coroutine_threadsafe: the creation point is
            # the submitting thread's line, captured by the pending node.
            return _tuple_new(TaskNode, (parent.parent, parent.depth, made_code, parent.frames, parent.creator_ref))
        stop = None
        creator = None
    else:
        coro = task.get_coro()
        if parent is None or not is_own(parent, coro):
            # An eager task built directly, in its first step (no hook has
            # run for it yet); else created untraced: do not let its
            # children claim its creator's origin.
            parent = repaired_node(task, coro, parent)
        elif type(parent) is RootNode and parent.name is None:
            parent = name_root(parent, task)
        stop = stop_frame(coro)
        creator = creator_ref(task)
    frames = walk(frame, stop)
    if parent is None:
        return _tuple_new(kind, (None, 1, made_code, frames, creator))
    if kind is TaskNode:
        asker = creating_frame(frame)
        if asker is not None and protocol_method(asker):
            parent, creator = connection_parent(parent, asker.f_code, creator)
            frames = protocol_frames(frames, asker)
    depth = parent.depth + 1
    if depth > settings.max_depth:
        parent = compact(parent)
        depth = parent.depth + 1
    return _tuple_new(kind, (parent, depth, made_code, frames, creator))


# --- the hook set -------------------------------------------------------------


def _targets() -> list[Target]:
    targets: list[Target] = [
        (asyncio.base_events.BaseEventLoop, "create_task", _make_create_task),
        (asyncio.base_events.BaseEventLoop, "run_in_executor", _make_run_in_executor),
        (asyncio.tasks, "run_coroutine_threadsafe", _make_run_coroutine_threadsafe),
        (asyncio, "run_coroutine_threadsafe", _make_run_coroutine_threadsafe),
        (asyncio.base_events.Server, "_start_serving", _make_start_serving),
    ]
    loop_cls = uvloop_loop_class()
    if loop_cls is not None:
        targets.append((loop_cls, "create_task", _make_create_task))
        targets.append((loop_cls, "run_in_executor", _make_run_in_executor))
        targets.extend((loop_cls, name, _make_create_server) for name in UVLOOP_SERVER_METHODS)
    return targets


def _on() -> None:
    global _active
    _active = True
    if CORE is not None:
        CORE.set_active(True)


def _off() -> None:
    global _active
    _active = False
    if CORE is not None:
        CORE.set_active(False)
    new_epoch()  # tasks made from now on, until the next enable, are untraced


#: The tracing wrappers, switched by ``enable_tracing()`` / ``disable_tracing()`` (``_api.HOOK_SETS``).
HOOKS: Final = HookSet("tracing", _targets, on=_on, off=_off, watch=(UVLOOP_MODULE,))


#: The code of the Python create_task wrapper: tasks a frame running it builds are traced already.
WRAPPER_CODE: Final = _make_py_create_task(asyncio.base_events.BaseEventLoop.create_task).__code__


def patched_attributes() -> list[tuple[Any, str]]:
    """The (owner, name) pairs tracing replaces (for tests of exact restore)."""
    return HOOKS.patched_attributes()


def is_active() -> bool:
    return _active


def _note_root(loop: Any, caller: FrameType) -> None:
    """A root task was made on ``loop`` from ``caller``: remember the loop (and, for a C loop, its caller)."""
    try:
        note_loop(loop)
        if runs_in_c(loop):
            note_loop_caller(caller)
    except Exception as exc:  # noqa: BLE001 - a debugging aid must not break task creation
        warn_internal(exc, "finding where a loop was started")


def _notify(watchers: list[Callable[..., None]], *args: Any) -> None:
    for watcher in watchers:
        try:
            watcher(*args)
        except Exception as exc:  # noqa: BLE001 - never break what was created
            warn_internal(exc, "watching for an exception's origin")


# The compiled core reads what it shares with the Python wrapper from here (see _ccore.c).
if CORE is not None:
    CORE.setup_tasks(
        _current_task,
        _frame_module,
        sys._getframe,
        _ASYNCIO_CALLERS,
        ASYNCIO_CREATORS,
        protocol_cache,
        name_root,
        protocol_method,
        connection_parent,
        protocol_frames,
        repaired_node,
    )
    CORE.setup_wrapper(
        _trim_source_traceback,
        _notify,
        task_watchers,
        task_codes if KEEP_TASK_CODES else None,
        note_task_code,
        CONTEXT_FACTORIES,
        _check_coroutine,
    )
    CORE.setup_executor(_ProcessPool, functools.partial, ContextCall, call_watchers)
