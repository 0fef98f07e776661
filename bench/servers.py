"""What each common Python server does with the kubelet's SIGTERM, under pyinit, tini and dumb-init.

For each server and init: a pod (a runc container, bench/pods.py) runs the init as PID 1 with
the server under it, started as a user would start it, with no flag about stopping for any
init; one slow request (or, for celery, one task) is put in flight; then `runc kill ID TERM`,
as the kubelet does, and SIGKILL at the end of the grace period (--grace-period, 30 s) if the
pod still runs. Recorded per trial: what became of the request (the HTTP status, `cut` for a
connection closed before a whole answer) or of the task (its result's state, `lost` when none
came), PID 1's exit code, and the time from the SIGTERM to the pod's exit.

pyinit runs as an image's ENTRYPOINT would (`--user nobody`, its health port on loopback) and
otherwise with its defaults, which apply the server's profile; `pyinit --server none` is the
same without profiles (what pyinit did before it had them); tini and dumb-init run with their
defaults (tini signals the app alone, dumb-init its whole process group). The pods have no KUBERNETES_SERVICE_HOST, so pyinit's
pre-stop delay is 0 s and every init passes the SIGTERM on at once: the table compares what each
server does with it. The servers' worker counts are given on their command lines, the same under
every init. celery's broker is a redis-server the benchmark starts on 127.0.0.1.

Every init and server runs in the same run, interleaved (the order of the inits rotates each
round), for --rounds rounds. Everything is on 127.0.0.1, every wait has a deadline, the run
stops starting trials after --max-minutes, and every pod, bundle and redis-server is removed on
every path. It reports; it never fails CI. Run it through `bash bench/run.sh servers`.
"""
import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench import HERE, free_port, machine
from pods import EXAMPLES, PYINIT_IN_CONTAINER, VENV, Pod, bind, config

INITS = ["pyinit", "pyinit --server none", "tini", "dumb-init"]
SERVERS = ["gunicorn", "gunicorn+uvicorn-worker", "uvicorn", "hypercorn", "granian", "uwsgi",
           "waitress", "daphne", "celery"]
# What each server is, as the table names it: the package and its pinned version.
PACKAGES = {"gunicorn": ["gunicorn"], "gunicorn+uvicorn-worker": ["gunicorn", "uvicorn-worker"],
            "uvicorn": ["uvicorn"], "hypercorn": ["hypercorn"], "granian": ["granian"],
            "uwsgi": ["pyuwsgi"], "waitress": ["waitress"], "daphne": ["daphne"], "celery": ["celery"]}
# The request in flight: long enough to be running when the SIGTERM comes, shorter than every
# server's own drain cap (hypercorn's graceful_timeout is 3 s, waitress waits 5 s).
REQUEST_SECONDS = 2.5
CELERY_TASK = os.path.join(HERE, "src")
WSGI_APP = os.path.join(EXAMPLES, "gunicorn")
ASGI_APP = os.path.join(EXAMPLES, "uvicorn")


def server_command(server, port, redis_url):
    """The server's argv, working directory and environment, as a user would start it: on
    127.0.0.1:port, with the repository's example WSGI or ASGI app (routes /healthz and /slow),
    and no flag about stopping."""
    bin_ = lambda name: os.path.join(VENV, "bin", name)
    bind_to = f"127.0.0.1:{port}"
    if server == "gunicorn":
        return [bin_("gunicorn"), "-w", "2", "-b", bind_to, "--no-control-socket", "app:app"], WSGI_APP, {}
    if server == "gunicorn+uvicorn-worker":
        return [bin_("gunicorn"), "-k", "uvicorn_worker.UvicornWorker", "-w", "2", "-b", bind_to,
                "--no-control-socket", "app:app"], ASGI_APP, {}
    if server == "uvicorn":
        return [bin_("uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "app:app"], ASGI_APP, {}
    if server == "hypercorn":
        return [bin_("hypercorn"), "--bind", bind_to, "app:app"], ASGI_APP, {}
    if server == "granian":
        return [bin_("granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "app:app"], ASGI_APP, {}
    if server == "uwsgi":
        return [bin_("uwsgi"), "--master", "--processes", "2", "--http-socket", bind_to, "--wsgi-file", "app.py",
                "--callable", "app"], WSGI_APP, {}
    if server == "waitress":
        return [bin_("waitress-serve"), "--listen", bind_to, "app:app"], WSGI_APP, {}
    if server == "daphne":
        return [bin_("daphne"), "-b", "127.0.0.1", "-p", str(port), "app:app"], ASGI_APP, {}
    if server == "celery":
        return [bin_("celery"), "-A", "celery_tasks", "worker", "--loglevel", "INFO", "-c", "2"], CELERY_TASK, {
            "BENCH_REDIS_URL": redis_url}
    raise ValueError(server)


def init_argv(init, health_port):
    """Each init as a Dockerfile's ENTRYPOINT has it, with no flag about stopping."""
    if init == "pyinit":
        return [PYINIT_IN_CONTAINER, "--user", "nobody", "--health-addr", f"127.0.0.1:{health_port}", "--"]
    if init == "pyinit --server none":
        return [PYINIT_IN_CONTAINER, "--user", "nobody", "--health-addr", f"127.0.0.1:{health_port}", "--server",
                "none", "--"]
    if init == "tini":
        return ["/usr/bin/tini", "--"]
    if init == "dumb-init":
        return ["/usr/bin/dumb-init", "--"]
    raise ValueError(init)


class ServerPod(Pod):
    """A pod of bench/pods.py with any server of this suite, its app folder mounted, a writable
    HOME (gunicorn and celery keep small files there) and no KUBERNETES_* variables."""

    def __init__(self, init, server, redis_url):
        super().__init__(init, server, free_port(), free_port() if init.startswith("pyinit") else None)
        self.redis_url = redis_url

    async def start(self):
        app, cwd, env = server_command(self.server, self.app_port, self.redis_url)
        pod = config(init_argv(self.init, self.health_port) + app, cwd, {"HOME": "/tmp", **env})
        pod["process"]["env"] = [entry for entry in pod["process"]["env"] if not entry.startswith("KUBERNETES_")]
        pod["mounts"].append(bind(CELERY_TASK))
        os.mkdir(os.path.join(self.bundle, "rootfs"))
        with open(os.path.join(self.bundle, "config.json"), "w") as out:
            json.dump(pod, out)
        log = open(self.log, "wb")
        try:
            self.process = await asyncio.create_subprocess_exec(
                "runc", "run", "--bundle", self.bundle, self.id, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()

    def log_has(self, needle):
        with contextlib.suppress(OSError), open(self.log, errors="replace") as log:
            return needle in log.read()
        return False


async def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def http_get(port, path, timeout):
    """One GET on a new connection: the status code as text, `cut` when the connection ended
    before a whole answer, `refused`, or `timeout`."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (ConnectionRefusedError, asyncio.TimeoutError, OSError):
        return "refused"
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), timeout)
    except asyncio.TimeoutError:
        return "timeout"
    except OSError:
        return "cut"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return "cut"
    length = next((int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:")),
                  None)
    if length is not None and len(body) < length:
        return "cut"
    return parts[1].decode()


async def app_ready(pod):
    if pod.server == "celery":
        return pod.log_has(" ready.")
    return await http_get(pod.app_port, "/healthz", 1) == "200"


async def put_in_flight(pod, timeout):
    """Starts the request (or the celery task) and returns once the app has begun it; returns the
    task that gives its outcome."""
    if pod.server == "celery":
        client = await asyncio.create_subprocess_exec(
            os.path.join(VENV, "bin", "python3"), os.path.join(CELERY_TASK, "celery_tasks.py"), str(REQUEST_SECONDS),
            str(timeout), cwd=CELERY_TASK, env={**os.environ, "BENCH_REDIS_URL": pod.redis_url},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        outcome = asyncio.ensure_future(celery_outcome(client, timeout))
        started = "slow task started"
    else:
        outcome = asyncio.ensure_future(http_get(pod.app_port, f"/slow?s={REQUEST_SECONDS:g}", timeout))
        started = "slow request started"
    try:
        await wait_for(lambda: pod.log_has(started) or outcome.done(), 30, f"the {pod.server} app to begin the work")
    except BaseException:
        outcome.cancel()
        raise
    return outcome


async def celery_outcome(client, timeout):
    try:
        output, _ = await asyncio.wait_for(client.communicate(), timeout + 10)
    except asyncio.TimeoutError:
        client.kill()
        await client.wait()
        return "lost"
    lines = output.decode(errors="replace").strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        return "no result"
    if result["state"] == "SUCCESS":
        return "done"
    if result["state"] == "FAILURE":
        return f"failed ({result['detail']})"
    return result["state"].lower()


async def trial(init, server, redis_url, args):
    """One pod: the server under the init, one request or task in flight, SIGTERM; returns what
    became of the work, PID 1's exit code and the time from SIGTERM to exit."""
    pod = ServerPod(init, server, redis_url)
    outcome = None
    try:
        await pod.start()
        deadline = time.monotonic() + 60
        while not await app_ready(pod):
            if pod.process.returncode is not None:
                raise RuntimeError(f"{server} under {init} exited with {pod.process.returncode}:\n{pod.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server} under {init} not ready within 60s:\n{pod.log_tail()}")
            await asyncio.sleep(0.1)
        outcome = await put_in_flight(pod, args.grace_period + 5)
        if not await pod.kill("TERM"):
            raise RuntimeError(f"runc kill TERM failed for {server} under {init}")
        term_at = time.monotonic()
        killed = False
        try:
            await asyncio.wait_for(pod.wait(), args.grace_period)
        except asyncio.TimeoutError:
            killed = True
            await pod.kill("KILL")
            await asyncio.wait_for(pod.wait(), 10)
        work = await asyncio.wait_for(outcome, args.grace_period + 15)
        return {"work": work, "exit_code": pod.exit_code, "killed": killed,
                "term_to_exit_s": pod.exited_at - term_at}
    finally:
        if outcome is not None and not outcome.done():
            outcome.cancel()
        await pod.delete()


@contextlib.contextmanager
def redis_server():
    """Debian's redis-server on a free loopback port, nothing saved; stopped on every path."""
    port = free_port()
    folder = tempfile.mkdtemp(prefix="pyinit-bench-redis-")
    process = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                "--appendonly", "no", "--dir", folder], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def installed(server):
    return os.path.exists(server_command(server, 1, "")[0][0])


async def run(args):
    results = {server: {init: [] for init in args.inits} for server in args.servers}
    started = time.monotonic()
    with redis_server() as redis_url:
        for round_number in range(args.rounds):
            for server_index, server in enumerate(args.servers):
                if not installed(server):
                    continue
                shift = (round_number + server_index) % len(args.inits)
                for init in args.inits[shift:] + args.inits[:shift]:
                    if time.monotonic() - started > args.max_minutes * 60:
                        print("--max-minutes reached: no more trials", file=sys.stderr)
                        return results, time.monotonic() - started
                    try:
                        result = await trial(init, server, redis_url, args)
                    except RuntimeError as error:
                        result = {"error": str(error).splitlines()[0]}
                        print(f"  {server} under {init}: {error}", file=sys.stderr, flush=True)
                    results[server][init].append(result)
                    if "error" not in result:
                        print(f"  round {round_number + 1} {server:24} {init:10} {result['work']:8} exit "
                              f"{result['exit_code']} after {result['term_to_exit_s']:.2f}s", file=sys.stderr,
                              flush=True)
    return results, time.monotonic() - started


def versions(servers):
    """`name==version` of each server's packages in the venv, from their dist-info folders."""
    site = next((os.path.join(root, "site-packages") for root, _dirs, _files in os.walk(os.path.join(VENV, "lib"))
                 if os.path.isdir(os.path.join(root, "site-packages"))), None)
    found = {}
    for entry in os.listdir(site) if site else []:
        if entry.endswith(".dist-info"):
            name, _, version = entry[:-len(".dist-info")].rpartition("-")
            found[name.lower().replace("_", "-")] = version
    return {server: ", ".join(f"{package} {found.get(package, 'not installed')}" for package in PACKAGES[server])
            for server in servers}


def tally(values):
    """`200` when every trial agrees, else `200 ×2 / cut ×1`."""
    unique = sorted(set(values), key=values.index)
    if len(unique) == 1:
        return unique[0]
    return " / ".join(f"{value} ×{values.count(value)}" for value in unique)


def cell(trials):
    """One table cell: what became of the work, PID 1's exit code (each with its count when the
    rounds differ) and the median time from SIGTERM to exit."""
    ran = [result for result in trials if "error" not in result]
    if not ran:
        return "did not start" if trials else "not run"
    codes = [f"{result['exit_code']}" + (" (SIGKILL)" if result["killed"] else "") for result in ran]
    seconds = statistics.median(result["term_to_exit_s"] for result in ran)
    text = f"{tally([result['work'] for result in ran])}, exit {tally(codes)}, {seconds:.1f} s"
    if len(ran) < len(trials):
        text += f" ({len(trials) - len(ran)} did not start)"
    return text


def report(results, args, seconds):
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d')}; {args.rounds} round(s) in {seconds / 60:.1f} min; a "
          f"{REQUEST_SECONDS:g} s request (celery: task) in flight at SIGTERM; grace period {args.grace_period:g} s")
    print()
    print("Each cell: the request's HTTP status (`cut`: closed before a whole answer) or the task's end, PID 1's "
          "exit code (each with its count where the rounds differ), and the median seconds from SIGTERM to exit; "
          "`(SIGKILL)`: still running at the end of the grace period.")
    print()
    print("| server | " + " | ".join(args.inits) + " |")
    print("|---" * (len(args.inits) + 1) + "|")
    names = versions(results)
    for server, by_init in results.items():
        print(f"| {server} ({names[server]}) | " + " | ".join(cell(by_init[init]) for init in args.inits) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated: " + ", ".join(SERVERS))
    parser.add_argument("--inits", default=",".join(INITS), help="comma-separated: " + ", ".join(INITS))
    parser.add_argument("--grace-period", type=float, default=30.0,
                        help="seconds from SIGTERM to the kubelet's SIGKILL (terminationGracePeriodSeconds)")
    parser.add_argument("--max-minutes", type=float, default=20.0, help="start no trial after this")
    parser.add_argument("--json", help="also write every trial to this file")
    args = parser.parse_args()
    args.servers = [name for name in args.servers.split(",") if name]
    args.inits = [name for name in args.inits.split(",") if name]
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
    for name in args.inits:
        if name not in INITS:
            parser.error(f"unknown init {name!r}; known: {', '.join(INITS)}")
    missing = [server for server in args.servers if not installed(server)]
    if missing:
        print(f"not installed in {VENV}, skipped: {', '.join(missing)} (bash scripts/install-deps.sh)",
              file=sys.stderr)
    results, seconds = asyncio.run(run(args))
    report(results, args, seconds)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
