"""An httpx crawler against a real aiohttp server on 127.0.0.1: each failed fetch's note names its creation line.

The crawler fetches with one ``httpx.AsyncClient`` in an ``asyncio.TaskGroup``
(3.11+) and in ``asyncio.gather``; one page answers 500 (``raise_for_status``)
and one URL points at a closed port (a connect error). Each failure, printed,
carries a note that starts at the root task and ends at the line that created
the fetch's task; the note holds no frame of the traceback above it.
"""

from __future__ import annotations

import asyncio
import linecache
import socket
import sys
from typing import Any

import pytest

import async_trace

from .apps import ON_BOTH_LOOPS, aiohttp_server, run_on
from .helpers import line_of

httpx = pytest.importorskip("httpx")
web = pytest.importorskip("aiohttp.web")

HAS_TASKGROUP = sys.version_info >= (3, 11)


async def ok(request: Any) -> Any:
    return web.Response(text="ok")


async def broken(request: Any) -> Any:
    return web.Response(status=500, text="broken")


async def fetch(client: Any, url: str, name: str) -> str:
    asyncio.current_task().set_name(name)  # type: ignore[union-attr]
    resp = await client.get(url)
    resp.raise_for_status()  # raise
    return str(resp.text)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 whose port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


async def crawl_group(client: Any, base: str) -> tuple[list[str], BaseException]:
    """Two fetches in a TaskGroup, one answered 500: its error comes out in an ExceptionGroup, printed here.

    The tasks are not kept: the raising task's origin was recorded as the exception left it.
    """
    try:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined,unused-ignore]
            tg.create_task(fetch(client, base + "/ok", "tg-ok"))
            tg.create_task(fetch(client, base + "/broken", "tg-broken"))  # tg-broken
    except BaseException as group:  # an ExceptionGroup (no except* on 3.10)
        return async_trace.format_exception(group), group
    raise AssertionError("the TaskGroup did not fail")


async def crawl_gather(client: Any, base: str, dead: str) -> tuple[list[list[str]], list[Any]]:
    """Three fetches in gather: each error returned, printed here while gather's tasks are alive."""
    gathering = asyncio.gather(
        fetch(client, base + "/ok", "g-ok"),
        fetch(client, base + "/broken", "g-broken"),
        fetch(client, dead, "g-dead"),
        return_exceptions=True,
    )  # gather
    results: list[Any] = list(await gathering)
    return [async_trace.format_exception(r) for r in results[1:]], results


async def main(out: dict[str, Any]) -> None:
    asyncio.current_task().set_name("crawler")  # type: ignore[union-attr]
    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    dead = closed_port_url()
    async with aiohttp_server(app) as base, httpx.AsyncClient(timeout=10.0) as client:
        if HAS_TASKGROUP:
            out["group"] = await crawl_group(client, base)  # group
        out["gather"] = await crawl_gather(client, base, dead)  # gather


def _site(func: Any, marker: str) -> list[str]:
    """A note's ``File ..., line N, in name`` line and its source, for the marked line of ``func``."""
    line = line_of(func, marker)
    filename = func.__code__.co_filename
    source = linecache.getline(filename, line).strip()
    return [f'  File "{filename}", line {line}, in {func.__name__}', f"    {source}"]


def _expected_note(*sites: list[str], task: str) -> str:
    lines = ["Async trace (most recent call last):", "  Root task 'crawler'"]
    for site in sites:
        lines.extend(site)
    lines.append(f"  --- task '{task}' created here ---")
    return "\n".join(lines)


def _gather_creation() -> list[str]:
    # gather's call spans lines: its frame's line is the statement's first one.
    line = line_of(crawl_gather, "gather") - 5
    filename = crawl_gather.__code__.co_filename
    return [f'  File "{filename}", line {line}, in crawl_gather', "    gathering = asyncio.gather("]


def _check_printed(text: str, note: str, margin: str = "") -> None:
    """The note is printed right after the exception's message lines, with the traceback's margin."""
    printed = "\n".join(margin + line if line else margin.rstrip() for line in note.split("\n"))
    assert printed + "\n" in text, text
    # Nothing the traceback above shows is repeated: fetch's frame appears once.
    assert text.count(", in fetch\n") == 1, text
    assert text.count("Root task 'crawler'") == 1, text


def _run(loop: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    run_on(loop, main(out))
    return out


@ON_BOTH_LOOPS
def test_gather_failures_name_their_creation_line(loop: str) -> None:
    out = _run(loop)
    printed, results = out["gather"]
    assert results[0] == "ok"
    broken_exc, dead_exc = results[1:]
    assert isinstance(broken_exc, httpx.HTTPStatusError)
    assert broken_exc.response.status_code == 500
    assert isinstance(dead_exc, httpx.ConnectError)
    for exc, text, task in [(broken_exc, printed[0], "g-broken"), (dead_exc, printed[1], "g-dead")]:
        note = _expected_note(_site(main, "gather"), _gather_creation(), task=task)
        _check_printed("".join(text), note)
        if sys.version_info >= (3, 11):
            assert exc.__notes__ == [note]
    # The 500's traceback ends at raise_for_status, called from fetch's marked line.
    assert f", line {line_of(fetch, 'raise')}, in fetch\n" in "".join(printed[0])


@pytest.mark.skipif(not HAS_TASKGROUP, reason="asyncio.TaskGroup is 3.11+")
@ON_BOTH_LOOPS
def test_taskgroup_failures_name_their_creation_line(loop: str) -> None:
    out = _run(loop)
    text, group = out["group"]
    joined = "".join(text)
    assert type(group).__name__ == "ExceptionGroup"
    (exc,) = group.exceptions
    assert isinstance(exc, httpx.HTTPStatusError)
    assert exc.response.status_code == 500
    note = _expected_note(_site(main, "group"), _site(crawl_group, "tg-broken"), task="tg-broken")
    assert exc.__notes__ == [note]
    printed = "\n".join("    | " + line for line in note.split("\n"))
    assert printed + "\n" in joined, joined
    # The group itself was raised in the crawler (a root task): no note of its own.
    assert getattr(group, "__notes__", None) is None
    assert joined.count("Root task 'crawler'") == 1
    assert joined.count(", in fetch\n") == 1
