"""Sentry events that know where the failing task came from (captured in memory, no network)."""

import asyncio

import sentry_sdk
from sentry_sdk.transport import Transport

from async_trace.sentry import AsyncTraceIntegration

events = []


class KeepEvents(Transport):
    def capture_envelope(self, envelope):
        events.extend(item.payload.json for item in envelope.items if item.type == "event")


sentry_sdk.init(
    dsn="https://public@sentry.example/1",
    transport=KeepEvents,
    integrations=[AsyncTraceIntegration()],
)


async def parse(record):
    raise ValueError(f"bad record: {record!r}")


async def handle(record):
    task = asyncio.create_task(parse(record), name=f"parse-{record}")
    return await task


async def main():
    try:
        await asyncio.create_task(handle("x"), name="handle-x")
    except ValueError:
        sentry_sdk.capture_exception()


asyncio.run(main())
sentry_sdk.flush()
(event,) = events
context = event["contexts"]["async_trace"]
print("contexts['async_trace']:")
print(f"  path: {context['path']}")
print(f"  task: {context['task']}, in_executor: {context['in_executor']}")
for frame in context["frames"]:
    print(f"  frame: {frame['name']} line {frame['line']}, created {frame['task']['name']}")
print("stacktrace, oldest first:")
for frame in event["exception"]["values"][-1]["stacktrace"]["frames"]:
    print(f"  {frame['function']}() line {frame['lineno']}, in_app={frame['in_app']}: {frame['context_line'].strip()}")
