"""A Python child for the signal-latency benchmark: prints `ready`, then the CLOCK_MONOTONIC time
in nanoseconds at which it took each SIGUSR1. SIGTERM ends it.

SIGUSR1 is blocked and taken with sigwaitinfo: a handler and `signal.pause()` would race (a
signal that lands after Python checked for pending signals and before pause() is entered leaves
the child asleep for good, and the benchmark waiting on its answer)."""
import os
import signal
import time

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
os.write(1, b"ready\n")
while True:
    signal.sigwaitinfo({signal.SIGUSR1})
    os.write(1, b"%d\n" % time.clock_gettime_ns(time.CLOCK_MONOTONIC))
