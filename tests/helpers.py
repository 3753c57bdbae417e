"""Helpers shared by the tests: computed line numbers and compact trace shapes."""

from __future__ import annotations

import gc
import inspect
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from async_trace import TraceData

Row = tuple[str, "int | None", "str | None", "str | None", bool]


@contextmanager
def automatic_gc_off() -> Iterator[None]:
    """No automatic collection inside: a watchdog test's window must not see a collection of the test process's heap.

    Late in a suite the heap is big, and a full collection on a loaded machine took 0.27 s inside a stall
    test's window: a real stall, reported (kind ``gc``), but not the one the test makes. ``gc.collect()``
    called inside still runs.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def line_of(func: Callable[..., Any], marker: str) -> int:
    """The line number of the line in ``func``'s source that contains ``# <marker>``."""
    lines, start = inspect.getsourcelines(func)
    hits = [start + i for i, text in enumerate(lines) if f"# {marker}" in text]
    assert len(hits) == 1, f"marker {marker!r} found {len(hits)} times in {func.__qualname__}"
    return hits[0]


def rows(trace: TraceData) -> list[Row]:
    """``(name, line, basename, name of task, is_executor)`` per frame, innermost first."""
    out: list[Row] = []
    for frame in trace["frames"]:
        task = frame["task"]
        out.append(
            (
                frame["name"],
                frame["line"],
                os.path.basename(frame["filename"]) if frame["filename"] else None,
                task.get_name() if task is not None else None,
                frame["is_executor"],
            )
        )
    return out


HERE = "test_collect.py"


def run_python(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a fresh interpreter (this one's), UTF-8 output captured, in ``cwd``.

    The one way the tests start a Python that runs to its end (``env`` is added to this
    process's environment). Tests that signal or attach to a live child use ``Popen`` themselves.
    """
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
