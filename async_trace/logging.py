"""Logging that knows the async path: a ``logging.Filter`` and a structlog processor.

Both add two fields to what is logged:

- ``async_trace``: the path in one line, innermost first, such as
  ``worker ← sub_task ← main ← Task-1`` (function names, executor hops marked
  ``[executor]``, the root task's name last);
- ``async_frames``: the frames as JSON-ready dicts (see :func:`async_trace.trace_to_dict`).

Stdlib only: the structlog processor is a plain callable; structlog is not imported.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from ._api import safe_collect
from ._json import trace_to_dict
from ._render import decorations, path_line
from ._types import TraceData

__all__ = ["AsyncTraceFilter", "add_async_trace", "compact_path"]


def compact_path(trace: TraceData, *, ascii_only: bool = False) -> str:
    """One line, innermost first: ``worker ← sub_task ← main ← Task-1`` (``ascii_only``: ``worker <- sub_task``)."""
    return path_line(trace, decorations(ascii_only))


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
    """

    def filter(self, record: logging.LogRecord) -> bool:
        trace = _collect_for_logging()
        record.async_trace = compact_path(trace)
        record.async_frames = trace_to_dict(trace)["frames"]
        return True


def add_async_trace(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor adding ``async_trace`` and ``async_frames`` to the event dict."""
    trace = _collect_for_logging()
    event_dict["async_trace"] = compact_path(trace)
    event_dict["async_frames"] = trace_to_dict(trace)["frames"]
    return event_dict
