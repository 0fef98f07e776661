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
"""
import argparse
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
    """pyinit supervising gunicorn with one sync worker, on loopback."""

    def __init__(self):
        self.app_port, self.health_port = free_port(), free_port()
        app, cwd, env = server_argv("gunicorn", self.app_port)
        env["WEB_CONCURRENCY"] = "1"
        argv = [PYINIT, "--allow-root", "--log-level", "warn", "--health-addr", f"127.0.0.1:{self.health_port}",
                "--readiness", f"http://127.0.0.1:{self.app_port}/healthz", "--readiness-period", "1s", "--"] + app
        self.pyinit = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"},
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: http_ok(self.health_port), 30, "pyinit's /readyz to answer 200")
            wait_until(lambda: self.workers(), 30, "gunicorn's worker")
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

    def stop(self):
        stop(self.pyinit)


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000, help="httpGet checks per round and target")
    parser.add_argument("--execs", type=int, default=20, help="exec checks per round")
    parser.add_argument("--idle-seconds", type=float, default=120,
                        help="how long pyinit idles with its 1 s readiness probe for the per-hour figure")
    parser.add_argument("--max-minutes", type=float, default=20, help="give up (exit 1) after this long")
    args = parser.parse_args()

    def give_up(_number, _frame):
        raise TimeoutError(f"the benchmark ran longer than --max-minutes {args.max_minutes}")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(max(1, int(args.max_minutes * 60)))
    started = time.monotonic()
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
        service.stop()
        signal.alarm(0)
    report(rounds, args, pyinit_idle_ns, pyinit_rss, pyinit_hwm, worker_rss, time.monotonic() - started)


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
