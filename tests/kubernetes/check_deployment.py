"""Checks that a Deployment's Kubernetes settings agree with the pyinit flags in the same file,
then validates it against the Kubernetes schemas with kubernetes-validate (strict).

    target/e2e-venv/bin/python3 tests/kubernetes/check_deployment.py MANIFEST [--dockerfile FILE]

For the container whose command starts with pyinit, its flags are read from `command` + `args`
and from `PYINIT_*` variables in `env` (a flag wins over its variable, as in pyinit), and:
- terminationGracePeriodSeconds equals --grace-period (pyinit's default 30s when unset);
- --drain-timeout ends at least MARGIN before the grace period, and gunicorn's
  GRACEFUL_TIMEOUT (when set) fits in the drain after pyinit's pre-stop delay;
- every probe is an httpGet on the port of --health-addr (named ports resolved), startup and
  liveness on /livez, readiness on /readyz, and that port is declared by the container;
- the pod cannot run as root: runAsNonRoot, a non-zero runAsUser that --user (if given) names,
  allowPrivilegeEscalation false, readOnlyRootFilesystem, capabilities drop ALL, no --allow-root;
- CPU and memory have requests and limits, each limit at least its request;
- with --dockerfile: STOPSIGNAL SIGTERM, a HEALTHCHECK that asks /livez on the health port, and
  a user created with runAsUser's uid.
Prints one line per check (`ok` or `FAIL`) and exits 1 if any failed.
"""
import os
import re
import subprocess
import sys

import yaml

# Time pyinit needs after its drain deadline to SIGKILL, reap and exit before the kubelet's own
# SIGKILL, with headroom for a loaded node.
MARGIN_SECONDS = 2.0
PYINIT_DEFAULT_GRACE_SECONDS = 30.0
BOOLEAN_FLAGS = {"allow-root", "allow-privilege-escalation"}


def parse_duration(text):
    """pyinit's durations: 500ms, 30s, 2m, or a bare number of seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", str(text).strip())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def pyinit_flags(container):
    """The pyinit flags of a container, or None if its command is not pyinit."""
    argv = [str(arg) for arg in (container.get("command") or []) + (container.get("args") or [])]
    if not argv or os.path.basename(argv[0]) != "pyinit":
        return None
    flags = {}
    for item in container.get("env") or []:
        name = item.get("name", "")
        if name.startswith("PYINIT_") and "value" in item:
            flags[name[len("PYINIT_"):].lower().replace("_", "-")] = str(item["value"])
    words = iter(argv[1:])
    for word in words:
        if word == "--":
            break
        if not word.startswith("--"):
            raise ValueError(f"unexpected pyinit argument {word!r}")
        name, has_value, value = word[2:].partition("=")
        if name in BOOLEAN_FLAGS:
            flags[name] = value if has_value else "true"
        else:
            flags[name] = value if has_value else next(words, "")
    return flags


def resolve_port(port, container):
    if isinstance(port, int):
        return port
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return declared.get("containerPort")
    return None


def quantity(text):
    """A Kubernetes quantity as a number (cpu in cores, memory in bytes)."""
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", str(text))
    if not match or match.group(2) not in suffixes and match.group(2) != "":
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * suffixes.get(match.group(2), 1)


class Report:
    def __init__(self):
        self.failed = 0

    def check(self, passed, what):
        print(f"{'ok  ' if passed else 'FAIL'} {what}")
        if not passed:
            self.failed += 1


def check_deployment(deployment, report):
    pod = deployment["spec"]["template"]["spec"]
    containers = [c for c in pod["containers"] if pyinit_flags(c) is not None]
    report.check(len(containers) == 1, "exactly one container runs pyinit")
    if not containers:
        return None
    container = containers[0]
    flags = pyinit_flags(container)

    grace = float(pod.get("terminationGracePeriodSeconds", 30))
    flag_grace = parse_duration(flags.get("grace-period", PYINIT_DEFAULT_GRACE_SECONDS))
    report.check(
        flag_grace == grace,
        f"--grace-period ({flag_grace:g}s) = terminationGracePeriodSeconds ({grace:g}s)",
    )
    default_drain = grace - min(5.0, grace / 5)
    drain = parse_duration(flags.get("drain-timeout", default_drain))
    report.check(
        drain + MARGIN_SECONDS <= grace,
        f"--drain-timeout ({drain:g}s) + {MARGIN_SECONDS:g}s margin <= grace period ({grace:g}s)",
    )
    pre_stop = parse_duration(flags.get("pre-stop-delay", min(5.0, grace / 4)))
    env = {item["name"]: item.get("value") for item in container.get("env") or []}
    if "GRACEFUL_TIMEOUT" in env:
        graceful = float(env["GRACEFUL_TIMEOUT"])
        report.check(
            pre_stop + graceful < drain,
            f"pre-stop delay ({pre_stop:g}s) + GRACEFUL_TIMEOUT ({graceful:g}s) < --drain-timeout"
            f" ({drain:g}s)",
        )

    health_addr = flags.get("health-addr", "")
    health_port = int(health_addr.rpartition(":")[2]) if ":" in health_addr else None
    report.check(health_port is not None, f"--health-addr names a port ({health_addr!r})")
    declared = [p.get("containerPort") for p in container.get("ports") or []]
    report.check(health_port in declared, f"the container declares the health port {health_port}")
    for kind, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"),
                       ("readinessProbe", "/readyz")):
        probe = container.get(kind)
        http_get = (probe or {}).get("httpGet") or {}
        port = resolve_port(http_get.get("port"), container)
        report.check(
            probe is not None and port == health_port and http_get.get("path") == path,
            f"{kind} asks pyinit: GET {http_get.get('path')} on port {port}, wanted {path} on"
            f" {health_port}",
        )

    pod_security = pod.get("securityContext") or {}
    security = {**pod_security, **(container.get("securityContext") or {})}
    run_as_user = security.get("runAsUser")
    run_as_group = security.get("runAsGroup")
    report.check(security.get("runAsNonRoot") is True, "runAsNonRoot: true")
    report.check(isinstance(run_as_user, int) and run_as_user > 0, f"runAsUser ({run_as_user}) is not root")
    if "user" in flags:
        user, _, group = flags["user"].partition(":")
        report.check(
            user == str(run_as_user) and group in ("", str(run_as_group)),
            f"--user ({flags['user']}) is runAsUser:runAsGroup ({run_as_user}:{run_as_group})",
        )
    report.check("allow-root" not in flags, "no --allow-root")
    report.check(security.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
    report.check(security.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true")
    dropped = (security.get("capabilities") or {}).get("drop") or []
    report.check("ALL" in dropped, "capabilities drop ALL")

    resources = container.get("resources") or {}
    for resource in ("cpu", "memory"):
        request = (resources.get("requests") or {}).get(resource)
        limit = (resources.get("limits") or {}).get(resource)
        report.check(
            request is not None and limit is not None and quantity(limit) >= quantity(request),
            f"{resource}: request {request} <= limit {limit}",
        )
    return {"health_port": health_port, "run_as_user": run_as_user}


def check_dockerfile(path, facts, report):
    text = open(path, encoding="utf-8").read()
    joined = text.replace("\\\n", " ")
    report.check(re.search(r"(?m)^STOPSIGNAL\s+SIGTERM\s*$", joined) is not None, "STOPSIGNAL SIGTERM")
    healthcheck = re.search(r"(?m)^HEALTHCHECK\b.*$", joined)
    report.check(
        healthcheck is not None and f":{facts['health_port']}/livez" in healthcheck.group(0),
        f"HEALTHCHECK asks /livez on port {facts['health_port']}",
    )
    report.check(
        re.search(rf"useradd\b[^\n]*--uid {facts['run_as_user']}\b", joined) is not None,
        f"the image's user has uid {facts['run_as_user']} (runAsUser)",
    )


def main():
    args = sys.argv[1:]
    dockerfile = None
    if "--dockerfile" in args:
        index = args.index("--dockerfile")
        dockerfile = args[index + 1]
        del args[index:index + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    manifest = args[0]
    report = Report()
    with open(manifest, encoding="utf-8") as file:
        documents = [d for d in yaml.safe_load_all(file) if d]
    deployments = [d for d in documents if d.get("kind") == "Deployment"]
    report.check(len(deployments) == 1, f"{manifest} holds one Deployment")
    facts = check_deployment(deployments[0], report) if deployments else None
    if dockerfile and facts:
        check_dockerfile(dockerfile, facts, report)
    validation = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", manifest],
        capture_output=True,
        text=True,
    )
    output = (validation.stdout + validation.stderr).strip()
    report.check(
        validation.returncode == 0,
        "kubernetes-validate --strict" + (f": {output}" if output else " passes"),
    )
    print(f"{report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
