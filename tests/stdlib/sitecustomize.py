"""Imported by every Python process started with this directory on PYTHONPATH: turns tracing on."""

import os

import async_trace
from async_trace import _capture

if not _capture.is_active():  # pragma: no cover - the runner reports missing markers
    raise SystemExit("async_trace did not enable tracing on import")
_marker_dir = os.environ.get("ASYNC_TRACE_MARKER_DIR")
if _marker_dir:
    with open(os.path.join(_marker_dir, str(os.getpid())), "w") as f:
        f.write(async_trace.__version__)
