"""Logging that knows the async path: a ``logging.Filter`` and a structlog processor.

Both add two fields to what is logged:

- ``async_trace``: the path in one line, innermost first, such as
  ``worker ← sub_task ← main ← Task-1`` (function names, executor hops marked
  ``[executor]``, the root task's name last), runs of library frames
  collapsed to ``… N library frames (pkg, ...)``;
- ``async_frames``: the frames as JSON-ready dicts (see :func:`async_trace.trace_to_dict`).

Outside any task (and outside an executor call reached from one) both are
empty: ``""`` and ``[]``.

Stdlib only: the structlog processor is a plain callable; structlog is not imported.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from ._api import safe_collect
from ._config import check_library_frames
from ._json import trace_to_dict
from ._misuse import trace_error
from ._render import frames_of, limited, shown_frames
from ._render_line import path_line
from ._types import LibraryFrames, TraceData
from ._writer import decorations

__all__ = ["AsyncTraceFilter", "add_async_trace", "compact_path"]


def compact_path(
    trace: TraceData,
    *,
    ascii_only: bool = False,
    limit: int | None = None,
    library_frames: LibraryFrames = "collapse",
) -> str:
    """One line, innermost first: ``worker ← sub_task ← main ← Task-1`` (``ascii_only``: ``worker <- sub_task``).

    ``limit`` and ``library_frames`` as in :func:`async_trace.format_async_trace`.

    Raises:
        TypeError: ``trace`` is not a trace (a dict with ``frames``, each frame with a ``name``).
    """
    if (error := trace_error("compact_path", trace, ("name",))) is not None:
        raise error
    check_library_frames(library_frames)
    # A trace built by hand or read back from JSON: its frames completed as format_async_trace() does.
    whole: TraceData = {"frames": frames_of(trace), "current_task": None, "in_executor": False}
    return path_line(whole, decorations(ascii_only), limit=limit, library_frames=library_frames)


def _fields(limit: int | None, library_frames: LibraryFrames, ascii_only: bool) -> tuple[str, list[Any]]:
    trace = _collect_for_logging()
    if trace["current_task"] is None and not trace["in_executor"]:
        return "", []  # not async code: no path to tell
    path = path_line(trace, decorations(ascii_only), limit=limit, library_frames=library_frames)
    # Every frame ``limit`` keeps (``in_app`` tells them apart), less the runs ``"hide"`` drops.
    if library_frames == "hide":
        kept = [frame for frame, _ in shown_frames(trace["frames"], limit, "hide")[0]]
    else:
        kept = limited(trace["frames"], limit)
    shown: TraceData = {"frames": kept, "current_task": trace["current_task"], "in_executor": trace["in_executor"]}
    return path, list(trace_to_dict(shown)["frames"])


def _collect_for_logging() -> TraceData:
    # Start above the filter or processor, then skip logging's (or structlog's) own frames.
    trace = safe_collect(2)
    frames = trace["frames"]
    skip = 0
    while skip < len(frames) and _is_logging_frame(frames[skip]["filename"]):
        skip += 1
    if skip:
        trace["frames"] = frames[skip:]
        for i, frame in enumerate(trace["frames"]):
            frame["indent"] = i
    return trace


_LOGGING_FILE = logging.__file__.removesuffix("c")


def _is_logging_frame(filename: str | None) -> bool:
    return filename is not None and (filename == _LOGGING_FILE or "/structlog/" in filename.replace("\\", "/"))


class AsyncTraceFilter(logging.Filter):
    """Adds ``record.async_trace`` and ``record.async_frames``; never drops a record.

    Attach it to a handler (or logger) and use ``%(async_trace)s`` in the format::

        handler.addFilter(AsyncTraceFilter())
        handler.setFormatter(logging.Formatter("%(message)s [%(async_trace)s]"))

    Args:
        name: as :class:`logging.Filter`'s (it drops nothing either way).
        limit: frames kept, as in :func:`async_trace.format_async_trace`
            (``N > 0`` the innermost ``N``); default: all.
        library_frames: ``"collapse"`` (the default: each run of library
            frames as one ``… N library frames (pkg, ...)`` part),
            ``"hide"`` (left out, also from ``async_frames``) or ``"show"``.
        ascii_only: ``<-`` and ``...`` instead of ``←`` and ``…``.

    Raises:
        ValueError: an unknown ``library_frames``, a ``limit`` not an int.
    """

    def __init__(
        self,
        name: str = "",
        *,
        limit: int | None = None,
        library_frames: LibraryFrames = "collapse",
        ascii_only: bool = False,
    ) -> None:
        super().__init__(name)
        check_library_frames(library_frames)
        if limit is not None and type(limit) is not int:
            raise ValueError(f"limit must be an int or None, not {limit!r}")
        self.limit = limit
        self.library_frames: LibraryFrames = library_frames
        self.ascii_only = ascii_only

    def filter(self, record: logging.LogRecord) -> bool:
        record.async_trace, record.async_frames = _fields(self.limit, self.library_frames, self.ascii_only)
        return True


def add_async_trace(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor adding ``async_trace`` and ``async_frames`` to the event dict."""
    event_dict["async_trace"], event_dict["async_frames"] = _fields(None, "collapse", False)
    return event_dict
