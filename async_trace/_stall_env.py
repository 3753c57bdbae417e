"""Starting the stall watchdog from outside the program: the environment variable and the command line."""

from __future__ import annotations

import os
import re
import sys
from typing import Final

from ._stall import ENV_THRESHOLD, StallWatch, watch_stalls

__all__: list[str] = []


_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|us|µs)?\s*$")


def parse_duration(text: str) -> float:
    """``"100ms"``, ``"0.1s"``, ``"0.1"`` (seconds), ``"500us"`` -> seconds; ``ValueError`` otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 100ms, 0.25s, 1)")
    value = float(match.group(1))
    unit = match.group(2) or "s"
    seconds = value / 1000 if unit == "ms" else value / 1_000_000 if unit in ("us", "µs") else value
    if not seconds > 0:
        raise ValueError(f"a stall threshold must be positive, not {text!r}")
    return seconds


#: The watch the environment variable (or the command line) started.
_env_watch: StallWatch | None = None


def start_from_environment() -> StallWatch | None:
    """Start a watch of every loop if ``ASYNC_TRACE_STALL_THRESHOLD`` is set (once per process)."""
    text = os.environ.get(ENV_THRESHOLD)
    if not text or (_env_watch is not None and not _env_watch.stopped):
        return _env_watch
    try:
        threshold = parse_duration(text)
    except ValueError as exc:
        sys.stderr.write(f"async_trace: {ENV_THRESHOLD}: {exc}; no stall watchdog\n")
        return None
    return start_default_watch(threshold)


def start_default_watch(threshold: float) -> StallWatch:
    """The process's one watch of every loop (the environment variable's, the command line's): started once."""
    global _env_watch
    if _env_watch is None or _env_watch.stopped:
        _env_watch = watch_stalls(threshold)
    return _env_watch
