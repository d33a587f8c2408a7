"""The worker side of the processing measurement, shared by every Python app.

Each handler calls ``done()``. The first call notes the time and the process's CPU time (all its
threads); the Nth pushes {"rate", "cpu_us"} over first-to-last completion to RESULT_KEY. So the
rate leaves out start-up, and the CPU is the worker process's own, whatever its framework forks.
Imports only the standard library and redis-py (arq's separate venv has an older redis-py).
"""

from __future__ import annotations

import json
import os
import threading
import time

import redis

RESULT_KEY = "bench:peers:result"


class Tally:
    def __init__(self, jobs: int, url: str) -> None:
        self.jobs = jobs
        self.url = url
        self.count = 0
        self.first = (0.0, 0.0)
        self.lock = threading.Lock()  # thread pools (dramatiq, celery) call done() concurrently

    @classmethod
    def from_env(cls) -> Tally:
        return cls(int(os.environ.get("BENCH_JOBS", "0")), os.environ.get("BENCH_REDIS_URL", ""))

    def done(self) -> None:
        with self.lock:
            self.count += 1
            if self.count == 1:
                self.first = (time.perf_counter(), time.process_time())
            if self.count != self.jobs:
                return
            wall = time.perf_counter() - self.first[0]
            cpu = time.process_time() - self.first[1]
        jobs = max(self.jobs - 1, 1)
        doc = {"rate": jobs / max(wall, 1e-9), "cpu_us": cpu * 1e6 / jobs, "pid": os.getpid()}
        with redis.Redis.from_url(self.url) as client:
            client.rpush(RESULT_KEY, json.dumps(doc))
