"""Django over ASGI on uvicorn, in-process on 127.0.0.1, driven by httpx: async views, sync views in asgiref's threads.

Django runs a sync view (and any ``sync_to_async`` call) in one of asgiref's
threads, through a copy of the awaiting task's context: the hop is marked
``[EXECUTOR]`` at the coroutine that awaited the call (Django's
``_get_response_async`` for a sync view, the view's own line for a
``sync_to_async`` call of its own), then the chain runs on through Django and
uvicorn to the task that started the server. A view's fire-and-forget task that
fails names the view's line that started it. Django answers the same traced and
untraced.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

import async_trace
from async_trace import TraceData, collect_async_trace, exception_trace

from .apps import ON_BOTH_LOOPS, TIMEOUT, Shape, connection_tail, run_on, shape, source_line, uvicorn_server
from .helpers import line_of

django = pytest.importorskip("django")
pytest.importorskip("httpx")
asgiref_sync = pytest.importorskip("asgiref.sync")
h11_impl = pytest.importorskip("uvicorn.protocols.http.h11_impl")

from django.conf import settings  # noqa: E402 - after the skip: Django may be missing

if not settings.configured:
    settings.configure(
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["127.0.0.1"],
        SECRET_KEY="test",
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from django.core.handlers import base as django_base  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

HERE = "test_apps_django.py"
#: What a request leaves behind, by view.
seen: dict[str, Any] = {}
#: A variable a sync view sets: asgiref copies it back to the awaiting task, traced or not.
USER = contextvars.ContextVar("USER", default="nobody")


async def notify(user: str) -> None:
    await asyncio.sleep(0)
    raise ConnectionError(f"could not notify {user}")


async def async_view(request: HttpRequest) -> HttpResponse:
    seen["async"] = collect_async_trace()  # capture-async
    asyncio.create_task(notify("ann"))  # fire-and-forget
    return JsonResponse({"view": "async", "in_loop": threading.current_thread() is threading.main_thread()})


def sync_view(request: HttpRequest) -> HttpResponse:
    seen["sync"] = collect_async_trace()  # capture-sync
    USER.set("ann")
    return JsonResponse({"view": "sync", "in_loop": threading.current_thread() is threading.main_thread()})


def lookup(key: str) -> str:
    seen["lookup"] = collect_async_trace()  # capture-lookup
    seen["lookup-thread"] = threading.get_ident()
    USER.set(key)
    return key.upper()


async def calling_view(request: HttpRequest) -> HttpResponse:
    value = await asgiref_sync.sync_to_async(lookup)("bob")  # hop
    again = await asgiref_sync.sync_to_async(threading.get_ident)()
    return JsonResponse({"value": value, "user": USER.get(), "same_thread": again == seen["lookup-thread"]})


#: Holds ``blocked_view`` in its thread while the test takes the task tree.
gate = threading.Event()
in_view = threading.Event()


def blocked_view(request: HttpRequest) -> HttpResponse:
    in_view.set()
    gate.wait(TIMEOUT)  # blocked
    return JsonResponse({"view": "blocked"})


urlpatterns = [
    path("async", async_view),
    path("sync", sync_view),
    path("calling", calling_view),
    path("blocked", blocked_view),
]


async def main(paths: list[str], out: dict[str, Any]) -> None:
    """Serve Django, GET each path, collect what the loop reports (the fire-and-forget task's failure)."""
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    import httpx

    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
    async with uvicorn_server(ASGIHandler()) as url, httpx.AsyncClient(timeout=TIMEOUT) as client:  # serve
        for p in paths:
            resp = await client.get(url + p)
            out[p] = (resp.status_code, resp.headers["content-type"], resp.json())
        for _ in range(int(TIMEOUT / 0.01)):  # the failed task is reported when it is freed
            if reported or "/async" not in paths:
                break
            await asyncio.sleep(0.01)
    out["reported"] = reported


def _serve(paths: list[str], loop: str) -> dict[str, Any]:
    seen.clear()
    out: dict[str, Any] = {}
    run_on(loop, main(paths, out))
    return out


def _server_tail() -> list[Shape]:
    """uvicorn's request task, created under the connection's protocol callback, then the task serving it."""
    return [
        ("run_asgi", source_line(h11_impl.RequestResponseCycle.run_asgi, "result = await app("), "h11_impl.py", False),
        ("handle_events", None, "h11_impl.py", False),
        *connection_tail(line_of(main, "serve"), HERE),
    ]


#: Django's and uvicorn's files between the view and the server's tail: their lines are theirs.
LIBRARY_DIRS = ("django", "uvicorn", "asgiref")


def _comparable(trace: TraceData) -> list[Shape]:
    """``shape(trace)`` with the lines we do not pin (contextlib's, handle_events', asgiref's) blanked."""
    return [
        (n, None if n == "handle_events" or b in {"contextlib.py", "sync.py"} else line, b, e)
        for n, line, b, e in shape(trace)
    ]


def _check(trace: TraceData, head: list[Shape], hop: Shape | None) -> None:
    """``head`` first, then Django's and uvicorn's frames only, the one hop where it is, then the tail."""
    got = _comparable(trace)
    assert got[: len(head)] == head
    tail = _server_tail()
    assert got[-len(tail) :] == tail
    middle = trace["frames"][len(head) : -len(tail)]
    assert all(any(f"{os.sep}{d}{os.sep}" in (f["filename"] or "") for d in LIBRARY_DIRS) for f in middle), got
    assert [row for row in got if row[3]] == ([hop] if hop else [])
    assert trace["in_executor"] is (hop is not None)


def _asgiref_thread_frames() -> list[Shape]:
    """The worker thread's frames of asgiref's, between the function and the hop.

    asgiref 3.12+ enters the call's context through two functions of its own; earlier releases
    call ``context.run`` from ``thread_handler``.
    """
    handler = ("thread_handler", None, "sync.py", False)
    if "run_child" not in inspect.getsource(asgiref_sync.SyncToAsync.__call__):
        return [handler]
    return [("run_child", None, "sync.py", False), ("func", None, "sync.py", False), handler]


#: Django awaits a sync view here.
_VIEW_HOP: Shape = (
    "_get_response_async",
    source_line(django_base.BaseHandler._get_response_async, "response = await wrapped_callback("),
    "base.py",
    True,
)


@ON_BOTH_LOOPS
def test_async_view_reaches_the_root_and_its_failed_task_names_the_view(loop: str) -> None:
    out = _serve(["/async"], loop)
    assert out["/async"] == (200, "application/json", {"view": "async", "in_loop": True})
    _check(seen["async"], [("async_view", line_of(async_view, "capture-async"), HERE, False)], None)
    (context,) = out["reported"]
    assert context["message"] == "Task exception was never retrieved"
    exc = context["exception"]
    assert isinstance(exc, ConnectionError)
    origin = exception_trace(exc)
    assert origin is not None
    # The chain of the task that raised: created at the view's line, under the request's chain.
    _check(origin, [("async_view", line_of(async_view, "fire-and-forget"), HERE, False)], None)
    assert origin["current_task"] is context["future"]


@ON_BOTH_LOOPS
def test_sync_view_is_an_executor_hop_at_djangos_await(loop: str) -> None:
    out = _serve(["/sync"], loop)
    assert out["/sync"] == (200, "application/json", {"view": "sync", "in_loop": False})
    head = [("sync_view", line_of(sync_view, "capture-sync"), HERE, False), *_asgiref_thread_frames(), _VIEW_HOP]
    _check(seen["sync"], head, _VIEW_HOP)


@ON_BOTH_LOOPS
def test_sync_to_async_in_a_view_is_a_hop_at_the_views_line(loop: str) -> None:
    out = _serve(["/calling"], loop)
    # asgiref's behaviour is kept: the variable set in the thread is back in the view, the thread is the same one.
    assert out["/calling"] == (200, "application/json", {"value": "BOB", "user": "bob", "same_thread": True})
    hop: Shape = ("calling_view", line_of(calling_view, "hop"), HERE, True)
    _check(
        seen["lookup"],
        [("lookup", line_of(lookup, "capture-lookup"), HERE, False), *_asgiref_thread_frames(), hop],
        hop,
    )


def test_django_answers_the_same_untraced() -> None:
    paths = ["/async", "/sync", "/calling"]
    traced = _serve(paths, "asyncio")
    async_trace.disable_tracing()
    try:
        plain = _serve(paths, "asyncio")
    finally:
        async_trace.enable_tracing()
    assert {p: traced[p] for p in paths} == {p: plain[p] for p in paths}
    assert [c["message"] for c in traced["reported"]] == [c["message"] for c in plain["reported"]]
    assert [repr(c["exception"]) for c in plain["reported"]] == ["ConnectionError('could not notify ann')"]
    assert exception_trace(plain["reported"][0]["exception"]) is None


def test_the_loop_side_never_takes_the_threads_chain() -> None:
    """After ``sync_to_async`` the awaiting coroutine's chain is its own again (asgiref copies variables back)."""
    found: dict[str, TraceData] = {}

    def in_thread() -> None:
        found["thread"] = collect_async_trace()

    async def caller() -> None:
        found["before"] = collect_async_trace()
        await asgiref_sync.sync_to_async(in_thread)()  # hop
        found["after"] = collect_async_trace()  # after

    asyncio.run(caller())
    assert found["thread"]["in_executor"] is True
    assert found["after"]["in_executor"] is False
    root = shape(found["before"])[1:]
    assert len(root) == 1
    assert shape(found["after"]) == [("caller", line_of(caller, "after"), HERE, False), *root]
    assert [row for row in shape(found["thread"]) if row[3]] == [("caller", line_of(caller, "hop"), HERE, True)]


def test_disable_restores_asgiref_exactly() -> None:
    cls = asgiref_sync.SyncToAsync
    ours_handler, ours_restore = vars(cls)["thread_handler"], vars(asgiref_sync)["_restore_context"]
    assert getattr(ours_handler, "__async_trace_wrapper__", False)
    assert getattr(ours_restore, "__async_trace_wrapper__", False)
    async_trace.disable_tracing()
    try:
        assert vars(cls)["thread_handler"] is ours_handler.__wrapped__
        assert vars(asgiref_sync)["_restore_context"] is ours_restore.__wrapped__
    finally:
        async_trace.enable_tracing()
    assert vars(cls)["thread_handler"] is ours_handler
    assert vars(asgiref_sync)["_restore_context"] is ours_restore


@pytest.mark.skipif(
    "context" not in inspect.signature(asgiref_sync.SyncToAsync).parameters, reason="asgiref < 3.11 takes no context="
)
def test_a_context_of_the_callers_is_left_alone() -> None:
    """``sync_to_async(f, context=ctx)`` runs in ``ctx`` untouched: no hop is set there."""
    ctx = contextvars.copy_context()

    def ours() -> dict[str, Any]:  # asgiref re-homes its own Local storage there: that is asgiref's
        return {var.name: value for var, value in ctx.items() if var.name != "asgiref.local"}

    before = ours()
    found: dict[str, TraceData] = {}

    def in_thread() -> None:
        found["thread"] = collect_async_trace()

    async def caller() -> None:
        await asgiref_sync.SyncToAsync(in_thread, context=ctx)()

    asyncio.run(caller())
    assert ours() == before
    # Nothing was set in ctx; the hop is still found, in the context the pool's thread entered the call with.
    assert found["thread"]["in_executor"] is True


# --- docs/real-applications.md's Django sample ----------------------------------------

#: The versions the page's sample was printed with: with these installed the output must match exactly.
SAMPLE_VERSIONS = ("6.1.3", "3.13.0", "0.55.0")


def _ours(text: str) -> list[str]:
    """The sample's own lines, the hop's function and the root: what no library version changes."""
    keep = ("[app.py]", "[EXECUTOR]", "↑ Task-1", 'File "app.py"', "Root task", "Traceback", "Error")
    out = []
    for line in text.splitlines():
        if any(k in line for k in keep):
            line = re.sub(r" at line \d+ (\[(?!app\.py)[\w./]+\])", r" \1", line.strip())
            out.append(re.sub(r"'Task-\d+'", "'Task-N'", line))  # how many tasks the libraries made before
    return out


def test_the_docs_sample_prints_what_the_page_shows(tmp_path: Path) -> None:
    """docs/real-applications.md's Django app, run as is (uvicorn on port 0, real httpx requests)."""
    import uvicorn

    from .doc_blocks import doc_block
    from .helpers import run_python

    source = doc_block("django-source", "app.py")
    (tmp_path / "app.py").write_text(source, encoding="utf-8")
    fire = next(n for n, text in enumerate(source.splitlines(), 1) if "asyncio.create_task(notify(" in text)
    result = run_python("app.py", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    async_out, sync_out, rest = result.stdout.split("\n\n")
    assert rest == ""
    site = os.path.dirname(os.path.dirname(django.__file__)) + os.sep
    err = result.stderr.replace(str(tmp_path) + os.sep, "").replace(site, f".../site-packages{os.sep}")
    expected = [doc_block("django-output", n) for n in ("async view", "sync view", "fire and forget")]
    got = [async_out + "\n", sync_out + "\n", err]
    if (django.__version__, asgiref_sync_version(), uvicorn.__version__) == SAMPLE_VERSIONS:
        assert got == expected
    else:  # other versions have other frames between: the sample's own lines still match
        assert [_ours(g) for g in got] == [_ours(e) for e in expected]
    # Whatever the versions: the hop is marked at Django's await, the failed task names the view's line.
    assert "_get_response_async() at line" in sync_out
    assert sync_out.splitlines()[2].endswith("[django/core/handlers/base.py] [EXECUTOR]")
    *_, view, shown, created = err.rstrip().splitlines()
    assert view == f'  File "app.py", line {fire}, in async_view'
    assert shown.strip() == 'asyncio.create_task(notify("ann"))  # fire and forget'
    assert re.fullmatch(r"  --- task 'Task-\d+' created here ---", created), created


def asgiref_sync_version() -> str:
    import asgiref

    return str(asgiref.__version__)


async def tree_main(out: dict[str, Any]) -> None:
    """Serve Django, hold a request in a sync view's thread, take the task tree."""
    asyncio.current_task().set_name("main")  # type: ignore[union-attr]
    import httpx

    gate.clear()
    in_view.clear()
    async with uvicorn_server(ASGIHandler()) as url, httpx.AsyncClient(timeout=TIMEOUT) as client:
        request = asyncio.create_task(client.get(url + "/blocked"), name="client")
        try:
            for _ in range(int(TIMEOUT / 0.01)):
                if in_view.is_set():
                    break
                await asyncio.sleep(0.01)
            assert in_view.is_set()
            await asyncio.sleep(0.05)  # the thread is now in gate.wait
            out["tree"] = async_trace.task_tree()
        finally:
            gate.set()
        out["status"] = (await request).status_code


@ON_BOTH_LOOPS
def test_task_tree_shows_the_sync_views_thread_under_the_waiting_task(loop: str) -> None:
    out: dict[str, Any] = {}
    run_on(loop, tree_main(out))
    assert out["status"] == 200
    tree = out["tree"]
    holders = [(info, t) for _, info in tree.walk() for t in info.executor_threads]
    assert len(holders) == 1, holders
    info, thread = holders[0]
    # The task waiting for the thread is the one Django runs the view in, suspended at its await.
    suspended = [(f["name"], os.path.basename(f["filename"] or ""), f["line"]) for f in info.suspended_at]
    assert ("_get_response_async", "base.py", _VIEW_HOP[1]) in suspended, suspended
    # The thread's frames: the view where it waits, then asgiref's, down to the pool's entry.
    got = [(f["name"], f["line"] if f["filename"] == __file__ else None) for f in thread.frames]
    assert got[0] == ("blocked_view", line_of(blocked_view, "blocked"))
    assert [name for name, _ in got[1:]] == [name for name, *_ in _asgiref_thread_frames()]


def test_a_capture_failure_leaves_sync_to_async_working(monkeypatch: pytest.MonkeyPatch) -> None:
    """If capturing the hop raises, the call runs as untraced (asgiref's copy-back too) and we warn once."""
    import warnings

    from async_trace import AsyncTraceWarning, _asgiref

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(_asgiref, "capture", boom)

    async def caller() -> tuple[str, str]:
        value = await asgiref_sync.sync_to_async(lookup)("eve")
        again = await asgiref_sync.sync_to_async(lookup)("eve")
        assert again == value
        return value, USER.get()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(caller()) == ("EVE", "eve")
    ours = [w for w in caught if issubclass(w.category, AsyncTraceWarning)]
    assert len(ours) == 1
    assert "RuntimeError: injected" in str(ours[0].message)
    # asgiref's hook fell back; the run_in_executor hop below it still marks the thread (see
    # tests/test_copied_contexts.py): the function ran, in asgiref's own copy of the context.
    assert seen["lookup"]["in_executor"] is True
