"""Celery: Redis broker, threads pool with 8 threads, prefetch 16; 8 producer threads."""

import sys

from celery import Celery

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import Counter, parse, produce_threaded, say

args = parse()
app = Celery("bench", broker=args.url)
app.conf.update(
    task_default_queue=args.queue,
    task_ignore_result=True,
    worker_prefetch_multiplier=16,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    broker_connection_retry_on_startup=True,
)
counter = Counter(args.n)


@app.task(name="noop")
def noop(payload):
    counter.hit()


if __name__ == "__main__":
    if args.role == "worker":
        say("ready")
        app.worker_main(
            [
                "worker",
                "-P",
                "threads",
                "-c",
                "8",
                "-l",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-Q",
                args.queue,
            ]
        )
    else:
        payload = {"v": "x" * args.payload}
        produce_threaded(args.n, lambda: noop.delay(payload))
