"""OpenTelemetry for stall reports: a span under the blocked request's span (re-exported by :mod:`async_trace.otel`).

The blocked task's context (:attr:`async_trace.StallReport.context`) holds
the OpenTelemetry context the request ran in; its span is the parent of an
``event loop stall`` span whose start and end are the stall's, and, when that
span is still recording, it gets an ``async_trace.stall`` event too. A stall
with no task (a callback), or a task outside any span, gives a root span.
"""

from __future__ import annotations

import contextvars
from typing import Any, Final

from opentelemetry import context as _context_api
from opentelemetry import trace as _trace_api

from ._render_line import chain_line
from ._types import StallReport, TraceFrame

__all__ = ["STALL_EVENT", "STALL_SPAN", "record_stall", "stall_attributes"]

#: The span's name and the request span's event's name.
STALL_SPAN: Final = "event loop stall"
STALL_EVENT: Final = "async_trace.stall"

_MAX_FRAMES: Final = 32
_MAX_LENGTH: Final = 2048


def _site(frames: tuple[TraceFrame, ...]) -> TraceFrame | None:
    """The innermost frame of the program's own code, else the innermost frame with a line."""
    with_line = [frame for frame in frames if frame["line"] is not None]
    return next((frame for frame in with_line if frame["in_app"]), with_line[0] if with_line else None)


def stall_attributes(report: StallReport) -> dict[str, Any]:
    """The attributes a stall's span and event carry.

    ``async_trace.stall.duration`` and ``.threshold`` (seconds), ``.kind``,
    ``.source``, ``.task`` (when known), ``.ongoing``; ``async_trace.chain``,
    the blocking stack then the task's chain in one line, innermost first;
    ``code.function.name``, ``code.file.path``, ``code.line.number`` of the
    innermost frame of the program's own code in the stack.
    """
    attributes: dict[str, Any] = {
        "async_trace.stall.duration": report.duration,
        "async_trace.stall.threshold": report.threshold,
        "async_trace.stall.kind": report.kind,
        "async_trace.stall.source": report.source,
        "async_trace.stall.ongoing": report.ongoing,
    }
    if report.task_name is not None:
        attributes["async_trace.stall.task"] = report.task_name
    frames = report.trace["frames"]
    if frames:
        attributes["async_trace.chain"] = chain_line(frames, _MAX_FRAMES, _MAX_LENGTH)
    site = _site(report.stack)
    if site is not None:
        attributes["code.function.name"] = site["name"]
        attributes["code.file.path"] = site["filename"]
        attributes["code.line.number"] = site["line"]
    return attributes


def _request_context(report: StallReport) -> _context_api.Context | None:
    """The OpenTelemetry context the blocked task ran in, read from its ``contextvars.Context``."""
    if report.context is None:
        return None
    # The SDK's default runtime context keeps the current context in one ContextVar.
    var = getattr(getattr(_context_api, "_RUNTIME_CONTEXT", None), "_current_context", None)
    if not isinstance(var, contextvars.ContextVar):
        return None
    found = report.context.get(var)
    return found if isinstance(found, _context_api.Context) else None


def record_stall(report: StallReport, *, tracer_provider: _trace_api.TracerProvider | None = None) -> None:
    """Record ``report`` as an ``event loop stall`` span, a child of the blocked request's span.

    Use it as the watch's callback: ``watch_stalls(on_stall=async_trace.otel.record_stall)``.
    The span starts when the stall began and lasts ``duration``; its
    attributes are :func:`stall_attributes`. The request's span, if still
    recording, also gets an ``async_trace.stall`` event with them.
    ``tracer_provider``: default, the global one.
    """
    tracer = _trace_api.get_tracer("async_trace.stall", tracer_provider=tracer_provider)
    attributes = stall_attributes(report)
    parent = _request_context(report)
    start = int(report.started * 1_000_000_000)
    end = start + int(report.duration * 1_000_000_000)
    span = tracer.start_span(STALL_SPAN, context=parent, start_time=start, attributes=attributes)
    span.end(end_time=end)
    request_span = _trace_api.get_current_span(parent) if parent is not None else None
    if request_span is not None and request_span.is_recording():
        request_span.add_event(STALL_EVENT, attributes=attributes, timestamp=start)
