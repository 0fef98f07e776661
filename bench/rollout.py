"""A rolling restart under load: what a deploy costs the users of a Python service, per init.

Two backends sit behind a load balancer that follows readiness as Kubernetes does. An endpoints
controller probes each pod's readiness every --period (Kubernetes' readinessProbe rules: timeout,
success and failure thresholds) and every change of an endpoint reaches the balancer after
--propagation-delay. Clients open a new connection per request at a steady --rate for the whole
trial; the balancer hands each new connection to the next endpoint it knows (round robin, as
kube-proxy's IPVS mode does; iptables mode picks at random). One backend is the pod being deleted:
a runc container with the init and the server; the other, the same server started once, stays.

The deletion, as the kubelet and the control plane do it: the pod's endpoint is marked for
removal, the preStop hook runs (the rows "+ preStop sleep N" emulate `sleep N` by waiting N
seconds), then `runc kill TERM`, and SIGKILL at the end of the grace period (--grace-period, 30 s)
if the pod still runs. Two balancers (--balancers): `endpoints`, a Kubernetes Service: the control
plane marks a deleted pod's endpoints not ready at once, and the change propagates like any other;
`readiness`: the balancer hears of the pod only through its readiness probe, like a load balancer
that health-checks its targets itself.

Probed endpoints: pyinit's pods on pyinit's /readyz (its health port), as docs/probes.md configures the
readinessProbe; the other inits' pods on the app's own GET /healthz (an httpGet readinessProbe on
the app's port: what their users configure); the staying backend on its /healthz.

Counted per trial: requests that failed (refused, reset before an answer, 5xx, cut off mid-body,
timed out, or any other status than 200), requests the deleted pod served that were sent after its SIGTERM (after `runc kill`
returned), and the time from the deletion and from the SIGTERM to the pod's exit. Every init and
server runs in the same run, interleaved (the order rotates each round), for --rounds rounds; the
deletion falls at another point of the readiness probe's period in each round (the same for every
row of a round), and the report gives medians. Everything is on 127.0.0.1, bounded in count and time (--max-minutes). It
reports; it never fails CI. Run it through `bash bench/run.sh rollout`.
"""
import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

from bench import free_port, machine
from pods import Pod, server_argv

PEERS = ["tini", "dumb-init", "catatonit"]
OUTCOMES = ["refused", "reset", "5xx", "cut", "timeout", "other"]


class Endpoint:
    """A backend as the endpoints controller sees it: its readiness verdict under Kubernetes'
    thresholds, and whether its pod is being deleted."""

    def __init__(self, name, app_port, readiness):
        self.name, self.app_port, self.readiness = name, app_port, readiness
        self.ready = False  # Kubernetes: readiness starts false until the success threshold
        self.deleted = False
        # Kubernetes takes a deleted pod's endpoint out at once; a balancer that follows readiness
        # alone waits for the probe.
        self.removed_on_deletion = False
        self.successes = self.failures = 0
        self.prober = None


class Balancer:
    """The endpoints the load balancer sends new connections to, each change applied
    --propagation-delay after the controller made it; round robin among them."""

    def __init__(self, propagation_delay):
        self.propagation_delay = propagation_delay
        self.current = []
        self.turn = 0
        self.changes = []  # (time applied, endpoint name, "added" | "removed")

    def publish(self, endpoint, present):
        loop = asyncio.get_running_loop()
        loop.call_later(self.propagation_delay, self._apply, endpoint, present)

    def _apply(self, endpoint, present):
        if present and endpoint not in self.current:
            self.current.append(endpoint)
        elif not present and endpoint in self.current:
            self.current.remove(endpoint)
        else:
            return
        self.changes.append((asyncio.get_running_loop().time(), endpoint.name, "added" if present else "removed"))

    def pick(self):
        if not self.current:
            return None
        self.turn = (self.turn + 1) % len(self.current)
        return self.current[self.turn]

    def last_change(self, endpoint, kind):
        return next((at for at, name, what in reversed(self.changes) if name == endpoint.name and what == kind), None)


async def http_get(port, path, timeout):
    """One GET over a new connection; returns (outcome, status): outcome "ok" for a 200 with its
    whole body, else one of OUTCOMES."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except ConnectionRefusedError:
        return "refused", None
    except asyncio.TimeoutError:
        return "timeout", None
    except OSError:
        return "reset", None
    data = b""
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        return ("timeout" if not data else "cut"), None
    except OSError:
        if not data:
            return "reset", None
        # An answer that began and broke off: the status line says whether it was a 5xx.
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return ("reset" if not data else "cut"), None
    if status >= 500:
        return "5xx", status
    length = next((int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:")),
                  None)
    if length is not None and len(body) < length:
        return "cut", status
    return ("ok" if status == 200 else "other"), status


class Controller:
    """Probes every endpoint it watches, each on its own schedule (start to start, as the kubelet
    does), and publishes changes of readiness to the balancer."""

    def __init__(self, balancer, args):
        self.balancer, self.args = balancer, args

    def watch(self, endpoint):
        endpoint.prober = asyncio.create_task(self._probe_forever(endpoint))

    def delete(self, endpoint, balancer_mode):
        """The pod is being deleted: with the "endpoints" balancer its endpoint goes now, whatever
        its readiness says; with "readiness" only a failing probe takes it out."""
        endpoint.deleted = True
        endpoint.removed_on_deletion = balancer_mode == "endpoints"
        if endpoint.removed_on_deletion:
            self.balancer.publish(endpoint, False)

    async def forget(self, endpoint):
        endpoint.prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await endpoint.prober

    async def _probe_forever(self, endpoint):
        loop = asyncio.get_running_loop()
        next_probe = loop.time()
        while True:
            port, path = endpoint.readiness
            outcome, status = await http_get(port, path, self.args.probe_timeout)
            # httpGet: a status from 200 to 399 within the timeout passes.
            passed = outcome in ("ok", "other") and status is not None and 200 <= status < 400
            if passed:
                endpoint.successes, endpoint.failures = endpoint.successes + 1, 0
            else:
                endpoint.successes, endpoint.failures = 0, endpoint.failures + 1
            was_ready = endpoint.ready
            if not endpoint.ready and endpoint.successes >= self.args.success_threshold:
                endpoint.ready = True
            elif endpoint.ready and endpoint.failures >= self.args.failure_threshold:
                endpoint.ready = False
            if endpoint.ready != was_ready:
                keep = endpoint.ready and not endpoint.removed_on_deletion
                self.balancer.publish(endpoint, keep)
            next_probe += self.args.period
            await asyncio.sleep(max(0.0, next_probe - loop.time()))


class Load:
    """Sends GET / over a new connection every 1/rate seconds to whichever endpoint the balancer
    picks, and records each request: (time sent, endpoint name, outcome)."""

    def __init__(self, balancer, args):
        self.balancer, self.args = balancer, args
        self.records = []
        self.pending = set()
        self.task = None

    def start(self):
        self.task = asyncio.create_task(self._run())

    async def stop(self):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.pending:
            await asyncio.wait(self.pending, timeout=self.args.request_timeout + 5)

    async def _run(self):
        loop = asyncio.get_running_loop()
        started = loop.time()
        for number in range(10 ** 9):
            await asyncio.sleep(max(0.0, started + number / self.args.rate - loop.time()))
            endpoint = self.balancer.pick()
            task = asyncio.create_task(self._request(endpoint))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _request(self, endpoint):
        sent = asyncio.get_running_loop().time()
        if endpoint is None:
            self.records.append((sent, None, "refused"))
            return
        outcome, _status = await http_get(endpoint.app_port, "/", self.args.request_timeout)
        self.records.append((sent, endpoint.name, outcome))


async def wait_for(condition, timeout, what):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def row_label(init, hook):
    return f"{init} + preStop sleep {hook:g}s" if hook else init


async def trial(mode, server, init, hook, phase, balancer, controller, args):
    """One deletion of one pod under load, `phase` seconds into a period of its readiness probe;
    returns what the users and the kubelet saw."""
    loop = asyncio.get_running_loop()
    pod = Pod(init, server, free_port(), free_port() if init == "pyinit" else None)
    endpoint = Endpoint(f"{row_label(init, hook)} {server} pod", pod.app_port, pod.readiness())
    load = Load(balancer, args)
    await pod.start()
    try:
        controller.watch(endpoint)
        await wait_for(lambda: endpoint in balancer.current or pod.process.returncode is not None, 60,
                       f"the {init} pod to join the balancer")
        if pod.process.returncode is not None:
            raise RuntimeError(f"the {init} {server} pod exited with {pod.process.returncode}:\n{pod.log_tail()}")
        load.start()
        # The pod joined the balancer one propagation delay after a probe: the deletion comes
        # `phase` into a period (the warm-up is whole periods by default).
        await asyncio.sleep(args.warm_up + phase)
        deleted_at = loop.time()
        controller.delete(endpoint, mode)
        await asyncio.sleep(hook)  # the preStop hook's `sleep`
        if not await pod.kill("TERM"):
            raise RuntimeError(f"runc kill TERM failed for the {init} pod")
        term_at = loop.time()
        killed_by_kubelet = False
        try:
            await asyncio.wait_for(pod.wait(), max(0.0, deleted_at + args.grace_period - loop.time()))
        except asyncio.TimeoutError:
            killed_by_kubelet = True
            await pod.kill("KILL")
            await asyncio.wait_for(pod.wait(), 10)
        exited_at = pod.exited_at
        await wait_for(lambda: endpoint not in balancer.current, 60, f"the {init} pod to leave the balancer")
        await asyncio.sleep(args.tail)  # requests after the last change reach only the staying backend
        await load.stop()
    finally:
        with contextlib.suppress(Exception):
            await load.stop()
        await controller.forget(endpoint)
        if endpoint in balancer.current:  # only after a failed trial
            balancer.current.remove(endpoint)
        await pod.delete()
    outcomes = {outcome: 0 for outcome in OUTCOMES}
    for _sent, _name, outcome in load.records:
        if outcome != "ok":
            outcomes[outcome] += 1
    return {
        "requests": len(load.records),
        "failed": sum(outcomes.values()),
        "outcomes": outcomes,
        "failed_at_deleted_pod": sum(1 for _s, name, outcome in load.records
                                     if name == endpoint.name and outcome != "ok"),
        "served_after_term": sum(1 for sent, name, outcome in load.records
                                 if name == endpoint.name and outcome == "ok" and sent >= term_at),
        "removed_after_s": balancer.last_change(endpoint, "removed") - deleted_at,
        "deletion_to_exit_s": exited_at - deleted_at,
        "term_to_exit_s": exited_at - term_at,
        "exit_code": pod.exit_code,
        "killed_by_kubelet": killed_by_kubelet,
        "phase_s": phase,
    }


def start_survivor(server):
    """The backend that stays: the same server, started once for the whole run."""
    port = free_port()
    argv, cwd, env = server_argv(server, port)
    process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"},
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, Endpoint(f"staying {server}", port, (port, "/healthz"))


async def run(args):
    rows = [(init, 0.0) for init in args.inits]
    if args.pre_stop_sleep:
        rows += [(init, args.pre_stop_sleep) for init in args.inits if init != "pyinit"]
    results = {mode: {server: {row_label(*row): [] for row in rows} for server in args.servers}
               for mode in args.balancers}
    # One balancer per server: the staying backend of the trials' own kind, and the pod.
    setups = {}
    started = time.monotonic()
    try:
        for server in args.servers:
            balancer = Balancer(args.propagation_delay)
            controller = Controller(balancer, args)
            process, survivor = start_survivor(server)
            setups[server] = (balancer, controller, process, survivor)
            controller.watch(survivor)
        for round_number in range(args.rounds):
            print(f"round {round_number + 1}/{args.rounds} ({time.monotonic() - started:.0f}s)", file=sys.stderr,
                  flush=True)
            groups = [(mode, server) for mode in args.balancers for server in args.servers]
            for group_index, (mode, server) in enumerate(groups):
                balancer, controller, _process, survivor = setups[server]
                await wait_for(lambda: survivor in balancer.current, 60, f"the staying {server} to be ready")
                # Rotate the order every round (and per group), so that no row always runs first.
                shift = (round_number + group_index) % len(rows)
                # Where the deletion falls in the readiness probe's period moves through the period
                # over the rounds, the same for every row of a round: with the "readiness" balancer
                # it decides how long a pod that stopped serving stays in the balancer.
                phase = (round_number + 0.5) / args.rounds * args.period
                for init, hook in rows[shift:] + rows[:shift]:
                    result = await trial(mode, server, init, hook, phase, balancer, controller, args)
                    results[mode][server][row_label(init, hook)].append(result)
                    print(f"  {mode:9} {server:8} {row_label(init, hook):32} failed {result['failed']:3} of "
                          f"{result['requests']:4}, served after SIGTERM {result['served_after_term']:3}, "
                          f"exit {result['exit_code']} {result['deletion_to_exit_s']:.1f}s after the deletion",
                          file=sys.stderr, flush=True)
    finally:
        for _balancer, controller, process, survivor in setups.values():
            await controller.forget(survivor)
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    return results, time.monotonic() - started


BALANCERS = {
    "endpoints": "Kubernetes endpoints: a deleted pod's endpoint is taken out at once, or when its readiness fails",
    "readiness": "a balancer that follows readiness alone (one that health-checks its targets itself)",
}


def report(results, args, seconds):
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d')}; {args.rounds} rounds in {seconds / 60:.1f} min, interleaved; "
          f"medians over rounds (failed: median, min-max)")
    print(f"readiness probed every {args.period:g}s (timeout {args.probe_timeout:g}s, failure threshold "
          f"{args.failure_threshold}, success threshold {args.success_threshold}); changes reach the balancer "
          f"{args.propagation_delay:g}s later; {args.rate:g} requests/s, a new connection each; grace period "
          f"{args.grace_period:g}s")
    for mode, servers in results.items():
        print(f"\nbalancer `{mode}`: {BALANCERS[mode]}\n")
        print("| server | init | requests | failed | refused / reset / 5xx / cut / timeout | served by the deleted "
              "pod after SIGTERM | out of the balancer (s after the deletion) | deletion to exit (s) | SIGTERM to "
              "exit (s) | exit code |")
        print("|---" * 10 + "|")
        for server, rows in servers.items():
            for label, trials in rows.items():
                if trials:
                    print(report_row(server, label, trials))


def report_row(server, label, trials):
    med = lambda key: statistics.median(t[key] for t in trials)
    failed = [t["failed"] for t in trials]
    kinds = " / ".join(f"{statistics.median(t['outcomes'][kind] for t in trials):g}"
                       for kind in ("refused", "reset", "5xx", "cut", "timeout"))
    codes = sorted({str(t["exit_code"]) + (" (SIGKILL)" if t["killed_by_kubelet"] else "") for t in trials})
    return (f"| {server} | {label} | {med('requests'):.0f} | {statistics.median(failed):g} "
            f"({min(failed)}-{max(failed)}) | {kinds} | {med('served_after_term'):g} | "
            f"{med('removed_after_s'):.1f} | {med('deletion_to_exit_s'):.1f} | {med('term_to_exit_s'):.2f} | "
            f"{', '.join(codes)} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--servers", default="gunicorn,uvicorn", help="comma-separated: gunicorn, uvicorn")
    parser.add_argument("--inits", default="pyinit," + ",".join(PEERS), help="comma-separated")
    parser.add_argument("--balancers", default="endpoints,readiness",
                        help="comma-separated; endpoints: a deleted pod's endpoint goes at once, as in Kubernetes; "
                             "readiness: the balancer follows the readiness probe alone")
    parser.add_argument("--rate", type=float, default=40, help="requests per second, a new connection each")
    parser.add_argument("--period", type=float, default=1, help="readiness periodSeconds")
    parser.add_argument("--probe-timeout", type=float, default=1, help="readiness timeoutSeconds")
    parser.add_argument("--failure-threshold", type=int, default=3, help="readiness failureThreshold")
    parser.add_argument("--success-threshold", type=int, default=1, help="readiness successThreshold")
    parser.add_argument("--propagation-delay", type=float, default=1,
                        help="seconds until an endpoint change reaches the balancer")
    parser.add_argument("--pre-stop-sleep", type=float, default=5,
                        help="the preStop `sleep` of the hook rows (0: no hook rows)")
    parser.add_argument("--grace-period", type=float, default=30, help="terminationGracePeriodSeconds")
    parser.add_argument("--warm-up", type=float, default=2, help="seconds of load before the deletion")
    parser.add_argument("--tail", type=float, default=1,
                        help="seconds of load after the pod left the balancer and exited")
    parser.add_argument("--request-timeout", type=float, default=10)
    parser.add_argument("--max-minutes", type=float, default=60, help="give up (exit 1) after this long")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    args.servers = args.servers.split(",")
    args.inits = args.inits.split(",")
    args.balancers = args.balancers.split(",")
    unknown = [mode for mode in args.balancers if mode not in BALANCERS]
    if unknown:
        parser.error(f"--balancers: unknown {', '.join(unknown)} (endpoints, readiness)")

    try:
        results, seconds = asyncio.run(asyncio.wait_for(run(args), args.max_minutes * 60))
    except asyncio.TimeoutError:
        sys.exit(f"the benchmark ran longer than --max-minutes {args.max_minutes}")
    report(results, args, seconds)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": machine(), "settings": vars(args), "results": results}, out, indent=1)


if __name__ == "__main__":
    main()
