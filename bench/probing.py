"""What one readiness check costs, in the three ways users probe a Python service, side by side.

The service is the repository's example gunicorn app (one sync worker) under pyinit, as in a pod:
pyinit probes the app's /healthz every second for its cached readiness and serves /readyz.

- exec: `python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:PORT/healthz')"`,
  what many charts run as an exec probe: the CPU time and peak RSS of that process (from wait4),
  and the app's CPU for the request it makes. The container runtime's own cost of an exec (runc
  exec, the CRI) comes on top and is not counted.
- httpGet on the app: GET /healthz, the kubelet's httpGet probe on the app's port: the app's CPU
  for the request and how long the sync worker is held for it (the request's latency: the
  worker serves nothing else meanwhile). The kubelet's own CPU is outside the pod, and the same
  for both httpGets.
- httpGet on pyinit: GET /readyz, answered from pyinit's cache: pyinit's CPU per request; the app
  does nothing.

CPU times come from the kernel's per-task run time (/proc/PID/task/*/schedstat, nanoseconds),
over many checks in a row, minus what the same processes used in an idle window of the same
length (pyinit's own 1 s probe of the app and gunicorn's heartbeats). Then pyinit's own CPU time
while idling with its 1 s readiness probe, measured over --idle-seconds (60 or more) and scaled
to an hour. Several rounds, medians; loopback only, bounded in count and time (--max-minutes).
It reports; it never fails CI. Run it through `bash bench/run.sh probing`.

Side by side (`--pyinit LABEL=PATH`, repeatable): only the idle measurement, for every build given
at the same time, since two runs of it on a shared machine differ by more than the builds do. In
each round every build starts (in an order that rotates from round to round) in front of its own
copy of the same app with the same 1 s probe; all settle, then all are measured over the same
window of --idle-seconds, and all stop. The report gives each build's idle CPU seconds per hour
(median and spread over rounds), its ratio to the first build (per round, then the median and
spread of those), and the apps' CPU as a control: the same work for every build, so its ratio
shows what the machine alone does to a comparison. The same binary given twice under two labels
shows the method's own resolution.
"""
import argparse
import contextlib
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time

from bench import PYINIT, PYTHON, children, free_port, http_ok, machine, status_kib, stop, wait_until
from pods import VENV, server_argv


def cpu_ns(pid):
    """Run time of every thread of `pid` so far, in nanoseconds (0 once it is gone)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                total += int(schedstat.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def get(port, path):
    """One GET over a new connection; returns the status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    return int(data.split(None, 2)[1])


class Service:
    """pyinit (the current static build, or `path`) supervising gunicorn with one sync worker, on
    loopback."""

    def __init__(self, path=PYINIT):
        self.app_port, self.health_port = free_port(), free_port()
        app, cwd, env = server_argv("gunicorn", self.app_port)
        env["WEB_CONCURRENCY"] = "1"
        argv = [path, "--allow-root", "--log-level", "warn", "--health-addr", f"127.0.0.1:{self.health_port}",
                "--readiness", f"http://127.0.0.1:{self.app_port}/healthz", "--readiness-period", "1s", "--"] + app
        self.pyinit = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"},
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: http_ok(self.health_port), 30, "pyinit's /readyz to answer 200")
            wait_until(lambda: self.workers(), 30, "gunicorn's worker")
            self.started_app = self.app_processes()
        except BaseException:
            self.stop()
            raise

    def master(self):
        return next(iter(children(self.pyinit.pid)), None)

    def workers(self):
        master = self.master()
        return children(master) if master else []

    def app_cpu_ns(self):
        """The CPU of every gunicorn process: the worker serves, the master only watches."""
        return sum(cpu_ns(pid) for pid in [self.master()] + self.workers() if pid)

    def app_processes(self):
        """The app's processes now, each as (pid, start time)."""
        return {(pid, start_time(pid)) for pid in [self.master()] + self.workers() if pid}

    def stop(self):
        """Stops pyinit (SIGTERM, SIGKILL after 10 s), then SIGKILLs any process of the app, seen
        at its start or now, that outlived it: a pyinit that died or was killed before its app
        stopped leaves the app behind."""
        app = self.app_processes() | getattr(self, "started_app", set())
        stop(self.pyinit)
        for pid, started in app:
            if started is not None and start_time(pid) == started:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def start_time(pid):
    """When `pid` started, in clock ticks since boot (None once it is gone): with the pid, it
    names one process, even after the pid is used again."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def idle_rates(service, seconds):
    """Nanoseconds of CPU per second that pyinit and the app use when nothing asks them."""
    pyinit_before, app_before, start = cpu_ns(service.pyinit.pid), service.app_cpu_ns(), time.monotonic()
    time.sleep(seconds)  # the idle window: nothing else is sent meanwhile
    elapsed = time.monotonic() - start
    return (cpu_ns(service.pyinit.pid) - pyinit_before) / elapsed, (service.app_cpu_ns() - app_before) / elapsed


def http_checks(service, port, path, count, idle):
    """`count` GETs in a row; per check: pyinit's and the app's CPU (ns, idle use subtracted) and
    the median latency (s)."""
    pyinit_before, app_before = cpu_ns(service.pyinit.pid), service.app_cpu_ns()
    latencies = []
    start = time.monotonic()
    for _ in range(count):
        sent = time.perf_counter()
        status = get(port, path)
        latencies.append(time.perf_counter() - sent)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
    elapsed = time.monotonic() - start
    pyinit = (cpu_ns(service.pyinit.pid) - pyinit_before - idle[0] * elapsed) / count
    app = (service.app_cpu_ns() - app_before - idle[1] * elapsed) / count
    return {"pyinit_ns": pyinit, "app_ns": app, "latency_s": statistics.median(latencies)}


def exec_checks(service, count, idle):
    """`count` exec probes; per check: the probe process's CPU (ns) and peak RSS (KiB) from wait4,
    its wall time, and the app's CPU for its request (ns, idle use subtracted)."""
    code = ("import urllib.request; "
            f"urllib.request.urlopen('http://127.0.0.1:{service.app_port}/healthz', timeout=1)")
    cpu, rss, wall = [], [], []
    app_before = service.app_cpu_ns()
    start = time.monotonic()
    for _ in range(count):
        sent = time.perf_counter()
        probe = subprocess.Popen([PYTHON, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(probe.pid, 0)
        probe.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        wall.append(time.perf_counter() - sent)
        if probe.returncode != 0:
            raise RuntimeError(f"the exec probe exited {probe.returncode}")
        cpu.append((usage.ru_utime + usage.ru_stime) * 1e9)
        rss.append(usage.ru_maxrss)
    elapsed = time.monotonic() - start
    app = (service.app_cpu_ns() - app_before - idle[1] * elapsed) / count
    return {"probe_ns": statistics.median(cpu), "probe_rss_kib": statistics.median(rss),
            "wall_s": statistics.median(wall), "app_ns": app}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyinit", action="append", default=[], metavar="LABEL=PATH",
                        help="side by side: a pyinit binary whose idle CPU to compare (repeatable; the first is "
                             "the reference); only the idle measurement runs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000, help="httpGet checks per round and target")
    parser.add_argument("--execs", type=int, default=20, help="exec checks per round")
    parser.add_argument("--idle-seconds", type=float, default=120,
                        help="how long pyinit idles with its 1 s readiness probe for the per-hour figure "
                             "(side by side: per round)")
    parser.add_argument("--max-minutes", type=float, default=20, help="give up (exit 1) after this long")
    args = parser.parse_args()
    if args.rounds < 1 or args.idle_seconds <= 0 or args.max_minutes <= 0:
        parser.error("--rounds, --idle-seconds and --max-minutes must be positive")
    builds = parse_builds(parser, args.pyinit)
    if builds:
        needed = args.rounds * (SETTLE_SECONDS + args.idle_seconds + START_SECONDS * len(builds))
        if needed > args.max_minutes * 60:
            parser.error(f"--max-minutes {args.max_minutes:g}: {args.rounds} rounds of --idle-seconds "
                         f"{args.idle_seconds:g} with {len(builds)} builds need about {needed / 60:.1f} min")
    started = time.monotonic()
    with bounded(args.max_minutes):
        if builds:
            rates = side_by_side(builds, args.rounds, args.idle_seconds, started)
        else:
            measured = checks_and_idle(args, started)
    if builds:
        report_side_by_side(builds, rates, args, time.monotonic() - started)
    else:
        report(*measured, time.monotonic() - started)


def checks_and_idle(args, started):
    """The per-check measurements, then the idle one, on one service; what `report` takes."""
    service = Service()
    rounds = []
    try:
        for round_number in range(args.rounds):
            print(f"round {round_number + 1}/{args.rounds} ({time.monotonic() - started:.0f}s)", file=sys.stderr,
                  flush=True)
            idle = idle_rates(service, 3)
            hwm_before = status_kib(service.pyinit.pid, "VmHWM")
            # Alternate the order each round, so that neither target always runs first.
            kinds = [("app", service.app_port, "/healthz"), ("pyinit", service.health_port, "/readyz")]
            result = {}
            for name, port, path in kinds if round_number % 2 == 0 else reversed(kinds):
                result[name] = http_checks(service, port, path, args.requests, idle)
            result["exec"] = exec_checks(service, args.execs, idle)
            result["pyinit_hwm_growth_kib"] = status_kib(service.pyinit.pid, "VmHWM") - hwm_before
            rounds.append(result)
        print(f"idling {args.idle_seconds:g}s ({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)
        pyinit_idle_ns, _app_idle_ns = idle_rates(service, args.idle_seconds)
        pyinit_rss = status_kib(service.pyinit.pid, "VmRSS")
        pyinit_hwm = status_kib(service.pyinit.pid, "VmHWM")
        worker_rss = statistics.median(status_kib(pid, "VmRSS") for pid in service.workers())
    finally:
        with signals_held():
            service.stop()
    return rounds, args, pyinit_idle_ns, pyinit_rss, pyinit_hwm, worker_rss


# ---- side by side: the idle CPU of several builds, measured at the same time ----

# How long every service idles after the last one started and before the window opens: gunicorn's
# worker and pyinit's first probes are past, and every probe is a periodic one.
SETTLE_SECONDS = 5.0
# What one service's start and stop take at most in the time estimate (gunicorn imports the app).
START_SECONDS = 5.0
# What a second SIGTERM, SIGHUP or SIGINT interrupts: nothing, while the services stop.
STOP_SIGNALS = (signal.SIGALRM, signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Interrupted(Exception):
    """SIGTERM or SIGHUP to the benchmark: raised, so that every service is stopped on the way out."""


@contextlib.contextmanager
def bounded(max_minutes):
    """The whole run: SIGALRM after --max-minutes, and SIGTERM or SIGHUP, raise in the main thread
    (and so run every `finally` that stops a service) instead of ending the benchmark on the spot."""
    def give_up(_number, _frame):
        raise TimeoutError(f"the benchmark ran longer than --max-minutes {max_minutes:g}")

    def interrupted(number, _frame):
        raise Interrupted(f"{signal.Signals(number).name} to the benchmark")

    previous = {number: signal.signal(number, handler) for number, handler in
                [(signal.SIGALRM, give_up), (signal.SIGTERM, interrupted), (signal.SIGHUP, interrupted)]}
    signal.alarm(max(1, int(max_minutes * 60)))
    try:
        yield
    finally:
        signal.alarm(0)
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def signals_held():
    """Holds the alarm and the stop signals while services stop, so that none cuts a cleanup
    short; one that came meanwhile is delivered (and raises) after it."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def parse_builds(parser, specs):
    """`--pyinit LABEL=PATH`s, in their order; exits 2 naming the flag and the value when one is
    not a label and an executable file."""
    builds = {}
    for spec in specs:
        label, _, path = spec.partition("=")
        if not label or not path or label in builds:
            parser.error(f"--pyinit {spec!r}: want LABEL=PATH, every LABEL once")
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            parser.error(f"--pyinit {spec!r}: {path} is not an executable file")
        builds[label] = os.path.abspath(path)
    return builds


def side_by_side(builds, rounds, seconds, started):
    """Per build, per round: (pyinit's, the app's) nanoseconds of CPU per second while idle."""
    labels = list(builds)
    rates = {label: [] for label in labels}
    for round_number in range(rounds):
        shift = round_number % len(labels)
        order = labels[shift:] + labels[:shift]
        print(f"round {round_number + 1}/{rounds}, started in the order {', '.join(order)} "
              f"({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)
        for label, rate in idle_round(builds, order, seconds).items():
            rates[label].append(rate)
            print(f"  {label}: pyinit {rate[0] * 3600 / 1e9:.3f} CPU s/h, app {rate[1] * 3600 / 1e9:.2f} CPU s/h",
                  file=sys.stderr, flush=True)
    return rates


def idle_round(builds, order, seconds):
    """Starts one service per build in `order`, lets them settle, and measures all of them over
    the same window of `seconds`; stops them all on every path."""
    services = {}
    try:
        for label in order:
            services[label] = Service(builds[label])
        time.sleep(SETTLE_SECONDS)
        before = {label: idle_sample(service) for label, service in services.items()}
        time.sleep(seconds)  # the window: nothing is sent but each pyinit's own probe of its app
        after = {label: idle_sample(service) for label, service in services.items()}
        for label, service in services.items():
            if service.pyinit.poll() is not None or not http_ok(service.health_port):
                raise RuntimeError(f"{label}: pyinit's /readyz no longer answered 200 after the window")
        return {label: tuple((after[label][i] - before[label][i]) / (after[label][0] - before[label][0])
                             for i in (1, 2)) for label in order}
    finally:
        with signals_held():
            for service in services.values():
                service.stop()


def idle_sample(service):
    """(now, pyinit's CPU so far, the app's CPU so far), in seconds and nanoseconds."""
    return time.monotonic(), cpu_ns(service.pyinit.pid), service.app_cpu_ns()


def report_side_by_side(builds, rates, args, seconds):
    labels = list(builds)
    first = labels[0]
    hour = lambda ns: ns * 3600 / 1e9
    spread = lambda values: f"{(max(values) - min(values)) / statistics.median(values):.1%}"
    span = lambda values, digits: f"{min(values):.{digits}f}-{max(values):.{digits}f}"
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d')}; side by side in {seconds / 60:.1f} min: {args.rounds} rounds, each "
          f"starting every build (in a rotating order) in front of its own gunicorn {server_version()} with one "
          f"sync worker, probed every 1 s, then measuring all over the same {args.idle_seconds:g} s after "
          f"{SETTLE_SECONDS:g} s to settle; medians over rounds; spread = (max - min) / median; ratios per round, "
          f"to {first}; the app's CPU is the control, the same work for every build")
    for label, path in builds.items():
        print(f"{label}: {path} ({os.path.getsize(path)} bytes)")
    print(f"\n| build | idle CPU s per hour | min-max | spread | ratio to {first} | min-max | spread | "
          "95% interval of the median ratio | the app, CPU s per hour (control) | the app's ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label in labels:
        pyinit = [hour(rate[0]) for rate in rates[label]]
        ratios = [mine[0] / theirs[0] for mine, theirs in zip(rates[label], rates[first])]
        app_ratios = [mine[1] / theirs[1] for mine, theirs in zip(rates[label], rates[first])]
        interval = median_interval(ratios)
        print(f"| {label} | {statistics.median(pyinit):.3f} | {span(pyinit, 3)} | {spread(pyinit)} | "
              f"{statistics.median(ratios):.3f} | {span(ratios, 3)} | {spread(ratios)} | "
              f"{span(interval, 3) if interval else '-'} | "
              f"{statistics.median(hour(rate[1]) for rate in rates[label]):.2f} | {statistics.median(app_ratios):.3f} |")


def median_interval(values):
    """A distribution-free interval that holds the true median with at least 95% confidence: the
    k-th smallest and k-th largest value, k the largest for which fewer than k of n values fall
    below the median with a chance of at most 2.5% (the binomial's tail). None below 6 values."""
    count = len(values)
    tail, k = 0.0, 0
    while tail + math.comb(count, k) / 2 ** count <= 0.025:
        tail += math.comb(count, k) / 2 ** count
        k += 1
    ordered = sorted(values)
    return (ordered[k - 1], ordered[count - k]) if k else None


def report(rounds, args, pyinit_idle_ns, pyinit_rss, pyinit_hwm, worker_rss, seconds):
    med = lambda kind, key: statistics.median(r[kind][key] for r in rounds)
    us = lambda ns: f"{ns / 1e3:.0f} µs" if ns < 1e6 else f"{ns / 1e6:.1f} ms"
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d')}; {args.rounds} rounds in {seconds / 60:.1f} min; medians over rounds; "
          f"{args.requests} httpGets per target and {args.execs} execs per round; gunicorn "
          f"{server_version()} with one sync worker; Python {python_version()} for the exec probe\n")
    print("| one check | CPU, the probe's own process | CPU, the app | peak memory | what it holds |")
    print("|---|---|---|---|---|")
    print(f"| exec `python3 -c \"import urllib.request; ...\"` | {us(med('exec', 'probe_ns'))} (python3) | "
          f"{us(med('exec', 'app_ns'))} | {med('exec', 'probe_rss_kib') / 1024:.1f} MiB, a new process per check | "
          f"{med('exec', 'wall_s') * 1e3:.0f} ms from start to exit |")
    print(f"| httpGet on the app's /healthz | the kubelet's, outside the pod | {us(med('app', 'app_ns'))} | "
          f"nothing new: a sync worker ({worker_rss / 1024:.1f} MiB RSS) | that worker, "
          f"{med('app', 'latency_s') * 1e3:.2f} ms |")
    growth = max(r["pyinit_hwm_growth_kib"] for r in rounds)
    print(f"| httpGet on pyinit's /readyz | the kubelet's, outside the pod | {us(med('pyinit', 'pyinit_ns'))} "
          f"(pyinit), none in the app | pyinit's peak RSS grew {growth} KiB (pyinit: {pyinit_rss} KiB RSS, "
          f"{pyinit_hwm} KiB peak) | nothing of the app; answered in {med('pyinit', 'latency_s') * 1e3:.2f} ms |")
    hour = lambda ns: ns * 3600 / 1e9
    print(f"\n| per hour at periodSeconds 1 | CPU seconds |")
    print("|---|---|")
    print(f"| pyinit idling with its 1 s readiness probe of the app (measured over {args.idle_seconds:g} s) | "
          f"{hour(pyinit_idle_ns):.2f} |")
    print(f"| the app answering those probes (3600 × the httpGet's app CPU) | {hour(med('app', 'app_ns')):.2f} |")
    print(f"| the kubelet's httpGet on pyinit's /readyz (3600 × pyinit's CPU per check) | "
          f"{hour(med('pyinit', 'pyinit_ns')):.2f} |")
    print(f"| an exec probe instead (3600 × its process and the app's request) | "
          f"{hour(med('exec', 'probe_ns') + med('exec', 'app_ns')):.0f} |")


def server_version():
    output = subprocess.run([os.path.join(VENV, "bin", "gunicorn"), "--version"], capture_output=True, text=True)
    return (output.stdout or output.stderr).split()[-1].strip(")")


def python_version():
    return subprocess.run([PYTHON, "-c", "import platform; print(platform.python_version())"], capture_output=True,
                          text=True).stdout.strip()


if __name__ == "__main__":
    main()
