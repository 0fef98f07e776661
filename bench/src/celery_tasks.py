"""A celery app for bench/servers.py: one task that sleeps, redis as broker and result backend.

The worker runs `celery -A celery_tasks worker` with this folder as its working directory; the
benchmark runs this file with the venv's python to send one task and wait for its result:
`python celery_tasks.py SECONDS TIMEOUT` prints one JSON line, the result's state and value (or
`lost` when none came within TIMEOUT seconds). BENCH_REDIS_URL names the redis server for both.
The task writes `slow task started s=N` to stderr when it begins, so the benchmark knows it is
in flight.
"""
import json
import os
import sys
import time

from celery import Celery

REDIS_URL = os.environ["BENCH_REDIS_URL"]
app = Celery("celery_tasks", broker=REDIS_URL, backend=REDIS_URL)
# One task at a time per child, so the one in flight is not held back in a prefetch buffer.
app.conf.worker_prefetch_multiplier = 1
app.conf.broker_connection_retry_on_startup = True


@app.task
def slow(seconds):
    print(f"slow task started s={seconds:g}", file=sys.stderr, flush=True)
    time.sleep(seconds)
    return f"slept {seconds:g}s"


def send_and_wait(seconds, timeout):
    result = slow.delay(seconds)
    print(json.dumps({"sent": result.id}), flush=True)
    try:
        value = result.get(timeout=timeout, propagate=False)
    except Exception as error:  # the celery.exceptions.TimeoutError of a lost task, among others
        return {"state": "lost", "detail": type(error).__name__}
    # A failed task's value is its exception: WorkerLostError for a pool child killed mid-task.
    detail = type(value).__name__ if isinstance(value, BaseException) else str(value)
    return {"state": result.state, "detail": detail}


if __name__ == "__main__":
    print(json.dumps(send_and_wait(float(sys.argv[1]), float(sys.argv[2]))), flush=True)
