"""async_trace.otel with the real OpenTelemetry SDK: in-memory export and an OTLP/HTTP round trip."""

from __future__ import annotations

import asyncio
import http.server
import threading
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from async_trace import AsyncTraceWarning, otel
from async_trace._render_line import chain_line
from async_trace.otel import AsyncTraceSpanProcessor, record_exception_with_origin

from .helpers import line_of

FILE = __file__
NAME = "test_otel.py"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _tracer(exporter: InMemorySpanExporter, processor: AsyncTraceSpanProcessor | None = None) -> Tracer:
    provider = TracerProvider()
    provider.add_span_processor(processor or AsyncTraceSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("async-trace-test")


def _spans(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _origin(function: str, line: int, chain: str) -> dict[str, Any]:
    return {
        "code.function.name": function,
        "code.file.path": FILE,
        "code.line.number": line,
        "async_trace.chain": chain,
    }


def test_nested_tasks_and_an_executor_call(exporter: InMemorySpanExporter) -> None:
    """Each span carries the creation site of its task (or executor call) and the chain above it."""
    tracer = _tracer(exporter)

    def blocking() -> None:
        with tracer.start_as_current_span("blocking"):
            pass

    async def inner() -> None:
        with tracer.start_as_current_span("inner"):
            await asyncio.get_running_loop().run_in_executor(None, blocking)  # hop

    async def outer() -> None:
        with tracer.start_as_current_span("outer"):
            await asyncio.create_task(inner(), name="inner")  # spawn-inner

    async def main() -> str:
        with tracer.start_as_current_span("main"):
            await asyncio.create_task(outer(), name="outer")  # spawn-outer
            await asyncio.to_thread(blocking_in_thread)  # to-thread
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    def blocking_in_thread() -> None:
        with tracer.start_as_current_span("to_thread"):
            pass

    root = asyncio.run(main())
    spans = _spans(exporter)
    hop, s_inner, s_outer, to_thread = (
        line_of(inner, "hop"),
        line_of(outer, "spawn-inner"),
        line_of(main, "spawn-outer"),
        line_of(main, "to-thread"),
    )
    assert _attrs(spans["main"]) == {}  # the root task: no creation site
    assert _attrs(spans["outer"]) == _origin("main", s_outer, f"main ({NAME}:{s_outer}) ← {root}")
    assert _attrs(spans["inner"]) == _origin(
        "outer", s_inner, f"outer ({NAME}:{s_inner}) ← main ({NAME}:{s_outer}) ← {root}"
    )
    assert _attrs(spans["blocking"]) == _origin(
        "inner",
        hop,
        f"inner ({NAME}:{hop}) [executor] ← outer ({NAME}:{s_inner}) ← main ({NAME}:{s_outer}) ← {root}",
    )
    assert _attrs(spans["to_thread"]) == _origin("main", to_thread, f"main ({NAME}:{to_thread}) [executor] ← {root}")
    # Parenting is the SDK's, untouched: each span's parent is the span current where it started.
    ids = {name: span.context.span_id for name, span in spans.items() if span.context is not None}
    parents = {name: span.parent.span_id if span.parent else None for name, span in spans.items()}
    assert parents == {
        "main": None,
        "outer": ids["main"],
        "inner": ids["outer"],
        "blocking": ids["inner"],
        "to_thread": ids["main"],
    }


def test_a_failing_task_gives_its_origin_to_the_exception_event(exporter: InMemorySpanExporter) -> None:
    """The exception event recorded when the failure leaves a span holds the origin of the raising task."""
    tracer = _tracer(exporter)

    async def parse() -> None:
        raise ValueError("bad record")

    async def handle() -> None:
        with tracer.start_as_current_span("handle"):
            await asyncio.create_task(parse(), name="parse")  # spawn-parse

    async def main() -> str:
        with pytest.raises(ValueError, match="bad record"):
            await asyncio.create_task(handle(), name="handle")  # spawn-handle
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    root = asyncio.run(main())
    span = _spans(exporter)["handle"]
    s_parse, s_handle = line_of(handle, "spawn-parse"), line_of(main, "spawn-handle")
    assert _attrs(span) == _origin("main", s_handle, f"main ({NAME}:{s_handle}) ← {root}")
    events = [event for event in span.events if event.name == "exception"]
    assert len(events) == 1
    attributes = dict(events[0].attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "bad record"
    assert attributes["async_trace.chain"] == (f"handle ({NAME}:{s_parse}) ← main ({NAME}:{s_handle}) ← {root}")


def test_record_exception_with_origin_for_any_span(exporter: InMemorySpanExporter) -> None:
    """The helper adds the origin on spans the processor did not start; the caller's attributes win."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("plain")

    async def fail() -> None:
        raise KeyError("k")

    async def main() -> str:
        task = asyncio.create_task(fail())  # spawn-fail
        with tracer.start_as_current_span("plain", record_exception=False) as span:
            try:
                await task
            except KeyError as exc:
                record_exception_with_origin(span, exc, {"app.kind": "lookup"})
                record_exception_with_origin(span, RuntimeError("no origin"))
                record_exception_with_origin(span, exc, {"async_trace.chain": "mine"})
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    root = asyncio.run(main())
    span = _spans(exporter)["plain"]
    assert _attrs(span) == {}
    chains = [
        (dict(e.attributes or {}).get("async_trace.chain"), dict(e.attributes or {}).get("app.kind"))
        for e in span.events
    ]
    line = line_of(main, "spawn-fail")
    assert chains == [(f"main ({NAME}:{line}) ← {root}", "lookup"), (None, None), ("mine", None)]


def test_exception_origins_can_be_turned_off(exporter: InMemorySpanExporter) -> None:
    tracer = _tracer(exporter, AsyncTraceSpanProcessor(exception_origins=False))

    async def fail() -> None:
        raise ValueError("x")

    async def main() -> None:
        with pytest.raises(ValueError, match="x"), tracer.start_as_current_span("s"):
            await asyncio.create_task(fail())

    asyncio.run(main())
    (event,) = _spans(exporter)["s"].events
    assert "async_trace.chain" not in (event.attributes or {})


def test_outside_tasks_nothing_is_added(exporter: InMemorySpanExporter) -> None:
    tracer = _tracer(exporter)
    with tracer.start_as_current_span("sync"):
        pass
    assert _attrs(_spans(exporter)["sync"]) == {}


def test_chain_is_bounded(exporter: InMemorySpanExporter) -> None:
    """A deep chain keeps max_frames frames (elision marker between) and max_length characters."""
    tracer = _tracer(exporter, AsyncTraceSpanProcessor(max_frames=8, max_length=4096))
    short = _tracer(exporter, AsyncTraceSpanProcessor(max_length=100))

    async def level(n: int) -> None:
        if n:
            await asyncio.create_task(level(n - 1))  # spawn-level
            return
        with tracer.start_as_current_span("deep"):
            pass
        with short.start_as_current_span("short"):
            pass

    async def main() -> str:
        await level(20)  # call-level
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    root = asyncio.run(main())
    spans = _spans(exporter)
    line = line_of(level, "spawn-level")
    hop = f"level ({NAME}:{line})"
    # 20 hops, then main's frame and the root: 22 frames; 5 innermost + marker + 2 outermost.
    deep = spans["deep"].attributes["async_trace.chain"]  # type: ignore[index]
    outermost = f"main ({NAME}:{line_of(main, 'call-level')})"
    assert deep == " ← ".join([hop] * 5 + ["... 15 frames elided ...", outermost, root])
    text = spans["short"].attributes["async_trace.chain"]  # type: ignore[index]
    assert isinstance(text, str)
    assert len(text) <= 100
    assert text.startswith(f"{hop} ← ")
    assert text.endswith(f" frames elided ... ← {root}")


def test_chain_line_cuts_what_does_not_fit() -> None:
    frames: list[Any] = [
        {"name": "x" * 50, "line": 1, "filename": "/a.py", "indent": 0, "task": None, "is_executor": False},
        {"name": "R" * 40, "line": None, "filename": None, "indent": 1, "task": None, "is_executor": False},
    ]
    assert chain_line(frames, 32, 200) == f"{'x' * 50} (a.py:1) ← {'R' * 40}"
    cut = chain_line(frames, 32, 30)
    assert len(cut) == 30
    assert cut.endswith("...")


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        AsyncTraceSpanProcessor(max_frames=1)
    with pytest.raises(ValueError, match="max_length"):
        AsyncTraceSpanProcessor(max_length=3)


def test_an_internal_failure_warns_once_and_leaves_the_span_untouched(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("broken")

    monkeypatch.setattr(otel, "current_node", broken)
    tracer = _tracer(exporter)

    async def child() -> None:
        with tracer.start_as_current_span("a"):
            pass
        with tracer.start_as_current_span("b", attributes={"mine": 1}):
            pass

    async def main() -> None:
        await asyncio.create_task(child())

    with pytest.warns(AsyncTraceWarning, match="adding a task's origin to a span") as caught:
        asyncio.run(main())
    assert len([w for w in caught if issubclass(w.category, AsyncTraceWarning)]) == 1
    spans = _spans(exporter)
    assert _attrs(spans["a"]) == {}
    assert _attrs(spans["b"]) == {"mine": 1}
    assert "record_exception" not in vars(spans["a"])


# --- OTLP/HTTP round trip -----------------------------------------------------


class _Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint on 127.0.0.1 that decodes what it receives."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Any] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.requests.append((self.path, self.headers.get("Content-Type"), request))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_otlp_http_round_trip() -> None:
    """The attributes reach an OTLP/HTTP receiver intact, as protobuf."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        provider = TracerProvider()
        provider.add_span_processor(AsyncTraceSpanProcessor())
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=10)))
        tracer = provider.get_tracer("round-trip")

        async def work() -> None:
            with tracer.start_as_current_span("work"):
                pass

        async def main() -> str:
            await asyncio.create_task(work(), name="work")  # spawn-work
            return asyncio.current_task().get_name()  # type: ignore[union-attr]

        root = asyncio.run(main())
        provider.shutdown()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert not thread.is_alive()
    assert len(server.requests) == 1
    path, content_type, request = server.requests[0]
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    (span,) = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert span.name == "work"
    decoded: dict[str, Any] = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        decoded[kv.key] = getattr(kv.value, kind)
    line = line_of(main, "spawn-work")
    assert decoded == _origin("main", line, f"main ({NAME}:{line}) ← {root}")


def _scenario(tracer: Tracer) -> tuple[str, dict[str, int]]:
    """Nested tasks, a gather, an executor call and to_thread, each starting a span; ``(root task name, lines)``."""

    def blocking() -> None:
        with tracer.start_as_current_span("blocking"):
            pass

    async def leaf() -> None:
        with tracer.start_as_current_span("leaf"):
            await asyncio.sleep(0)

    async def inner() -> None:
        with tracer.start_as_current_span("inner"):
            await asyncio.get_running_loop().run_in_executor(None, blocking)  # hop
            await asyncio.gather(leaf())  # gather

    async def outer() -> None:
        with tracer.start_as_current_span("outer"):
            await asyncio.create_task(inner(), name="inner")  # spawn-inner

    async def main() -> str:
        with tracer.start_as_current_span("main"):
            await asyncio.create_task(outer(), name="outer")  # spawn-outer
            await asyncio.to_thread(blocking_in_thread)  # to-thread
        return asyncio.current_task().get_name()  # type: ignore[union-attr]

    def blocking_in_thread() -> None:
        with tracer.start_as_current_span("to_thread"):
            pass

    lines = {
        "hop": line_of(inner, "hop"),
        "gather": line_of(inner, "gather"),
        "spawn-inner": line_of(outer, "spawn-inner"),
        "spawn-outer": line_of(main, "spawn-outer"),
        "to-thread": line_of(main, "to-thread"),
    }
    return asyncio.run(main()), lines


def _parents(spans: dict[str, ReadableSpan]) -> dict[str, str | None]:
    """Each span's parent, by name."""
    by_id = {span.context.span_id: name for name, span in spans.items() if span.context is not None}
    return {name: by_id[span.parent.span_id] if span.parent else None for name, span in spans.items()}


def test_with_opentelemetry_instrumentation_asyncio(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AsyncioInstrumentor wraps create_task, gather and to_thread (and starts its own span in a traced
    coroutine): the creation sites stay the program's lines, exactly, and parenting is the same as without us."""
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.asyncio")
    monkeypatch.setenv("OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE", "leaf")
    provider = TracerProvider()
    provider.add_span_processor(AsyncTraceSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = instrumentation.AsyncioInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        root, line = _scenario(provider.get_tracer("async-trace-test"))
        spans = _spans(exporter)
        plain = InMemorySpanExporter()
        plain_provider = TracerProvider()
        plain_provider.add_span_processor(SimpleSpanProcessor(plain))
        instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=plain_provider)
        _scenario(plain_provider.get_tracer("async-trace-test"))
        plain_spans = _spans(plain)
    finally:
        instrumentor.uninstrument()
    assert sorted(spans) == ["asyncio coro-leaf", "blocking", "inner", "leaf", "main", "outer", "to_thread"]
    hop, gather, s_inner, s_outer = line["hop"], line["gather"], line["spawn-inner"], line["spawn-outer"]
    above_inner = f"outer ({NAME}:{s_inner}) ← main ({NAME}:{s_outer}) ← {root}"
    assert _attrs(spans["main"]) == {}
    assert _attrs(spans["outer"]) == _origin("main", s_outer, f"main ({NAME}:{s_outer}) ← {root}")
    assert _attrs(spans["inner"]) == _origin("outer", s_inner, above_inner)
    assert _attrs(spans["blocking"]) == _origin("inner", hop, f"inner ({NAME}:{hop}) [executor] ← {above_inner}")
    leaf = _origin("inner", gather, f"inner ({NAME}:{gather}) ← {above_inner}")
    assert _attrs(spans["leaf"]) == leaf
    assert _attrs(spans["asyncio coro-leaf"]) == leaf  # the instrumentor's span, in the same task
    to_thread = line["to-thread"]
    assert _attrs(spans["to_thread"]) == _origin("main", to_thread, f"main ({NAME}:{to_thread}) [executor] ← {root}")
    assert (
        _parents(spans)
        == _parents(plain_spans)
        == {
            "main": None,
            "outer": "main",
            "inner": "outer",
            "blocking": "inner",
            "asyncio coro-leaf": "inner",
            "leaf": "inner",  # the instrumentor starts its span without making it current
            "to_thread": "main",
        }
    )
    assert all(not _attrs(span) for name, span in plain_spans.items() if name != "asyncio coro-leaf")
    # Uninstrumented: asyncio's functions are ours (or the originals) again, not the instrumentor's wrappers.
    assert not type(asyncio.create_task).__name__.endswith("FunctionWrapper")
