"""``in_app`` frames and ``library_frames=``: FastAPI on uvicorn, in-process on 127.0.0.1, driven by httpx.

One server run records, inside a real async endpoint, the trace, every
format of it, the task tree, a dump, exception notes and log records; the
tests then check them. Library lines are matched by patterns (their line
numbers and run lengths belong to the installed framework versions); our own
lines exactly, with computed line numbers.
"""

from __future__ import annotations

import asyncio
import io
import logging
import logging.config
import os
import re
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Final

import pytest

import async_trace
from async_trace import (
    TraceData,
    TraceFrame,
    collect_async_trace,
    dump_tasks,
    enable_tracing,
    exception_trace,
    format_async_trace,
    format_exception,
    format_task_tree,
    format_trace,
    print_async_trace,
    print_task_tree,
    print_trace,
    task_tree,
    trace_to_dict,
    tree_to_dict,
)
from async_trace._inapp import classify
from async_trace.logging import AsyncTraceFilter

from . import apps
from .apps import get_httpx, source_line, uvicorn_server
from .helpers import line_of

fastapi = pytest.importorskip("fastapi")
h11_impl = pytest.importorskip("uvicorn.protocols.http.h11_impl")
starlette_concurrency = pytest.importorskip("starlette.concurrency")

HERE = os.path.basename(__file__)
MODES = ("collapse", "show", "hide")
STDLIB = os.path.join(os.path.abspath(sysconfig.get_paths()["stdlib"]), "")
H11 = re.escape("uvicorn/protocols/http/h11_impl.py")
#: A collapsed run of uvicorn/starlette/fastapi frames (how many depends on their versions).
RUN = r"… \d+ library frames \(fastapi, starlette, uvicorn\)"


def expected_in_app(frame: TraceFrame) -> bool:
    """The documented rule, decided here independently of async_trace's code."""
    filename = frame["filename"]
    if filename is None:
        return True
    parts = Path(filename).parts
    return not ("site-packages" in parts or "dist-packages" in parts or os.path.abspath(filename).startswith(STDLIB))


async def fail() -> None:
    raise ValueError("bad")  # raise


class ListHandler(logging.Handler):
    """Keeps each line as formatted, and the fields as its filter set them (both handlers share one record)."""

    records: ClassVar[list[tuple[str, str, list[Any]]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((self.format(record), record.async_trace, record.async_frames))  # type: ignore[attr-defined]


def logging_config() -> dict[str, Any]:
    """A real ``dictConfig``: two handlers, the filter built by the ``()`` factory, one with options."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "default": {"()": AsyncTraceFilter},
            "short": {"()": AsyncTraceFilter, "limit": 2, "library_frames": "hide", "ascii_only": True},
        },
        "formatters": {"line": {"format": "%(levelname)s %(message)s [%(async_trace)s]"}},
        "handlers": {
            "default": {"()": ListHandler, "filters": ["default"], "formatter": "line"},
            "short": {"()": ListHandler, "filters": ["short"], "formatter": "line"},
        },
        "loggers": {"in_app_test": {"handlers": ["default", "short"], "level": "INFO", "propagate": False}},
    }


class Seen:
    trace: TraceData
    lines: dict[tuple[str, str], list[str]]
    tree: list[str]
    tree_show: list[str]
    tree_traceback: list[str]
    tree_dict: Any
    tree_frames: list[TraceFrame]
    dump: str
    notes: dict[str, list[str]]
    note_trace: TraceData | None
    printed: str
    sync_trace: str


def _run_app() -> Seen:
    seen = Seen()
    app = fastapi.FastAPI()
    log = logging.getLogger("in_app_test")

    @app.get("/async")  # type: ignore[untyped-decorator]
    async def endpoint() -> dict[str, int]:
        seen.trace = collect_async_trace()  # capture
        seen.lines = {
            (style, mode): format_async_trace(seen.trace, style=style, library_frames=mode)  # type: ignore[arg-type]
            for style in ("arrows", "traceback")
            for mode in MODES
        }
        out = io.StringIO()
        print_trace(file=out)  # print
        seen.printed = out.getvalue()
        tree = task_tree()  # tree
        seen.tree = format_task_tree(tree)
        seen.tree_show = format_task_tree(tree, library_frames="show")
        seen.tree_traceback = format_task_tree(tree, style="traceback")
        seen.tree_dict = tree_to_dict(tree)
        seen.tree_frames = [f for _, info in tree.walk() for f in (*info.created_at, *info.suspended_at)]
        out = io.StringIO()
        dump_tasks(out)
        seen.dump = out.getvalue()
        seen.notes = {}
        for mode in MODES:
            try:
                await asyncio.create_task(fail(), name="fail")  # spawn-fail
            except ValueError as exc:
                seen.notes[mode] = format_exception(exc, style="arrows", library_frames=mode)  # type: ignore[arg-type]
                seen.note_trace = exception_trace(exc)
                if mode == "collapse":
                    seen.notes["ascii"] = format_exception(exc, style="arrows", ascii_only=True)
        try:
            await asyncio.create_task(fail(), name="fail")
        except ValueError as exc:
            seen.notes["traceback-ascii"] = format_exception(exc, ascii_only=True)  # the traceback style
        log.info("hello")  # log
        return {"ok": 1}

    @app.get("/sync")  # type: ignore[untyped-decorator]
    def sync_endpoint() -> dict[str, int]:
        seen.sync_trace = "".join(format_trace())  # capture-sync
        return {"ok": 1}

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        async with uvicorn_server(app) as url:  # serve
            assert await get_httpx(url + "/async") == (200, '{"ok":1}')
            assert await get_httpx(url + "/sync") == (200, '{"ok":1}')

    seen.main = main  # type: ignore[attr-defined]
    seen.endpoint = endpoint  # type: ignore[attr-defined]
    ListHandler.records = []
    logging.config.dictConfig(logging_config())
    try:
        asyncio.run(main())
        log.info("outside")  # no task here
    finally:
        logging.getLogger("in_app_test").handlers.clear()
    return seen


@pytest.fixture(scope="module")
def seen() -> Seen:
    return _run_app()


#: uvicorn's protocol callback and the serving task's frames to its ``create_server`` line: one run.
SERVER_RUN: Final = re.escape(f"… {len(apps.uvicorn_start()) + 1} library frames (uvicorn)")


def _tail(seen: Seen) -> list[str]:
    """The lines below the request task's creation: uvicorn's callback hop and the line that started the
    server (one run), our server helper, ``main``."""
    main = seen.main  # type: ignore[attr-defined]
    return [
        "↑ " + SERVER_RUN,
        re.escape(f"↑ uvicorn_server() at line {source_line(apps.uvicorn_server, 'serving = asyncio.create_task(')}")
        + r" \[apps\.py\]",
        r"↑ __aenter__\(\) at line \d+ \[contextlib\.py\]",
        re.escape(f"↑ main() at line {line_of(main, 'serve')} [{HERE}]"),
        re.escape("↑ main"),
    ]


def _match(lines: list[str], patterns: list[str], *, indent: bool = True) -> None:
    assert len(lines) == len(patterns), "".join(lines)
    for i, (line, pattern) in enumerate(zip(lines, patterns, strict=True)):
        lead = "  " * i if indent else ""
        assert re.fullmatch(re.escape(lead) + pattern + "\n", line), (line, pattern)


# --- in_app on every frame -----------------------------------------------------------


def test_in_app_on_every_frame_of_traces_trees_and_notes(seen: Seen) -> None:
    frames = seen.trace["frames"]
    assert [f["in_app"] for f in frames] == [expected_in_app(f) for f in frames]
    assert frames[0]["in_app"] is True
    assert frames[0]["name"] == "endpoint"
    assert sum(not f["in_app"] for f in frames) >= 15  # the framework's frames are there, marked
    assert [f["in_app"] for f in seen.tree_frames] == [expected_in_app(f) for f in seen.tree_frames]
    assert any(not f["in_app"] for f in seen.tree_frames)
    assert any(f["in_app"] for f in seen.tree_frames)
    assert seen.note_trace is not None
    note_frames = seen.note_trace["frames"]
    assert [f["in_app"] for f in note_frames] == [expected_in_app(f) for f in note_frames]
    assert note_frames[0]["name"] == "endpoint"
    assert note_frames[-1]["name"] == "main"
    # The JSON forms carry it too.
    assert [f["in_app"] for f in trace_to_dict(seen.trace)["frames"]] == [f["in_app"] for f in frames]
    json_frames = [f for t in seen.tree_dict["tasks"] for f in (*t["created_at"], *t["suspended_at"])]
    assert [f["in_app"] for f in json_frames] == [f["in_app"] for f in seen.tree_frames]


def test_root_and_markers_count_as_app() -> None:
    assert classify("<frozen importlib._bootstrap>") == (False, "importlib", "<frozen importlib._bootstrap>")
    assert classify("<string>") == (True, None, None)
    assert classify(asyncio.__file__) == (False, "asyncio", "asyncio/__init__.py")
    assert classify("/opt/x/lib/python3/dist-packages/six.py") == (False, "six", "six.py")
    assert classify(__file__) == (True, None, None)


# --- the printed trace ---------------------------------------------------------------


def test_default_trace_collapses_the_framework(seen: Seen) -> None:
    endpoint = seen.endpoint  # type: ignore[attr-defined]
    lines = seen.lines[("arrows", "collapse")]
    head = [
        re.escape(f"↑ endpoint() at line {line_of(endpoint, 'capture')} [{HERE}]"),
        "↑ " + RUN,
        rf"↑ handle_events\(\) at line \d+ \[{H11}\]",
    ]
    _match(lines, head + _tail(seen))
    assert len(lines) <= 15
    # print_trace's default is the same, its own line aside.
    printed = seen.printed.splitlines(keepends=True)
    assert printed[0] == f"↑ endpoint() at line {line_of(endpoint, 'print')} [{HERE}]\n"
    assert printed[1:] == lines[1:]


def test_show_prints_every_frame_with_package_paths(seen: Seen) -> None:
    lines = seen.lines[("arrows", "show")]
    frames = seen.trace["frames"]
    assert len(lines) == len(frames)
    for line, frame in zip(lines, frames, strict=True):
        if frame["filename"] is None:
            continue
        shown = re.search(r"\[([^]]+)\]\n$", line)
        assert shown is not None, line
        if frame["in_app"]:
            assert shown[1] == os.path.basename(frame["filename"])
        else:
            assert frame["filename"].replace(os.sep, "/").endswith("/" + shown[1])
    text = "".join(lines)
    assert re.search(r"↑ run_endpoint_function\(\) at line \d+ \[fastapi/routing\.py\]\n", text)
    assert re.search(r"↑ handle\(\) at line \d+ \[starlette/routing\.py\]\n", text)
    assert re.search(r"↑ run_asgi\(\) at line \d+ \[uvicorn/protocols/http/h11_impl\.py\]\n", text)


def test_hide_drops_the_runs(seen: Seen) -> None:
    endpoint, main = seen.endpoint, seen.main  # type: ignore[attr-defined]
    lines = seen.lines[("arrows", "hide")]
    boundary = seen.trace["frames"][_boundary(seen)]["line"]
    server = source_line(apps.uvicorn_server, "serving = asyncio.create_task(")
    assert lines == [
        f"↑ endpoint() at line {line_of(endpoint, 'capture')} [{HERE}]\n",
        f"  ↑ handle_events() at line {boundary} [uvicorn/protocols/http/h11_impl.py]\n",
        f"    ↑ uvicorn_server() at line {server} [apps.py]\n",
        f"      ↑ main() at line {line_of(main, 'serve')} [{HERE}]\n",
        "        ↑ main\n",
    ]


def _boundary(seen: Seen) -> int:
    return next(i for i, f in enumerate(seen.trace["frames"]) if f["name"] == "handle_events")


def test_traceback_style(seen: Seen) -> None:
    endpoint, main = seen.endpoint, seen.main  # type: ignore[attr-defined]
    frames = seen.trace["frames"]
    request = frames[_boundary(seen)]["task"]
    assert request is not None
    h11 = re.escape(h11_impl.__file__)
    collapsed = [
        re.escape("Async trace (most recent call last):"),
        re.escape("  Root task 'main'"),
        re.escape(f'  File "{__file__}", line {line_of(main, "serve")}, in main'),
        re.escape("    async with uvicorn_server(app) as url:  # serve"),
        r'  File ".*contextlib\.py", line \d+, in __aenter__',
        r"    .*",
        re.escape(
            f'  File "{apps.__file__}", line {source_line(apps.uvicorn_server, "serving = asyncio.create_task(")}'
        )
        + ", in uvicorn_server",
        r"    serving = asyncio\.create_task\(.*",
        re.escape("  --- task 'uvicorn' created here ---"),
        "  " + SERVER_RUN,
        rf'  File "{h11}", line \d+, in handle_events',
        r"    .*create_task.*",
        re.escape(f"  --- task {request.get_name()!r} created here ---"),
        "  " + RUN,
        re.escape(f'  File "{__file__}", line {line_of(endpoint, "capture")}, in endpoint'),
        r"    seen\.trace = collect_async_trace\(\)  # capture",
    ]
    _match("".join(seen.lines[("traceback", "collapse")]).splitlines(keepends=True), collapsed, indent=False)
    hidden = "".join(seen.lines[("traceback", "hide")]).splitlines(keepends=True)
    assert not any("library frames" in line for line in hidden)
    assert not any("contextlib.py" in line or "in data_received" in line for line in hidden)
    assert hidden[-3:] == [
        f"  --- task {request.get_name()!r} created here ---\n",
        f'  File "{__file__}", line {line_of(endpoint, "capture")}, in endpoint\n',
        "    seen.trace = collect_async_trace()  # capture\n",
    ]
    shown = "".join(seen.lines[("traceback", "show")])
    assert shown.count('  File "') == sum(f["line"] is not None for f in frames)


def test_executor_boundary_stays_in_a_library(seen: Seen) -> None:
    """A ``def`` endpoint: starlette's run_in_threadpool hands it to a thread; that frame stays."""
    line = source_line(starlette_concurrency.run_in_threadpool, "return await anyio.to_thread.run_sync(")
    lines = seen.sync_trace.splitlines()
    assert lines[0].startswith("↑ sync_endpoint() at line ")
    hop = [i for i, text in enumerate(lines) if text.endswith(" [EXECUTOR]")]
    assert len(hop) == 1
    at = hop[0]
    assert lines[at] == f"{'  ' * at}↑ run_in_threadpool() at line {line} [starlette/concurrency.py] [EXECUTOR]"
    assert re.fullmatch(re.escape("  " * (at + 1)) + "↑ " + RUN, lines[at + 1])
    assert len(lines) <= 15


# --- trees, dumps, notes -------------------------------------------------------------


def _request_entry(lines: list[str]) -> list[str]:
    at = next(i for i, line in enumerate(lines) if "← handle_events()" in line)
    return lines[at : at + 3]


def test_task_tree_and_dump(seen: Seen) -> None:
    endpoint = seen.endpoint  # type: ignore[attr-defined]
    entry = _request_entry(seen.tree)
    assert re.fullmatch(rf".*Task-\d+ \(running\) ← handle_events\(\) at line \d+ \[{H11}\]\n", entry[0])
    pad = entry[1][: entry[1].index("↑")]
    assert entry[1] == f"{pad}↑ endpoint() at line {line_of(endpoint, 'tree')} [{HERE}]\n"
    assert re.fullmatch(re.escape(pad) + "↑ " + RUN + "\n", entry[2])
    assert len(seen.tree_show) > len(seen.tree) + 15
    assert any(re.search(r"↑ run_endpoint_function\(\) at line \d+ \[fastapi/routing\.py\]", x) for x in seen.tree_show)
    assert re.search(r"\n +" + RUN + "\n", "".join(seen.tree_traceback))
    # The dump renders the same trees, collapsed.
    assert re.search(r"\n *(└── |├── )Task-\d+ \(running\) ← handle_events\(\)", seen.dump)
    assert re.search(r"↑ " + RUN + "\n", seen.dump)
    assert "run_endpoint_function" not in seen.dump


def test_exception_notes(seen: Seen) -> None:
    endpoint = seen.endpoint  # type: ignore[attr-defined]
    for mode, runs in [("collapse", 1), ("hide", 0), ("show", 0)]:
        text = "".join(seen.notes[mode])
        note = text[text.index("Async trace:\n") :].splitlines()
        assert note[1] == f"↑ endpoint() at line {line_of(endpoint, 'spawn-fail')} [{HERE}]", mode
        assert len(re.findall(r"\n  ↑ " + RUN, "\n" + "\n".join(note))) == runs, mode
        assert note[-1].endswith("↑ main"), mode
        if mode == "show":
            assert any("[fastapi/routing.py]" in line for line in note)
        else:
            assert not any("routing.py" in line for line in note)
    # The note as added, its decorations in ASCII in the lines returned.
    ascii_text = "".join(seen.notes["ascii"])
    collapsed = "".join(seen.notes["collapse"])
    assert ascii_text.isascii()
    assert re.search(r"\n  \^ \.\.\. \d+ library frames \(fastapi, starlette, uvicorn\)\n", ascii_text)
    assert ascii_text == collapsed.replace("↑", "^").replace("…", "...")
    traceback_ascii = "".join(seen.notes["traceback-ascii"])
    assert traceback_ascii.isascii()
    assert re.search(r"\n  \.\.\. \d+ library frames \(fastapi, starlette, uvicorn\)\n", traceback_ascii)


# --- logging -------------------------------------------------------------------------


def test_logging_filter_under_uvicorn(seen: Seen) -> None:
    hello = [r for r in ListHandler.records if r[0].startswith("INFO hello ")]
    (line, _, frames), (short_line, _, short_frames) = hello
    assert re.fullmatch(
        r"INFO hello \[endpoint ← " + RUN + " ← handle_events ← " + SERVER_RUN + " ← uvicorn_server ← __aenter__ "
        r"← main ← main\]",
        line,
    )
    assert [f["name"] for f in frames] == [f["name"] for f in seen.trace["frames"]]
    assert [f["in_app"] for f in frames] == [f["in_app"] for f in seen.trace["frames"]]
    # limit=2, library_frames="hide", ascii_only: of the innermost two frames, the library one is left out.
    assert short_line == "INFO hello [endpoint]"
    assert [f["name"] for f in short_frames] == ["endpoint"]
    # Outside any task: empty fields.
    outside = [r for r in ListHandler.records if r[0].startswith("INFO outside")]
    assert outside == [("INFO outside []", "", []), ("INFO outside []", "", [])]


def test_filter_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="library_frames must be one of 'collapse', 'show', 'hide', not 'none'"):
        AsyncTraceFilter(library_frames="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be an int or None"):
        AsyncTraceFilter(limit="3")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "call",
    [
        lambda mode: format_trace(library_frames=mode),
        lambda mode: print_trace(library_frames=mode),
        lambda mode: format_async_trace(
            {"frames": [], "current_task": None, "in_executor": False}, library_frames=mode
        ),
        lambda mode: print_async_trace({"frames": [], "current_task": None, "in_executor": False}, library_frames=mode),
        lambda mode: format_exception(ValueError(), library_frames=mode),
        lambda mode: async_trace.print_exception(ValueError(), library_frames=mode),
        lambda mode: dump_tasks(io.StringIO(), library_frames=mode),
        lambda mode: enable_tracing(library_frames=mode),
    ],
)
def test_library_frames_is_validated(call: Any) -> None:
    with pytest.raises(ValueError, match="library_frames must be one of 'collapse', 'show', 'hide', not 'all'"):
        call("all")


def test_tree_functions_validate_library_frames() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="library_frames must be one of"):
            format_task_tree(library_frames="all")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="library_frames must be one of"):
            print_task_tree(library_frames="all")  # type: ignore[arg-type]

    asyncio.run(main())


# --- in_app_include / in_app_exclude ------------------------------------------------


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[Path]:
    """``mypkg``, installed into a ``site-packages`` directory; ``vendlib``, vendored in the program's tree."""
    site = tmp_path / "venv" / "lib" / "site-packages"
    vendor = tmp_path / "myapp" / "_vendor"
    helper = """
        from async_trace import collect_async_trace

        async def helper(inner=None):
            if inner is not None:
                return await inner()  # call-inner
            return collect_async_trace()  # collect
    """
    for root, name in [(site, "mypkg"), (vendor, "vendlib")]:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(textwrap.dedent(helper), encoding="utf-8")
    sys.path[:0] = [str(site), str(vendor)]
    try:
        yield tmp_path
    finally:
        sys.path[:] = [p for p in sys.path if p not in (str(site), str(vendor))]
        for name in ("mypkg", "vendlib"):
            sys.modules.pop(name, None)
        enable_tracing(in_app_include=[], in_app_exclude=[])


def test_include_and_exclude_under_uvicorn(packages: Path) -> None:
    import mypkg  # type: ignore[import-not-found]
    import vendlib  # type: ignore[import-not-found]

    seen: dict[str, TraceData] = {}
    app = fastapi.FastAPI()

    @app.get("/")  # type: ignore[untyped-decorator]
    async def endpoint() -> dict[str, int]:
        seen["default"] = await mypkg.helper(vendlib.helper)  # call
        enable_tracing(in_app_include=["mypkg"], in_app_exclude=["vendlib"])
        seen["overridden"] = await mypkg.helper(vendlib.helper)  # call-again
        return {"ok": 1}

    async def main() -> None:
        async with uvicorn_server(app) as url:
            assert await get_httpx(url + "/") == (200, '{"ok":1}')

    asyncio.run(main())

    def head(trace: TraceData) -> list[tuple[str, str, bool]]:
        return [(f["name"], Path(f["filename"] or "").parent.name, f["in_app"]) for f in trace["frames"][:3]]

    assert head(seen["default"]) == [
        ("helper", "vendlib", True),
        ("helper", "mypkg", False),
        ("endpoint", "tests", True),
    ]
    assert head(seen["overridden"]) == [
        ("helper", "vendlib", False),
        ("helper", "mypkg", True),
        ("endpoint", "tests", True),
    ]
    vend = line_of(vendlib.helper, "collect")
    own = line_of(mypkg.helper, "call-inner")
    assert format_async_trace(seen["default"], library_frames="show")[:2] == [
        f"↑ helper() at line {vend} [__init__.py]\n",
        f"  ↑ helper() at line {own} [mypkg/__init__.py]\n",
    ]
    # Classified again under the new lists: the vendored file by its path from the package down.
    assert format_async_trace(seen["overridden"], library_frames="show")[:2] == [
        f"↑ helper() at line {vend} [vendlib/__init__.py]\n",
        f"  ↑ helper() at line {own} [__init__.py]\n",
    ]
    # A run of one library frame stays as it is, even collapsing; hiding drops it.
    assert format_async_trace(seen["overridden"])[0] == f"↑ helper() at line {vend} [vendlib/__init__.py]\n"
    assert (
        format_async_trace(seen["overridden"], library_frames="hide")[0] == f"↑ helper() at line {own} [__init__.py]\n"
    )


def test_override_names_are_checked() -> None:
    with pytest.raises(ValueError, match="in_app_include must be a list of top-level package names, not a string"):
        enable_tracing(in_app_include="mypkg")
    with pytest.raises(
        ValueError, match=r"in_app_exclude must hold top-level package names \(identifiers\), got 'a\.b'"
    ):
        enable_tracing(in_app_exclude=["a.b"])
    with pytest.raises(ValueError, match="in both in_app_include and in_app_exclude: x"):
        enable_tracing(in_app_include=["x"], in_app_exclude=["x"])
    assert classify(asyncio.__file__)[0] is False  # nothing was applied


# --- README's FastAPI sample -----------------------------------------------------------

#: The versions README's sample was printed with: with these installed the output must match exactly.
SAMPLE_VERSIONS = ("0.165.0", "1.10.0", "0.55.0")


def _mask(text: str) -> str:
    """Library line numbers and run lengths blanked: they belong to the installed framework versions."""
    text = re.sub(r"(\(\) at line )\d+( \[[\w.]+/)", r"\1N\2", text)
    return re.sub(r"… \d+ library frames", "… N library frames", text)


def test_readme_sample_is_what_the_app_prints(tmp_path: Path) -> None:
    """README's FastAPI app, run as is (uvicorn on port 0, a real httpx request), prints README's two outputs."""
    import starlette
    import uvicorn

    from .doc_blocks import doc_block
    from .helpers import run_python

    (tmp_path / "app.py").write_text(doc_block("fastapi-source", "app.py"), encoding="utf-8")
    result = run_python("app.py", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    collapsed, shown = result.stdout.split("\n\n")
    expected = (doc_block("fastapi-output", "collapse"), doc_block("fastapi-output", "show"))
    got = (collapsed + "\n", shown)
    if (fastapi.__version__, starlette.__version__, uvicorn.__version__) == SAMPLE_VERSIONS:
        assert got == expected
    else:  # other versions have other frames between: our own lines and the collapsed form still match
        assert _mask(got[0]) == _mask(expected[0])
        ours = [line.strip() for line in shown.splitlines() if "/" not in line]
        assert ours == [line.strip() for line in expected[1].splitlines() if "/" not in line]
    assert len(collapsed.splitlines()) <= 15


# --- the folding rule, on frames made by hand ------------------------------------------


def _made(name: str, filename: str | None, indent: int, *, executor: bool = False, task: Any = None) -> TraceFrame:
    return {
        "name": name,
        "line": None if filename is None else 10 + indent,
        "filename": filename,
        "indent": indent,
        "task": task,
        "is_executor": executor,
        "is_process": False,
        "in_app": classify(filename)[0] if filename else True,
    }


def test_folding_rule_exactly() -> None:
    lib = "/venv/lib/site-packages/"
    made: TraceData = {
        "frames": [
            _made("mine", "/app/mine.py", 0),
            _made("a", lib + "pkg_b/a.py", 1),
            _made("b", lib + "pkg_a/b.py", 2),
            _made("c", lib + "pkg_b/sub/c.py", 3),
            _made("hop", lib + "pkg_a/pool.py", 4, executor=True),
            _made("one", lib + "pkg_c.py", 5),
            _made("outer", "/app/main.py", 6),
            _made("Task-1", None, 7),
        ],
        "current_task": None,
        "in_executor": False,
    }
    assert format_async_trace(made) == [
        "↑ mine() at line 10 [mine.py]\n",
        "  ↑ … 3 library frames (pkg_a, pkg_b)\n",
        "    ↑ hop() at line 14 [pkg_a/pool.py] [EXECUTOR]\n",
        "      ↑ one() at line 15 [pkg_c.py]\n",
        "        ↑ outer() at line 16 [main.py]\n",
        "          ↑ Task-1\n",
    ]
    assert format_async_trace(made, library_frames="hide", ascii_only=True) == [
        "^ mine() at line 10 [mine.py]\n",
        "  ^ hop() at line 14 [pkg_a/pool.py] [EXECUTOR]\n",
        "    ^ outer() at line 16 [main.py]\n",
        "      ^ Task-1\n",
    ]
    assert format_async_trace(made, library_frames="show")[1:4] == [
        "  ↑ a() at line 11 [pkg_b/a.py]\n",
        "    ↑ b() at line 12 [pkg_a/b.py]\n",
        "      ↑ c() at line 13 [pkg_b/sub/c.py]\n",
    ]
    # limit first, then folding: the innermost three are one of ours and a run of two.
    assert format_async_trace(made, limit=3, ascii_only=True) == [
        "^ mine() at line 10 [mine.py]\n",
        "  ^ ... 2 library frames (pkg_a, pkg_b)\n",
    ]
    assert format_async_trace(made, style="traceback")[1:3] == [
        "  Task-1\n",
        '  File "/app/main.py", line 16, in outer\n',
    ]
    assert "  … 3 library frames (pkg_a, pkg_b)\n" in format_async_trace(made, style="traceback")
