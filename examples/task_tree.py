"""A small service's live tasks as a tree by creation parent: what `kill -USR1` shows under
``python -m async_trace --dump-signal USR1``, here printed from inside with print_task_tree()."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from async_trace import print_task_tree

in_query = threading.Event()
release = threading.Event()


def query_database(sql):
    in_query.set()
    release.wait()
    return []


async def handle(conn_id, pool):
    if conn_id == 1:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, query_database, "SELECT 1")
    await asyncio.sleep(3600)


async def accept_connections(pool):
    for conn_id in (1, 2):
        asyncio.create_task(handle(conn_id, pool), name=f"conn-{conn_id}")
    await asyncio.sleep(3600)


async def refresh_cache():
    while True:
        await asyncio.sleep(3600)


async def start_background_jobs():
    asyncio.create_task(refresh_cache(), name="cache-refresher")  # outlives its creator


async def main():
    with ThreadPoolExecutor(thread_name_prefix="db") as pool:
        asyncio.create_task(accept_connections(pool), name="server")
        asyncio.create_task(start_background_jobs(), name="startup")
        while not in_query.is_set():
            await asyncio.sleep(0.01)
        print_task_tree()

        release.set()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


asyncio.run(main())
