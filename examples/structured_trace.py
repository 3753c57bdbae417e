"""The trace as data: frames innermost first, with the tasks created at each boundary."""

import asyncio

from async_trace import collect_async_trace


async def worker():
    trace_data = collect_async_trace()

    print(f"Current task: {trace_data['current_task'].get_name()}")
    print(f"Total frames: {len(trace_data['frames'])}")

    for frame in trace_data["frames"]:
        print(f"{frame['name']} at line {frame['line']}")
        if frame["task"]:
            print(f"  → Creates task: {frame['task'].get_name()}")


async def main():
    await asyncio.create_task(worker(), name="worker")


asyncio.run(main())
