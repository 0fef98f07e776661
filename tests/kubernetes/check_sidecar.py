"""Checks a Deployment that runs pyinit as a native health sidecar against the rules of that form,
then validates it against the Kubernetes schemas with kubernetes-validate (strict).

    target/e2e-venv/bin/python3 tests/kubernetes/check_sidecar.py MANIFEST

The sidecar is the init container whose `command` starts pyinit (pyinit_argv.py's Kubernetes
rules; a sidecar sets its own, so no Dockerfile is read); its flags are read as
check_deployment.py reads them (its words before any `--`, and `PYINIT_*` variables in its env),
and:
- it is a native sidecar (restartPolicy: Always) and a health sidecar (no app after `--`);
- terminationGracePeriodSeconds equals --grace-period, and it sets no pre-stop delay: its SIGTERM
  comes after the main containers have exited, from the grace period they share;
- it declares the port of --health-addr, and has no startupProbe (the main containers start only
  once it has started, and its /livez and /readyz follow them) and no livenessProbe (its /livez
  speaks for the app: a failing app must restart the app's container, not the sidecar);
- every main container's probes ask it, by number: startup and liveness /livez, readiness /readyz;
- a main container's preStop sleep leaves the kubelet's 2s minimum of the grace period;
- it cannot run as root (runAsNonRoot, a non-zero runAsUser, allowPrivilegeEscalation false,
  readOnlyRootFilesystem, capabilities drop ALL, no --allow-root) and has requests and limits.
Prints one line per check (`ok` or `FAIL`) and exits 1 if any failed.
"""
import sys

import yaml

import pyinit_argv
from check_deployment import Report, parse_duration, pyinit_flags, quantity, validate

KUBELET_MINIMUM_GRACE_SECONDS = 2.0


def check_sidecar(deployment, report):
    pod = deployment["spec"]["template"]["spec"]
    sidecars = [c for c in pod.get("initContainers") or []
                if pyinit_argv.starts_pyinit(pyinit_argv.container_argv(c, None))]
    report.check(len(sidecars) == 1, "exactly one init container runs pyinit")
    if not sidecars:
        return
    sidecar = sidecars[0]
    argv = [str(arg) for arg in pyinit_argv.container_argv(sidecar, None)]
    flags = pyinit_flags(argv, pyinit_argv.container_env(sidecar, None))
    report.check(sidecar.get("restartPolicy") == "Always", "the sidecar has restartPolicy: Always")
    report.check("--" not in argv, "the sidecar runs no app: pyinit with no command")

    grace = float(pod.get("terminationGracePeriodSeconds", 30))
    flag_grace = parse_duration(flags.get("grace-period", 30))
    report.check(
        flag_grace == grace,
        f"--grace-period ({flag_grace:g}s) = terminationGracePeriodSeconds ({grace:g}s)",
    )
    delay = parse_duration(flags.get("pre-stop-delay", 0))
    report.check(delay == 0, f"the sidecar sets no pre-stop delay ({delay:g}s)")

    health_addr = flags.get("health-addr", "0.0.0.0:8558")
    health_port = int(health_addr.rpartition(":")[2])
    declared = [p.get("containerPort") for p in sidecar.get("ports") or []]
    report.check(health_port in declared, f"the sidecar declares the health port {health_port}")
    for kind in ("startupProbe", "livenessProbe"):
        report.check(kind not in sidecar, f"the sidecar has no {kind}")

    for container in pod["containers"]:
        name = container.get("name")
        for kind, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"),
                           ("readinessProbe", "/readyz")):
            http_get = (container.get(kind) or {}).get("httpGet") or {}
            report.check(
                http_get.get("port") == health_port and http_get.get("path") == path,
                f"{name}'s {kind} asks the sidecar: GET {http_get.get('path')} on port"
                f" {http_get.get('port')}, wanted {path} on {health_port}",
            )
        sleep = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep")
        if sleep is not None:
            seconds = float(sleep.get("seconds", 0))
            report.check(
                seconds + KUBELET_MINIMUM_GRACE_SECONDS <= grace,
                f"{name}'s preStop sleep ({seconds:g}s) leaves the kubelet's"
                f" {KUBELET_MINIMUM_GRACE_SECONDS:g}s of the grace period ({grace:g}s)",
            )

    security = {**(pod.get("securityContext") or {}), **(sidecar.get("securityContext") or {})}
    run_as_user = security.get("runAsUser")
    report.check(security.get("runAsNonRoot") is True, "runAsNonRoot: true")
    report.check(isinstance(run_as_user, int) and run_as_user > 0, f"runAsUser ({run_as_user}) is not root")
    report.check("allow-root" not in flags, "no --allow-root")
    report.check(security.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
    report.check(security.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true")
    report.check("ALL" in ((security.get("capabilities") or {}).get("drop") or []),
                 "capabilities drop ALL")
    resources = sidecar.get("resources") or {}
    for resource in ("cpu", "memory"):
        request = (resources.get("requests") or {}).get(resource)
        limit = (resources.get("limits") or {}).get(resource)
        report.check(
            request is not None and limit is not None and quantity(limit) >= quantity(request),
            f"{resource}: request {request} <= limit {limit}",
        )


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    manifest = sys.argv[1]
    report = Report()
    with open(manifest, encoding="utf-8") as file:
        documents = [d for d in yaml.safe_load_all(file) if d]
    deployments = [d for d in documents if d.get("kind") == "Deployment"]
    report.check(len(deployments) == 1, f"{manifest} holds one Deployment")
    if deployments:
        check_sidecar(deployments[0], report)
    return validate([manifest], report)


if __name__ == "__main__":
    sys.exit(main())
