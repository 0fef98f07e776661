#!/usr/bin/env bash
# Builds the static release binaries for x86_64 and aarch64 (to COPY into any image, scratch and
# distroless included), then proves them: `file` says statically linked for the right
# architecture, each is within the size budget, and the x86_64 one runs as PID 1 of a runc
# container whose rootfs holds nothing but the binary itself. The aarch64 one is linked by
# rust-lld (.cargo/config.toml), so no cross compiler is needed; tests/dist/aarch64.rs runs it
# under qemu-user.
#
# With a folder as the first argument (the release workflow's `dist/binaries`), the checked
# binaries are also copied there as pyinit-x86_64-unknown-linux-musl and
# pyinit-aarch64-unknown-linux-musl, with a SHA256SUMS file that `sha256sum -c SHA256SUMS`
# verifies; scripts/build-image.sh takes that folder with --from.
#
# runc needs root: run as another user, the script asks `sudo -n` for that one command (as the
# release workflow's runner user may).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-}

# The size budget of a static pyinit: 1.75 MiB.
budget_bytes=$((1792 * 1024))
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    cargo build --release --locked --target "$target"
    binary="target/$target/release/pyinit"

    description=$(file -L "$binary")
    echo "$description"
    case "$description" in
        *"statically linked"* | *"static-pie linked"*) ;;
        *) echo "error: $binary is not statically linked" >&2; exit 1 ;;
    esac
    case "$target:$description" in
        x86_64-*:*"x86-64"* | aarch64-*:*"ARM aarch64"*) ;;
        *) echo "error: $binary is not built for $target" >&2; exit 1 ;;
    esac

    size=$(stat -c %s "$binary")
    echo "size: $size bytes (budget $budget_bytes)"
    if [ "$size" -gt "$budget_bytes" ]; then
        echo "error: $binary is $size bytes, over the budget of $budget_bytes" >&2
        exit 1
    fi
done

# A rootfs with nothing but the binary: pyinit as PID 1 runs itself as the app.
binary=target/x86_64-unknown-linux-musl/release/pyinit
bundle=$(mktemp -d)
container="pyinit-static-$$"
runc=(runc)
if [ "$(id -u)" -ne 0 ]; then
    runc=(sudo -n runc)
fi
cleanup() { "${runc[@]}" delete -f "$container" >/dev/null 2>&1 || true; rm -rf "$bundle"; }
trap cleanup EXIT
mkdir -p "$bundle/rootfs"
cp "$binary" "$bundle/rootfs/pyinit"
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"]["terminal"] = False
# Port 0: the host network is shared, where 8558 may be taken by another run.
config["process"]["args"] = ["/pyinit", "--allow-root", "--health-addr", "127.0.0.1:0", "--", "/pyinit", "--version"]
config["root"]["readonly"] = True
config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
json.dump(config, open(path, "w"), indent=2)
PY
output=$("${runc[@]}" run --bundle "$bundle" "$container" 2>&1) || { echo "error: the static binary failed in an empty rootfs: $output" >&2; exit 1; }
echo "in an empty rootfs: $output"
case "$output" in
    *"pyinit "*) ;;
    *) echo "error: unexpected output from the static binary: $output" >&2; exit 1 ;;
esac

if [ -n "$out" ]; then
    mkdir -p "$out"
    rm -f "$out"/pyinit-*-unknown-linux-musl "$out"/SHA256SUMS
    for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
        cp "target/$target/release/pyinit" "$out/pyinit-$target"
    done
    (cd "$out" && sha256sum pyinit-x86_64-unknown-linux-musl pyinit-aarch64-unknown-linux-musl >SHA256SUMS)
    echo "release binaries in $out:"
    cat "$out/SHA256SUMS"
fi
