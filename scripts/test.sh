#!/usr/bin/env bash
# Runs every check pyinit has, installing what they need first (idempotent, as root):
# Debian packages (runc, file, python3-venv), the musl target and the end-to-end venv; then the
# lint gate, the static release build and its checks, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

log "installing what the tests need"
bash scripts/install-deps.sh

log "cargo fmt --check"
cargo fmt --check

log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

log "static musl release build"
bash scripts/build-static.sh

log "cargo test"
cargo test --locked
