"""A note names only what raised the exception, and adds only what its traceback lacks.

- An exception raised in an executor function and re-raised in the awaiting
  coroutine: the traceback shows the coroutine's frames, the note does not.
- An exception caught and printed inside the executor function: the note
  names the hop (the traceback shows only the thread's frames).
- A ``ResourceWarning`` the garbage collector raises (warnings as errors) in
  a ``__del__`` while a task or an executor call runs: no note.
- An exception made in one task and raised in another: the note names the
  one that raised it.
"""

from __future__ import annotations

import asyncio
import gc
import io
import linecache
import logging
import sys
import traceback
import warnings
from typing import Any

import async_trace

from .helpers import line_of

HEADER = "Async trace (most recent call last):"
HERE = __file__


def _site(func: Any, marker: str) -> list[str]:
    line = line_of(func, marker)
    return [f'  File "{HERE}", line {line}, in {func.__name__}', f"    {linecache.getline(HERE, line).strip()}"]


def _note(root: str, *hops: tuple[list[str], str]) -> str:
    """The note: the root, then each hop's site followed by its separator line."""
    lines = [HEADER, f"  Root task {root!r}"]
    for site, separator in hops:
        lines.extend(site)
        lines.append(separator)
    return "\n".join(lines)


def _task_sep(name: str) -> str:
    return f"  --- task {name!r} created here ---"


EXECUTOR_SEP = "  --- executor thread started here ---"


def _notes_in(text: str) -> int:
    return text.count(HEADER)


# --- executor functions ------------------------------------------------------------


def blocking() -> None:
    raise KeyError("in a thread")  # raise


async def inner() -> None:
    await asyncio.to_thread(blocking)  # hop


async def worker() -> None:
    await inner()  # await-inner


def test_executor_exception_note_does_not_repeat_the_awaiting_frames() -> None:
    async def main() -> list[str]:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        task = asyncio.create_task(worker(), name="worker")  # spawn
        try:
            await task
        except KeyError as exc:
            return async_trace.format_exception(exc)
        raise AssertionError("no KeyError")

    text = "".join(asyncio.run(main()))
    expected = _note("main", (_site(main, "spawn"), _task_sep("worker")))
    assert text.endswith(f"KeyError: 'in a thread'\n{expected}\n"), text
    # The hop's frames are in the traceback once each, not again in the note.
    for func, marker in [(inner, "hop"), (worker, "await-inner")]:
        assert text.count(f'File "{HERE}", line {line_of(func, marker)}, in {func.__name__}\n') == 1, text
    assert "executor thread started here" not in text


def caught_in_thread() -> list[str]:
    try:
        blocking()
    except KeyError as exc:
        return async_trace.format_exception(exc)
    raise AssertionError("no KeyError")


async def handing_over() -> list[str]:
    return await asyncio.to_thread(caught_in_thread)  # hand-over


def test_exception_caught_in_the_executor_function_names_the_hop() -> None:
    async def main() -> list[str]:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        return await asyncio.create_task(handing_over(), name="handing-over")  # spawn

    text = "".join(asyncio.run(main()))
    expected = _note(
        "main", (_site(main, "spawn"), _task_sep("handing-over")), (_site(handing_over, "hand-over"), EXECUTOR_SEP)
    )
    assert text.endswith(f"KeyError: 'in a thread'\n{expected}\n"), text


# --- what the named task did not raise ------------------------------------------------


class Leaky:
    """Warns in ``__del__``, as an unclosed transport or file does (an error under ``-W error``)."""

    def __del__(self) -> None:
        warnings.warn("unclosed Leaky", ResourceWarning, stacklevel=1)


def _garbage() -> None:
    leaky = Leaky()
    leaky.cycle = leaky  # type: ignore[attr-defined]  # freed only by the collector


def collect_in_thread() -> None:
    gc.collect()


async def collect_in_task() -> None:
    gc.collect()


async def collect_through_executor() -> None:
    await asyncio.to_thread(collect_in_thread)


def test_resource_warning_from_the_collector_gets_no_note() -> None:
    """An unraisable ``ResourceWarning`` formatted by the hook (as pytest's plugin does): no task named."""
    printed: list[str] = []

    def hook(unraisable: Any) -> None:
        printed.append(
            "".join(traceback.format_exception(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))
        )

    async def main() -> None:
        for body in (collect_in_task, collect_through_executor):
            _garbage()
            await asyncio.create_task(body(), name=body.__name__)

    was_enabled = gc.isenabled()
    old_hook = sys.unraisablehook
    gc.disable()
    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            asyncio.run(main())
    finally:
        sys.unraisablehook = old_hook
        if was_enabled:
            gc.enable()
    assert len(printed) == 2, printed
    for text in printed:
        assert text.endswith("ResourceWarning: unclosed Leaky\n"), text
        assert _notes_in(text) == 0, text


def test_resource_warning_logged_through_capture_warnings_gets_no_note() -> None:
    """A warning routed to logging while a task runs: the record's text names no task."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("py.warnings")
    logger.addHandler(handler)
    logging.captureWarnings(True)

    async def main() -> None:
        _garbage()
        await asyncio.create_task(collect_in_task(), name="collecting")

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", ResourceWarning)
            logging.captureWarnings(True)
            asyncio.run(main())
    finally:
        logging.captureWarnings(False)
        logger.removeHandler(handler)
        if was_enabled:
            gc.enable()
    text = stream.getvalue()
    assert "ResourceWarning: unclosed Leaky" in text
    assert _notes_in(text) == 0, text


def test_exception_made_in_one_task_raised_in_another_names_the_raiser() -> None:
    made: list[BaseException] = []

    async def maker() -> None:
        made.append(ValueError("made here"))  # make

    async def raiser() -> None:
        raise made[0]  # raise

    async def main() -> list[str]:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        await asyncio.create_task(maker(), name="maker")  # spawn-maker
        try:
            await asyncio.create_task(raiser(), name="raiser")  # spawn-raiser
        except ValueError as exc:
            return async_trace.format_exception(exc)
        raise AssertionError("no ValueError")

    lines = asyncio.run(main())
    text = "".join(lines)
    expected = _note("main", (_site(main, "spawn-raiser"), _task_sep("raiser")))
    assert text.endswith(f"ValueError: made here\n{expected}\n"), text
    assert "maker" not in text.split(HEADER)[1]
