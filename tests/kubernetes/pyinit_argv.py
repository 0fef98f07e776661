"""How a user's files start pyinit, so that a test can run the real binary with it. Also a module:
check_deployment.py and check_sidecar.py read the files through it.

    target/e2e-venv/bin/python3 tests/kubernetes/pyinit_argv.py dockerfile DOCKERFILE
    target/e2e-venv/bin/python3 tests/kubernetes/pyinit_argv.py deployment MANIFEST [DOCKERFILE]
    target/e2e-venv/bin/python3 tests/kubernetes/pyinit_argv.py sidecar MANIFEST

A container's argv follows Kubernetes' rules (the conformance tests "Containers, with
arguments" and "with command" in kubernetes/kubernetes test/e2e/common/node/containers.go):
`command` replaces the image's ENTRYPOINT, and then the image's CMD is ignored; `args` alone
replace the CMD and keep the ENTRYPOINT; neither runs ENTRYPOINT + CMD. So a manifest whose
container sets no `command` needs the image's Dockerfile. Its environment is the image's ENV
with the container's `env` over it. A health sidecar (the init container that runs pyinit with
no app) sets its own `command`, so it needs no Dockerfile.

One fact per line, `KIND VALUE`:
- `arg WORD`: pyinit's own arguments, in order, up to and without the `--` before the app;
- `app WORD`: the app's argv after that `--`;
- `env NAME=VALUE`: a variable pyinit starts with (the Dockerfile's `ENV`, then the container's
  `env` entries that have a `value`, which win);
- deployment and sidecar: `run-as UID GID`, the pod's runAsUser and runAsGroup (container over
  pod);
- deployment only: `pod-command WORD`, `pod-args WORD` and `pod-env NAME=VALUE`, the container's
  own `command`, `args` and `env`, as a runtime is given them; `probe KIND PATH` for each httpGet
  probe (`startupProbe /readyz/startup`);
- sidecar: the init container whose `command` starts pyinit, as a health sidecar: it runs no
  app, so there is no `--` and no `app` line;
- with a Dockerfile: `passwd LINE` and `group LINE`, the /etc/passwd and /etc/group entries its
  `groupadd --gid` and `useradd --uid` commands create.
Exits 1 with a message when the files have no pyinit to find or a value holds a line break.
"""
import json
import os
import re
import shlex
import sys

import yaml


class Unreadable(Exception):
    """The files do not say how pyinit starts."""


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def starts_pyinit(argv):
    return bool(argv) and os.path.basename(str(argv[0])) == "pyinit"


def split_at_app(argv, where):
    """pyinit's words before `--` (argv[0] dropped) and the app's after it."""
    if not starts_pyinit(argv):
        raise Unreadable(f"{where} does not start pyinit: {argv!r}")
    words = [str(word) for word in argv[1:]]
    if "--" not in words:
        raise Unreadable(f"{where} has no `--` before the app: {argv!r}")
    cut = words.index("--")
    return words[:cut], words[cut + 1:]


def load_documents(path):
    with open(path, encoding="utf-8") as file:
        return [document for document in yaml.safe_load_all(file) if document]


def instructions(text):
    """(INSTRUCTION, rest) for each Dockerfile instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            yield keyword.upper(), rest.strip()


def option(words, name):
    return words[words.index(name) + 1] if name in words else None


def exec_form(rest, path, keyword):
    """An ENTRYPOINT or CMD in exec (JSON) form, the only form that passes argv unchanged."""
    try:
        argv = json.loads(rest)
    except ValueError:
        raise Unreadable(f"{path}: {keyword} is not in exec (JSON) form: {rest}") from None
    if not isinstance(argv, list) or not all(isinstance(word, str) for word in argv):
        raise Unreadable(f"{path}: {keyword} is not a list of strings: {rest}")
    return argv


class Image:
    """What the final stage of a Dockerfile gives the container: ENTRYPOINT, CMD, ENV, users."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as file:
            text = file.read()
        final_stage = []
        for keyword, rest in instructions(text):
            if keyword == "FROM":
                final_stage = []  # only the last stage is the image that runs
            final_stage.append((keyword, rest))
        self.path = path
        # The base image's CMD is not known here. It counts as empty: a stage that sets an
        # ENTRYPOINT and no CMD drops it (moby's builder/dockerfile/dispatchers.go,
        # dispatchEntrypoint: "if a CMD was not explicitly set then set the command to nil").
        self.entrypoint, self.cmd, self.env = [], [], {}
        groups, users = {}, []
        for keyword, rest in final_stage:
            if keyword == "ENTRYPOINT":
                self.entrypoint = exec_form(rest, path, keyword)
            elif keyword == "CMD":
                self.cmd = exec_form(rest, path, keyword)
            elif keyword == "ENV":
                for pair in shlex.split(rest):
                    name, _, value = pair.partition("=")
                    self.env[name] = value
            elif keyword == "RUN":
                for command in re.split(r"&&|;", rest):
                    words = shlex.split(command)
                    if words[:1] == ["groupadd"] and option(words, "--gid"):
                        groups[words[-1]] = option(words, "--gid")
                    if words[:1] == ["useradd"] and option(words, "--uid"):
                        users.append((words[-1], option(words, "--uid"), option(words, "--gid"),
                                      option(words, "--home-dir") or "/",
                                      option(words, "--shell") or "/bin/sh"))
        if not self.entrypoint:
            raise Unreadable(f"{path}: no ENTRYPOINT in the final stage")
        self.group_lines = [f"{name}:x:{gid}:" for name, gid in groups.items()]
        self.users = {}  # name -> (uid, gid), numbers as text
        self.passwd_lines = []
        for name, uid, group, home, shell in users:
            gid = groups.get(group, group)
            if gid is None or not str(gid).isdigit():
                raise Unreadable(f"{path}: useradd {name} has no numeric --gid or known group: {group!r}")
            self.users[name] = (str(uid), str(gid))
            self.passwd_lines.append(f"{name}:x:{uid}:{gid}::{home}:{shell}")


def container_argv(container, image):
    """The container's argv by Kubernetes' rules, or None when it depends on an unknown image."""
    command = [str(word) for word in container.get("command") or []]
    args = [str(word) for word in container.get("args") or []]
    if command:
        return command + args
    if image is None:
        return None
    return image.entrypoint + (args or image.cmd)


def container_env(container, image):
    """The container's environment: the image's ENV, with the container's `env` values over it."""
    env = dict(image.env) if image else {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def the_pod(path):
    """The pod template of the one Deployment in the manifest."""
    pods = [d["spec"]["template"]["spec"] for d in load_documents(path) if d.get("kind") == "Deployment"]
    if len(pods) != 1:
        raise Unreadable(f"{path}: one Deployment expected, found {len(pods)}")
    return pods[0]


def run_as(pod, container):
    """The `run-as UID GID` fact: runAsUser and runAsGroup, the container's over the pod's."""
    security = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
    uid, gid = security.get("runAsUser"), security.get("runAsGroup", security.get("runAsUser"))
    return [] if uid is None else [("run-as", f"{uid} {gid}")]


def deployment_facts(path, image):
    pod = the_pod(path)
    for container in pod["containers"]:
        argv = container_argv(container, image)
        if starts_pyinit(argv):
            break
    else:
        hint = "" if image else " (a container without `command` needs the image's Dockerfile)"
        raise Unreadable(f"{path}: no container runs pyinit{hint}")
    pyinit_args, app = split_at_app(argv, f"{path} container {container.get('name')}")
    facts = [("arg", word) for word in pyinit_args] + [("app", word) for word in app]
    facts += [("env", f"{name}={value}") for name, value in container_env(container, image).items()]
    facts += [("pod-command", str(word)) for word in container.get("command") or []]
    facts += [("pod-args", str(word)) for word in container.get("args") or []]
    facts += [("pod-env", f"{item['name']}={item['value']}")
              for item in container.get("env") or [] if "value" in item]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        http_get = (container.get(kind) or {}).get("httpGet")
        if http_get:
            facts.append(("probe", f"{kind} {http_get.get('path', '/')}"))
    return facts + run_as(pod, container)


def sidecar_facts(path):
    """The init container that runs pyinit as a health sidecar: its own `command` (the pyinit
    image's ENTRYPOINT is never read) with no app after it, its `env`, the pod's user."""
    pod = the_pod(path)
    for container in pod.get("initContainers") or []:
        argv = container_argv(container, None)
        if starts_pyinit(argv):
            break
    else:
        raise Unreadable(f"{path}: no init container runs pyinit (a sidecar sets its `command`)")
    words = [str(word) for word in argv[1:]]
    if "--" in words:
        raise Unreadable(f"{path} init container {container.get('name')} runs an app: {argv!r}")
    facts = [("arg", word) for word in words]
    facts += [("env", f"{name}={value}") for name, value in container_env(container, None).items()]
    return facts + run_as(pod, container)


def dockerfile_facts(image):
    argv = image.entrypoint + image.cmd
    pyinit_args, app = split_at_app(argv, f"{image.path} ENTRYPOINT and CMD")
    facts = [("arg", word) for word in pyinit_args] + [("app", word) for word in app]
    return facts + [("env", f"{name}={value}") for name, value in image.env.items()]


def main():
    args = sys.argv[1:]
    if not (args[:1] in (["dockerfile"], ["sidecar"]) and len(args) == 2
            or args[:1] == ["deployment"] and len(args) in (2, 3)):
        print(__doc__, file=sys.stderr)
        return 2
    image = None
    try:
        if args[0] == "dockerfile":
            image = Image(args[1])
            facts = dockerfile_facts(image)
        elif args[0] == "sidecar":
            facts = sidecar_facts(args[1])
        else:
            image = Image(args[2]) if len(args) == 3 else None
            facts = deployment_facts(args[1], image)
    except Unreadable as error:
        fail(str(error))
    if image:
        facts += [("passwd", line) for line in image.passwd_lines]
        facts += [("group", line) for line in image.group_lines]
    for fact_kind, value in facts:
        if "\n" in str(value):
            fail(f"a {fact_kind} value holds a line break: {value!r}")
        print(f"{fact_kind} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
