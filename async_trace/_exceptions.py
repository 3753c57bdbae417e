"""Exceptions that carry their async origin: where the task that raised them came from.

An exception's traceback shows the frames of the task it was raised in (and of
the tasks it travelled through by ``await``). This module adds the chain above
the raising task: the line that created it, the line that created its creator,
and so on to the root task, across executor hops; rendered like
:func:`async_trace.format_async_trace` (traceback style by default) and shown

- on 3.11+ as a PEP 678 note, added once per exception; on 3.10 the same lines
  follow the exception line wherever :mod:`traceback` formats it (the loop's
  exception handler, ``logging``, ``traceback.print_exc``, the top level);
- for a task destroyed while pending (no exception to annotate), as a
  ``task_trace:`` entry of the loop's default exception handler.

Mechanism; nothing of it runs on the path without exceptions:

- *Which task raised it.* 3.12+: a ``sys.monitoring`` ``PY_UNWIND`` callback
  records on the exception the chain node of the first task it leaves (the
  one that raised it), or of the executor hop in whose thread it was raised.
  Every frame an exception leaves costs one call of it (about 0.12 us), which
  returns after a flag test, a ContextVar read and an identity test unless
  the frame is a task's coroutine. 3.10/3.11 have no such hook short of
  ``sys.settrace``; there the task is found when the exception is printed:
  the task in the loop's handler context, else the deepest of the live tasks
  storing the exception, else the running task if the exception was raised
  and caught in it.
- *When the note is added.* When the exception is printed: the loop's
  ``default_exception_handler``, ``sys.excepthook`` and
  ``traceback.TracebackException`` (what ``logging`` and every
  :mod:`traceback` function use) are wrapped, and restored exactly by
  ``disable_tracing()``. With eager notes (``enable_tracing(eager_notes=True)``;
  ``python -m async_trace`` on 3.12+) also as the exception leaves the task
  that raised it, for tools that read ``__notes__`` themselves: 3.12+ from the
  unwind hook, 3.10/3.11 from a done callback given to each task and executor
  future as it is created.

The record is stored on the exception as ``_async_trace_origin`` (exceptions
cannot be weakly referenced); it pickles and deep-copies as ``None``, so an
exception crossing a process boundary stays picklable.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.events
import asyncio.tasks
import contextlib
import functools
import gc
import sys
import traceback
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any, Final, TextIO, cast

from . import _capture, _collect
from ._capture import store_inherited, weak_task_ref
from ._chain import (
    CURRENT,
    ExecutorNode,
    Node,
    ProcessNode,
    coro_of,
    field_getter,
    task_name,
    valid_for,
    warn_internal,
)
from ._collect import node_of_task
from ._hooks import HookSet, Target, register
from ._render import ARROWS_HEADER as ARROWS_HEADER  # the note's wording, for tests and tools
from ._render import GONE_SEPARATOR as GONE_SEPARATOR
from ._render import LibraryFrames, Style, ascii_notes, check_library_frames, check_style, exception_note, write
from ._types import TraceData, TraceFrame

__all__ = ["exception_trace", "format_exception", "print_exception"]

#: 3.11+: PEP 678 notes. 3.10: the same lines, added by the TracebackException hook.
_HAS_NOTES: Final = sys.version_info >= (3, 11)
_HAS_MONITORING: Final = sys.version_info >= (3, 12)

#: Attribute holding an exception's :class:`_Origin`.
_KEY: Final = "_async_trace_origin"
#: The ``default_exception_handler`` context key for a task destroyed while pending.
CONTEXT_KEY: Final = "task_trace"

_CORO_FLAGS: Final = 0x80 | 0x100  # inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE
#: Exceptions that are iteration, not failures: never recorded.
_NOT_FAILURES: Final = (StopIteration, StopAsyncIteration)

_get_current: Final = CURRENT.get
_get_running_loop: Final = asyncio.events._get_running_loop
_current_task: Final = asyncio.current_task
_tuple_new: Final = tuple.__new__

#: Style of notes and handler entries (``python -m async_trace --style`` sets it).
_style: Style = "traceback"
#: 3.12+: also add the note as the exception leaves its task (``python -m async_trace``).
_eager = False
#: 3.12+: record origins as exceptions unwind (the ``sys.monitoring`` hook);
#: off, they are found when printed, as on 3.10/3.11, and raising costs nothing.
_record = True
#: How notes show library frames (``enable_tracing(library_frames=...)``).
_library_frames: LibraryFrames = "collapse"
#: Notes leave out every frame the exception's traceback shows, wherever it is in the
#: chain, task boundaries too (the pytest plugin, while pytest formats a failure).
_shown_anywhere = False


@contextlib.contextmanager
def leaving_out_shown_frames() -> Iterator[None]:
    """While in it, notes leave out every chain frame the traceback shows (see ``_not_shown``)."""
    global _shown_anywhere
    before = _shown_anywhere
    _shown_anywhere = True
    try:
        yield
    finally:
        _shown_anywhere = before


def settings() -> tuple[bool, bool]:
    """``(notes_on_exit, record)`` as configured."""
    return _eager, _record


def configure(
    *,
    style: Style | None = None,
    notes_on_exit: bool | None = None,
    record: bool | None = None,
    library_frames: LibraryFrames | None = None,
) -> None:
    """Set the notes' style and library frames, whether they are added eagerly and origins recorded (3.12+).

    ``record=False`` frees the ``sys.monitoring`` tool id at once (and
    ``True`` takes one again while the hooks are on); eager notes need it.

    Eager notes are in ``__notes__`` as soon as the exception leaves the task
    that raised it, so tools that read ``__notes__`` themselves (pytest's
    report, error trackers) show them. The cost: formatting the chain once
    per exception leaving a task; and ``pytest.raises(match=...)``, which
    matches notes too, sees it. Otherwise the note is added when
    :mod:`traceback`, the loop's exception handler or ``sys.excepthook``
    prints the exception.
    """
    global _style, _eager, _record, _library_frames
    if library_frames is not None:
        check_library_frames(library_frames)
        _library_frames = library_frames
    if style is not None:
        check_style(style)
        _style = style
    if notes_on_exit is not None:
        _eager = bool(notes_on_exit)
        _set_watchers()
    if record is not None:
        _record = bool(record)
        if not _record:
            _monitoring_uninstall()
        elif _active:
            _monitoring_install()


# --- the record -------------------------------------------------------------


class _Origin(tuple):  # type: ignore[type-arg]
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


_Origin.node = field_getter(0, "The node of the raising task or hop.")
_Origin.task_ref = field_getter(1, "A weak reference to the raising task.")
_Origin.name = field_getter(2, "The raising task's name when recorded.")


class _Shown(_Origin):
    """An origin whose note was added (3.11+; on 3.10 only by eager notes, in ``__notes__``)."""

    __slots__ = ()


class _Provisional(_Shown):
    """An eager note added before the traceback it will be shown with is complete: ``text`` is that note.

    An executor call's exception gets its note as it leaves the call, before
    it is re-raised in the awaiting coroutine, whose frames the final
    traceback shows. The note is made again, and replaced in ``__notes__``,
    when the exception leaves the awaiting task or is printed.
    """

    __slots__ = ()

    text: str | None


_Provisional.text = field_getter(3, "The note as added.")


_UNKNOWN: Final = _tuple_new(_Shown, (None, None, None))

#: ``(node, raising task or None, its name or None)``.
Found = tuple[Node, Any, "str | None"]


def _make(node: Node | None, task: Any, kind: type[_Origin] = _Origin) -> _Origin:
    if task is None:
        return _tuple_new(kind, (node, None, None))
    return _tuple_new(kind, (node, weak_task_ref(task), task_name(task)))


def _store(exc: BaseException, origin: _Origin) -> None:
    # An exception type refusing attributes: nothing is recorded.
    with contextlib.suppress(Exception):
        setattr(exc, _KEY, origin)


def _origin_of_task(task: Any) -> _Origin | None:
    """The origin of code running in ``task``: the node in its context, if ours."""
    if not hasattr(task, "get_coro"):  # a plain Future
        return None
    node = node_of_task(task)
    coro = coro_of(task)
    if node is not None and not valid_for(node, coro):
        # Built where no hook saw it (its creator's node); else created while tracing was off.
        node = store_inherited(task, coro, node)
    if node is None:
        return None
    return _make(node, task)


def _coroutine_frames(exc: BaseException) -> int:
    count = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_flags & _CORO_FLAGS:
            count += 1
        tb = tb.tb_next
    return count


#: 3.14+: C tasks are in no Python-visible registry (``_scheduled_tasks`` holds pure-Python ones).
_C_TASK_LISTS: Final = sys.version_info >= (3, 14)


def _search_done(exc: BaseException) -> _Origin | None:
    """The live task that raised ``exc``: of those storing it, the one deepest in the chain."""
    best: _Origin | None = None
    if _C_TASK_LISTS:
        # 3.14+ keeps C tasks in per-thread lists, and all_tasks() leaves out
        # done ones: the tasks storing ``exc`` are among its referrers. A heap
        # scan, but only for an exception with no record (no monitoring tool
        # id was free) when it is printed.
        tasks = [r for r in gc.get_referrers(exc) if isinstance(r, asyncio.Future)]
    else:
        tasks = _collect.registered_tasks()
    for task in tasks:
        # ``_exception`` (unlike ``exception()``) does not mark the exception retrieved.
        if getattr(task, "_exception", None) is not exc:
            continue
        origin = _origin_of_task(task)
        if origin is not None and (best is None or origin.node.depth > best.node.depth):  # type: ignore[union-attr]
            best = origin
    return best


def _caught_here(exc: BaseException) -> _Origin | None:
    """The running task, if ``exc`` was raised in it and is caught on the current stack.

    With the unwind hook on, an exception that left another task was recorded
    as it did. Without it (3.10/3.11), only if the catching frame is the one
    coroutine frame in the traceback: otherwise the exception came through an
    ``await``, maybe of another task.
    """
    tb = exc.__traceback__
    if tb is None or (_tool is None and _coroutine_frames(exc) > 1):
        return None
    loop = _get_running_loop()
    task = _current_task(loop) if loop is not None else None
    if task is None:
        # An executor thread, the exception raised and caught in the call: the hop.
        node = _get_current()
        if type(node) is ExecutorNode and _on_stack(tb.tb_frame, None):
            return _tuple_new(_Origin, (node, None, None))
        return None
    stop = getattr(task.get_coro(), "cr_frame", None)
    return _origin_of_task(task) if _on_stack(tb.tb_frame, stop) else None


#: Frames of the current stack looked at for a catching frame, at most.
_MAX_STACK: Final = 10_000


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
    origin = getattr(exc, _KEY, None)
    if not isinstance(origin, _Origin):
        origin = _search_done(exc) if _coroutine_frames(exc) else None
        if origin is None:
            origin = _caught_here(exc)
        if origin is None:
            return None
        _store(exc, origin)
    node, ref, name = origin.node, origin.task_ref, origin.name
    if node is None:
        return None
    task = ref() if ref is not None else None
    if task is not None and not _is_hop(node):
        coro = coro_of(task)
        # Recorded in a task created while tracing was off: the node is its creator's. (A
        # task that no longer holds its coroutine, on 3.12, cannot tell: the record stands.)
        if coro is not None and not valid_for(node, coro):
            _store(exc, _UNKNOWN)
            return None
    return node, task, name


def _is_hop(node: Node) -> bool:
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
    if exc is not None and getattr(exc, _KEY, None) is None and isinstance(exc, Exception):
        _store(exc, _tuple_new(_Origin, (node, None, None)))


# --- 3.10/3.11: eager notes from done callbacks ----------------------------------


def _failure(future: Any) -> Exception | None:
    """The failure ``future`` (done) ended with; not cancellation, exits or iteration."""
    if future.cancelled():
        return None
    # ``_exception`` (unlike ``exception()``) does not mark the exception retrieved.
    exc = getattr(future, "_exception", None)
    return exc if isinstance(exc, Exception) and not isinstance(exc, _NOT_FAILURES) else None


def _task_done(task: Any) -> None:
    """Done callback of each task the wrappers create, with eager notes on 3.10/3.11.

    Added as the task is created, so it runs before the callbacks of whoever
    awaits the task (they are added later, and run in order): the note is in
    ``__notes__`` before the exception reaches them. The exception left this
    task, so the task (or an inner one, which finished first and recorded
    it) is its origin.
    """
    try:
        exc = _failure(task)
        if exc is None:
            return
        if getattr(exc, _KEY, None) is None:
            origin = _origin_of_task(task)
            if origin is None:
                return  # created while tracing was off
            _store(exc, origin)
        _note(exc, _style)
    except Exception as err:  # noqa: BLE001 - a callback of the program's task must not fail
        warn_internal(err, "adding a task's origin note")


def _call_done(node: Node, future: Any) -> None:
    """Done callback of an executor call's future, with eager notes on 3.10/3.11: the call is the origin."""
    try:
        exc = _failure(future)
        if exc is None:
            return
        if getattr(exc, _KEY, None) is None:
            _store(exc, _tuple_new(_Origin, (node, None, None)))
        _note(exc, _style, early=True)
    except Exception as err:  # noqa: BLE001 - a callback of the program's future must not fail
        warn_internal(err, "adding an executor call's origin note")


def _watch_task(task: Any) -> None:
    add = getattr(task, "add_done_callback", None)
    if add is not None and hasattr(task, "get_coro"):  # not a Future-like object from a custom factory
        add(_task_done)


def _watch_call(future: Any, node: Node) -> None:
    future.add_done_callback(functools.partial(_call_done, node))


def _set_watchers() -> None:
    """3.10/3.11: eager notes come from done callbacks, given while the hooks are on (3.12+: the unwind hook)."""
    on = _active and _eager and not _HAS_MONITORING
    _capture.watch_task = _watch_task if on else None
    _capture.watch_call = _watch_call if on else None


# --- the chain --------------------------------------------------------------


def chain_frames(node: Node | None, created: Any) -> tuple[list[TraceFrame], list[int], int]:
    """The frames of ``node``'s chain, the indices of its task boundaries and of its root.

    ``created`` is the task ``node`` belongs to, ``None`` if gone or unknown.
    """
    frames: list[TraceFrame] = []
    boundaries, root = _collect.chain_frames(frames, node, created, created is not None, created, _get_running_loop())
    return frames, boundaries, root


def _trace(found: Found) -> TraceData:
    node, task, _ = found
    return {
        "frames": chain_frames(node, task)[0],
        "current_task": task,
        "in_executor": _is_hop(node),
    }


#: Traceback entries read to find what a note need not repeat, at most.
_MAX_TB_ENTRIES: Final = 10_000


def _in_traceback(exc: BaseException) -> set[tuple[str, int | None, str]]:
    """``(filename, line, function)`` of every entry of ``exc``'s traceback."""
    out: set[tuple[str, int | None, str]] = set()
    tb = exc.__traceback__
    for _ in range(_MAX_TB_ENTRIES):
        if tb is None:
            break
        code = tb.tb_frame.f_code
        out.add((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return out


def _not_shown(
    frames: list[TraceFrame], boundaries: list[int], root: int, exc: BaseException | None, early: bool = False
) -> tuple[list[TraceFrame], list[int], int]:
    """The chain without its innermost frames that ``exc``'s traceback already shows.

    An exception raised in an executor function and re-raised in the awaiting
    coroutine carries that coroutine's frames (the hop's) in its traceback,
    up to the task's own coroutine: the note starts after them. It stops at
    the first frame the traceback lacks, and at a task boundary (the line
    that created a task is news even when the traceback passes through it).
    ``early``: the exception has not been re-raised in the awaiting coroutine
    yet; the frame that awaits the call, which the traceback will show from
    then on, counts as shown.
    """
    if exc is None or (exc.__traceback__ is None and not early) or not frames:
        return frames, boundaries, root
    shown: set[tuple[str | None, int | None, str]] = set(_in_traceback(exc))
    if early:
        first = frames[0]
        shown.add((first["filename"], first["line"], first["name"]))
    if _shown_anywhere:
        return _without(frames, boundaries, root, shown)
    stops = set(boundaries)
    stops.add(root)
    skip = 0
    while skip < len(frames) and skip not in stops:
        frame = frames[skip]
        if (frame["filename"], frame["line"], frame["name"]) not in shown:
            break
        skip += 1
    if not skip:
        return frames, boundaries, root
    kept: list[TraceFrame] = [
        cast("TraceFrame", {**frame, "indent": frame["indent"] - skip}) for frame in frames[skip:]
    ]
    return kept, [b - skip for b in boundaries], root - skip


def _without(
    frames: list[TraceFrame], boundaries: list[int], root: int, shown: set[tuple[str | None, int | None, str]]
) -> tuple[list[TraceFrame], list[int], int]:
    """The chain without every frame in ``shown``; each run left out is one marker line saying so."""
    kept: list[TraceFrame] = []
    kept_boundaries: list[int] = []
    kept_root = -1
    dropped = 0
    for i, frame in enumerate(frames):
        if frame["line"] is not None and (frame["filename"], frame["line"], frame["name"]) in shown:
            dropped += 1
            continue
        if dropped:
            kept.append(_shown_marker(dropped, len(kept)))
            dropped = 0
        if i in boundaries:
            kept_boundaries.append(len(kept))
        if i == root:
            kept_root = len(kept)
        kept.append(cast("TraceFrame", {**frame, "indent": len(kept)}))
    if dropped:
        kept.append(_shown_marker(dropped, len(kept)))
    return kept, kept_boundaries, kept_root


def _shown_marker(count: int, index: int) -> TraceFrame:
    unit = "frame" if count == 1 else "frames"
    return {
        "name": f"... {count} {unit} shown in the traceback above ...",
        "line": None,
        "filename": None,
        "indent": index,
        "task": None,
        "is_executor": False,
        "is_process": False,
        "in_app": True,
    }


def _block(
    found: Found,
    style: Style,
    exc: BaseException | None = None,
    library_frames: LibraryFrames | None = None,
    early: bool = False,
) -> str | None:
    """The chain as one note, or ``None`` if it holds no line (raised in a root task).

    With ``exc``, the frames its traceback already shows are left out (see :func:`_not_shown`).
    """
    node, task, name = found
    frames, boundaries, root = _not_shown(*chain_frames(node, task), exc, early)
    shown = _library_frames if library_frames is None else library_frames
    return exception_note(frames, boundaries, root, _is_hop(node), name, style, library_frames=shown)


def _note_text(exc: BaseException, style: Style, library_frames: LibraryFrames | None = None) -> str | None:
    found = origin_of(exc)
    return _block(found, style, exc, library_frames) if found is not None else None


def _note_text_310(exc: BaseException, style: Style, library_frames: LibraryFrames | None = None) -> str | None:
    """3.10: the lines printed after the exception line; with eager notes, ``__notes__`` gets the same text."""
    if _eager:
        text = _note(exc, style, library_frames)  # also makes a provisional note final
        if text is not None:
            return text
    return _note_text(exc, style, library_frames)


def _printed(text: str, lines: list[str]) -> bool:
    """3.10: whether ``text`` is in ``lines`` already (a formatter that prints ``__notes__``: ``exceptiongroup``'s)."""
    return text in "".join(lines)


def _note(
    exc: BaseException, style: Style, library_frames: LibraryFrames | None = None, early: bool = False
) -> str | None:
    """Add the note to ``exc`` unless it was added before (3.11+; on 3.10 only eagerly, to ``__notes__``).

    ``early``: an eager note for an executor call's exception, before it is
    re-raised in the awaiting coroutine (see :class:`_Provisional`); a later
    call replaces that note with the final one. Returns the note added now, if any.
    """
    before = getattr(exc, _KEY, None)
    if type(before) is _Shown:
        return None
    found = origin_of(exc)
    if found is None:
        return None
    node, task, name = found
    ref = weak_task_ref(task) if task is not None else None
    text = _block(found, style, exc, library_frames, early)
    if early:
        _store(exc, _tuple_new(_Provisional, (node, ref, name, text)))
    else:
        _store(exc, _tuple_new(_Shown, (node, ref, name)))
    if type(before) is _Provisional:
        _replace_note(exc, before.text, text)
    elif text is not None:
        _add_note(exc, text)
    return text


def _add_note(exc: BaseException, text: str) -> None:
    # An exception type refusing attributes refuses __notes__ too: no note then.
    with contextlib.suppress(Exception):
        if _HAS_NOTES:
            exc.add_note(text)  # type: ignore[attr-defined,unused-ignore]  # 3.11+
        else:
            # 3.10: PEP 678's attribute, as its backports and error trackers read it.
            notes = getattr(exc, "__notes__", None)
            if notes is None:
                exc.__notes__ = [text]  # type: ignore[attr-defined,unused-ignore]
            elif isinstance(notes, list):
                notes.append(text)


def _replace_note(exc: BaseException, old: str | None, new: str | None) -> None:
    """Put ``new`` where the provisional note ``old`` is in ``__notes__`` (or add it, if ``old`` is not there)."""
    with contextlib.suppress(Exception):  # an exception whose __notes__ is not what PEP 678 says
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            for i, note in enumerate(notes):
                if note is old and old is not None:
                    if new is None:
                        del notes[i]
                    else:
                        notes[i] = new
                    return
    if new is not None:
        _add_note(exc, new)


def _family(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups, once each."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for other in (e.__cause__, e.__context__, *getattr(e, "exceptions", ())):
            if isinstance(other, BaseException):
                todo.append(other)


# --- public functions -------------------------------------------------------


def exception_trace(exc: BaseException) -> TraceData | None:
    """The async trace of the place where ``exc`` was raised, above the raising task.

    Returns:
        A :class:`TraceData` like :func:`collect_async_trace`'s without the
        frames the exception's own traceback shows: ``frames`` (innermost
        first) start at the line that created the task that raised ``exc``
        (for an executor function, at the coroutine line that handed it to the
        thread) and end at the root task; ``current_task`` is the raising task
        (``None`` once it is gone, and for an executor thread);
        ``in_executor`` is true for an exception raised in an executor thread.
        ``None`` when the origin is not known: not raised in a traced task, or
        on 3.10/3.11 when the raising task is no longer alive. Never raises.
    """
    try:
        found = origin_of(exc)
        return _trace(found) if found is not None else None
    except Exception as err:  # noqa: BLE001 - a debugging aid must not raise
        warn_internal(err, "finding an exception's origin")
        return None


# traceback's own wording (its private _cause_message / _context_message), 3.10 to 3.13.
_CAUSE: Final = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT: Final = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _chain(exc: BaseException) -> list[tuple[str | None, BaseException]]:
    """``traceback``'s chain order: the earliest cause first, each with the message before it."""
    out: list[tuple[str | None, BaseException]] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if e.__cause__ is not None:
            out.append((_CAUSE, e))
            e = e.__cause__
        elif e.__context__ is not None and not e.__suppress_context__:
            out.append((_CONTEXT, e))
            e = e.__context__
        else:
            out.append((None, e))
            e = None
    out.reverse()
    return out


def _format_310(exc: BaseException, style: Style, library_frames: LibraryFrames | None) -> list[str]:
    # 3.10 has no notes: format each exception of the chain alone (with the
    # unwrapped format_exception_only, so the hook adds nothing) and put the
    # trace where 3.11 prints notes, right after the exception line.
    lines: list[str] = []
    for msg, e in _chain(exc):
        if msg is not None:
            lines.append(msg)
        te = traceback.TracebackException(type(e), e, e.__traceback__, compact=True)
        if te.stack:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(te.stack.format())
        only = list(_FORMAT_EXCEPTION_ONLY(te))
        lines.extend(only)
        text = _note_text_310(e, style, library_frames)
        if text is not None and not _printed(text, only):
            lines.extend(line + "\n" for line in text.split("\n"))
    return lines


def format_exception(
    exc: BaseException,
    *,
    style: Style | None = None,
    ascii_only: bool = False,
    library_frames: LibraryFrames | None = None,
) -> list[str]:
    """Format ``exc`` like :func:`traceback.format_exception`, with its async origin.

    Each exception of the chain (causes, contexts, and on 3.11+ the members of
    exception groups) whose origin is known is followed by its async trace
    (:func:`exception_trace`) where Python prints notes, right after its
    ``Type: message`` line. On 3.11+ the trace is added to ``__notes__``, once:
    an exception that already carries it keeps it, in the style it was
    added with, and later prints show it too.

    Args:
        exc: the exception.
        style: ``"traceback"`` (``File "...", line N`` lines, most recent call
            last) or ``"arrows"``; default: ``"traceback"``, or what
            ``python -m async_trace --style`` chose.
        ascii_only: the arrows-style trace's ``↑`` (and ``…``) as ``^`` (``...``)
            in the lines returned (a note already added keeps its text in
            ``__notes__``).
        library_frames: ``"collapse"``, ``"show"`` or ``"hide"``, as in
            :func:`format_async_trace`; default: what
            ``enable_tracing(library_frames=...)`` set (``"collapse"``). Like
            ``style``, it shapes a note when it is added.

    Returns:
        Lines, each ending in a newline, as :func:`traceback.format_exception`.

    Raises:
        ValueError: an unknown ``style`` or ``library_frames``.
    """
    chosen = _style if style is None else style
    check_style(chosen)
    if library_frames is not None:
        check_library_frames(library_frames)
    lines: list[str] | None = None
    try:
        if not _HAS_NOTES:
            lines = _format_310(exc, chosen, library_frames)
        else:
            for e in _family(exc):
                _note(e, chosen, library_frames)
    except Exception as err:  # noqa: BLE001 - fall back to the plain traceback
        warn_internal(err, "formatting an exception's origin")
    if lines is None:
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return ascii_notes(lines) if ascii_only else lines


def print_exception(
    exc: BaseException,
    *,
    file: TextIO | None = None,
    style: Style | None = None,
    ascii_only: bool = False,
    library_frames: LibraryFrames | None = None,
) -> None:
    """Print :func:`format_exception`'s lines to ``file`` (default: ``sys.stderr``).

    ASCII decorations when ``ascii_only`` or when the stream's encoding cannot
    encode ``↑``; never raises ``UnicodeEncodeError`` (what the stream cannot
    encode, such as the exception's own text, is backslash-escaped).
    """
    check_style(_style if style is None else style)
    if library_frames is not None:
        check_library_frames(library_frames)
    out = sys.stderr if file is None else file
    write(
        lambda plain: format_exception(exc, style=style, ascii_only=plain, library_frames=library_frames),
        out,
        ascii_only=ascii_only,
        colour=False,  # the note is kept in __notes__: no escape codes there
    )


# --- 3.12+: sys.monitoring --------------------------------------------------


def _on_unwind(code: CodeType, offset: int, exc: BaseException) -> None:
    """``PY_UNWIND``: record where ``exc`` was raised as it leaves the task's coroutine.

    Runs for every frame an exception leaves, in every thread, so the common
    cases return after a flag test, a ContextVar read and an identity test:
    a task's node holds the code of the task's coroutine, so leaving the
    task is leaving a frame of that code (in a recursion, maybe an inner
    one: the same task all the same). The first task left is the one that
    raised it; later ones see the record. In an executor thread the record
    is made at the first frame left, whose context holds the hop's node.
    An exception caught inside its task is never recorded: when it is
    printed there, the running task is its origin (see :func:`_caught_here`).
    """
    if code.co_flags & _CORO_FLAGS:
        node = _get_current()
        if node is None or node.code is not code:
            return  # not leaving a traced task
        origin = getattr(exc, _KEY, None)
        if origin is not None and (not _eager or type(origin) is _Shown):
            return  # recorded when it left an inner task
        try:
            if origin is None:
                if not isinstance(exc, Exception) or isinstance(exc, _NOT_FAILURES):
                    return  # cancellation, exits, iteration: not failures
                loop = _get_running_loop()
                task = _current_task(loop) if loop is not None else None
                _store(exc, _make(node, task))
            if _eager:
                _note(exc, _style)
        except Exception as err:  # noqa: BLE001 - never disturb the exception in flight
            warn_internal(err, "recording an exception's origin")
    elif (
        type(_get_current()) is ExecutorNode
        and getattr(exc, _KEY, None) is None
        and isinstance(exc, Exception)
        and not isinstance(exc, _NOT_FAILURES)
        and _leaves_the_call(sys._getframe(1))
    ):
        _store(exc, _tuple_new(_Origin, (_get_current(), None, None)))
        if _eager:
            try:
                _note(exc, _style, early=True)
            except Exception as err:  # noqa: BLE001 - never disturb the exception in flight
                warn_internal(err, "adding an executor call's origin note")


def _leaves_the_call(frame: FrameType) -> bool:
    """Whether the unwinding ``frame`` is the executor function's own: its caller is the pool's.

    Not a frame the function called and that caught its exception, nor a
    ``__del__`` the garbage collector ran in that thread (a ``ResourceWarning``
    turned error): those exceptions did not leave the call.
    """
    caller = frame.f_back
    return caller is None or _collect.frame_kind(caller.f_code) != _collect.USER


#: Ids sys.monitoring leaves unassigned (0 debugger, 1 coverage, 2 profiler, 5 optimizer).
_TOOL_IDS: Final = (4, 3)
_tool: int | None = None


def _monitoring_install() -> None:
    global _tool
    if not _HAS_MONITORING or _tool is not None:
        return
    mon: Any = getattr(sys, "monitoring")  # noqa: B009 - not in 3.10's stubs
    for tool in _TOOL_IDS:
        if mon.get_tool(tool) is None:
            mon.use_tool_id(tool, "async_trace")
            break
    else:
        return  # every free id is taken: the task is found when printing, as on 3.11
    mon.register_callback(tool, mon.events.PY_UNWIND, _on_unwind)
    mon.set_events(tool, mon.events.PY_UNWIND)
    _tool = tool


def _monitoring_uninstall() -> None:
    global _tool
    if _tool is None:
        return
    mon: Any = getattr(sys, "monitoring")  # noqa: B009
    mon.set_events(_tool, 0)
    mon.register_callback(_tool, mon.events.PY_UNWIND, None)
    mon.free_tool_id(_tool)
    _tool = None


# --- where exceptions are shown -----------------------------------------------


class _Text:
    """A handler context value shown as is (the default handler prints ``repr(value)``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _with_trace(context: dict[str, Any]) -> dict[str, Any]:
    """The handler's context: the origin recorded on the exception, or a ``task_trace`` entry."""
    task = context.get("task", context.get("future"))
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        if task is not None and origin_of(exc) is None:
            origin = _origin_of_task(task)
            if origin is not None:
                _store(exc, origin)
        return context  # the exception's traceback shows it, as a note
    if task is None or CONTEXT_KEY in context:
        return context
    origin = _origin_of_task(task)
    text = _block((origin.node, task, origin.name), _style) if origin is not None and origin.node is not None else None
    return context if text is None else {**context, CONTEXT_KEY: _Text(text)}


def _make_default_exception_handler(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def default_exception_handler(self: Any, context: dict[str, Any]) -> Any:
        if _active:
            try:
                context = _with_trace(context)
            except Exception as err:  # noqa: BLE001 - the report itself must go out
                warn_internal(err, "adding a task's origin to the loop's report")
        return original(self, context)

    default_exception_handler.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return default_exception_handler


def _make_excepthook(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> Any:
        if _active:
            try:
                if _HAS_NOTES:
                    for e in _family(exc):
                        _note(e, _style)
                elif original is sys.__excepthook__ and sys.stderr is not None:
                    # 3.10's default hook is C code that never reaches the
                    # TracebackException hook; print what it prints, through it.
                    traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
                    return None
            except Exception as err:  # noqa: BLE001 - the crash report itself must go out
                warn_internal(err, "adding an exception's origin at the top level")
        return original(exc_type, exc, tb)

    excepthook.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return excepthook


_NOTE_ATTR: Final = "_async_trace_note"


def _make_te_init(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __init__(self: Any, exc_type: Any, exc_value: Any = None, *args: Any, **kwargs: Any) -> None:
        if _active and isinstance(exc_value, BaseException):
            try:
                if _HAS_NOTES:
                    _note(exc_value, _style)
                else:
                    setattr(self, _NOTE_ATTR, _note_text_310(exc_value, _style))
            except Exception as err:  # noqa: BLE001 - the traceback itself comes first
                warn_internal(err, "adding an exception's origin to a traceback")
        original(self, exc_type, exc_value, *args, **kwargs)

    __init__.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return __init__


def _make_format_exception_only(original: Callable[..., Any]) -> Callable[..., Any]:
    # 3.10: the note, printed where 3.11 prints notes.
    @functools.wraps(original)
    def format_exception_only(self: Any) -> Iterator[str]:
        lines = list(original(self))
        yield from lines
        text = getattr(self, _NOTE_ATTR, None)
        if text and not _printed(text, lines):
            yield from (line + "\n" for line in text.split("\n"))

    format_exception_only.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return format_exception_only


_TracebackException: Final = traceback.TracebackException
_FORMAT_EXCEPTION_ONLY: Final = cast(
    "Callable[[traceback.TracebackException], Iterator[str]]",
    vars(_TracebackException)["format_exception_only"],
)


# --- installing -------------------------------------------------------------

#: Read by every wrapper: off turns a wrapper left inside someone else's patch into a pass-through.
_active = False


def _targets() -> list[Target]:
    targets: list[Target] = [
        (asyncio.base_events.BaseEventLoop, "default_exception_handler", _make_default_exception_handler),
        (sys, "excepthook", _make_excepthook),
        (_TracebackException, "__init__", _make_te_init),
    ]
    if not _HAS_NOTES:
        targets.append((_TracebackException, "format_exception_only", _make_format_exception_only))
    uvloop = sys.modules.get("uvloop")
    loop_cls = getattr(uvloop, "Loop", None) if uvloop is not None else None
    if isinstance(loop_cls, type):
        # uvloop's call_exception_handler (Cython) looks the method up on the loop.
        targets.append((loop_cls, "default_exception_handler", _make_default_exception_handler))
    return targets


def _on() -> None:
    global _active
    if _record:
        _monitoring_install()
    _active = True
    _set_watchers()


def _off() -> None:
    global _active
    _active = False
    _monitoring_uninstall()
    _set_watchers()


#: The exception hooks, switched after the tracing wrappers (see :mod:`._hooks`).
HOOKS: Final = register(HookSet("exceptions", _targets, on=_on, off=_off, watch=("uvloop",)))


def patched_attributes() -> list[tuple[Any, str]]:
    """The (owner, name) pairs the exception hooks replace (for tests of exact restore)."""
    return HOOKS.patched_attributes()


def install() -> None:
    """Turn the exception hooks on alone (``enable_tracing`` switches every hook set); idempotent."""
    HOOKS.install()


def uninstall() -> None:
    """Turn them off and restore what they replaced exactly."""
    HOOKS.uninstall()


def is_active() -> bool:
    return _active
