"""The benchmark's pods: an init and a Python server as PID 1 of a real `runc` container.

A bundle is an empty read-only rootfs with the host's system folders, the end-to-end venv
(target/e2e-venv, made by scripts/install-deps.sh) and examples/ bind-mounted read-only at their
host paths, the static pyinit at /pyinit, a tmpfs /tmp and /dev/shm, and the host's network (the
benchmark reaches every pod on 127.0.0.1). The container starts as root with a root container's
capabilities, as a container runtime starts it. `runc kill ID TERM` is what the kubelet does;
every container is deleted (`runc delete -f`) and its bundle removed on every path.
"""
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time

from bench import PYINIT, ROOT

# The venv lives in the repository's target/, where scripts/install-deps.sh puts it, even when
# builds go to another $CARGO_TARGET_DIR.
VENV = os.path.join(ROOT, "target", "e2e-venv")
EXAMPLES = os.path.join(ROOT, "examples")
PYINIT_IN_CONTAINER = "/pyinit"

HOST_SYSTEM_FOLDERS = ["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"]
ROOT_CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                     "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                     "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

# Every pod has this variable in Kubernetes; pyinit takes it for "running in Kubernetes".
POD_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def server_argv(server, port):
    """The app's argv, cwd and environment: the repository's example gunicorn (two sync workers)
    or uvicorn (one process) app on 127.0.0.1:port. WEB_CONCURRENCY is set for every init alike
    (pyinit keeps a value the container already has)."""
    if server == "gunicorn":
        argv = [os.path.join(VENV, "bin", "gunicorn"), "--config",
                os.path.join(EXAMPLES, "gunicorn", "gunicorn.conf.py"), "app:app"]
        return argv, os.path.join(EXAMPLES, "gunicorn"), {"HOST": "127.0.0.1", "PORT": str(port),
                                                          "WEB_CONCURRENCY": "2"}
    if server == "uvicorn":
        argv = [os.path.join(VENV, "bin", "uvicorn"), "--host", "127.0.0.1", "--port", str(port),
                "--app-dir", os.path.join(EXAMPLES, "uvicorn"), "app:app"]
        return argv, "/", {"WEB_CONCURRENCY": "1"}
    raise ValueError(server)


def init_argv(init, health_port, app_port):
    """How each init starts the app in a pod. pyinit runs as an image's ENTRYPOINT would, with
    its defaults otherwise: it drops to nobody, probes the app's /healthz for readiness every
    second (this only decides when a new pod first turns ready) and serves /readyz on
    health_port; KUBERNETES_SERVICE_HOST gives it the Kubernetes pre-stop delay."""
    if init == "pyinit":
        return [PYINIT_IN_CONTAINER, "--user", "nobody", "--health-addr", f"127.0.0.1:{health_port}",
                "--readiness", f"http://127.0.0.1:{app_port}/healthz", "--readiness-period", "1s", "--"]
    if init == "tini":
        return ["/usr/bin/tini", "--"]
    if init == "dumb-init":
        return ["/usr/bin/dumb-init", "--"]
    if init == "catatonit":
        return ["/usr/bin/catatonit", "--"]
    raise ValueError(init)


def bind(host_path, container_path=None):
    return {"destination": container_path or host_path, "type": "bind", "source": host_path,
            "options": ["rbind", "ro", "nosuid", "nodev"]}


def config(argv, cwd, env):
    """The OCI runtime configuration (config.json) of one pod."""
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        # Before the binds: a repository under /tmp gets its mountpoints inside this tmpfs.
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]},
    ]
    mounts += [bind(folder) for folder in HOST_SYSTEM_FOLDERS]
    mounts += [bind(VENV), bind(EXAMPLES)]
    mounts.append({"destination": PYINIT_IN_CONTAINER, "type": "bind", "source": PYINIT, "options": ["bind", "ro"]})
    path = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    environment = {"PATH": path, "HOME": "/root", "PYTHONDONTWRITEBYTECODE": "1", **POD_ENV, **env}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": [f"{key}={value}" for key, value in environment.items()],
            "cwd": cwd,
            "capabilities": {kind: ROOT_CAPABILITIES for kind in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pod",
        "mounts": mounts,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            # No network namespace: the pod shares the host's, so the balancer reaches it on loopback.
            "namespaces": [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


class Pod:
    """One container: `start` runs `runc run` in the foreground (its output goes to a log file in
    the bundle), `kill` is `runc kill`, `wait` awaits `runc run`'s end, which is PID 1's exit."""

    _next = 0

    def __init__(self, init, server, app_port, health_port=None):
        Pod._next += 1
        self.id = f"pyinit-bench-{os.getpid()}-{Pod._next}"
        self.init, self.server, self.app_port, self.health_port = init, server, app_port, health_port
        self.bundle = tempfile.mkdtemp(prefix=self.id + "-")
        self.process = None
        self.exit_code = None
        self.exited_at = None

    @property
    def log(self):
        return os.path.join(self.bundle, "output.log")

    def readiness(self):
        """The (port, path) on 127.0.0.1 that the endpoints controller probes: pyinit's /readyz for
        pyinit's pods (as docs/probes.md configures the readinessProbe), the app's own /healthz for
        the others (an httpGet readinessProbe on the app's port, what a user of another init
        would configure)."""
        if self.init == "pyinit":
            return self.health_port, "/readyz"
        return self.app_port, "/healthz"

    async def start(self):
        app, cwd, env = server_argv(self.server, self.app_port)
        os.mkdir(os.path.join(self.bundle, "rootfs"))
        with open(os.path.join(self.bundle, "config.json"), "w") as out:
            json.dump(config(init_argv(self.init, self.health_port, self.app_port) + app, cwd, env), out)
        log = open(self.log, "wb")
        try:
            self.process = await asyncio.create_subprocess_exec(
                "runc", "run", "--bundle", self.bundle, self.id, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()

    async def kill(self, signal_name):
        """`runc kill ID SIGNAL`; returns whether runc delivered it."""
        runc = await asyncio.create_subprocess_exec("runc", "kill", self.id, signal_name,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return await runc.wait() == 0

    async def wait(self):
        """Awaits the container's exit; returns PID 1's exit code (128+N for signal N)."""
        if self.exit_code is None:
            code = await self.process.wait()
            self.exited_at = time.monotonic()
            self.exit_code = code if code >= 0 else 128 - code
        return self.exit_code

    def log_tail(self, lines=20):
        with contextlib.suppress(OSError), open(self.log, errors="replace") as log:
            return "".join(log.readlines()[-lines:])
        return ""

    async def delete(self):
        """Deletes the container whatever its state, and its bundle."""
        runc = await asyncio.create_subprocess_exec("runc", "delete", "-f", self.id,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await runc.wait()
        if self.process and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        shutil.rmtree(self.bundle, ignore_errors=True)
