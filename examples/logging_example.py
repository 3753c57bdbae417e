"""Log records that know their async path: AsyncTraceFilter adds %(async_trace)s."""

import asyncio
import logging
import sys

from async_trace.logging import AsyncTraceFilter

handler = logging.StreamHandler(sys.stdout)
handler.addFilter(AsyncTraceFilter())
handler.setFormatter(logging.Formatter("%(levelname)s %(message)s [%(async_trace)s]"))
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
logger = logging.getLogger(__name__)


async def worker():
    logger.info("hello")


async def sub_task():
    await asyncio.create_task(worker())


async def main():
    await sub_task()


asyncio.run(main())
