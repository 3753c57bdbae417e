"""A crash three tasks deep: the traceback says where it was raised, async_trace where its task came from.

Add --crash to let the exception end the program and see the whole report:
``python -m async_trace examples/crash_example.py --crash``.
"""

import asyncio
import sys

from async_trace import exception_trace, print_async_trace


async def parse(record):
    if not record.isdigit():
        raise ValueError(f"bad record: {record!r}")
    return int(record)


async def handle(record):
    task = asyncio.create_task(parse(record), name=f"parse-{record}")
    return await task


async def ingest(records):
    tasks = []
    for record in records:
        tasks.append(asyncio.create_task(handle(record), name=f"handle-{record}"))
    return await asyncio.gather(*tasks)


async def main():
    task = asyncio.create_task(ingest(["1", "2", "x"]), name="ingest")
    try:
        print(await task)
    except ValueError as exc:
        if "--crash" in sys.argv:
            raise
        print(f"{type(exc).__name__}: {exc}")
        print("raised in a task created at:")
        print_async_trace(exception_trace(exc))


asyncio.run(main())
