"""Every way of starting a task leads back to the line that started it."""

import asyncio

from async_trace import print_trace


async def leaf(label):
    print(f"--- {label}")
    print_trace()


async def via_gather():
    await asyncio.gather(leaf("gather"))


async def via_ensure_future():
    await asyncio.ensure_future(leaf("ensure_future"))


async def via_loop():
    loop = asyncio.get_running_loop()
    await loop.create_task(leaf("loop.create_task"))


async def via_shield():
    await asyncio.shield(leaf("shield"))


async def main():
    await via_gather()
    await via_ensure_future()
    await via_loop()
    await via_shield()


asyncio.run(main())
