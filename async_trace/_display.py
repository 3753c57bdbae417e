"""Where exceptions are shown: the hooks that add the note when an exception is printed.

The loop's ``default_exception_handler``, ``sys.excepthook`` and
``traceback.TracebackException`` (what ``logging`` and every :mod:`traceback`
function use) are wrapped, and restored exactly by ``disable_tracing()``; on
3.10 also ``TracebackException.format_exception_only`` (see
:mod:`._notes_py310`). A task destroyed while pending (no exception to
annotate) gets a ``task_trace:`` entry in the loop's default handler's report.
One hook set of :mod:`._hooks`; switching it also switches the origin
recorder (:mod:`._recorders`).
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

from . import _notes_py310, _record_callbacks, _recorders
from ._compat import HAS_MONITORING, HAS_NOTES
from ._config import settings
from ._failsafe import warn_internal
from ._hooks import HookSet, Target
from ._loops import UVLOOP_MODULE, uvloop_loop_class
from ._notes import family, note, note_for
from ._origins import origin_of, origin_of_task, store, watch_collections

__all__: list[str] = []

#: The ``default_exception_handler`` context key for a task destroyed while pending.
CONTEXT_KEY: Final = "task_trace"


class _ShownAsIs:
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
            origin = origin_of_task(task)
            if origin is not None:
                store(exc, origin)
        return context  # the exception's traceback shows it, as a note
    if task is None or CONTEXT_KEY in context:
        return context
    origin = origin_of_task(task)
    text = (
        note_for((origin.node, task, origin.name), settings.note_style)
        if origin is not None and origin.node is not None
        else None
    )
    return context if text is None else {**context, CONTEXT_KEY: _ShownAsIs(text)}


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
                if HAS_NOTES:
                    for e in family(exc):
                        note(e, settings.note_style)
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


def _make_te_init(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __init__(self: Any, exc_type: Any, exc_value: Any = None, *args: Any, **kwargs: Any) -> None:
        if _active:
            try:
                if not isinstance(exc_value, BaseException):
                    pass
                elif HAS_NOTES:
                    note(exc_value, settings.note_style)
                else:
                    setattr(self, _notes_py310.NOTE_ATTR, _notes_py310.note_text_py310(exc_value, settings.note_style))
            except Exception as err:  # noqa: BLE001 - the traceback itself comes first
                warn_internal(err, "adding an exception's origin to a traceback")
        original(self, exc_type, exc_value, *args, **kwargs)

    __init__.__async_trace_wrapper__ = True  # type: ignore[attr-defined]
    return __init__


#: Read by every wrapper: off turns a wrapper left inside someone else's patch into a pass-through.
_active = False


def _targets() -> list[Target]:
    targets: list[Target] = [
        (asyncio.base_events.BaseEventLoop, "default_exception_handler", _make_default_exception_handler),
        (sys, "excepthook", _make_excepthook),
        (traceback.TracebackException, "__init__", _make_te_init),
    ]
    if not HAS_NOTES:
        targets.append((traceback.TracebackException, "format_exception_only", _notes_py310.make_format_exception_only))
    group = getattr(sys.modules.get("asyncio.taskgroups"), "TaskGroup", None)
    if not HAS_MONITORING and group is not None and "_on_task_done" in vars(group):
        # 3.11: a failed child's origin, recorded before the group lets go of it (see _record_callbacks).
        targets.append((group, "_on_task_done", _record_callbacks.make_on_task_done))
    loop_cls = uvloop_loop_class()
    if loop_cls is not None:
        # uvloop's call_exception_handler (Cython) looks the method up on the loop.
        targets.append((loop_cls, "default_exception_handler", _make_default_exception_handler))
    return targets


class _CallerLocation(logging.Filter):
    """Gives the loop's log records their caller's location, never ours.

    uvloop's ``default_exception_handler`` is Cython: it logs to the ``asyncio``
    logger with no Python frame of its own, so logging takes the wrapper we put
    around it for the caller (``%(filename)s:%(lineno)d`` naming a file of this
    package). On the ``asyncio`` logger while the display hooks are on and
    uvloop is patched, this filter looks past our frames as logging looks past
    its own, and writes what logging would have found without us: the record
    is otherwise untouched, and records of any other location pass as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if os.path.normcase(record.pathname).startswith(_PACKAGE_DIR):
                _locate(record)
        except Exception as err:  # noqa: BLE001 - the record goes out as it is
            warn_internal(err, "locating a log record's caller")
        return True


_PACKAGE_DIR: Final = os.path.normcase(os.path.dirname(os.path.abspath(__file__))) + os.sep
#: logging's own source file, found as logging finds it (its ``_srcfile``).
_LOGGING_FILE: Final = os.path.normcase(logging.addLevelName.__code__.co_filename)


def _locate(record: logging.LogRecord) -> None:
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = os.path.normcase(frame.f_code.co_filename)
        internal = filename == _LOGGING_FILE or ("importlib" in filename and "_bootstrap" in filename)
        if not internal and not filename.startswith(_PACKAGE_DIR):
            break
        frame = frame.f_back
    if frame is None:  # what logging.Logger.findCaller gives when no frame is left
        pathname, lineno, function = "(unknown file)", 0, "(unknown function)"
    else:
        pathname, lineno, function = frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name
    record.pathname = pathname
    record.filename = os.path.basename(pathname)
    record.module = os.path.splitext(record.filename)[0]
    record.lineno = lineno
    record.funcName = function


_CALLER_LOCATION: Final = _CallerLocation()
#: The logger asyncio (and uvloop) report on.
_ASYNCIO_LOGGER: Final = "asyncio"


def _locate_callers(on: bool) -> None:
    """Put the location filter on asyncio's logger while uvloop's handler is wrapped (``on``), or take it off."""
    logger = logging.getLogger(_ASYNCIO_LOGGER)
    if on and uvloop_loop_class() is not None:
        if _CALLER_LOCATION not in logger.filters:
            logger.addFilter(_CALLER_LOCATION)
    elif not on:
        logger.removeFilter(_CALLER_LOCATION)


def _imported() -> None:
    _locate_callers(True)  # uvloop imported after us: its handler is wrapped now


def _on() -> None:
    global _active
    _active = True
    _recorders.apply(True)
    watch_collections(True)
    _locate_callers(True)


def _off() -> None:
    global _active
    _active = False
    _recorders.apply(False)
    watch_collections(False)
    _locate_callers(False)


#: The display hooks, switched after the tracing wrappers (``_api.HOOK_SETS``).
HOOKS: Final = HookSet("exceptions", _targets, on=_on, off=_off, watch=(UVLOOP_MODULE,), imported=_imported)


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
