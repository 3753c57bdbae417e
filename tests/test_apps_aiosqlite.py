"""aiosqlite's connection thread is an executor hop: SQL functions, row factories, their exceptions.

aiosqlite runs every call on a connection in a thread of its own; code of
yours that SQLite calls there (a function registered with ``create_function``,
a row factory) traces through the hop at the line that awaited the query,
marked ``[EXECUTOR]``, to the root, on asyncio and uvloop. The awaiting task's
own chain is untouched, and aiosqlite answers the same untraced.
"""

from __future__ import annotations

import asyncio
import pathlib
import sys
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, collect_async_trace, exception_trace

from .apps import ON_BOTH_LOOPS, Shape, run_on, shape
from .helpers import line_of, run_python

aiosqlite = pytest.importorskip("aiosqlite")
aiosqlite_core = pytest.importorskip("aiosqlite.core")

HERE = "test_apps_aiosqlite.py"

seen: dict[str, Any] = {}


def double(value: int) -> int:
    seen["function"] = collect_async_trace()  # capture-function
    return 2 * value


def strict_row(cursor: Any, row: tuple[Any, ...]) -> Any:
    raise LookupError(f"no column for {row}")


async def query() -> list[Any]:
    async with aiosqlite.connect(":memory:") as db:
        await db.create_function("double", 1, double)
        async with db.execute("select double(21), double(1)") as cursor:  # query
            rows = list(await cursor.fetchall())
        seen["after"] = collect_async_trace()  # after
        db.row_factory = strict_row
        cursor = await db.cursor()
        await cursor.execute("select 1")
        try:
            await cursor.fetchall()  # fetch
        except LookupError as exc:
            seen["exception"] = exc
        await db.execute("create table t (k primary key)")
        await db.execute("insert into t values (1)")
        try:
            await db.execute("insert into t values (1)")
        except aiosqlite.IntegrityError as exc:
            rows.append(repr(exc))
        return rows


async def main(out: dict[str, Any]) -> None:
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    out["rows"] = await asyncio.create_task(query(), name="query")  # spawn


def _run(loop: str) -> dict[str, Any]:
    seen.clear()
    out: dict[str, Any] = {}
    run_on(loop, main(out))
    return out


def _task_chain() -> list[Shape]:
    return [("main", line_of(main, "spawn"), HERE, False), ("main", None, None, False)]


EXPECTED_ROWS = [(42, 2), "IntegrityError('UNIQUE constraint failed: t.k')"]


@ON_BOTH_LOOPS
def test_sql_function_runs_under_the_hop_at_the_awaiting_line(loop: str) -> None:
    out = _run(loop)
    assert out["rows"] == EXPECTED_ROWS
    function: TraceData = seen["function"]
    assert function["in_executor"] is True
    # The thread's own frames stop at aiosqlite's thread loop: the function, then the hop.
    assert shape(function) == [
        ("double", line_of(double, "capture-function"), HERE, False),
        ("query", line_of(query, "query"), HERE, True),
        *_task_chain(),
    ]
    # The awaiting task's chain is its own.
    assert seen["after"]["in_executor"] is False
    assert shape(seen["after"]) == [("query", line_of(query, "after"), HERE, False), *_task_chain()]


@ON_BOTH_LOOPS
@pytest.mark.xfail(
    sys.version_info < (3, 12), reason="3.10/3.11 record no origin for an exception raised in a library's own thread"
)
def test_row_factory_exception_names_the_fetch_line(loop: str) -> None:
    _run(loop)
    exc = seen["exception"]
    origin = exception_trace(exc)
    assert origin is not None
    assert origin["in_executor"] is True
    assert shape(origin) == [("query", line_of(query, "fetch"), HERE, True), *_task_chain()]
    assert "".join(async_trace.format_exception(exc)).endswith(
        f'  File "{__file__}", line {line_of(main, "spawn")}, in main\n'
        '    out["rows"] = await asyncio.create_task(query(), name="query")  # spawn\n'
        "  --- task 'query' created here ---\n"
    )


def test_aiosqlite_answers_the_same_untraced() -> None:
    traced = _run("asyncio")
    traced_seen = dict(seen)
    async_trace.disable_tracing()
    try:
        plain = _run("asyncio")
    finally:
        async_trace.enable_tracing()
    assert traced["rows"] == plain["rows"] == EXPECTED_ROWS
    assert repr(seen["exception"]) == repr(traced_seen["exception"]) == "LookupError('no column for (1,)')"


def test_disable_restores_aiosqlite_exactly() -> None:
    cls = aiosqlite_core.Connection
    ours = vars(cls)["_execute"]
    assert getattr(ours, "__async_trace_wrapper__", False)
    async_trace.disable_tracing()
    try:
        assert vars(cls)["_execute"] is ours.__wrapped__
    finally:
        async_trace.enable_tracing()
    assert vars(cls)["_execute"] is ours


IMPORTED_AFTER = """\
import asyncio, async_trace, aiosqlite
from async_trace import collect_async_trace

found = []

def probe():
    found.append(collect_async_trace())
    return 1

async def main():
    async with aiosqlite.connect(":memory:") as db:
        await db.create_function("probe", 0, probe)
        await db.execute("select probe()")
    trace = found[0]
    print(trace["in_executor"], [f["name"] for f in trace["frames"] if f["is_executor"]])

asyncio.run(main())
"""


def test_aiosqlite_imported_after_us_is_hooked() -> None:
    result = run_python("-c", IMPORTED_AFTER, cwd=pathlib.Path(__file__).parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True ['main']\n"


def test_the_docs_sample_prints_what_the_page_shows(tmp_path: pathlib.Path) -> None:
    """docs/real-applications.md's aiosqlite program, run as is, prints the page's output exactly."""
    from .doc_blocks import doc_block

    (tmp_path / "app.py").write_text(doc_block("aiosqlite-source", "app.py"), encoding="utf-8")
    result = run_python("app.py", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == doc_block("aiosqlite-output", "app.py")


def test_a_capture_failure_leaves_aiosqlite_working(monkeypatch: pytest.MonkeyPatch) -> None:
    """If capturing the hop raises, every query still runs, untraced, and we warn once."""
    import warnings

    from async_trace import AsyncTraceWarning, _aiosqlite

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(_aiosqlite, "capture", boom)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _run("asyncio")["rows"] == EXPECTED_ROWS
    ours = [w for w in caught if issubclass(w.category, AsyncTraceWarning)]
    assert len(ours) == 1
    assert "RuntimeError: injected" in str(ours[0].message)
    assert seen["function"]["in_executor"] is False
