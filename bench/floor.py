"""pyinit's size and memory beside the floor of its own dependencies.

The floor is the smallest server pyinit's dependencies make: bench/ceiling, a tokio + hyper +
clap server that answers 200 ok, built like pyinit (static musl, pyinit's release profile). Each
pyinit binary given runs as it does in a pod: the health server on loopback and an HTTP readiness
probe of a stdlib app every second, with `sleep` as the app. For each, in every round and in a
rotating order: idle VmRSS once the first probes have run, then VmHWM after wrk has held 64
connections on `/readyz` (on the floor, on `/`) for a few seconds. The report gives medians over
rounds and each binary's ratio to the floor, and pyinit's own budget: a static binary of at most
1.75 MiB that idles under 1.75 MiB of VmRSS.

`--pyinit LABEL=PATH` (repeatable) compares builds in the same run, e.g. one built from an older
commit; without it the current static build is measured. Run it through `bash bench/run.sh floor`.
Loopback only, every wait bounded, the whole run too (--max-minutes); it reports, never fails CI.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

import bench
from bench import free_port, http_ok, machine, start_ceiling, start_health_app, status_kib, stop, wait_until

SETTLE_SECONDS = 3.0


def start_pyinit(path, app_port):
    port = free_port()
    process = subprocess.Popen(
        [path, "--allow-root", "--log-level", "warn", "--health-addr", f"127.0.0.1:{port}",
         "--readiness", f"http://127.0.0.1:{app_port}/healthz", "--readiness-period", "1s", "--",
         "/bin/sleep", "1000"],
        stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: http_ok(port), 20, f"{path}'s /readyz to answer 200")
    except BaseException:
        stop(process)
        raise
    return process, port


def wrk_for(port, path, seconds, connections):
    subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"],
                   capture_output=True, check=True, timeout=seconds + 30)


def measure(start, path, seconds, connections):
    """(idle VmRSS, VmHWM after the load), in KiB, of one fresh process."""
    process, port = start()
    try:
        # A few readiness periods: the idle loop, with its probe, in its steady state.
        time.sleep(SETTLE_SECONDS)
        idle = status_kib(process.pid, "VmRSS")
        wrk_for(port, path, seconds, connections)
        return idle, status_kib(process.pid, "VmHWM")
    finally:
        stop(process)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyinit", action="append", default=[], metavar="LABEL=PATH",
                        help="a pyinit binary to measure (repeatable) [default: the current static build]")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-minutes", type=float, default=15)
    args = parser.parse_args()

    def give_up(_number, _frame):
        raise TimeoutError(f"the benchmark ran longer than --max-minutes {args.max_minutes}")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(max(1, int(args.max_minutes * 60)))

    binaries = dict(spec.split("=", 1) for spec in args.pyinit) or {"pyinit": bench.PYINIT}
    names = ["floor"] + list(binaries)
    idle = {name: [] for name in names}
    loaded = {name: [] for name in names}
    app, app_port = start_health_app()
    started = time.monotonic()
    try:
        for round_number in range(args.rounds):
            print(f"round {round_number + 1}/{args.rounds} ({time.monotonic() - started:.0f}s)", file=sys.stderr,
                  flush=True)
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                if name == "floor":
                    value = measure(start_ceiling, "/", args.wrk_seconds, args.connections)
                else:
                    value = measure(lambda: start_pyinit(binaries[name], app_port), "/readyz",
                                    args.wrk_seconds, args.connections)
                idle[name].append(value[0])
                loaded[name].append(value[1])
    finally:
        stop(app)
        signal.alarm(0)

    sizes = {"floor": os.path.getsize(bench.CEILING)}
    sizes.update({name: os.path.getsize(path) for name, path in binaries.items()})
    med = lambda values: statistics.median(values)
    floor_idle, floor_loaded = med(idle["floor"]), med(loaded["floor"])
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d')}; {args.rounds} rounds in {(time.monotonic() - started) / 60:.1f} min; "
          f"medians over rounds; ratio = value / floor")
    print(f"pyinit: health server on loopback, HTTP readiness probe every 1 s; idle after {SETTLE_SECONDS:.0f} s, "
          f"then wrk {args.connections} connections for {args.wrk_seconds} s\n")
    print("| binary | size (bytes) | idle VmRSS (KiB) | idle ratio | VmHWM after load (KiB) | after-load ratio |")
    print("|---|---|---|---|---|---|")
    for name in names:
        print(f"| {name} | {sizes[name]} | {med(idle[name]):.0f} | {med(idle[name]) / floor_idle:.2f} | "
              f"{med(loaded[name]):.0f} | {med(loaded[name]) / floor_loaded:.2f} |")
    print("\nbudget:\n")
    print("| binary | static binary ≤ 1.75 MiB | idle VmRSS ≤ 1.75 MiB |")
    print("|---|---|---|")
    for name in binaries:
        marks = [sizes[name] <= 1792 * 1024, med(idle[name]) <= 1792]
        print(f"| {name} | " + " | ".join("met" if mark else "missed" for mark in marks) + " |")


if __name__ == "__main__":
    main()
