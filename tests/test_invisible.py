"""Tracing never changes the program it traces, under hostile code too.

Each case runs the same program plain (tracing disabled) and traced and compares what the
program sees; where tracing has to fall back, it falls back silently for the program, warns once
(even under ``-W error``) and counts the failure in ``internal_errors()``.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import io
import logging
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import async_trace
from async_trace import InternalErrors, _capture, _failsafe, internal_errors

from .apps import ON_BOTH_LOOPS, run_on
from .helpers import run_python

HAS_BLOCKBUSTER = importlib.util.find_spec("blockbuster") is not None
needs_blockbuster = pytest.mark.skipif(not HAS_BLOCKBUSTER, reason="needs blockbuster")


@pytest.fixture
def plain_and_traced() -> Iterator[Callable[[Callable[[], Any]], tuple[Any, Any]]]:
    """Run a program twice, tracing off then on; tracing is on again afterwards."""

    def both(program: Callable[[], Any]) -> tuple[Any, Any]:
        async_trace.disable_tracing()
        try:
            plain = program()
        finally:
            async_trace.enable_tracing()
        return plain, program()

    yield both
    async_trace.enable_tracing()


# --- the unwind hook never replaces the program's exception ----------------------------------

RELATIVE_CALLBACK = """\
import asyncio, os, sys, tempfile
import async_trace
if sys.argv[1] == "plain":
    async_trace.disable_tracing()
SOURCE = '''
def boom():
    raise ValueError("boom")
def callback(results):
    try:
        boom()
    except ValueError as exc:
        results.append(f"caught {exc!r}")
'''
namespace = {}
# A relative file name (Cython's, compile()'s): classifying its frames must ask the filesystem nothing.
exec(compile(SOURCE, "rel_mod.py", "exec"), namespace)

async def main():
    loop = asyncio.get_running_loop()
    results, reported = [], []
    loop.set_exception_handler(lambda loop, context: reported.append(repr(context.get("exception"))))
    gone = tempfile.mkdtemp()
    os.chdir(gone)
    os.rmdir(gone)  # the working directory is gone: os.path.abspath() would raise

    def worker():  # a thread scheduling a callback on the loop, as anyio.from_thread does
        loop.call_soon_threadsafe(namespace["callback"], results)

    await loop.run_in_executor(None, worker)
    await asyncio.sleep(0.05)
    print(results, reported, async_trace.internal_errors().count)

asyncio.run(main())
"""


@pytest.mark.parametrize("mode", ["plain", "traced"])
def test_an_exception_caught_in_a_callback_stays_the_program_s(tmp_path: Path, mode: str) -> None:
    """Raised and caught in a callback a worker thread scheduled, with a relative file name and no cwd."""
    (tmp_path / "prog.py").write_text(RELATIVE_CALLBACK, encoding="utf-8")
    result = run_python("-W", "error", "prog.py", mode, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "[\"caught ValueError('boom')\"] [] 0\n", "")


class DictBackedError(Exception):
    """The error object of many API clients: attributes looked up in a dict, ``KeyError`` when missing."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.data = {"code": code}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # what Python itself looks up (__notes__ when printed)
            raise AttributeError(name)
        return self.__dict__["data"][name]


def test_an_exception_whose_getattr_raises_leaves_its_task_as_it_is(
    plain_and_traced: Callable[[Callable[[], Any]], tuple[Any, Any]],
) -> None:
    """Its class's ``__getattr__`` never runs for our record: it is caught as itself, and gets its origin."""

    async def fails() -> None:
        raise DictBackedError(404)

    async def main() -> tuple[str, bool]:
        try:
            await asyncio.create_task(fails())
        except DictBackedError as exc:
            # Recorded (on 3.12+ as it left its task), so found and noted once however often it is printed.
            found = async_trace.exception_trace(exc) is not None
            for _ in range(2):
                traceback.format_exception(DictBackedError, exc, exc.__traceback__)
            return f"caught code={exc.code} notes={len(exc.__dict__.get('__notes__', []))}", found
        return "not raised", False

    before = internal_errors().count
    plain, traced = plain_and_traced(lambda: asyncio.run(main()))
    notes = 1 if sys.version_info >= (3, 11) else 0  # 3.10 prints the note without adding it
    assert (plain, traced) == (("caught code=404 notes=0", False), (f"caught code=404 notes={notes}", True))
    assert internal_errors().count == before


# --- hostile objects ---------------------------------------------------------------------


class Hostile(Exception):
    """An exception class whose dunder methods raise, each chosen by name."""

    raising: frozenset[str] = frozenset()

    def __getattr__(self, name: str) -> Any:
        if "__getattr__" in self.raising and not name.startswith("__"):
            raise KeyError(name)
        raise AttributeError(name)

    def __eq__(self, other: object) -> bool:
        if "__eq__" in self.raising:
            raise RuntimeError("__eq__")
        return self is other

    def __hash__(self) -> int:
        if "__hash__" in self.raising:
            raise RuntimeError("__hash__")
        return id(self)

    def __repr__(self) -> str:
        if "__repr__" in self.raising:
            raise RuntimeError("__repr__")
        return "Hostile()"

    def __str__(self) -> str:
        if "__repr__" in self.raising:
            raise RuntimeError("__str__")
        return "hostile"


DUNDERS = ["__getattr__", "__eq__", "__hash__", "__repr__"]


def _hostile(names: frozenset[str]) -> type[Hostile]:
    return type("Hostile", (Hostile,), {"raising": names})


@pytest.mark.parametrize("dunder", DUNDERS)
def test_hostile_exceptions_through_tasks_executors_and_callbacks(
    dunder: str, plain_and_traced: Callable[[Callable[[], Any]], tuple[Any, Any]]
) -> None:
    """Raised in a task, an executor call and a callback, caught by the awaiting code: all as plain."""
    kind = _hostile(frozenset({dunder}))

    def raise_it() -> None:
        raise kind()

    async def in_task() -> None:
        raise_it()

    async def main() -> list[str]:
        seen = []
        loop = asyncio.get_running_loop()
        for attempt in (
            lambda: asyncio.create_task(in_task()),
            lambda: loop.run_in_executor(None, raise_it),
            lambda: asyncio.to_thread(raise_it),
        ):
            try:
                await attempt()
            except Hostile as exc:
                seen.append(type(exc).__name__)
        done = loop.create_future()

        def callback() -> None:
            try:
                raise_it()
            except Hostile:
                done.set_result("callback")

        loop.call_soon(callback)
        seen.append(await done)
        return seen

    plain, traced = plain_and_traced(lambda: asyncio.run(main()))
    assert plain == traced == ["Hostile", "Hostile", "Hostile", "callback"]


class HostileFuture(asyncio.Future):  # type: ignore[type-arg]
    """What a custom task factory may return: a Future-like whose attribute reads and identity raise."""

    def __getattr__(self, name: str) -> Any:
        raise KeyError(name)

    def __hash__(self) -> int:
        raise RuntimeError("__hash__")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__")


def test_a_factory_that_returns_hostile_futures(
    plain_and_traced: Callable[[Callable[[], Any]], tuple[Any, Any]],
) -> None:
    """A task factory's product is handed back untouched, whatever it refuses."""

    async def child() -> int:
        return 1

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        made: list[Any] = []

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
            coro.close()
            future = HostileFuture(loop=loop)
            future.set_result(7)
            made.append(future)
            return future

        loop.set_task_factory(factory)
        try:
            got = loop.create_task(child())
        except KeyError as exc:  # 3.13 names the task itself: asyncio's own set_name() call raises
            return [f"KeyError: {exc}"]
        finally:
            loop.set_task_factory(None)
        return [str(got is made[0]), str(await got)]

    plain, traced = plain_and_traced(lambda: asyncio.run(main()))
    assert plain == traced
    assert plain in (["True", "7"], ["KeyError: 'set_name'"])


class HostileLoop(asyncio.SelectorEventLoop):
    """A loop whose unknown attributes raise ``KeyError`` and whose repr raises.

    (Not its hash: asyncio itself keys its running tasks by loop.)
    """

    def __getattr__(self, name: str) -> Any:
        raise KeyError(name)

    def __repr__(self) -> str:
        raise RuntimeError("__repr__")


def test_a_hostile_loop_runs_as_plain(plain_and_traced: Callable[[Callable[[], Any]], tuple[Any, Any]]) -> None:
    """Root tasks, children, executor calls and exceptions on a loop that refuses what it can."""

    def program() -> list[str]:
        async def child() -> str:
            await asyncio.sleep(0)
            return "child"

        async def fails() -> None:
            raise ValueError("x")

        async def main() -> list[str]:
            loop = asyncio.get_running_loop()
            got = [await asyncio.create_task(child()), await loop.run_in_executor(None, str, 5)]
            try:
                await asyncio.create_task(fails())
            except ValueError as exc:
                got.append(str(exc))
            return got

        loop = HostileLoop()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    plain, traced = plain_and_traced(program)
    assert plain == traced == ["child", "5", "x"]


def test_hostile_coroutine_like_objects_fail_as_plain(
    plain_and_traced: Callable[[Callable[[], Any]], tuple[Any, Any]],
) -> None:
    """What asyncio refuses (an awaitable whose attributes raise), it refuses with the same error."""

    class Awaitable:
        def __getattr__(self, name: str) -> Any:
            raise KeyError(name)

        def __await__(self) -> Any:
            return iter(())

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        out = []
        attempts: list[Callable[[], Any]] = [
            lambda: loop.create_task(Awaitable()),
            lambda: asyncio.ensure_future(Awaitable()),
        ]
        for attempt in attempts:
            try:
                attempt()
            except BaseException as exc:
                out.append(f"{type(exc).__name__}: {str(exc).split(' object at 0x')[0]}")
        return out

    plain, traced = plain_and_traced(lambda: asyncio.run(main()))
    assert plain == traced
    assert all(line.startswith("TypeError") for line in plain)


def test_an_exception_whose_del_raises(plain_and_traced: Callable[[Callable[[], Any]], tuple[Any, Any]]) -> None:
    """An exception object whose finaliser raises, dropped in a task: reported as plain, nothing else changes."""
    reported: list[str] = []

    class Dying(Exception):
        def __del__(self) -> None:
            raise RuntimeError("__del__")

    def program() -> list[str]:
        reported.clear()
        previous = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: reported.append(repr(unraisable.exc_value))

        async def fails() -> None:
            raise Dying()

        async def main() -> str:
            try:
                await asyncio.create_task(fails())
            except Dying:
                return "caught"
            return "not raised"

        try:
            got = asyncio.run(main())
            gc.collect()
        finally:
            sys.unraisablehook = previous
        return [got, *reported]

    plain, traced = plain_and_traced(program)
    assert plain == traced == ["caught", "RuntimeError('__del__')"]


# --- an internal failure is seen, and counted ------------------------------------------------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected")


def test_the_warning_survives_an_error_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``filterwarnings = error`` the warning is shown (recorded), the program untouched, the count kept."""
    monkeypatch.setattr(_capture, "capture", _boom)
    monkeypatch.setattr(_capture, "walk", _boom)

    async def child() -> int:
        return 1

    async def main() -> list[int]:
        return [await asyncio.create_task(child()) for _ in range(3)]

    _failsafe.reset_warned()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        assert asyncio.run(main()) == [1, 1, 1]
    ours = [w for w in caught if issubclass(w.category, async_trace.AsyncTraceWarning)]
    assert len(ours) == 1
    assert "while capturing a task creation (RuntimeError: injected)" in str(ours[0].message)
    errors = internal_errors()
    assert isinstance(errors, InternalErrors)
    assert errors.count >= 3
    assert errors.last == "while capturing a task creation (RuntimeError: injected)"


def test_minus_w_error_prints_the_warning_and_runs_on(tmp_path: Path) -> None:
    """``python -W error``: the program's output is unchanged and the warning is on stderr, once."""
    (tmp_path / "prog.py").write_text(
        textwrap.dedent(
            """\
            import asyncio
            import async_trace
            from async_trace import _capture

            def boom(*args, **kwargs):
                raise RuntimeError("injected")

            _capture.capture = _capture.walk = boom

            async def child():
                return 1

            async def main():
                return [await asyncio.create_task(child()) for _ in range(3)]

            print(asyncio.run(main()), async_trace.internal_errors().count)
            """
        ),
        encoding="utf-8",
    )
    result = run_python("-W", "error", "prog.py", cwd=tmp_path)
    output, count = result.stdout.rsplit(" ", 1)
    # Every task creation fell back and was counted: asyncio.run's own tasks too.
    assert (result.returncode, output, int(count) >= 4) == (0, "[1, 1, 1]", True)
    assert result.stderr.count("AsyncTraceWarning: async_trace: internal error while capturing a task creation") == 1


def test_internal_errors_starts_at_zero() -> None:
    """A healthy run counts nothing: the record says so."""
    _failsafe.reset_warned()

    async def main() -> None:
        await asyncio.gather(*(asyncio.sleep(0) for _ in range(5)))
        try:
            await asyncio.create_task(asyncio.sleep(-1, result=None))
            raise ValueError("x")
        except ValueError:
            traceback.format_exc()

    asyncio.run(main())
    assert internal_errors() == InternalErrors(count=0, last=None)


# --- no location of ours -----------------------------------------------------------------------


LOG_LOCATION = """\
import asyncio, logging, sys
if sys.argv[1] == "traced":
    import async_trace
records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append((record.filename, record.lineno, record.funcName, record.getMessage().split(" at 0x")[0]))

logging.getLogger("asyncio").addHandler(Keep())

def bad():
    raise ValueError("x")

async def main():
    asyncio.get_running_loop().call_soon(bad)
    await asyncio.sleep(0.05)

if sys.argv[2] == "uvloop":
    import uvloop
    uvloop.install() if sys.version_info < (3, 12) else None
    asyncio.run(main(), **({"loop_factory": uvloop.new_event_loop} if sys.version_info >= (3, 12) else {}))
else:
    asyncio.run(main())
print(records)
"""


@ON_BOTH_LOOPS
def test_the_loop_s_log_records_keep_their_caller(loop: str, tmp_path: Path) -> None:
    """``%(filename)s:%(lineno)d %(funcName)s`` of the loop's error reports are what they are untraced.

    Each run in a fresh interpreter: without async_trace imported at all, and traced.
    """
    (tmp_path / "prog.py").write_text(LOG_LOCATION, encoding="utf-8")
    plain, traced = (
        run_python("-W", "ignore::DeprecationWarning", "prog.py", mode, loop, cwd=tmp_path)
        for mode in ("plain", "traced")
    )
    assert (traced.returncode, traced.stdout, traced.stderr) == (0, plain.stdout, plain.stderr)
    assert plain.stdout.count("Exception in callback") == 1


def test_the_location_filter_comes_and_goes_with_tracing() -> None:
    """It sits on asyncio's logger only while tracing is on and uvloop's handler is wrapped."""
    pytest.importorskip("uvloop")
    logger = logging.getLogger("asyncio")
    assert [type(f).__name__ for f in logger.filters] == ["_CallerLocation"]
    async_trace.disable_tracing()
    try:
        assert logger.filters == []
    finally:
        async_trace.enable_tracing()
    assert [type(f).__name__ for f in logger.filters] == ["_CallerLocation"]


# --- no false notes ------------------------------------------------------------------------------


class Leaky:
    """An object whose finaliser warns, as an unclosed socket or file does."""

    def __del__(self) -> None:
        warnings.warn("unclosed Leaky", ResourceWarning, stacklevel=1)


def test_an_unraisable_warning_during_a_collection_gets_no_note() -> None:
    """A ``ResourceWarning`` a finaliser raises under ``-W error`` while a task runs a collection names no task.

    Formatted in ``sys.unraisablehook``, as pytest does: the object was made elsewhere.
    """
    formatted: list[str] = []
    made: list[Any] = []

    def hook(unraisable: Any) -> None:
        formatted.append(
            "".join(traceback.format_exception(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))
        )

    def make_cycle() -> None:
        leak = Leaky()
        leak.cycle = leak  # type: ignore[attr-defined]  # freed by the collector only

    async def collects() -> None:
        gc.collect()
        await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.create_task(collects())

    make_cycle()
    previous = sys.unraisablehook
    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            asyncio.run(main())
    finally:
        sys.unraisablehook = previous
    del made
    assert len(formatted) == 1
    assert "ResourceWarning: unclosed Leaky" in formatted[0]
    assert "created at" not in formatted[0]
    assert "Async trace" not in formatted[0]


def test_an_exception_caught_in_its_task_still_gets_its_note() -> None:
    """The control: raised and caught in the running task, its note names the task."""

    async def child() -> str:
        try:
            raise ValueError("x")
        except ValueError as exc:
            return "".join(async_trace.format_exception(exc))

    async def main() -> str:
        return await asyncio.create_task(child())

    text = asyncio.run(main())
    assert "Async trace" in text or "created" in text


# --- under blockbuster: no blocking call of ours on the loop ---------------------------------------


@needs_blockbuster
@ON_BOTH_LOOPS
def test_traces_notes_and_trees_make_no_blocking_call(loop: str) -> None:
    """Collection, rendering, notes, the tree and the unwind hook, all on the loop, under blockbuster."""
    from blockbuster import blockbuster_ctx

    out = io.StringIO()

    def boom() -> None:
        raise ValueError("boom")

    def callback(results: list[str]) -> None:
        try:
            boom()
        except ValueError as exc:
            results.append(repr(exc))

    async def fails() -> None:
        raise RuntimeError("in a task")

    async def main() -> list[str]:
        results: list[str] = []
        running = asyncio.get_running_loop()
        async_trace.print_trace(file=out, style="traceback")
        async_trace.print_task_tree(file=out, style="traceback")
        await running.run_in_executor(None, lambda: running.call_soon_threadsafe(callback, results))
        await asyncio.sleep(0.05)
        try:
            await asyncio.create_task(fails())
        except RuntimeError as exc:
            results.append("".join(async_trace.format_exception(exc)))
            logging.getLogger("async_trace_test_blocking").exception("logged")
        return results

    _failsafe.reset_warned()
    with blockbuster_ctx():
        results = run_on(loop, main())
    assert results[0] == "ValueError('boom')"
    assert "RuntimeError: in a task\nAsync trace (most recent call last):\n" in results[1]
    assert "created here ---" in results[1]
    assert internal_errors() == InternalErrors(count=0, last=None)
