#!/usr/bin/env bash
# Benchmarks pyinit side by side with tini, tini-static, dumb-init and catatonit: installs the
# peers and wrk (Debian packages), builds the static pyinit, the C children and the hyper
# ceiling server, then runs bench.py (every init in the same run, interleaved, several rounds).
# Usage: bash bench/run.sh [--rounds N] [--json FILE] ...
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
packages=(tini dumb-init catatonit wrk gcc)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

cargo build --release --locked --target x86_64-unknown-linux-musl
CARGO_TARGET_DIR=target/bench-ceiling cargo build --release --manifest-path bench/ceiling/Cargo.toml \
    --target x86_64-unknown-linux-musl --locked
mkdir -p target/bench
gcc -O2 -Wall -o target/bench/sigchild bench/src/sigchild.c
gcc -O2 -Wall -o target/bench/orphans bench/src/orphans.c

exec python3 bench/bench.py "$@"
