"""Tracing across the hop into a process pool: the worker knows the async call that sent it work."""

import asyncio
import concurrent.futures
import multiprocessing
import os

from async_trace import format_trace


def crunch(parent_pid):
    """This runs in another process, and still shows where its call came from."""
    text = "".join(format_trace())
    # [PROCESS pid] names the process that made the call (this script: a new pid each run).
    print(text.replace(str(parent_pid), "PARENT"), end="", flush=True)
    return os.getpid() != parent_pid


async def worker(pool):
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, crunch, os.getpid())


async def main():
    context = multiprocessing.get_context("spawn")  # fork and forkserver work alike
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        print("in another process:", await asyncio.create_task(worker(pool), name="worker"))


if __name__ == "__main__":
    asyncio.run(main())
