"""The span processor's cost per span: starting and ending spans with and without it.

    python benchmarks/otel_span.py                  # 20,000 spans, median of 5 rounds
    python benchmarks/otel_span.py --spans 5000 --rounds 3

Needs opentelemetry-sdk (``pip install '.[otel]'`` in a clone). Spans start in a task
two task hops below the root (so the processor has an origin to record), on a tracer
provider with no exporter; ``with`` and ``without`` alternate round by round. Also
times ``on_start`` alone, called directly on one started span, and of that the SDK's
own ``span.set_attributes`` for the same four attributes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

import async_trace  # noqa: F401 - tracing on
from async_trace.otel import AsyncTraceSpanProcessor


def _provider(with_processor: bool) -> Any:
    provider = TracerProvider()
    if with_processor:
        provider.add_span_processor(AsyncTraceSpanProcessor())
    return provider


async def _spans(tracer: Any, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        tracer.start_span("op").end()
    return time.perf_counter() - start


async def _on_start(processor: AsyncTraceSpanProcessor, span: Any, count: int) -> float:
    on_start = processor.on_start
    start = time.perf_counter()
    for _ in range(count):
        on_start(span)
    return time.perf_counter() - start


async def _set_attributes(span: Any, attributes: dict[str, Any], count: int) -> float:
    set_attributes = span.set_attributes
    start = time.perf_counter()
    for _ in range(count):
        set_attributes(attributes)
    return time.perf_counter() - start


async def _nested(coro_fn: Any, *args: Any) -> float:
    async def inner() -> float:
        return float(await coro_fn(*args))

    async def outer() -> float:
        return await asyncio.create_task(inner())

    return await asyncio.create_task(outer())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    per: dict[str, list[float]] = {"without": [], "with": [], "on_start": [], "sdk": []}
    processor = AsyncTraceSpanProcessor()
    span = _provider(False).get_tracer("bench").start_span("probe")
    for _ in range(args.rounds):
        for label in ("without", "with"):
            tracer = _provider(label == "with").get_tracer("bench")
            seconds = asyncio.run(_nested(_spans, tracer, args.spans))
            per[label].append(seconds / args.spans * 1e6)
        seconds = asyncio.run(_nested(_on_start, processor, span, args.spans))
        per["on_start"].append(seconds / args.spans * 1e6)
        seconds = asyncio.run(_nested(_set_attributes, span, dict(span.attributes), args.spans))
        per["sdk"].append(seconds / args.spans * 1e6)
    without, with_ = statistics.median(per["without"]), statistics.median(per["with"])
    print(f"{args.spans} spans, median of {args.rounds} rounds (us per span)")
    print(f"  start+end without the processor: {without:.2f}")
    print(f"  start+end with the processor:    {with_:.2f}  (+{with_ - without:.2f})")
    print(f"  on_start alone:                  {statistics.median(per['on_start']):.2f}")
    print(f"    of which span.set_attributes:  {statistics.median(per['sdk']):.2f}  (the SDK's, for the 4 attributes)")


if __name__ == "__main__":
    main()
