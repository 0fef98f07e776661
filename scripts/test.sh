#!/usr/bin/env bash
# Runs every check pyinit has, installing what they need first (idempotent, as root): Debian
# packages (runc, podman, qemu-user-static, debootstrap, ...), the musl targets, the venvs and
# the workflow linters; then the lint gate (rustfmt, clippy, the release workflows), the static
# release binaries and the wheels for x86_64 and aarch64 with their checks, the distribution
# image, podman's base image, and the whole test suite (the aarch64 binary under qemu,
# Dockerfile.example in podman, the image's uses and `cargo publish --dry-run` included). Each
# step's time is printed, and a summary at the end. The install steps (apt, pip, npm, debootstrap:
# hundreds of lines) write to a log file under target/install-logs/ instead, which is printed
# only when the step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

timings=()
started_at=$SECONDS
step_started_at=$SECONDS
step_name=""
finish_step() {
    if [ -n "$step_name" ]; then
        timings+=("$(printf '%5ds  %s' $((SECONDS - step_started_at)) "$step_name")")
    fi
}
step() {
    finish_step
    step_name=$*
    step_started_at=$SECONDS
    printf '\n== %s\n' "$*" >&2
}
# Runs a command with its output in target/install-logs/NAME.log; on failure prints that log and
# returns the command's exit code (which stops the script: set -e).
install_logs=target/install-logs
quietly() {
    local log="$install_logs/$1.log"
    shift
    mkdir -p "$install_logs"
    if "$@" >"$log" 2>&1; then
        printf '(its output: %s, %d lines)\n' "$log" "$(wc -l <"$log")" >&2
    else
        local code=$?
        cat "$log" >&2
        printf '== failed: %s, exit code %d (its output is above and in %s)\n' \
            "$step_name" "$code" "$log" >&2
        return "$code"
    fi
}
test_log=target/test-output.log
rm -f "$test_log"
summary() {
    finish_step
    printf '\n== time per step\n' >&2
    printf '%s\n' "${timings[@]}" >&2
    printf '%5ds  total\n' $((SECONDS - started_at)) >&2
    # The test runner's own verdicts close the output, after the summary.
    if [ -f "$test_log" ]; then
        grep -E '^test result: ' "$test_log" || true
    fi
}
trap summary EXIT

step "installing what the tests need"
quietly install-deps bash scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "release workflows: actionlint and zizmor"
bash scripts/lint-workflows.sh

step "static musl release builds, x86_64 and aarch64"
bash scripts/build-static.sh

step "wheels, x86_64 and aarch64"
bash scripts/build-wheels.sh

step "distribution image, localhost/pyinit"
bash scripts/build-image.sh

step "podman base image (debootstrap, once per recipe)"
quietly podman-base-image bash scripts/podman-base-image.sh

step "cargo test"
cargo test --locked 2>&1 | tee "$test_log"
