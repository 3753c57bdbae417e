"""Exception origins: which task (or executor call) an exception was raised in, recorded on the exception.

An exception's traceback shows the frames of the task it was raised in; its
*origin* is that task's chain node, from which the notes show the chain above
it (:mod:`._notes`). The record is stored on the exception as
``_async_trace_origin`` (exceptions cannot be weakly referenced); it pickles
and deep-copies as ``None``, so an exception crossing a process boundary stays
picklable.

Where the record comes from: as the exception leaves the raising task, 3.12+
the unwind hook (:mod:`._record_unwind`); 3.10/3.11 a done callback per task
with eager notes, and a ``TaskGroup``'s of its failed children
(:mod:`._record_callbacks`). Else :func:`origin_of` finds it when the exception
is printed: the deepest of the live tasks storing it, else the
running task if it was raised and is caught there (3.10/3.11 tell that from an
exception that came from another task by the codes tasks run,
``_chain.task_codes``).
"""

from __future__ import annotations

import asyncio
import asyncio.events
import contextlib
import gc
import sys
from types import FrameType
from typing import Any, Final

from ._chain import (
    CURRENT,
    KEEP_TASK_CODES,
    MAX_TASK_CODES,
    ExecutorNode,
    Node,
    ProcessNode,
    creator_ref,
    field_getter,
    is_task_code,
    stop_frame,
    task_codes,
    task_name,
)
from ._collect import registered_tasks
from ._compat import C_TASK_LISTS, coro_of
from ._lineage import is_own, task_node

__all__: list[str] = []

#: Attribute holding an exception's :class:`Origin`.
KEY: Final = "_async_trace_origin"
#: ``co_flags`` of a coroutine's code: ``inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE``.
CORO_FLAGS: Final = 0x80 | 0x100
#: Exceptions that are iteration, not failures: never recorded.
NOT_FAILURES: Final = (StopIteration, StopAsyncIteration)

_get_running_loop: Final = asyncio.events._get_running_loop
_current_task: Final = asyncio.current_task
_get_current: Final = CURRENT.get
_tuple_new: Final = tuple.__new__

#: Whether origins are recorded as exceptions leave their tasks (set by the recorder,
#: :mod:`._record_unwind` or :mod:`._record_callbacks`): then an exception that left
#: another traced task was recorded as it did, before any other task could catch it.
_recording = False


#: Whether the garbage collector is collecting now (a ``gc.callbacks`` entry, while the display
#: hooks are on): a finaliser's exception reported then (an unraisable ``ResourceWarning`` under
#: ``-W error``) was not raised by the task that happens to run the collection.
_collecting = False


def _gc_phase(phase: str, info: dict[str, int]) -> None:
    global _collecting
    _collecting = phase == "start"


def watch_collections(on: bool) -> None:
    """Follow the garbage collector's collections (``on``), or stop."""
    global _collecting
    if on:
        if _gc_phase not in gc.callbacks:
            gc.callbacks.append(_gc_phase)
    else:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(_gc_phase)
        _collecting = False


def set_recording(on: bool) -> None:
    """Whether origins are recorded as exceptions leave their tasks from now on (the recorder says)."""
    global _recording
    _recording = on


class Origin(tuple):  # type: ignore[type-arg]
    """Where an exception was raised: ``(node, weak ref to the raising task, its name)``.

    A tuple subclass, made by one C call on the exception path. ``node`` is
    ``None`` when the origin is known to be unknown (a task created untraced).
    The name is kept for the trace printed after the task is gone.
    """

    __slots__ = ()

    #: The node of the task (or executor hop) the exception left first; ``None``: unknown.
    node: Node | None
    #: A weak reference to that task, or ``None``.
    task_ref: Any
    #: The task's name when recorded, or ``None``.
    name: str | None

    def __reduce__(self) -> tuple[type[None], tuple[()]]:
        # Nodes hold code objects: a pickled or deep-copied exception drops its origin.
        return type(None), ()


Origin.node = field_getter(0, "The node of the raising task or hop.")
Origin.task_ref = field_getter(1, "A weak reference to the raising task.")
Origin.name = field_getter(2, "The raising task's name when recorded.")


class Shown(Origin):
    """An origin whose note was added (3.11+; on 3.10 only by eager notes, in ``__notes__``)."""

    __slots__ = ()


class Provisional(Shown):
    """An eager note added before the traceback it will be shown with is complete: ``text`` is that note.

    An executor call's exception gets its note as it leaves the call, before
    it is re-raised in the awaiting coroutine, whose frames the final
    traceback shows. The note is made again, and replaced in ``__notes__``,
    when the exception leaves the awaiting task or is printed.
    """

    __slots__ = ()

    text: str | None


Provisional.text = field_getter(3, "The note as added.")


UNKNOWN_ORIGIN: Final = _tuple_new(Shown, (None, None, None))


#: ``(node, raising task or None, its name or None)``.
Found = tuple[Node, Any, "str | None"]


def make_origin(node: Node | None, task: Any, kind: type[Origin] = Origin) -> Origin:
    if task is None:
        return _tuple_new(kind, (node, None, None))
    return _tuple_new(kind, (node, creator_ref(task), task_name(task)))


_exception_setattr: Final = BaseException.__setattr__
_object_getattribute: Final = object.__getattribute__


def store(exc: BaseException, origin: Origin) -> None:
    """Record ``origin`` in ``exc``'s instance dict, unless its class decides its own attributes.

    A class with a ``__setattr__`` of its own (a frozen exception, one that stores attributes
    elsewhere) is left alone: nothing is recorded, and none of its code runs.
    """
    with contextlib.suppress(Exception):  # no instance dict: nothing is recorded
        if type(exc).__setattr__ is _exception_setattr:
            _exception_setattr(exc, KEY, origin)


def record_of(exc: BaseException) -> Origin | None:
    """The origin recorded on ``exc``, or ``None``; never runs code of the exception's class.

    ``getattr(exc, KEY)`` would call a ``__getattr__`` of the program's (many API clients' error
    objects look attributes up in a dict and raise ``KeyError``); the record is read from the
    instance dict directly, where :func:`store` put it.
    """
    try:
        found = _object_getattribute(exc, "__dict__").get(KEY)
    except Exception:  # noqa: BLE001 - no instance dict, or not an exception at all
        return None
    kind = type(found)
    return found if kind is Origin or kind is Shown or kind is Provisional else None


def origin_of_task(task: Any) -> Origin | None:
    """The origin of code running in ``task``: the node in its context, if ours."""
    if not hasattr(task, "get_coro"):  # a plain Future
        return None
    node = task_node(task)
    return make_origin(node, task) if node is not None else None


def _coroutine_frames(exc: BaseException) -> int:
    count = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_flags & CORO_FLAGS:
            count += 1
        tb = tb.tb_next
    return count


def _search_done(exc: BaseException) -> Origin | None:
    """The live task that raised ``exc``: of those storing it, the one deepest in the chain."""
    best: Origin | None = None
    if C_TASK_LISTS:
        # 3.14+ keeps C tasks in per-thread lists, and all_tasks() leaves out
        # done ones: the tasks storing ``exc`` are among its referrers. A heap
        # scan, but only for an exception with no record (no monitoring tool
        # id was free) when it is printed.
        tasks: list[Any] = [r for r in gc.get_referrers(exc) if isinstance(r, asyncio.Future)]
    else:
        tasks = registered_tasks()
    for task in tasks:
        # ``_exception`` (unlike ``exception()``) does not mark the exception retrieved.
        if getattr(task, "_exception", None) is not exc:
            continue
        # The deepest: a task that only passed it on (it awaited the raiser) is shallower. With the
        # raiser gone, that task is named. (``_chain.task_codes`` could tell it passed it on, but a
        # coroutine function also run as a task elsewhere, an HTTP client's get() in a gather,
        # would then hide right answers too.)
        origin = origin_of_task(task)
        if origin is not None and (best is None or origin.node.depth > best.node.depth):  # type: ignore[union-attr]
            best = origin
    return best


def _another_tasks(frames: list[FrameType] | None, here: set[int]) -> bool:
    """Whether one of ``frames`` (but those in ``here``, by id) may run the coroutine of a traced task."""
    if frames is None:
        return True  # too many to read
    full = len(task_codes) >= MAX_TASK_CODES
    for frame in frames:
        code = frame.f_code
        if id(frame) not in here and code.co_flags & CORO_FLAGS and (full or is_task_code(code)):
            return True
    return False


def _caught_here(exc: BaseException) -> Origin | None:
    """The running task, if ``exc`` was raised in it and is caught on the current stack.

    While the unwind hook records origins (3.12+), an exception that left
    another traced task was recorded as it did, before this task could catch
    it: one with no record, caught here, at any depth, was raised here (or by
    no traced task: a callback, a thread, an untraced task). Without it: on
    3.10/3.11, if no frame of the traceback beyond the current stack runs the
    coroutine of a traced task (``_chain.task_codes``), since an exception
    that left another task came through that task's coroutine frame; on 3.12+
    with no record, only if the catching frame is the one coroutine frame in
    the traceback: otherwise the exception came through an ``await``, maybe
    of another task.
    """
    tb = exc.__traceback__
    if tb is None:
        return None
    deeper = not _recording and _coroutine_frames(exc) > 1
    if deeper and not KEEP_TASK_CODES:
        return None
    if _collecting and sys.exc_info()[1] is not exc:
        # A finaliser's, reported during a collection: the frames on the stack only ran the collection.
        return None
    loop = _get_running_loop()
    task = _current_task(loop) if loop is not None else None
    if task is None:
        # An executor thread, the exception raised and caught in the call: the hop.
        node = _get_current()
        if type(node) is ExecutorNode and _on_stack(tb.tb_frame, None):
            return _tuple_new(Origin, (node, None, None))
        return None
    stop = stop_frame(task.get_coro())
    if not _on_stack(tb.tb_frame, stop):
        return None
    if deeper and _another_tasks(_tb_frames(tb), _stack_ids(stop)):
        return None  # it may have come from another task, gone by now: unknown
    return origin_of_task(task)


#: Frames of the current stack looked at for a catching frame, at most.
_MAX_STACK: Final = 10_000
#: Traceback entries looked at, at most.
_MAX_TB_ENTRIES: Final = 10_000


def _tb_frames(tb: Any) -> list[FrameType] | None:
    """The frames of the traceback ``tb``, outermost first; ``None``: too many to read."""
    frames: list[FrameType] = []
    for _ in range(_MAX_TB_ENTRIES):
        if tb is None:
            return frames
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return None


def _stack_ids(stop: FrameType | None) -> set[int]:
    """The ids of the frames of the current stack, up to ``stop`` (the running task's own)."""
    ids: set[int] = set()
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_MAX_STACK):
        if frame is None:
            break
        ids.add(id(frame))
        if frame is stop:
            break
        frame = frame.f_back
    return ids


def _on_stack(target: FrameType, stop: FrameType | None) -> bool:
    """Whether ``target`` is a caller of :func:`_caught_here`'s caller, up to ``stop``."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_MAX_STACK):
        if frame is None:
            return False
        if frame is target:
            return True
        if frame is stop:
            return False
        frame = frame.f_back
    return False


def origin_of(exc: BaseException) -> Found | None:
    """Where ``exc`` was raised, from its record or found now (and then recorded)."""
    origin = record_of(exc)
    if origin is None:
        origin = _search_done(exc) if _coroutine_frames(exc) else None
        if origin is None:
            origin = _caught_here(exc)
        if origin is None:
            return None
        store(exc, origin)
    node, ref, name = origin.node, origin.task_ref, origin.name
    if node is None:
        return None
    task = ref() if ref is not None else None
    if task is not None and not is_hop(node):
        coro = coro_of(task)
        # Recorded in a task created while tracing was off: the node is its creator's. (A
        # task that no longer holds its coroutine, on 3.12, cannot tell: the record stands.)
        if coro is not None and not is_own(node, coro):
            store(exc, UNKNOWN_ORIGIN)
            return None
    return node, task, name


def is_hop(node: Node) -> bool:
    """Whether ``node`` is that of an executor call (a thread's or a process pool's), not a task's."""
    kind = type(node)
    return kind is ExecutorNode or kind is ProcessNode


def record_hop_origin(node: ProcessNode, future: Any) -> None:
    """A process-pool call's done callback: its node is the origin of the exception it raised.

    The exception was raised in the worker and unpickled here (its own
    record pickles as ``None``); recorded before the awaiting task resumes,
    so the unwind hook and the search at print time find it as for a call
    in an executor thread.
    """
    # ``_exception`` (unlike ``exception()``) does not mark the exception retrieved.
    exc = getattr(future, "_exception", None)
    if exc is not None and record_of(exc) is None and isinstance(exc, Exception):
        store(exc, _tuple_new(Origin, (node, None, None)))


def failure(future: Any) -> Exception | None:
    """The failure ``future`` (done) ended with; not cancellation, exits or iteration."""
    if future.cancelled():
        return None
    # ``_exception`` (unlike ``exception()``) does not mark the exception retrieved.
    exc = getattr(future, "_exception", None)
    return exc if isinstance(exc, Exception) and not isinstance(exc, NOT_FAILURES) else None
