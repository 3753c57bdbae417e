"""Quick start: where did this task come from?"""

import asyncio

from async_trace import print_trace


async def worker():
    print_trace()  # Shows the async call stack!
    await asyncio.sleep(0)


async def main():
    await asyncio.create_task(worker())


asyncio.run(main())
