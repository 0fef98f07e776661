#!/usr/bin/env bash
# Installs the Debian packages named as arguments, plus Rust's musl targets for x86_64 and
# aarch64; apt-get runs (with one `apt-get update`) only when a package is missing, so a second
# run asks no registry. apt-get waits up to 10 minutes for the package manager's lock, since
# other scripts on the machine may be running apt at the same time.
set -euo pipefail

missing=()
for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    lock_wait=(-o DPkg::Lock::Timeout=600)
    apt-get "${lock_wait[@]}" update -q
    DEBIAN_FRONTEND=noninteractive apt-get "${lock_wait[@]}" install -y -q "${missing[@]}"
fi

for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
done
