"""Tracing across the hop into a thread pool: run_in_executor and to_thread."""

import asyncio
import concurrent.futures

from async_trace import collect_async_trace, print_trace


def blocking_work():
    """This runs in a thread pool, but we can still trace it!"""
    print_trace()  # Shows the async call that led here!
    return "done"


def report_thread():
    trace = collect_async_trace()
    print(f"in_executor={trace['in_executor']} current_task={trace['current_task']}")


async def worker():
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, blocking_work)


async def with_own_pool():
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        await asyncio.get_running_loop().run_in_executor(pool, blocking_work)


async def main():
    await worker()
    print("--- asyncio.to_thread")
    await asyncio.to_thread(blocking_work)
    print("--- an explicit ThreadPoolExecutor, in a child task")
    await asyncio.create_task(with_own_pool())
    await asyncio.to_thread(report_thread)


asyncio.run(main())
