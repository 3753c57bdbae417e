"""OpenTelemetry spans that know where their task came from."""

import asyncio
import os

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from async_trace.otel import AsyncTraceSpanProcessor

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(AsyncTraceSpanProcessor())
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("example")


def resize(name):
    with tracer.start_as_current_span("resize"):
        return name.upper()


async def fetch(name):
    with tracer.start_as_current_span("fetch"):
        return await asyncio.to_thread(resize, name)


async def parse(record):
    raise ValueError(f"bad record: {record!r}")


async def handle(record):
    with tracer.start_as_current_span("handle"):
        await asyncio.create_task(parse(record), name="parse")


async def main():
    await asyncio.create_task(fetch("a.png"), name="fetch")
    try:
        await asyncio.create_task(handle("x"), name="handle")
    except ValueError as exc:
        print(f"handle failed: {exc}")


asyncio.run(main())
for span in exporter.get_finished_spans():
    attributes = dict(span.attributes)
    print(f"{span.name}:")
    for key, value in attributes.items():
        print(f"  {key} = {os.path.basename(value) if key == 'code.file.path' else value}")
    for event in span.events:
        print(f"  event {event.name!r}: {event.attributes['exception.type']}, async_trace.chain =")
        print(f"    {event.attributes['async_trace.chain']}")
