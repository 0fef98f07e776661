#!/usr/bin/env bash
# Installs what pyinit's tests and benchmarks need, once (idempotent, as root): Debian packages,
# the musl target, and the end-to-end tests' virtual environment. A second run that finds
# everything in place asks no registry and takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages (apt-get only when one is missing) and the musl target.
bash scripts/apt-install.sh runc file python3-venv util-linux procps curl

# The end-to-end venv: made from Debian's /usr/bin/python3, because the runc containers mount
# only the host's system folders (the pyenv python3 on PATH lives under /root). It sits in the
# gitignored target/ folder and is rebuilt whenever the pinned requirements change.
venv=target/e2e-venv
requirements=scripts/e2e-requirements.txt
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
