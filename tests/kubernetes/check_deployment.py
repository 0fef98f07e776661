"""Checks that Kubernetes manifests agree with how their image starts pyinit, then validates them
against the Kubernetes schemas with kubernetes-validate (strict).

    target/e2e-venv/bin/python3 tests/kubernetes/check_deployment.py PATH... \\
        [--dockerfile FILE [--image NAME]] [--snippet]

PATH is a manifest or a folder (its *.yaml and *.yml files). A container's argv follows
Kubernetes' rules (pyinit_argv.py): without `command` it runs the image's ENTRYPOINT, with `args`
in place of the CMD, so its pyinit flags come from the Dockerfile given with --dockerfile. That
Dockerfile is taken to build every image (or, with --image NAME, the image NAME, tag aside).
pyinit's flags are those words before its `--`, and `PYINIT_*` variables from the image's ENV
and the container's `env` (a flag wins over its variable, as in pyinit).

Each Deployment with a container that runs pyinit is checked; the others, and Services and
PodDisruptionBudgets that select none of its pods, are listed as `skip` (they belong to other
examples). For a checked Deployment:
- with --dockerfile: the container sets no `command`, which would replace the ENTRYPOINT and
  every pyinit flag in it (pyinit's flags in one place, the pod passing only `args`);
- terminationGracePeriodSeconds equals pyinit's grace period (default 30s); its drain timeout
  ends at least MARGIN before it, and gunicorn's GRACEFUL_TIMEOUT (when set) fits in the drain
  after the pre-stop delay (in Kubernetes min(5s, grace period / 4) unless set);
- pyinit probes the app for readiness and liveness (--readiness, --liveness), so that /readyz
  and /livez say something of the app, not only that pyinit runs;
- every probe is an httpGet on the port of --health-addr (named ports resolved), and the
  container declares that port; the startupProbe asks a path that fails until the app answers:
  /readyz, /readyz/readiness, or /readyz/startup with a pyinit --startup probe (never /livez,
  which answers 200 as soon as pyinit runs), and pyinit's own startup budget is no shorter than
  the kubelet's; readiness asks /readyz and sees it turn 503 (periodSeconds x failureThreshold)
  with PROPAGATION to spare within the pre-stop delay; liveness asks /livez;
- the pod cannot run as root: runAsNonRoot, a non-zero runAsUser and runAsGroup that --user
  (if given; a name is looked up in the Dockerfile's users) names, no --allow-root,
  allowPrivilegeEscalation false, capabilities drop ALL, a RuntimeDefault or Localhost seccomp
  profile, readOnlyRootFilesystem with an emptyDir at /tmp;
- CPU and memory have requests and limits, each limit at least its request;
- a Service selects its pods and sends them to the app's port (the one pyinit's readiness probe
  asks), never to the health port; a PodDisruptionBudget selects them and lets a drain evict
  one pod at a time while keeping another;
- with --dockerfile: STOPSIGNAL SIGTERM, a HEALTHCHECK that asks /livez on the health port, and
  a user created with runAsUser's uid.
With --snippet the manifests are a Deployment alone, as the README shows one beside its
Dockerfile: no Service or PodDisruptionBudget is required, and of the Dockerfile only its user is
checked (STOPSIGNAL and HEALTHCHECK matter to `docker run`, not to the kubelet).
Prints one line per check (`ok`, `FAIL` or `skip`) and exits 1 if any failed.
"""
import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import pyinit_argv

# Time pyinit needs after its drain deadline to SIGKILL, reap and exit before the kubelet's own
# SIGKILL, with headroom for a loaded node.
MARGIN_SECONDS = 2.0
# Time from the kubelet's seeing /readyz fail to the endpoints' `serving` condition reaching
# kube-proxy and load balancers (the kubelet's status update, the EndpointSlice controller, their
# watches), which the pre-stop delay must also cover.
PROPAGATION_SECONDS = 2.0
PYINIT_DEFAULT_GRACE_SECONDS = 30.0
PYINIT_DEFAULT_PROBE_PERIOD_SECONDS = 10.0
PYINIT_DEFAULT_FAILURE_THRESHOLD = 3
# Kubernetes' defaults for a probe's fields.
KUBELET_PERIOD_SECONDS = 10
KUBELET_FAILURE_THRESHOLD = 3
BOOLEAN_FLAGS = {"allow-root", "allow-privilege-escalation", "json"}
TRUE_WORDS = {"true", "1", "yes", "on", "y"}


def parse_duration(text):
    """pyinit's durations: 500ms, 30s, 2m, or a bare number of seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", str(text).strip())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def pyinit_flags(argv, env):
    """pyinit's flags from its argv (before `--`) and `PYINIT_*` variables: name -> value."""
    flags = {}
    for name, value in env.items():
        if name.startswith("PYINIT_"):
            flags[name[len("PYINIT_"):].lower().replace("_", "-")] = str(value)
    words = iter(argv[1:])
    for word in words:
        if word == "--":
            break
        if word == "drill" or not word.startswith("--"):
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


def image_name(reference):
    """An image reference without its digest and tag."""
    name = str(reference).split("@", 1)[0]
    last_slash = name.rfind("/")
    if name.rfind(":") > last_slash:
        name = name[:name.rfind(":")]
    return name


def selects(selector, labels):
    """Whether a label selector (a Service's map, or matchLabels) selects pods with `labels`."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


class Report:
    def __init__(self):
        self.failed = 0

    def check(self, passed, what):
        print(f"{'ok  ' if passed else 'FAIL'} {what}")
        if not passed:
            self.failed += 1

    @staticmethod
    def skip(what):
        print(f"skip {what}")


class Workload:
    """One Deployment whose container runs pyinit, with what the checks need to know of it."""

    def __init__(self, where, deployment, container, argv, env, image):
        self.where = where
        self.deployment = deployment
        self.pod = deployment["spec"]["template"]["spec"]
        self.labels = deployment["spec"]["template"].get("metadata", {}).get("labels") or {}
        self.container = container
        self.argv = argv
        self.env = env
        self.image = image
        self.flags = pyinit_flags(argv, env)
        self.grace = float(self.pod.get("terminationGracePeriodSeconds", 30))
        health_addr = self.flags.get("health-addr", "0.0.0.0:8558")
        port = health_addr.rpartition(":")[2]
        self.health_port = int(port) if port.isdigit() else None
        self.app_port = None
        readiness = self.flags.get("readiness", "")
        if readiness.startswith("http://"):
            self.app_port = urlsplit(readiness).port or 80
        self.pre_stop = parse_duration(self.flags.get("pre-stop-delay", min(5.0, self.grace / 4)))
        security = {**(self.pod.get("securityContext") or {}),
                    **(container.get("securityContext") or {})}
        self.security = security
        self.run_as_user = security.get("runAsUser")
        self.run_as_group = security.get("runAsGroup", self.run_as_user)

    def probe(self, kind):
        """(probe, httpGet, resolved port) of the container's probe of `kind`."""
        probe = self.container.get(kind)
        http_get = (probe or {}).get("httpGet") or {}
        return probe, http_get, resolve_port(http_get.get("port"), self.container)


def find_workloads(documents, image, image_filter, report):
    """The Deployments whose containers run pyinit; the others are skipped."""
    workloads = []
    for where, document in documents:
        if document.get("kind") != "Deployment":
            continue
        name = f"{where}: Deployment/{document.get('metadata', {}).get('name')}"
        pod = ((document.get("spec") or {}).get("template") or {}).get("spec") or {}
        running = []
        for container in pod.get("containers") or []:
            known_image = image
            if image_filter and image_name(container.get("image", "")) != image_filter:
                known_image = None
            argv = pyinit_argv.container_argv(container, known_image)
            if pyinit_argv.starts_pyinit(argv):
                env = pyinit_argv.container_env(container, known_image)
                try:
                    running.append(Workload(name, document, container, argv, env, known_image))
                except ValueError as error:
                    report.check(False, f"{name}: pyinit's flags: {error}")
        if not running:
            report.skip(f"{name}: no container runs pyinit")
            continue
        report.check(len(running) == 1, f"{name}: exactly one container runs pyinit")
        workloads.append(running[0])
    return workloads


def check_flags_in_one_place(workload, report):
    image = workload.image
    if image is None or not pyinit_argv.starts_pyinit(image.entrypoint):
        return
    command = workload.container.get("command")
    report.check(
        not command,
        f"{workload.where}: pyinit's flags come from the image's ENTRYPOINT alone"
        + (" (the pod's `command` replaces it, with every flag in it: pass only `args`)"
           if command else ", the pod passes only `args`"),
    )


def check_drain(workload, report):
    flags, grace = workload.flags, workload.grace
    flag_grace = parse_duration(flags.get("grace-period", PYINIT_DEFAULT_GRACE_SECONDS))
    report.check(
        flag_grace == grace,
        f"--grace-period ({flag_grace:g}s) = terminationGracePeriodSeconds ({grace:g}s)"
        + ("" if flag_grace == grace else ": set PYINIT_GRACE_PERIOD in the container's env"),
    )
    default_drain = grace - min(5.0, grace / 5)
    drain = parse_duration(flags.get("drain-timeout", default_drain))
    report.check(
        drain + MARGIN_SECONDS <= grace,
        f"--drain-timeout ({drain:g}s) + {MARGIN_SECONDS:g}s margin <= grace period ({grace:g}s)",
    )
    if "GRACEFUL_TIMEOUT" in workload.env:
        graceful = float(workload.env["GRACEFUL_TIMEOUT"])
        report.check(
            workload.pre_stop + graceful < drain,
            f"pre-stop delay ({workload.pre_stop:g}s) + GRACEFUL_TIMEOUT ({graceful:g}s) <"
            f" --drain-timeout ({drain:g}s)",
        )


def check_probes(workload, report):
    flags, health_port = workload.flags, workload.health_port
    report.check(health_port is not None, f"--health-addr names a port ({flags.get('health-addr')!r})")
    declared = [p.get("containerPort") for p in workload.container.get("ports") or []]
    report.check(health_port in declared, f"the container declares the health port {health_port}")
    for kind, path in (("readiness", "/readyz"), ("liveness", "/livez")):
        report.check(
            kind in flags,
            f"pyinit probes the app's {kind} (--{kind}), so that {path} speaks of the app",
        )
    startup_paths = {"/readyz"}
    if "readiness" in flags:
        startup_paths.add("/readyz/readiness")
    if "startup" in flags:
        startup_paths.add("/readyz/startup")
    for kind, paths in (("startupProbe", startup_paths), ("livenessProbe", {"/livez"}),
                        ("readinessProbe", {"/readyz"})):
        probe, http_get, port = workload.probe(kind)
        report.check(
            probe is not None and port == health_port and http_get.get("path") in paths,
            f"{kind} asks pyinit: GET {http_get.get('path')} on port {port}, wanted"
            f" {' or '.join(sorted(paths))} on {health_port}",
        )
    check_startup_budget(workload, report)
    check_readiness_timing(workload, report)


def check_startup_budget(workload, report):
    probe, http_get, _ = workload.probe("startupProbe")
    if probe is None:
        return
    path = http_get.get("path", "")
    if path.startswith("/livez"):
        report.check(False, f"startupProbe fails until the app answers: {path} answers 200 as"
                            " soon as pyinit runs, before the app listens")
    if path == "/readyz/startup" and "startup" not in workload.flags:
        report.check(False, "startupProbe fails until the app answers: /readyz/startup is 404"
                            " without a pyinit --startup probe")
    if "startup" not in workload.flags:
        return
    kubelet = probe.get("periodSeconds", KUBELET_PERIOD_SECONDS) * probe.get(
        "failureThreshold", KUBELET_FAILURE_THRESHOLD)
    period = parse_duration(workload.flags.get("startup-period", PYINIT_DEFAULT_PROBE_PERIOD_SECONDS))
    threshold = int(workload.flags.get("startup-failure-threshold", PYINIT_DEFAULT_FAILURE_THRESHOLD))
    report.check(
        period * threshold >= kubelet,
        f"pyinit's startup budget ({period * threshold:g}s: --startup-period x"
        f" --startup-failure-threshold) >= the startupProbe's ({kubelet:g}s)",
    )


def check_readiness_timing(workload, report):
    probe, _, _ = workload.probe("readinessProbe")
    if probe is None:
        return
    noticed = probe.get("periodSeconds", KUBELET_PERIOD_SECONDS) * probe.get(
        "failureThreshold", KUBELET_FAILURE_THRESHOLD)
    report.check(
        noticed + PROPAGATION_SECONDS <= workload.pre_stop,
        f"the kubelet sees /readyz turn 503 within {noticed:g}s (readinessProbe periodSeconds x"
        f" failureThreshold), + {PROPAGATION_SECONDS:g}s to reach the endpoints <= the pre-stop"
        f" delay ({workload.pre_stop:g}s)",
    )


def named_user_ids(workload):
    """--user's value as (uid, gid) text, a name looked up in the image's users; or None."""
    user, _, group = workload.flags["user"].partition(":")
    if not user.isdigit():
        if workload.image is None or user not in workload.image.users:
            return None
        uid, gid = workload.image.users[user]
        return uid, group or gid
    return user, group


def check_security(workload, report):
    security, uid, gid = workload.security, workload.run_as_user, workload.run_as_group
    report.check(security.get("runAsNonRoot") is True, "runAsNonRoot: true")
    report.check(isinstance(uid, int) and uid > 0, f"runAsUser ({uid}) is not root")
    report.check(isinstance(gid, int) and gid > 0, f"runAsGroup ({gid}) is not root")
    if "user" in workload.flags:
        named = named_user_ids(workload)
        report.check(
            named is not None and named[0] == str(uid) and named[1] in ("", str(gid)),
            f"--user ({workload.flags['user']}"
            + (f" = {named[0]}:{named[1]}" if named and not workload.flags["user"][:1].isdigit()
               else "")
            + f") is runAsUser:runAsGroup ({uid}:{gid})"
            + ("" if named else ": a user name the Dockerfile does not create"),
        )
    allow_root = workload.flags.get("allow-root", "false").lower() in TRUE_WORDS
    report.check(not allow_root, "no --allow-root")
    report.check(security.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
    dropped = (security.get("capabilities") or {}).get("drop") or []
    report.check("ALL" in dropped, "capabilities drop ALL")
    seccomp = (security.get("seccompProfile") or {}).get("type")
    report.check(seccomp in ("RuntimeDefault", "Localhost"),
                 f"seccompProfile is RuntimeDefault or Localhost ({seccomp})")
    report.check(security.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true")
    empty_dirs = {v.get("name") for v in workload.pod.get("volumes") or [] if "emptyDir" in v}
    tmp = [m for m in workload.container.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"]
    report.check(
        any(m.get("name") in empty_dirs and not m.get("readOnly") for m in tmp),
        "/tmp is a writable emptyDir on the read-only root",
    )


def check_resources(workload, report):
    resources = workload.container.get("resources") or {}
    for resource in ("cpu", "memory"):
        request = (resources.get("requests") or {}).get(resource)
        limit = (resources.get("limits") or {}).get(resource)
        report.check(
            request is not None and limit is not None and quantity(limit) >= quantity(request),
            f"{resource}: request {request} <= limit {limit}",
        )


def check_service(where, service, workload, report):
    ports = (service.get("spec") or {}).get("ports") or []
    report.check(bool(ports), f"{where} has ports")
    for port in ports:
        target = port.get("targetPort", port.get("port"))
        resolved = resolve_port(target, workload.container)
        wanted = workload.app_port
        report.check(
            resolved is not None and resolved != workload.health_port
            and (wanted is None or resolved == wanted),
            f"{where} port {port.get('port')} targets the app's port {wanted} (the one pyinit's"
            f" readiness probe asks), not the health port {workload.health_port}: targetPort"
            f" {target} is {resolved}",
        )


def check_disruption_budget(where, budget, workload, report):
    spec = budget.get("spec") or {}
    replicas = int((workload.deployment.get("spec") or {}).get("replicas", 1))

    def pods(value):
        text = str(value)
        if text.endswith("%"):
            return int(-(-replicas * int(text[:-1]) // 100))  # rounded up, as the controller does
        return int(text)

    if "maxUnavailable" in spec:
        evictable = pods(spec["maxUnavailable"])
    elif "minAvailable" in spec:
        evictable = replicas - pods(spec["minAvailable"])
    else:
        evictable = None
    report.check(
        evictable is not None and 1 <= evictable < replicas,
        f"{where} lets a drain evict a pod and keeps another ({evictable} of {replicas} replicas"
        " may be evicted at once)",
    )


def check_dockerfile(image, workload, report, snippet):
    with open(image.path, encoding="utf-8") as file:
        joined = file.read().replace("\\\n", " ")
    if not snippet:
        report.check(re.search(r"(?m)^STOPSIGNAL\s+SIGTERM\s*$", joined) is not None,
                     "STOPSIGNAL SIGTERM")
        healthcheck = re.search(r"(?m)^HEALTHCHECK\b.*$", joined)
        port = workload.health_port
        report.check(
            healthcheck is not None and f":{port}/livez" in healthcheck.group(0),
            f"HEALTHCHECK asks /livez on port {port}",
        )
    uid = workload.run_as_user
    report.check(
        re.search(rf"useradd\b[^\n]*--uid {uid}\b", joined) is not None,
        f"the image's user has uid {uid} (runAsUser)",
    )


def check_selectors(documents, workloads, report):
    """Services and PodDisruptionBudgets: checked against the Deployment whose pods they select."""
    covered = {id(workload): set() for workload in workloads}
    for where, document in documents:
        kind = document.get("kind")
        if kind not in ("Service", "PodDisruptionBudget"):
            continue
        name = f"{where}: {kind}/{document.get('metadata', {}).get('name')}"
        spec = document.get("spec") or {}
        selector = spec.get("selector") if kind == "Service" else (spec.get("selector") or {}).get("matchLabels")
        chosen = [w for w in workloads if selects(selector, w.labels)]
        if not chosen:
            report.skip(f"{name}: selects no pod of a checked Deployment")
            continue
        for workload in chosen:
            covered[id(workload)].add(kind)
            if kind == "Service":
                check_service(name, document, workload, report)
            else:
                check_disruption_budget(name, document, workload, report)
    for workload in workloads:
        for kind in ("Service", "PodDisruptionBudget"):
            report.check(kind in covered[id(workload)], f"a {kind} selects {workload.where}'s pods")


def manifest_files(paths):
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, name) for name in os.listdir(path)
                            if name.endswith((".yaml", ".yml")))
        else:
            files.append(path)
    return files


def parse_arguments(args):
    options = {"--snippet": "--snippet" in args}
    args = [arg for arg in args if arg != "--snippet"]
    for option in ("--dockerfile", "--image"):
        if option in args:
            index = args.index(option)
            if index + 1 >= len(args):
                return None
            options[option] = args[index + 1]
            del args[index:index + 2]
    if not args or any(arg.startswith("--") for arg in args):
        return None
    return args, options


def main():
    parsed = parse_arguments(sys.argv[1:])
    if parsed is None:
        print(__doc__, file=sys.stderr)
        return 2
    paths, options = parsed
    files = manifest_files(paths)
    report = Report()
    try:
        image = pyinit_argv.Image(options["--dockerfile"]) if "--dockerfile" in options else None
    except pyinit_argv.Unreadable as error:
        print(f"FAIL {error}\n1 failed")
        return 1
    documents = [(path, document) for path in files for document in pyinit_argv.load_documents(path)]
    workloads = find_workloads(documents, image, options.get("--image"), report)
    report.check(bool(workloads), f"{', '.join(paths)}: a Deployment runs pyinit")
    for workload in workloads:
        check_flags_in_one_place(workload, report)
        check_drain(workload, report)
        check_probes(workload, report)
        check_security(workload, report)
        check_resources(workload, report)
    if not options["--snippet"]:
        check_selectors(documents, workloads, report)
    if image and workloads:
        check_dockerfile(image, workloads[0], report, options["--snippet"])
    return validate(files, report)


def validate(files, report):
    """Checks the manifests against the Kubernetes schemas with kubernetes-validate (strict), then
    prints the count of failed checks; returns the exit code."""
    validation = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *files],
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
