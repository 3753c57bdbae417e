"""Stall reports to OpenTelemetry (a span under the request's span) and Sentry (an event), with the real SDKs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("sentry_sdk")

import sentry_sdk
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import async_trace.otel
import async_trace.sentry
from async_trace import StallReport, watch_stalls
from async_trace._stall_report import headline

from .helpers import automatic_gc_off, line_of
from .test_sentry import CaptureTransport, _events


@pytest.fixture(autouse=True)
def _no_automatic_gc() -> Iterator[None]:
    """Every test here counts its reports: a collection of the suite's heap inside a window would be one more."""
    with automatic_gc_off():
        yield


FILE = __file__


async def handle(tracer: Any) -> None:
    with tracer.start_as_current_span("GET /slow"):
        time.sleep(0.3)  # blocks
        await asyncio.sleep(0.3)  # the span is still open when the report comes


def run(on_stall: Any, tracer: Any = None) -> list[StallReport]:
    reports: list[StallReport] = []

    def both(report: StallReport) -> None:
        reports.append(report)
        on_stall(report)

    async def main() -> None:
        asyncio.current_task().set_name("main")  # type: ignore[union-attr]
        with watch_stalls(0.1, on_stall=both, log=False):
            await asyncio.sleep(0.05)
            await asyncio.create_task(handle(tracer), name="request")  # request
            await asyncio.sleep(0.1)

    asyncio.run(main())
    return reports


def test_otel_stall_span_is_a_child_of_the_request_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    (report,) = run(lambda r: async_trace.otel.record_stall(r, tracer_provider=provider), tracer)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"GET /slow", "event loop stall"}
    request, stall = spans["GET /slow"], spans["event loop stall"]
    assert stall.parent is not None
    assert stall.parent.span_id == request.context.span_id
    assert stall.context.trace_id == request.context.trace_id
    assert stall.start_time is not None
    assert stall.end_time is not None
    assert stall.end_time - stall.start_time == int(report.duration * 1e9)
    line = line_of(handle, "blocks")
    expected = {
        "async_trace.stall.duration": report.duration,
        "async_trace.stall.threshold": 0.1,
        "async_trace.stall.kind": "blocking",
        "async_trace.stall.source": f"{__name__}:handle",
        "async_trace.stall.ongoing": False,
        "async_trace.stall.task": "request",
        "async_trace.chain": (
            f"handle (test_stall_sinks.py:{line}) ← main (test_stall_sinks.py:{line_of(run, 'request')}) ← main"
        ),
        "code.function.name": "handle",
        "code.file.path": FILE,
        "code.line.number": line,
    }
    assert dict(stall.attributes or {}) == expected
    events = [(event.name, dict(event.attributes or {})) for event in request.events]
    assert events == [("async_trace.stall", expected)]


def test_otel_stall_outside_any_span_is_a_root_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def bare() -> None:
        time.sleep(0.3)

    async def main() -> None:
        with watch_stalls(
            0.1, on_stall=lambda r: async_trace.otel.record_stall(r, tracer_provider=provider), log=False
        ):
            await asyncio.sleep(0.05)
            await asyncio.create_task(bare())
            await asyncio.sleep(0.1)

    asyncio.run(main())
    (span,) = exporter.get_finished_spans()
    assert span.name == "event loop stall"
    assert span.parent is None


@pytest.fixture
def sentry() -> Iterator[None]:
    CaptureTransport.envelopes = []
    sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", transport=CaptureTransport, default_integrations=False)
    yield
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


@pytest.mark.usefixtures("sentry")
def test_sentry_event_per_stall() -> None:
    from opentelemetry.trace import NoOpTracer

    (report,) = run(async_trace.sentry.capture_stall, NoOpTracer())
    (event,) = _events()
    assert event["message"] == headline(report)
    assert event["level"] == "warning"
    assert event["logger"] == "async_trace.stall"
    assert event["fingerprint"] == ["async-trace-stall", f"{__name__}:handle"]
    assert event["tags"] == {"stall.kind": "blocking", "stall.source": f"{__name__}:handle"}
    context = event["contexts"]["async_trace"]
    assert context["task"] == "request"
    assert context["stall"] == {
        "duration": report.duration,
        "threshold": 0.1,
        "kind": "blocking",
        "source": f"{__name__}:handle",
        "ongoing": False,
        "suppressed": 0,
        "waiting_on": None,
        "waiting_for": [],
    }
    (thread,) = event["threads"]["values"]
    frames = [(f["function"], f["lineno"], f["in_app"]) for f in thread["stacktrace"]["frames"]]
    # Oldest first, as Sentry orders frames: the task's creation, then the blocking line.
    assert frames == [("main", line_of(run, "request"), True), ("handle", line_of(handle, "blocks"), True)]
