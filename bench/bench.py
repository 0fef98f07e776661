"""Side-by-side benchmarks of pyinit against tini, tini-static, dumb-init and catatonit.

Every measurement runs for every init in the same run, interleaved, for several rounds; the
report gives medians and ratios to tini-static (absolute times on a shared machine are noise).
Run it through bench/run.sh, which installs the peers and builds what is measured.
"""
import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "target", "bench")
PYINIT = os.path.join(ROOT, "target", "x86_64-unknown-linux-musl", "release", "pyinit")
CEILING = os.path.join(ROOT, "target", "bench-ceiling", "x86_64-unknown-linux-musl", "release", "hyper-ceiling")
PYTHON = "/usr/bin/python3"

# How each init is asked to run a command. pyinit runs without a health server here unless a
# measurement says otherwise, and as root (the benchmark measures the init, not the drop).
INITS = {
    "tini-static": ["/usr/bin/tini-static", "-s", "--"],
    "tini": ["/usr/bin/tini", "-s", "--"],
    "dumb-init": ["/usr/bin/dumb-init", "--"],
    "catatonit": ["/usr/bin/catatonit", "--"],
    "pyinit": [PYINIT, "--allow-root", "--health-addr", "off", "--log-level", "warn", "--"],
}
BASELINE = "tini-static"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def wait_for_line(stream, needle, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"stream closed before {needle!r}")
        if needle in line:
            return line
    raise RuntimeError(f"no {needle!r} within {timeout}s")


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.005)
    raise RuntimeError(f"timed out waiting for {what}")


def http_ok(port, path="/readyz"):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return connection.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


# ---- measurements: each returns one number for one init and one round ----

def startup_ms(prefix):
    start = time.perf_counter_ns()
    subprocess.run(prefix + ["/bin/true"], check=True, stderr=subprocess.DEVNULL)
    return (time.perf_counter_ns() - start) / 1e6


def startup_batch_ms(prefix, runs):
    return statistics.median(startup_ms(prefix) for _ in range(runs))


PYINIT_WITH_HEALTH = [PYINIT, "--allow-root", "--log-level", "warn", "--health-addr", "127.0.0.1:0", "--"]


def idle_rss_kib(init):
    child = subprocess.Popen(INITS[init] + ["/bin/sleep", "1000"], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: any(True for _ in children(child.pid)), 5, "the sleep child")
        time.sleep(0.3)  # let the init settle into its idle loop before reading its memory
        return status_kib(child.pid, "VmRSS")
    finally:
        child.terminate()
        child.wait(10)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(p) for p in listing.read().split()]
    except OSError:
        return []


def signal_latencies_us(init, child_argv, count):
    process = subprocess.Popen(INITS[init] + child_argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, bufsize=1)
    latencies = []
    try:
        wait_for_line(process.stdout, "ready", 10)
        for _ in range(count):
            sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            os.kill(process.pid, signal.SIGUSR1)
            seen = int(process.stdout.readline())
            latencies.append((seen - sent) / 1000)
    finally:
        process.terminate()
        process.wait(10)
    return latencies


def reap_orphans(init, count):
    output = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc"] + INITS[init]
                            + [os.path.join(BUILD, "orphans"), str(count)],
                            check=True, capture_output=True, text=True).stdout.split()
    return int(output[0]) / 1e6, int(output[1])


def shutdown_ms(init):
    process = subprocess.Popen(INITS[init] + [os.path.join(BUILD, "sigchild")], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    wait_for_line(process.stdout, "ready", 10)
    start = time.perf_counter_ns()
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    return (time.perf_counter_ns() - start) / 1e6


# ---- pyinit's health server ----

def start_health_app():
    """A stdlib HTTP app for the readiness probe to ask."""
    port = free_port()
    app = subprocess.Popen([PYTHON, os.path.join(ROOT, "examples", "app", "app.py")],
                           env={**os.environ, "PORT": str(port)}, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    wait_for_line(app.stdout, "ready", 10)
    return app, port


def pyinit_with_health(app_port, child):
    health_port = free_port()
    argv = [PYINIT, "--allow-root", "--log-level", "warn", "--health-addr", f"127.0.0.1:{health_port}",
            "--readiness", f"http://127.0.0.1:{app_port}/healthz", "--readiness-period", "1s", "--"] + child
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_until(lambda: http_ok(health_port), 20, "pyinit's /readyz to answer 200")
    return process, health_port


def wrk(port, path, seconds, connections=64):
    output = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                             f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    rps = float(next(line for line in output.splitlines() if line.startswith("Requests/sec")).split()[1])
    p99 = next(line for line in output.splitlines() if line.strip().startswith("99%")).split()[1]
    return rps, to_ms(p99)


def to_ms(text):
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def start_ceiling():
    port = free_port()
    process = subprocess.Popen([CEILING, f"127.0.0.1:{port}"])
    wait_until(lambda: http_ok(port), 10, "the hyper ceiling server")
    return process, port


def health_round(seconds):
    app, app_port = start_health_app()
    try:
        pyinit, health_port = pyinit_with_health(app_port, ["/bin/sleep", "1000"])
        try:
            idle_rss = status_kib(pyinit.pid, "VmRSS")
            rps, p99 = wrk(health_port, "/readyz", seconds)
            hwm = status_kib(pyinit.pid, "VmHWM")
        finally:
            pyinit.terminate()
            pyinit.wait(30)
        ceiling, ceiling_port = start_ceiling()
        try:
            ceiling_rps, ceiling_p99 = wrk(ceiling_port, "/readyz", seconds)
        finally:
            ceiling.terminate()
            ceiling.wait(10)
        quiet = term_to_exit_ms(app_port, flood=False)
        flooded = term_to_exit_ms(app_port, flood=True)
    finally:
        app.terminate()
        app.wait(10)
    return {"idle_rss_kib": idle_rss, "rps": rps, "p99_ms": p99, "hwm_kib": hwm, "ceiling_rps": ceiling_rps,
            "ceiling_p99_ms": ceiling_p99, "term_quiet_ms": quiet, "term_flood_ms": flooded}


def term_to_exit_ms(app_port, flood):
    pyinit, health_port = pyinit_with_health(app_port, [os.path.join(BUILD, "sigchild")])
    load = None
    try:
        if flood:
            load = subprocess.Popen(["wrk", "-t2", "-c128", "-d10s", f"http://127.0.0.1:{health_port}/readyz"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # let the flood reach its steady state before the signal
        start = time.perf_counter_ns()
        pyinit.send_signal(signal.SIGTERM)
        pyinit.wait(30)
        return (time.perf_counter_ns() - start) / 1e6
    finally:
        if load:
            load.terminate()
            load.wait(10)


# ---- report ----

def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--signals", type=int, default=500)
    parser.add_argument("--orphans", type=int, default=10000)
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()

    names = list(INITS)
    results = {name: {"startup_ms": [], "idle_rss_kib": [], "shutdown_ms": [], "reap_ms": [], "zombies_left": [],
                      "signal_c_us": [], "signal_py_us": []} for name in names}
    health = []
    for round_number in range(args.rounds):
        print(f"round {round_number + 1}/{args.rounds}", file=sys.stderr, flush=True)
        # Rotate the order every round so that no init always runs first or last.
        order = names[round_number % len(names):] + names[: round_number % len(names)]
        for name in order:
            entry = results[name]
            entry["startup_ms"].append(startup_batch_ms(INITS[name], 20))
            entry["idle_rss_kib"].append(idle_rss_kib(name))
            entry["shutdown_ms"].append(shutdown_ms(name))
            elapsed, left = reap_orphans(name, args.orphans)
            entry["reap_ms"].append(elapsed)
            entry["zombies_left"].append(left)
            entry["signal_c_us"].extend(signal_latencies_us(name, [os.path.join(BUILD, "sigchild")], args.signals))
            entry["signal_py_us"].extend(signal_latencies_us(name, [PYTHON, os.path.join(HERE, "src", "sigchild.py")],
                                                             args.signals // 5))
        health.append(health_round(args.wrk_seconds))
        health[-1]["startup_health_ms"] = startup_batch_ms(PYINIT_WITH_HEALTH, 20)

    size = {name: os.path.getsize(os.path.realpath(INITS[name][0])) for name in names}
    report(results, health, size, args)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"inits": results, "health": health, "size": size}, out, indent=1)


def report(results, health, size, args):
    rows = [
        ("binary size (KiB)", lambda n: size[n] / 1024),
        ("start-up, INIT -- /bin/true (ms)", lambda n: statistics.median(results[n]["startup_ms"])),
        ("idle VmRSS (KiB)", lambda n: statistics.median(results[n]["idle_rss_kib"])),
        ("shutdown, SIGTERM to exit (ms)", lambda n: statistics.median(results[n]["shutdown_ms"])),
        (f"reap {args.orphans} orphans as PID 1 (ms)", lambda n: statistics.median(results[n]["reap_ms"])),
        ("zombies left after", lambda n: max(results[n]["zombies_left"])),
        ("signal latency, C child p50 (us)", lambda n: percentile(results[n]["signal_c_us"], 0.5)),
        ("signal latency, C child p99 (us)", lambda n: percentile(results[n]["signal_c_us"], 0.99)),
        ("signal latency, Python child p50 (us)", lambda n: percentile(results[n]["signal_py_us"], 0.5)),
        ("signal latency, Python child p99 (us)", lambda n: percentile(results[n]["signal_py_us"], 0.99)),
    ]
    names = list(results)
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, kernel {platform.release()}")
    print(f"rounds: {args.rounds}; medians over rounds; ratio = value / {BASELINE}\n")
    header = f"| measurement | " + " | ".join(names) + " | pyinit ratio |"
    print(header)
    print("|" + "---|" * (len(names) + 2))
    for label, value in rows:
        values = {name: value(name) for name in names}
        base = values[BASELINE]
        ratio = values["pyinit"] / base if base else float("nan")
        print(f"| {label} | " + " | ".join(f"{values[n]:.1f}" for n in names) + f" | {ratio:.2f} |")
    print()
    median = lambda key: statistics.median(h[key] for h in health)
    print("pyinit's health server (medians over rounds):\n")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| start-up with health server on (ms) | {median('startup_health_ms'):.1f} |")
    print(f"| idle VmRSS with health server and an HTTP readiness probe (KiB) | {median('idle_rss_kib'):.0f} |")
    print(f"| VmHWM after the /readyz load (KiB) | {median('hwm_kib'):.0f} |")
    print(f"| /readyz requests/s (wrk, 64 connections) | {median('rps'):.0f} |")
    print(f"| minimal hyper server requests/s (ceiling) | {median('ceiling_rps'):.0f} |")
    print(f"| /readyz throughput / ceiling | {median('rps') / median('ceiling_rps'):.2f} |")
    print(f"| /readyz p99 latency (ms) | {median('p99_ms'):.2f} |")
    print(f"| ceiling p99 latency (ms) | {median('ceiling_p99_ms'):.2f} |")
    print(f"| SIGTERM to exit, quiet (ms) | {median('term_quiet_ms'):.1f} |")
    print(f"| SIGTERM to exit, under /readyz flood (ms) | {median('term_flood_ms'):.1f} |")


if __name__ == "__main__":
    main()
