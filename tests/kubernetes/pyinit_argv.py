"""Prints how a user's file starts pyinit, so that a test can run the real binary with it.

    target/e2e-venv/bin/python3 tests/kubernetes/pyinit_argv.py deployment MANIFEST
    target/e2e-venv/bin/python3 tests/kubernetes/pyinit_argv.py dockerfile DOCKERFILE
    target/e2e-venv/bin/python3 tests/kubernetes/pyinit_argv.py sidecar MANIFEST

One fact per line, `KIND VALUE`:
- `arg WORD`: pyinit's own arguments, in order, up to and without the `--` before the app;
- `app WORD`: the app's argv after that `--`;
- `env NAME=VALUE`: a variable pyinit starts with (the container's `env` entries that have a
  `value`; the Dockerfile's `ENV`);
- deployment and sidecar: `run-as UID GID`, the pod's runAsUser and runAsGroup (container over
  pod);
- sidecar: the init container that runs pyinit as a health sidecar, whose command has no app (so
  no `app` lines, and no `--` is needed);
- dockerfile only: `passwd LINE` and `group LINE`, the /etc/passwd and /etc/group entries its
  `groupadd --gid` and `useradd --uid` commands create.
Exits 1 with a message when the file has no pyinit to find or a value holds a line break.
"""
import json
import os
import re
import shlex
import sys

import yaml


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def split_at_app(argv, where):
    """pyinit's words before `--` (argv[0] dropped) and the app's after it."""
    if not argv or os.path.basename(argv[0]) != "pyinit":
        fail(f"{where} does not start pyinit: {argv!r}")
    words = argv[1:]
    if "--" not in words:
        fail(f"{where} has no `--` before the app: {argv!r}")
    cut = words.index("--")
    return words[:cut], words[cut + 1:]


def deployment(path):
    with open(path, encoding="utf-8") as file:
        documents = [d for d in yaml.safe_load_all(file) if d]
    pods = [d["spec"]["template"]["spec"] for d in documents if d.get("kind") == "Deployment"]
    if len(pods) != 1:
        fail(f"{path}: one Deployment expected, found {len(pods)}")
    pod = pods[0]
    for container in pod["containers"]:
        argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        if argv and os.path.basename(argv[0]) == "pyinit":
            break
    else:
        fail(f"{path}: no container runs pyinit")
    facts = []
    pyinit_args, app = split_at_app(argv, f"{path} container {container.get('name')}")
    facts += [("arg", word) for word in pyinit_args]
    facts += [("app", word) for word in app]
    for item in container.get("env") or []:
        if "value" in item:
            facts.append(("env", f"{item['name']}={item['value']}"))
    security = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
    uid, gid = security.get("runAsUser"), security.get("runAsGroup", security.get("runAsUser"))
    if uid is not None:
        facts.append(("run-as", f"{uid} {gid}"))
    return facts


def sidecar(path):
    with open(path, encoding="utf-8") as file:
        documents = [d for d in yaml.safe_load_all(file) if d]
    pods = [d["spec"]["template"]["spec"] for d in documents if d.get("kind") == "Deployment"]
    if len(pods) != 1:
        fail(f"{path}: one Deployment expected, found {len(pods)}")
    pod = pods[0]
    for container in pod.get("initContainers") or []:
        argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        if argv and os.path.basename(argv[0]) == "pyinit":
            break
    else:
        fail(f"{path}: no init container runs pyinit")
    if "--" in argv:
        fail(f"{path}: the sidecar runs an app: {argv!r}")
    facts = [("arg", word) for word in argv[1:]]
    for item in container.get("env") or []:
        if "value" in item:
            facts.append(("env", f"{item['name']}={item['value']}"))
    security = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
    uid, gid = security.get("runAsUser"), security.get("runAsGroup", security.get("runAsUser"))
    if uid is not None:
        facts.append(("run-as", f"{uid} {gid}"))
    return facts


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


def dockerfile(path):
    with open(path, encoding="utf-8") as file:
        text = file.read()
    final_stage = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            final_stage = []  # only the last stage is the image that runs
        final_stage.append((keyword, rest))
    entrypoints = [rest for keyword, rest in final_stage if keyword == "ENTRYPOINT"]
    if not entrypoints:
        fail(f"{path}: no ENTRYPOINT in the final stage")
    # The last ENTRYPOINT wins; only its exec (JSON) form passes argv unchanged.
    argv = json.loads(entrypoints[-1])
    pyinit_args, app = split_at_app(argv, f"{path} ENTRYPOINT")
    facts = [("arg", word) for word in pyinit_args] + [("app", word) for word in app]
    groups, users = {}, []
    for keyword, rest in final_stage:
        if keyword == "ENV":
            facts += [("env", pair) for pair in shlex.split(rest)]
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = shlex.split(command)
            if words[:1] == ["groupadd"] and option(words, "--gid"):
                groups[words[-1]] = option(words, "--gid")
            if words[:1] == ["useradd"] and option(words, "--uid"):
                users.append((words[-1], option(words, "--uid"), option(words, "--gid"),
                              option(words, "--home-dir") or "/", option(words, "--shell") or "/bin/sh"))
    for name, gid in groups.items():
        facts.append(("group", f"{name}:x:{gid}:"))
    for name, uid, group, home, shell in users:
        gid = groups.get(group, group)
        if gid is None or not str(gid).isdigit():
            fail(f"{path}: useradd {name} has no numeric --gid or known group: {group!r}")
        facts.append(("passwd", f"{name}:x:{uid}:{gid}::{home}:{shell}"))
    return facts


def main():
    readers = {"deployment": deployment, "dockerfile": dockerfile, "sidecar": sidecar}
    if len(sys.argv) != 3 or sys.argv[1] not in readers:
        print(__doc__, file=sys.stderr)
        return 2
    kind, path = sys.argv[1:]
    facts = readers[kind](path)
    for fact_kind, value in facts:
        if "\n" in str(value):
            fail(f"{path}: a {fact_kind} value holds a line break: {value!r}")
        print(f"{fact_kind} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
