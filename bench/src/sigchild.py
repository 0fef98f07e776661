"""A Python child for the signal-latency benchmark: prints `ready`, then the CLOCK_MONOTONIC time
in nanoseconds at which each SIGUSR1 handler ran. SIGTERM ends it."""
import os
import signal
import time


def on_usr1(_number, _frame):
    os.write(1, b"%d\n" % time.clock_gettime_ns(time.CLOCK_MONOTONIC))


signal.signal(signal.SIGUSR1, on_usr1)
os.write(1, b"ready\n")
while True:
    signal.pause()
