"""Old home of the trace formatting, kept for imports: everything renders in :mod:`._render`."""

from __future__ import annotations

from ._render import (
    STYLES,
    TRACEBACK_HEADER,
    Style,
    check_style,
    frame_text,
    limited,
    write,
)
from ._render import arrows_frame as format_frame
from ._render import trace_lines as format_trace_data
from ._render import traceback_frame as format_traceback_frame

__all__ = [
    "STYLES",
    "TRACEBACK_HEADER",
    "Style",
    "check_style",
    "format_frame",
    "format_trace_data",
    "format_traceback_frame",
    "frame_text",
    "limited",
    "write",
]
