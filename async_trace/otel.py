"""OpenTelemetry: spans that say where their task came from (``pip install '.[otel]'`` in a clone).

:class:`AsyncTraceSpanProcessor` is an SDK span processor. When a span starts
inside a traced task or executor call, it sets on the span:

- ``code.function.name``, ``code.file.path``, ``code.line.number`` (semantic
  conventions): the creation site of that task, i.e. the line that created it,
  or for an executor call the coroutine line that handed it to the thread;
- ``async_trace.chain``: the whole origin chain in one string, innermost first,
  such as ``spawn (app.py:20) ← main (app.py:32) ← Task-1``, bounded by
  ``max_frames`` and ``max_length``.

A span started in a root task, outside any task, or in a task created while
tracing was off gets none of them. Exceptions recorded on a span the processor
started (``span.record_exception(exc)``, and the SDK's own record when an
exception leaves ``start_as_current_span``) get ``async_trace.chain`` on their
``exception`` event too: the origin of the task that raised the exception
(:func:`async_trace.exception_trace`). For other spans, use
:func:`record_exception_with_origin`.

The processor only reads the chain and sets attributes: it changes no span's
parent or context, patches nothing global, and works beside
``opentelemetry-instrumentation-asyncio``. It never raises into your code: an
internal error warns once (:class:`async_trace.AsyncTraceWarning`) and leaves
the span as it was.

:func:`record_stall` records a stall report (:func:`async_trace.watch_stalls`)
as a span under the blocked request's span.

This module imports ``opentelemetry`` (``import async_trace`` does not).
"""

from __future__ import annotations

import functools
import os
import sys
import weakref
from collections.abc import Callable
from typing import Any, Final

try:
    from opentelemetry import context as _context_api
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
    from opentelemetry.trace import Span as _ApiSpan
    from opentelemetry.util.types import Attributes
except ImportError as _err:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "async_trace.otel needs the OpenTelemetry SDK (opentelemetry-api and opentelemetry-sdk >= 1.20): "
        "pip install '.[otel]' in a clone of async-trace, or pip install 'opentelemetry-sdk>=1.20' "
        f"(not 'async-trace[otel]': that is an unrelated project on the package index); {_err}"
    ) from _err

from ._chain import Node
from ._collect import creation_site, current_node, has_line, origin_of_node
from ._exceptions import exception_trace
from ._failsafe import warn_internal
from ._render_line import chain_line
from ._stall_otel import STALL_EVENT as STALL_EVENT
from ._stall_otel import STALL_SPAN as STALL_SPAN
from ._stall_otel import record_stall as record_stall
from ._stall_otel import stall_attributes as stall_attributes
from ._types import TraceFrame

__all__ = [
    "CHAIN",
    "CODE_FILE_PATH",
    "CODE_FUNCTION_NAME",
    "CODE_LINE_NUMBER",
    "STALL_EVENT",
    "STALL_SPAN",
    "AsyncTraceSpanProcessor",
    "exception_attributes",
    "record_exception_with_origin",
    "record_stall",
    "stall_attributes",
]

#: Semantic-convention attributes of the creation site.
CODE_FUNCTION_NAME: Final = "code.function.name"
CODE_FILE_PATH: Final = "code.file.path"
CODE_LINE_NUMBER: Final = "code.line.number"
#: The origin chain in one line (on spans and on ``exception`` events).
CHAIN: Final = "async_trace.chain"

DEFAULT_MAX_FRAMES: Final = 32
DEFAULT_MAX_LENGTH: Final = 2048
#: Chain nodes whose attributes a processor remembers.
_CACHE_MAX: Final = 1024


def _check_bounds(max_frames: Any, max_length: Any) -> None:
    if type(max_frames) is not int or max_frames < 2:
        raise ValueError(f"max_frames must be an int >= 2, got {max_frames!r}")
    if type(max_length) is not int or max_length < 16:
        raise ValueError(f"max_length must be an int >= 16, got {max_length!r}")


def exception_attributes(
    exc: BaseException, *, max_frames: int = DEFAULT_MAX_FRAMES, max_length: int = DEFAULT_MAX_LENGTH
) -> dict[str, str]:
    """``{"async_trace.chain": ...}`` for ``exc``'s origin, or ``{}`` when it is not known. Never raises."""
    try:
        trace = exception_trace(exc)
        if trace is None or not has_line(trace["frames"]):
            return {}
        return {CHAIN: chain_line(trace["frames"], max_frames, max_length)}
    except Exception as err:  # noqa: BLE001 - a debugging aid must not raise
        warn_internal(err, "adding an exception's origin to a span event")
        return {}


def record_exception_with_origin(
    span: _ApiSpan,
    exc: BaseException,
    attributes: Attributes = None,
    timestamp: int | None = None,
    escaped: bool = False,
    *,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> None:
    """``span.record_exception(exc, ...)`` with ``async_trace.chain`` (``exc``'s origin) among the event's attributes.

    For spans the processor did not start (any ``opentelemetry.trace.Span``);
    attributes you pass win over the added one.
    """
    extra = exception_attributes(exc, max_frames=max_frames, max_length=max_length)
    merged = {**extra, **attributes} if attributes else extra
    span.record_exception(exc, attributes=merged or None, timestamp=timestamp, escaped=escaped)


def _record_with_origin(
    ref: Callable[[], Span | None],
    bounds: tuple[int, int],
    exception: BaseException,
    attributes: Attributes = None,
    timestamp: int | None = None,
    escaped: bool = False,
) -> None:
    span = ref()
    if span is None:  # pragma: no cover - the caller holds the span
        return
    extra = exception_attributes(exception, max_frames=bounds[0], max_length=bounds[1])
    merged = {**extra, **attributes} if attributes else extra
    # The class's method: the instance attribute is this wrapper.
    type(span).record_exception(span, exception, attributes=merged or None, timestamp=timestamp, escaped=escaped)


#: opentelemetry-instrumentation-asyncio's wrappers of create_task, gather, to_thread, ... and its
#: trace_coroutine: frames of the package between the program's lines, not creation sites.
_INSTRUMENTATION: Final = "opentelemetry.instrumentation.asyncio"


def _without_instrumentation(frames: list[TraceFrame]) -> list[TraceFrame]:
    module = sys.modules.get(_INSTRUMENTATION)
    path = getattr(module, "__file__", None) if module is not None else None
    if not path:
        return frames
    home = os.path.dirname(path) + os.sep
    kept = [frame for frame in frames if not (frame["filename"] or "").startswith(home)]
    return kept if len(kept) < len(frames) else frames


class AsyncTraceSpanProcessor(SpanProcessor):
    """Sets the creation site and the origin chain of the current task on each span it starts.

    Add it to the SDK's tracer provider (before or after the exporting processors)::

        provider = TracerProvider()
        provider.add_span_processor(AsyncTraceSpanProcessor())
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))

    Args:
        max_frames: at most this many frames in ``async_trace.chain`` (the
            innermost three quarters and the outermost quarter, with an
            elision marker between). Default 32.
        max_length: at most this many characters in ``async_trace.chain``.
            Default 2048.
        exception_origins: add ``async_trace.chain`` to ``exception`` events
            recorded on the spans it starts (default ``True``).

    Raises:
        ValueError: ``max_frames < 2`` or ``max_length < 16``.
    """

    def __init__(
        self,
        *,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_length: int = DEFAULT_MAX_LENGTH,
        exception_origins: bool = True,
    ) -> None:
        _check_bounds(max_frames, max_length)
        self.max_frames: Final = max_frames
        self.max_length: Final = max_length
        self.exception_origins: Final = bool(exception_origins)
        self._bounds: Final = (max_frames, max_length)
        # The attributes per chain node (nodes are immutable; many spans share one):
        # id(node) -> (node, attributes or None). Bounded: cleared when full. The one
        # thing a node does not fix, the root task's name, is the one it had when first seen.
        self._cache: dict[int, tuple[Node, dict[str, str | int] | None]] = {}

    def _attributes(self, node: Node, task: object) -> dict[str, str | int] | None:
        hit = self._cache.get(id(node))
        if hit is not None and hit[0] is node:
            return hit[1]
        attributes: dict[str, str | int] | None = None
        frames = origin_of_node(node, task)
        if frames is not None:
            frames = _without_instrumentation(frames)
        if frames is not None:
            site = creation_site(frames)
            attributes = (
                {}
                if site is None
                else {  # None: the creation line is unknown, not the creator's
                    CODE_FUNCTION_NAME: site["name"],
                    CODE_FILE_PATH: site["filename"] or "",
                    CODE_LINE_NUMBER: site["line"] or 0,
                }
            )
            attributes[CHAIN] = chain_line(frames, self.max_frames, self.max_length)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[id(node)] = (node, attributes)
        return attributes

    def on_start(self, span: Span, parent_context: _context_api.Context | None = None) -> None:
        try:
            found = current_node()
            if found is not None:
                attributes = self._attributes(*found)
                if attributes is not None:
                    span.set_attributes(attributes)
            if self.exception_origins and "record_exception" not in vars(span):
                # A weak reference: the span must not keep itself alive through its own attribute.
                span.record_exception = functools.partial(  # type: ignore[method-assign]
                    _record_with_origin, weakref.ref(span), self._bounds
                )
        except Exception as err:  # noqa: BLE001 - a span processor must not raise
            warn_internal(err, "adding a task's origin to a span")

    def on_end(self, span: ReadableSpan) -> None:
        # Nothing to do: an ended span's events are immutable, and an event
        # keeps no reference to the exception it was made from.
        return None
