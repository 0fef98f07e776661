"""Side-by-side benchmarks of pyinit against tini, tini-static, dumb-init and catatonit.

Every measurement runs for every init in the same run, interleaved (the order rotates each
round), for several rounds; the report gives medians and ratios to tini-static, because absolute
times on a shared machine are noise. pyinit is measured twice: bare (`--health-addr off`) and as
it runs in a pod (`pyinit+health`: the health server on loopback and one HTTP readiness probe
every second against a stdlib app). Then the health server alone: idle and peak memory, `/readyz`
under wrk beside a minimal hyper server (the ceiling), and SIGTERM to exit while wrk floods it.

Run it through bench/run.sh, which installs the peers and builds what is measured. Everything
stays on this machine (loopback only), every wait has a deadline and the whole run has one too
(--max-minutes): it reports, it never hangs and never fails CI.
"""
import argparse
import contextlib
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
TARGET = os.environ.get("PYINIT_BENCH_TARGET_DIR", os.path.join(ROOT, "target"))
BUILD = os.path.join(TARGET, "bench")
PYINIT = os.path.join(TARGET, "x86_64-unknown-linux-musl", "release", "pyinit")
CEILING = os.path.join(TARGET, "bench-ceiling", "x86_64-unknown-linux-musl", "release", "hyper-ceiling")
PYTHON = "/usr/bin/python3"
SIGCHILD = os.path.join(BUILD, "sigchild")
ORPHANS = os.path.join(BUILD, "orphans")

BASELINE = "tini-static"
NAMES = ["tini-static", "tini", "dumb-init", "catatonit", "pyinit", "pyinit+health"]
PYINITS = ["pyinit", "pyinit+health"]

# The port of the stdlib app that pyinit+health's readiness probe asks; set in main().
APP_PORT = None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def init_argv(name):
    """How each init is asked to run a command, and the health port it answers on (or None).

    pyinit runs as root with --allow-root: the benchmark measures the init, not the drop."""
    if name == "tini-static":
        return ["/usr/bin/tini-static", "-s", "--"], None
    if name == "tini":
        return ["/usr/bin/tini", "-s", "--"], None
    if name == "dumb-init":
        return ["/usr/bin/dumb-init", "--"], None
    if name == "catatonit":
        return ["/usr/bin/catatonit", "--"], None
    if name == "pyinit":
        return [PYINIT, "--allow-root", "--log-level", "warn", "--health-addr", "off", "--"], None
    if name == "pyinit+health":
        port = free_port()
        return [PYINIT, "--allow-root", "--log-level", "warn", "--health-addr", f"127.0.0.1:{port}",
                "--readiness", f"http://127.0.0.1:{APP_PORT}/healthz", "--readiness-period", "1s", "--"], port
    raise ValueError(name)


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(p) for p in listing.read().split()]
    except OSError:
        return []


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


def stop(process, timeout=10):
    """Ends a process the benchmark started: SIGTERM, then SIGKILL after `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@contextlib.contextmanager
def prompt_observer():
    """Raises this process to SCHED_FIFO while it times an exit, so that its own wake-up is not
    what is measured: with wrk keeping both CPUs busy, a normal-priority waiter can take
    milliseconds to run again after the init has exited. Only this process changes (children
    started earlier keep their policy), and only for the timed wait."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        raised = True
    except (OSError, AttributeError):
        raised = False
    try:
        yield
    finally:
        if raised:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def start_init(name, child, **popen):
    """Starts an init with a child; returns the process once the child runs (and, for
    pyinit+health, once /readyz answers 200, i.e. the first probe has succeeded)."""
    argv, port = init_argv(name)
    process = subprocess.Popen(argv + child, stderr=subprocess.DEVNULL, **popen)
    try:
        wait_until(lambda: children(process.pid), 10, f"{name}'s child")
        if port:
            wait_until(lambda: http_ok(port), 20, f"{name}'s /readyz to answer 200")
    except BaseException:
        stop(process)
        raise
    return process, port


# ---- measurements: each returns one number (or a list) for one init and one round ----

def wait_exited(process):
    """Waits in one blocking waitpid. A wait with a timeout would poll with growing sleeps
    (0.5, 1, 2, 4 ms...) and time the polling instead of the exit; --max-minutes bounds this."""
    return process.wait()


def startup_ms(name, runs):
    """Median wall time of `INIT -- /bin/true` over `runs` runs."""
    times = []
    for _ in range(runs):
        argv, _port = init_argv(name)
        start = time.perf_counter_ns()
        code = wait_exited(subprocess.Popen(argv + ["/bin/true"], stderr=subprocess.DEVNULL))
        times.append((time.perf_counter_ns() - start) / 1e6)
        if code != 0:
            raise RuntimeError(f"{name} -- /bin/true exited {code}")
    return statistics.median(times)


def idle_rss_kib(name):
    process, _port = start_init(name, ["/bin/sleep", "1000"])
    try:
        time.sleep(0.3)  # let the init settle into its idle loop before reading its memory
        return status_kib(process.pid, "VmRSS")
    finally:
        stop(process)


def signal_latencies_us(name, child_argv, count, under_flood=False):
    """SIGUSR1 to the init, until the child's handler runs: the child prints the handler's
    CLOCK_MONOTONIC time, compared with the time just before the kill. With `under_flood`, wrk
    floods the init's /readyz meanwhile and the signals are 2 ms apart."""
    argv, port = init_argv(name)
    process = subprocess.Popen(argv + child_argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               bufsize=1)
    latencies = []
    try:
        wait_for_line(process.stdout, "ready", 10)
        if port:
            wait_until(lambda: http_ok(port), 20, f"{name}'s /readyz to answer 200")
        with flood(port) if under_flood else contextlib.nullcontext():
            for _ in range(count):
                sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                os.kill(process.pid, signal.SIGUSR1)
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError(f"{name}'s child stopped answering SIGUSR1")
                latencies.append((int(line) - sent) / 1000)
                if under_flood:
                    time.sleep(0.002)
    finally:
        stop(process)
    return latencies


def reap_orphans(name, count):
    """The init as PID 1 of a fresh PID namespace; its child makes `count` orphans and reports
    the time until none is left a zombie, and how many still are after 30 s."""
    argv, _port = init_argv(name)
    output = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc"] + argv + [ORPHANS, str(count)],
                            check=True, capture_output=True, text=True, timeout=120).stdout.split()
    return int(output[0]) / 1e6, int(output[1])


def term_to_exit_ms(process):
    with prompt_observer():
        start = time.perf_counter_ns()
        process.send_signal(signal.SIGTERM)
        wait_exited(process)
        return (time.perf_counter_ns() - start) / 1e6


def shutdown_ms(name):
    """SIGTERM to the init until it has exited; the child dies of the forwarded SIGTERM at once."""
    argv, port = init_argv(name)
    process = subprocess.Popen(argv + [SIGCHILD], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_for_line(process.stdout, "ready", 10)
        if port:
            wait_until(lambda: http_ok(port), 20, f"{name}'s /readyz to answer 200")
        return term_to_exit_ms(process)
    finally:
        stop(process)


# ---- pyinit's health server ----

def start_health_app():
    """The stdlib HTTP app that pyinit+health's readiness probe asks."""
    port = free_port()
    app = subprocess.Popen([PYTHON, os.path.join(ROOT, "examples", "app", "app.py")],
                           env={**os.environ, "PORT": str(port)}, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    wait_for_line(app.stdout, "ready", 10)
    return app, port


def wrk(port, seconds, connections=64):
    output = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                             f"http://127.0.0.1:{port}/readyz"], capture_output=True, text=True, check=True,
                            timeout=seconds + 30).stdout
    rps = float(next(line for line in output.splitlines() if line.startswith("Requests/sec")).split()[1])
    p99 = next(line for line in output.splitlines() if line.strip().startswith("99%")).split()[1]
    return rps, to_ms(p99)


def to_ms(text):
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


@contextlib.contextmanager
def flood(port):
    """wrk at 128 connections on /readyz, for at most 15 s, in its steady state when entered."""
    load = subprocess.Popen(["wrk", "-t2", "-c128", "-d15s", f"http://127.0.0.1:{port}/readyz"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        yield
    finally:
        stop(load)


def start_ceiling():
    port = free_port()
    process = subprocess.Popen([CEILING, f"127.0.0.1:{port}"])
    try:
        wait_until(lambda: http_ok(port), 10, "the hyper ceiling server")
    except BaseException:
        stop(process)
        raise
    return process, port


def health_round(seconds, exits):
    """One round of the health measurements; the exit measurements alternate quiet, flood and
    control (tini-static's shutdown while wrk floods the ceiling: the same load on the machine,
    none of it on the init)."""
    result = {}
    pyinit, port = start_init("pyinit+health", ["/bin/sleep", "1000"])
    try:
        time.sleep(0.3)
        result["idle_hwm_kib"] = status_kib(pyinit.pid, "VmHWM")
        result["rps"], result["p99_ms"] = wrk(port, seconds)
        result["hwm_kib"] = status_kib(pyinit.pid, "VmHWM")
    finally:
        stop(pyinit)
    ceiling, ceiling_port = start_ceiling()
    try:
        result["ceiling_rps"], result["ceiling_p99_ms"] = wrk(ceiling_port, seconds)
        result["ceiling_hwm_kib"] = status_kib(ceiling.pid, "VmHWM")
        quiet, flooded, control = [], [], []
        for _ in range(exits):
            quiet.append(shutdown_ms("pyinit+health"))
            pyinit, port = start_init("pyinit+health", [SIGCHILD], stdout=subprocess.DEVNULL)
            try:
                with flood(port):
                    flooded.append(term_to_exit_ms(pyinit))
            finally:
                stop(pyinit)
            with flood(ceiling_port):
                control.append(shutdown_ms(BASELINE))
    finally:
        stop(ceiling)
    result["signal_flood_us"] = signal_latencies_us("pyinit+health", [SIGCHILD], 300, under_flood=True)
    result["term_quiet_ms"] = statistics.median(quiet)
    result["term_flood_ms"] = statistics.median(flooded)
    result["term_control_ms"] = statistics.median(control)
    return result


# ---- report ----

def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def machine():
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, {platform.machine()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--signals", type=int, default=500, help="SIGUSR1s per round to the C child (1/5 as many to Python)")
    parser.add_argument("--orphans", type=int, default=10000)
    parser.add_argument("--startups", type=int, default=20, help="start-ups per round, of which the median counts")
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--exits", type=int, default=3, help="SIGTERM-to-exit runs per round, quiet and flooded")
    parser.add_argument("--max-minutes", type=float, default=45, help="give up (exit 1) after this long")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()

    def give_up(_number, _frame):
        raise TimeoutError(f"the benchmark ran longer than --max-minutes {args.max_minutes}")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(max(1, int(args.max_minutes * 60)))

    global APP_PORT
    app, APP_PORT = start_health_app()
    results = {name: {"startup_ms": [], "idle_rss_kib": [], "shutdown_ms": [], "reap_ms": [], "zombies_left": [],
                      "signal_c_us": [], "signal_py_us": []} for name in NAMES}
    health = []
    started = time.monotonic()
    try:
        for round_number in range(args.rounds):
            print(f"round {round_number + 1}/{args.rounds} ({time.monotonic() - started:.0f}s)", file=sys.stderr,
                  flush=True)
            # Rotate the order every round so that no init always runs first or last.
            shift = round_number % len(NAMES)
            for name in NAMES[shift:] + NAMES[:shift]:
                entry = results[name]
                entry["startup_ms"].append(startup_ms(name, args.startups))
                entry["idle_rss_kib"].append(idle_rss_kib(name))
                entry["shutdown_ms"].append(shutdown_ms(name))
                elapsed, left = reap_orphans(name, args.orphans)
                entry["reap_ms"].append(elapsed)
                entry["zombies_left"].append(left)
                entry["signal_c_us"].extend(signal_latencies_us(name, [SIGCHILD], args.signals))
                entry["signal_py_us"].extend(signal_latencies_us(
                    name, [PYTHON, os.path.join(HERE, "src", "sigchild.py")], max(1, args.signals // 5)))
            health.append(health_round(args.wrk_seconds, args.exits))
    finally:
        stop(app)
        signal.alarm(0)

    size = {name: os.path.getsize(os.path.realpath(init_argv(name)[0][0])) for name in NAMES}
    report(results, health, size, args, time.monotonic() - started)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": machine(), "inits": results, "health": health, "size": size}, out, indent=1)


def report(results, health, size, args, seconds):
    med = lambda name, key: statistics.median(results[name][key])
    rows = [
        ("binary size (KiB)", lambda n: size[n] / 1024),
        ("start-up, `INIT -- /bin/true` (ms)", lambda n: med(n, "startup_ms")),
        ("idle VmRSS (KiB)", lambda n: med(n, "idle_rss_kib")),
        ("shutdown, SIGTERM to exit (ms)", lambda n: med(n, "shutdown_ms")),
        (f"reap {args.orphans} orphans as PID 1 (ms)", lambda n: med(n, "reap_ms")),
        ("zombies left after (max)", lambda n: max(results[n]["zombies_left"])),
        ("signal latency, C child, p50 (µs)", lambda n: percentile(results[n]["signal_c_us"], 0.5)),
        ("signal latency, C child, p99 (µs)", lambda n: percentile(results[n]["signal_c_us"], 0.99)),
        ("signal latency, Python child, p50 (µs)", lambda n: percentile(results[n]["signal_py_us"], 0.5)),
        ("signal latency, Python child, p99 (µs)", lambda n: percentile(results[n]["signal_py_us"], 0.99)),
    ]
    hmed = lambda key: statistics.median(h[key] for h in health)
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d')}; {args.rounds} rounds in {seconds / 60:.1f} min; medians over rounds; "
          f"ratio = value / {BASELINE}")
    print(f"pyinit: --health-addr off; pyinit+health: health server on loopback and an HTTP readiness probe every 1 s\n")
    print("| measurement | " + " | ".join(NAMES) + " | pyinit ratio | pyinit+health ratio |")
    print("|---" * (len(NAMES) + 3) + "|")
    values = {}
    for label, value in rows:
        values[label] = {name: value(name) for name in NAMES}
        base = values[label][BASELINE]
        ratios = " | ".join(f"{values[label][n] / base:.2f}" if base else "-" for n in PYINITS)
        cells = " | ".join(f"{values[label][n]:.0f}" if values[label][n] >= 100 or label.startswith("zombies")
                           else f"{values[label][n]:.1f}" for n in NAMES)
        print(f"| {label} | {cells} | {ratios} |")

    print("\npyinit+health's health server (medians over rounds):\n")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| VmHWM idle, before any load (KiB) | {hmed('idle_hwm_kib'):.0f} |")
    print(f"| VmHWM after {args.wrk_seconds} s of wrk on /readyz, 64 connections (KiB) | {hmed('hwm_kib'):.0f} |")
    print(f"| /readyz requests/s | {hmed('rps'):.0f} |")
    print(f"| minimal hyper server (ceiling) requests/s | {hmed('ceiling_rps'):.0f} |")
    print(f"| /readyz throughput / ceiling | {hmed('rps') / hmed('ceiling_rps'):.2f} |")
    print(f"| /readyz p99 latency (ms) | {hmed('p99_ms'):.2f} |")
    print(f"| ceiling p99 latency (ms) | {hmed('ceiling_p99_ms'):.2f} |")
    print(f"| ceiling VmHWM after the same load (KiB) | {hmed('ceiling_hwm_kib'):.0f} |")
    flooded = [latency for h in health for latency in h["signal_flood_us"]]
    print(f"| signal latency to the C child while wrk floods /readyz, p50 / p99 (µs) | "
          f"{percentile(flooded, 0.5):.0f} / {percentile(flooded, 0.99):.0f} |")
    print(f"| SIGTERM to exit, quiet (ms) | {hmed('term_quiet_ms'):.2f} |")
    print(f"| SIGTERM to exit, wrk flooding /readyz with 128 connections (ms) | {hmed('term_flood_ms'):.2f} |")
    print(f"| control: {BASELINE}'s SIGTERM to exit while wrk floods the ceiling (ms) | "
          f"{hmed('term_control_ms'):.2f} |")

    def ratio(label, name):
        return values[label][name] / values[label][BASELINE]

    size_kib = values["binary size (KiB)"]["pyinit"]
    startup = "start-up, `INIT -- /bin/true` (ms)"
    shutdown = "shutdown, SIGTERM to exit (ms)"
    reap = f"reap {args.orphans} orphans as PID 1 (ms)"
    worst_p99 = max(values[f"signal latency, {kind} child, p99 (µs)"][name] for kind in ("C", "Python")
                    for name in PYINITS)
    targets = [
        ("static binary ≤ 1.75 MiB", f"{size_kib:.0f} KiB", size_kib <= 1792),
        ("idle VmRSS (pyinit+health) ≤ 1.5× tini-static", f"{ratio('idle VmRSS (KiB)', 'pyinit+health'):.2f}×",
         ratio("idle VmRSS (KiB)", "pyinit+health") <= 1.5),
        ("VmHWM after the /readyz load ≤ 2 MiB", f"{hmed('hwm_kib'):.0f} KiB", hmed("hwm_kib") <= 2048),
        ("start-up ≤ 1.5× tini-static (pyinit / pyinit+health)",
         f"{ratio(startup, 'pyinit'):.2f}× / {ratio(startup, 'pyinit+health'):.2f}×",
         max(ratio(startup, n) for n in PYINITS) <= 1.5),
        ("shutdown ≤ 1.5× tini-static (pyinit / pyinit+health)",
         f"{ratio(shutdown, 'pyinit'):.2f}× / {ratio(shutdown, 'pyinit+health'):.2f}×",
         max(ratio(shutdown, n) for n in PYINITS) <= 1.5),
        ("signal latency p99 ≤ 1 ms (worst of C and Python children)", f"{worst_p99:.0f} µs", worst_p99 <= 1000),
        (f"reaping {args.orphans} orphans no slower than tini-static (pyinit / pyinit+health)",
         f"{ratio(reap, 'pyinit'):.2f}× / {ratio(reap, 'pyinit+health'):.2f}×",
         max(ratio(reap, n) for n in PYINITS) <= 1.0),
        ("zombies left: none, for every init", f"{max(max(results[n]['zombies_left']) for n in NAMES)}",
         all(max(results[n]["zombies_left"]) == 0 for n in NAMES)),
        ("/readyz throughput ≥ 60% of the ceiling", f"{hmed('rps') / hmed('ceiling_rps'):.0%}",
         hmed("rps") / hmed("ceiling_rps") >= 0.6),
        ("SIGTERM to exit under the flood ≤ 2× quiet", f"{hmed('term_flood_ms') / hmed('term_quiet_ms'):.2f}×",
         hmed("term_flood_ms") <= 2 * hmed("term_quiet_ms")),
    ]
    print("\ntargets (issue 9):\n")
    print("| target | measured | |")
    print("|---|---|---|")
    for label, measured, met in targets:
        print(f"| {label} | {measured} | {'met' if met else 'missed'} |")


if __name__ == "__main__":
    main()
