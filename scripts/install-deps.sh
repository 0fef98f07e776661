#!/usr/bin/env bash
# Installs what pyinit's tests and benchmarks need, once: Debian packages and the musl target.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(runc file python3-venv util-linux procps curl)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    rustup target add x86_64-unknown-linux-musl
fi
