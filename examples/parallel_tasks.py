"""Several tasks running the same code: each trace says which one it is."""

import asyncio

from async_trace import collect_async_trace, print_async_trace


async def process_data(data):
    trace = collect_async_trace()
    print(f"--- {data} in {trace['current_task'].get_name()}")
    print_async_trace(trace)
    return data.upper()


async def worker(item):
    return await process_data(item)


async def main():
    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(worker(f"item-{i}"), name=f"worker-{i}"))
    print(await asyncio.gather(*tasks))


asyncio.run(main())
