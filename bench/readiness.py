"""Time to Ready: how long after the app starts answering the kubelet sees its pod Ready, when the
kubelet probes the app directly and when it probes pyinit's /readyz, pyinit at its defaults.

Each run starts pyinit (`--readiness http://127.0.0.1:PORT/healthz`, nothing else: a period of
10 s) in front of bench/src/late_app.py, which starts answering at a random moment (uniform
between --min-start and --max-start seconds) and prints when, on the machine's monotonic clock:
a stdlib server whose port refuses until then (`--server stdlib`, the default), or gunicorn with
one sync worker whose import of the app takes that long while its port, bound before, holds
connections in the backlog (`--server gunicorn`, from the end-to-end venv).
Beside it, --kubelets simulated kubelets each probe on their own ticker of --kubelet-period (10 s,
the kubelet's default) from a random phase after the start, as the kubelet's prober worker does
(kubernetes/kubernetes pkg/kubelet/prober/worker.go, run: one ticker of periodSeconds, started
with the pod, not with the app). Every tick probes both the app's /healthz and pyinit's /readyz,
each from its own thread, so each kubelet gives a pair of times to Ready from the same ticks:
the pair differs only when a tick falls between the app answering and pyinit's /readyz turning
200, or when one of the two probes waited for the app: the kubelet's own probe of gunicorn in its
backlog (up to the probe's timeout), or pyinit's /readyz held before the first ready (up to
900 ms). A poller also asks /readyz every 10 ms, for pyinit's own delay.

Reported over every run and kubelet: the median, p90 and max of (Ready - app answering) for both,
of their paired difference, and of pyinit's own delay; and how many pairs were a period apart,
either way. The goal: pyinit's median within 0.25 s of
the direct one. Everything on loopback; each run ends by its deadline, the whole benchmark by
--max-minutes. Run it through `bash bench/run.sh readiness`.
"""
import argparse
import concurrent.futures
import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

from bench import PYINIT, PYTHON, free_port, stop
from pods import VENV

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
APP = os.path.join(SRC, "late_app.py")
# The kubelet's default timeoutSeconds.
PROBE_TIMEOUT = 1.0
POLL = 0.01


def get_status(port, path):
    """One GET on a new connection, as a kubelet probe sends it: the status, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as connection:
            connection.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            return int(connection.recv(64).split()[1])
    except (OSError, ValueError, IndexError):
        return None


def one_run(args, pyinit, seed):
    """One pod start; returns the moments (monotonic seconds) the app answered, /readyz turned
    200 and each kubelet saw each target ready, or None for a run that did not finish."""
    rng = random.Random(seed)
    app_port, health_port = free_port(), free_port()
    start_after = rng.uniform(args.min_start, args.max_start)
    argv = [pyinit, "--allow-root", "--log-level", "warn", "--health-addr", f"127.0.0.1:{health_port}",
            "--readiness", f"http://127.0.0.1:{app_port}/healthz", "--"]
    env = dict(os.environ)
    if args.server == "gunicorn":
        argv += [os.path.join(VENV, "bin", "gunicorn"), "--workers", "1", "--bind", f"127.0.0.1:{app_port}",
                 "--chdir", SRC, "late_app:app"]
        env["LATE_APP_DELAY"] = f"{start_after:.3f}"
    else:
        argv += [PYTHON, APP, str(app_port), f"{start_after:.3f}"]
    started = time.monotonic()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env)
    found = {}

    def read_listening():
        for line in process.stdout:
            if line.startswith("listening "):
                found["listening"] = float(line.split()[1])

    def poll_readyz():
        while time.monotonic() < deadline and "readyz" not in found:
            if get_status(health_port, "/readyz") == 200:
                found["readyz"] = time.monotonic()
            time.sleep(POLL)

    deadline = started + args.max_start + 2 * args.kubelet_period + 5
    helpers = [threading.Thread(target=read_listening, daemon=True),
               threading.Thread(target=poll_readyz, daemon=True)]
    for helper in helpers:
        helper.start()
    phases = [rng.uniform(0, args.kubelet_period) for _ in range(args.kubelets)]
    direct, via = [None] * args.kubelets, [None] * args.kubelets

    def kubelet(phase, port, path, seen, index):
        """One kubelet's probes of one target, on its ticker, until the first 200."""
        at = started + phase
        while at <= deadline:
            time.sleep(max(0.0, at - time.monotonic()))
            if get_status(port, path) == 200:
                seen[index] = time.monotonic()
                return
            at += args.kubelet_period

    # Each kubelet probes both targets on the same ticks, each from its own thread, so that a
    # probe waiting in gunicorn's backlog does not hold back the one on /readyz.
    kubelets = [threading.Thread(target=kubelet, args=(phase, port, path, seen, index), daemon=True)
                for index, phase in enumerate(phases)
                for port, path, seen in [(app_port, "/healthz", direct), (health_port, "/readyz", via)]]
    try:
        for thread in kubelets:
            thread.start()
        for thread in kubelets:
            thread.join(max(0.0, deadline - time.monotonic()) + PROBE_TIMEOUT + 1)
    finally:
        stop(process)
        for helper in helpers:
            helper.join(5)
    if "listening" not in found or "readyz" not in found or not all(direct) or not all(via):
        return None
    return {"start_after": start_after, "listening": found["listening"], "readyz": found["readyz"],
            "direct": direct, "via": via}


def p90(values):
    """The nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def row(name, values):
    # Rounded first, so that a difference of -0.001 s reads 0.00.
    cells = [round(value, 2) + 0.0 for value in (statistics.median(values), p90(values), max(values))]
    return f"| {name} | {cells[0]:.2f} | {cells[1]:.2f} | {cells[2]:.2f} |"


def report(args, runs, pyinit):
    direct = [ready - run["listening"] for run in runs for ready in run["direct"]]
    via = [ready - run["listening"] for run in runs for ready in run["via"]]
    paired = [after - before for run in runs for before, after in zip(run["direct"], run["via"])]
    own = [run["readyz"] - run["listening"] for run in runs]
    later = sum(1 for difference in paired if difference > args.kubelet_period / 2)
    earlier = sum(1 for difference in paired if difference < -args.kubelet_period / 2)
    lines = [
        f"pyinit: {pyinit}",
        f"{len(runs)} runs x {args.kubelets} kubelets, kubelet period {args.kubelet_period:g} s, {args.server} app "
        f"answering {args.min_start:g}-{args.max_start:g} s after the start, pyinit at its defaults",
        "",
        "| seconds from the app answering | median | p90 | max |",
        "| --- | --- | --- | --- |",
        row("Ready, the kubelet probing the app directly", direct),
        row("Ready, the kubelet probing pyinit's /readyz", via),
        row("difference, pair by pair (same kubelet ticks)", paired),
        row("pyinit's /readyz turns 200 (polled every 10 ms)", own),
        "",
        f"pairs where pyinit's /readyz was Ready one kubelet period later: {later} of {len(paired)}, "
        f"earlier: {earlier}",
    ]
    gap = statistics.median(via) - statistics.median(direct)
    verdict = "met" if gap <= 0.25 else "missed"
    lines.append(f"goal, pyinit's median within 0.25 s of direct probing: {gap:+.2f} s, {verdict}")
    print("\n".join(lines))
    return {"runs": runs, "direct": direct, "via": via, "paired": paired, "own": own,
            "median_gap": gap, "kubelet_period": args.kubelet_period, "server": args.server, "pyinit": pyinit}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="pod starts")
    parser.add_argument("--kubelets", type=int, default=5, help="simulated kubelets per run, each its own phase")
    parser.add_argument("--kubelet-period", type=float, default=10.0, help="the kubelet's periodSeconds")
    parser.add_argument("--min-start", type=float, default=0.5, help="earliest the app starts answering (s)")
    parser.add_argument("--max-start", type=float, default=6.0, help="latest the app starts answering (s)")
    parser.add_argument("--server", choices=["stdlib", "gunicorn"], default="stdlib",
                        help="a port that refuses until the app answers, or gunicorn's backlog")
    parser.add_argument("--parallel", type=int, default=4, help="runs at once (each mostly waits)")
    parser.add_argument("--seed", type=int, default=None, help="for the app's start and the kubelets' phases")
    parser.add_argument("--pyinit", default=PYINIT, help="the binary to measure (default: the static build)")
    parser.add_argument("--json", help="also write every measurement here")
    parser.add_argument("--max-minutes", type=float, default=10, help="give up (exit 1) after this long")
    args = parser.parse_args()

    def too_long(*_):
        raise TimeoutError(f"the benchmark ran longer than --max-minutes {args.max_minutes}")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(max(1, int(args.max_minutes * 60)))
    seeds = random.Random(args.seed).sample(range(1 << 30), args.runs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        results = list(pool.map(lambda seed: one_run(args, args.pyinit, seed), seeds))
    runs = [run for run in results if run is not None]
    if len(runs) < len(results):
        print(f"{len(results) - len(runs)} runs did not finish by their deadline and are left out",
              file=sys.stderr)
    if not runs:
        return 1
    summary = report(args, runs, args.pyinit)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(summary, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
