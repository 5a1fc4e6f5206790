"""Shared by the peer drivers (run inside each peer's own virtualenv, not Conveyor's)."""

import argparse
import os
import sys
import threading
import time


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=("worker", "produce"))
    p.add_argument("--url", required=True)
    p.add_argument("--queue", default="bench")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--payload", type=int, default=16)
    return p.parse_args()


def say(*words):
    print(*words, flush=True)


class Counter:
    """Counts handler runs; prints ``done <t>`` and ends the process at N."""

    def __init__(self, n):
        self.n = n
        self.count = 0
        self.lock = threading.Lock()

    def hit(self):
        with self.lock:
            self.count += 1
            if self.count == self.n:
                say("done", time.time())
                sys.stdout.flush()
                os._exit(0)


def produce_threaded(n, send, threads=8):
    """Call ``send()`` n times from a few threads (the peers' producer APIs are blocking)."""
    say("start", time.time())
    per = [n // threads] * threads
    per[0] += n - sum(per)
    workers = [threading.Thread(target=lambda k=k: [send() for _ in range(k)]) for k in per]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    say("end", time.time())
