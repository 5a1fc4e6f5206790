"""arq: max_jobs 64 in one asyncio worker; 64 concurrent producer tasks."""

import asyncio
import sys
import time

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import Counter, parse, say

args = parse()
counter = Counter(args.n)


async def noop(ctx, payload):
    counter.hit()


async def main():
    settings = RedisSettings.from_dsn(args.url)
    if args.role == "worker":
        worker = Worker(
            functions=[noop],
            redis_settings=settings,
            queue_name=args.queue,
            max_jobs=64,
            poll_delay=0.01,
            keep_result=0,
            handle_signals=False,
        )
        say("ready")
        await worker.main()
    else:
        pool = await create_pool(settings, default_queue_name=args.queue)
        payload = {"v": "x" * args.payload}
        say("start", time.time())
        per = args.n // 64

        async def task(k):
            for _ in range(k):
                await pool.enqueue_job("noop", payload)

        counts = [per] * 64
        counts[0] += args.n - per * 64
        await asyncio.gather(*(task(k) for k in counts))
        say("end", time.time())
        await pool.aclose()


asyncio.run(main())
