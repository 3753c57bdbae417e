"""Dump every running loop's task tree on demand, like :mod:`faulthandler`."""

from __future__ import annotations

import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

from ._compat import PYTHON_VERSION
from ._config import check_library_frames, check_style
from ._discovery import running_loops
from ._failsafe import warn_internal
from ._json import tree_to_dict
from ._loops import loop_thread
from ._misuse import signal_number
from ._render_tree import dump_header, dump_loop_line, tree_lines
from ._tree import task_tree
from ._types import LibraryFrames, Style, TaskTree
from ._version import __version__
from ._writer import write

__all__ = ["cancel_dump_tasks_on_signal", "dump_tasks", "dump_tasks_on_signal"]

Handler = Callable[[int, FrameType | None], Any] | int | None

#: signum -> (handler we replaced, our handler).
_registered: dict[int, tuple[Handler, Callable[[int, FrameType | None], None]]] = {}
_lock = threading.Lock()
_dumping = threading.local()
#: Every handler dump_tasks_on_signal made (the command line tells them from the program's own).
_handlers: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def is_dump_handler(obj: object) -> bool:
    """Whether ``obj`` is a signal handler made by :func:`dump_tasks_on_signal`."""
    try:
        return obj in _handlers
    except TypeError:  # not weakly referenceable (an int such as SIG_DFL): not ours
        return False


def format_dump(
    *,
    style: Style = "arrows",
    summary: bool = False,
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
) -> list[str]:
    """The lines :func:`dump_tasks` writes."""
    check_style(style)
    check_library_frames(library_frames)
    return _dump_lines(_snapshot(), style, summary, ascii_only, library_frames)


def _snapshot(min_age: float | None = None, min_idle: float | None = None) -> list[tuple[Any, str, TaskTree]]:
    """``(loop, thread name, tree)`` of every running loop, taken once (then rendered as the stream allows)."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    out = []
    for loop in running_loops():
        ident = loop_thread(loop)
        tree = task_tree(loop, min_age=min_age, min_idle=min_idle)
        out.append((loop, names.get(ident, "?") if ident is not None else "?", tree))
    return out


def _dump_lines(
    loops: list[tuple[Any, str, TaskTree]],
    style: Style,
    summary: bool,
    ascii_only: bool,
    library_frames: LibraryFrames = "collapse",
) -> list[str]:
    out = [dump_header(len(loops))]
    for loop, thread, tree in loops:
        out.append(dump_loop_line(loop, thread))
        out.extend(tree_lines(tree, style, group=summary, ascii_only=ascii_only, library_frames=library_frames))
    return out


def dump_tasks(
    file: TextIO | None = None,
    *,
    style: Style = "arrows",
    summary: bool = False,
    ascii_only: bool = False,
    library_frames: LibraryFrames = "collapse",
    min_age: float | None = None,
    min_idle: float | None = None,
) -> None:
    """Write the task tree of every running event loop, in any thread, to ``file`` (default ``sys.stderr``).

    ``min_age`` / ``min_idle``: only the tasks known to be at least that many
    seconds old / idle, with the entries above them (see :func:`task_tree`).

    Each tree shows the executor threads working for its tasks with their
    current stacks. ``summary=True``: per loop, the grouped view instead
    (``format_task_tree(..., group=True)``: counts of tasks per creation and
    suspended site). Safe to call from any thread, e.g. a watchdog.
    ``ascii_only=True``, or a stream whose encoding cannot encode them: the
    tree's decorations in ASCII (see :func:`format_task_tree`); never raises
    ``UnicodeEncodeError``. ``library_frames`` as in :func:`format_task_tree`.
    """
    check_style(style)
    check_library_frames(library_frames)
    out = sys.stderr if file is None else file
    loops = _snapshot(min_age, min_idle)
    write(lambda plain: _dump_lines(loops, style, summary, plain, library_frames), out, ascii_only=ascii_only)
    out.flush()


def _default_signal() -> int:
    signum = getattr(signal, "SIGUSR1", None)
    if signum is None:
        raise ValueError("this platform has no SIGUSR1 (dumping on a signal is POSIX-only); pass signum")
    return int(signum)


def dump_tasks_on_signal(
    signum: int | str | None = None,
    file: TextIO | None = None,
    *,
    style: Style = "arrows",
    chain: bool = False,
    summary: bool = False,
    ascii_only: bool = False,
) -> None:
    """Dump every running loop's task tree (:func:`dump_tasks`) when ``signum`` arrives.

    Like ``faulthandler.register``: ``signum`` (a number, a
    :class:`signal.Signals`, or a name as ``--dump-signal`` takes it: ``"USR1"``,
    ``"SIGUSR1"``) defaults to ``SIGUSR1`` (POSIX only), ``file`` to
    ``sys.stderr`` at the time of the signal. Python runs
    the handler in the main thread between two bytecodes, so the dump comes
    while a task in the main thread's loop is busy, too (not while one C call
    runs that never returns to Python). ``chain=True`` calls the handler that
    was there before after the dump. ``summary=True`` dumps the grouped view
    (see :func:`dump_tasks`), ``ascii_only=True`` ASCII decorations (see
    :func:`dump_tasks`). Registering again replaces the options.
    Must be called from the main thread (``signal.signal``'s rule).

    Raises:
        TypeError: ``signum`` is not a signal number or name.
        ValueError: not the main thread, an unknown signal, one that cannot be
            caught (``SIGKILL``, ``SIGSTOP``), or an unknown ``style``.
    """
    number = _default_signal() if signum is None else signal_number("dump_tasks_on_signal", signum)
    if isinstance(number, Exception):
        raise number
    check_style(style)

    def handler(received: int, frame: FrameType | None) -> None:
        if getattr(_dumping, "active", False):
            return  # a signal during our own dump
        _dumping.active = True
        try:
            dump_tasks(file, style=style, summary=summary, ascii_only=ascii_only)
        except Exception as exc:  # noqa: BLE001 - never raise into the interrupted program
            warn_internal(exc, "dumping the task trees on a signal")
        finally:
            _dumping.active = False
        if chain:
            previous = _registered.get(number, (None, None))[0]
            if callable(previous):
                previous(received, frame)

    _handlers.add(handler)
    with _lock:
        current = signal.getsignal(number)
        previous = _registered[number][0] if number in _registered else current
        signal.signal(number, handler)
        _registered[number] = (previous, handler)


def cancel_dump_tasks_on_signal(signum: int | str | None = None) -> bool:
    """Undo :func:`dump_tasks_on_signal` for ``signum`` (default ``SIGUSR1``): put back the handler it replaced.

    Returns ``False`` if no dump was registered for the signal. If another
    handler was installed over ours since, it is left in place. ``signum`` as
    in :func:`dump_tasks_on_signal`.

    Raises:
        TypeError, ValueError: as :func:`dump_tasks_on_signal`, for ``signum``.
    """
    number = _default_signal() if signum is None else signal_number("cancel_dump_tasks_on_signal", signum)
    if isinstance(number, Exception):
        raise number
    with _lock:
        entry = _registered.pop(number, None)
        if entry is None:
            return False
        previous, ours = entry
        if signal.getsignal(number) is ours:
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        return True


def remote_snapshot() -> dict[str, Any]:
    """What ``python -m async_trace ps|pstree PID`` reads from this process: every running loop's tree, as JSON data.

    Called by the script that ``sys.remote_exec`` runs in this process (see :mod:`async_trace._pstree`).
    """
    loops = [tree_to_dict(task_tree(loop)) for loop in running_loops()]
    for data in loops:
        for entry in data["tasks"]:
            # The task the script interrupted runs it: its innermost frames are the
            # script's own (compiled as "<string>" by remote_exec), not the task's.
            frames = entry["suspended_at"]
            if entry["state"] == "running":
                while frames and frames[0]["filename"] == "<string>":
                    del frames[0]
                for indent, frame in enumerate(frames):
                    frame["indent"] = indent
    return {
        "source": "async_trace",
        "async_trace_version": __version__,
        "python": PYTHON_VERSION,
        "loops": loops,
        "await_graph": [],
    }
