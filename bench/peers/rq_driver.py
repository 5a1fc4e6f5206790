"""RQ: SimpleWorker (no fork per job, its fastest mode); 8 producer threads."""

import sys

from redis import Redis
from rq import Queue, SimpleWorker

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import Counter, parse, produce_threaded, say

args = parse()
counter = Counter(args.n)


def noop(payload):
    counter.hit()


if __name__ == "__main__":
    conn = Redis.from_url(args.url)
    q = Queue(args.queue, connection=conn)
    if args.role == "worker":
        say("ready")
        SimpleWorker([q], connection=conn).work(logging_level="WARNING")
    else:
        import rq_driver

        payload = {"v": "x" * args.payload}
        produce_threaded(args.n, lambda: q.enqueue(rq_driver.noop, payload))
