"""Who awaits whom, and the grouped view for leak hunting: print_task_tree() and print_task_tree(group=True)."""

import asyncio

from async_trace import print_task_tree


async def fetch(url):
    await asyncio.sleep(3600)


async def crawl():
    first = asyncio.create_task(fetch("/a"), name="page-a")
    second = asyncio.create_task(fetch("/b"), name="page-b")
    await asyncio.gather(first, second)  # awaited by their creator: nothing to add


async def send_when_ready(report):
    await report


async def worker(queue):
    while True:
        await queue.get()


async def main():
    report = asyncio.create_task(fetch("/report"), name="report")
    asyncio.create_task(send_when_ready(report), name="mailer")  # awaits a task it did not create
    asyncio.create_task(crawl(), name="crawler")
    for _ in range(3):  # let every task reach its first await
        await asyncio.sleep(0)
    print_task_tree()

    queue = asyncio.Queue()
    for i in range(20):
        asyncio.create_task(worker(queue), name=f"worker-{i}")  # never given any work: a leak
    await asyncio.sleep(0)
    print()
    print_task_tree(group=True)

    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


asyncio.run(main())
