"""Dramatiq: RedisBroker, one worker process with 8 threads; 8 producer threads."""

import sys
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import Counter, parse, produce_threaded, say

args = parse()
broker = RedisBroker(url=args.url)
dramatiq.set_broker(broker)
counter = Counter(args.n)


@dramatiq.actor(queue_name=args.queue, max_retries=0)
def noop(payload):
    counter.hit()


if __name__ == "__main__":
    if args.role == "worker":
        worker = dramatiq.Worker(broker, worker_threads=8)
        worker.start()
        say("ready")
        while True:
            time.sleep(1)
    else:
        payload = {"v": "x" * args.payload}
        produce_threaded(args.n, lambda: noop.send(payload))
