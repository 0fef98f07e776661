#!/usr/bin/env bash
# Builds pyinit's distribution image with podman: FROM scratch, the static binary at /pyinit and
# no other file (ENTRYPOINT ["/pyinit"] and the OCI labels are metadata). It is not an image to
# run apps in: a user's Dockerfile copies the binary out of it, as uv's image is used:
#   COPY --from=ghcr.io/pyinit/pyinit:VERSION /pyinit /usr/local/bin/pyinit
#
#   bash scripts/build-image.sh [--from DIR]
#       builds localhost/pyinit:VERSION (VERSION from Cargo.toml) for this machine's architecture
#       in podman's own storage, where a local `COPY --from=localhost/pyinit:VERSION` finds it.
#   bash scripts/build-image.sh [--from DIR] --push DESTINATION [--push DESTINATION...]
#       builds it for linux/amd64 and linux/arm64 and pushes the two as one image index to each
#       DESTINATION, a containers-transport name: docker://ghcr.io/OWNER/pyinit:VERSION in the
#       release workflow, oci:PATH in the tests. The build runs in a private podman storage in a
#       temporary folder, removed at the end: podman 4.3 cannot list the images of a storage that
#       holds an image index, and nothing of the build is left behind in the shared one.
#
# The binaries come from DIR, with the SHA256SUMS that `scripts/build-static.sh DIR` writes there
# (the release workflow passes the binaries it built); without --from, build-static.sh builds and
# checks them first. Either way SHA256SUMS is verified before the build. --source URL sets the
# image's org.opencontainers.image.source label (by which GitHub links the package to its
# repository). Local builds of localhost/pyinit:VERSION are serialised by a lock, since several
# checkouts on one machine share podman's storage; a caller that already holds the lock (a test
# that builds on the image next) sets PYINIT_IMAGE_LOCK_HELD=1.
set -euo pipefail
cd "$(dirname "$0")/.."

from="" source_url="https://github.com/pyinit/pyinit" destinations=()
while [ $# -gt 0 ]; do
    case "$1" in
        --from) from=${2:?--from needs a folder}; shift 2 ;;
        --push) destinations+=("${2:?--push needs a destination}"); shift 2 ;;
        --source) source_url=${2:?--source needs a URL}; shift 2 ;;
        *) echo "error: unknown argument $1 (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
context=$(mktemp -d)
storage=""
cleanup() {
    rm -rf "$context"
    if [ -n "$storage" ]; then
        # The private storage's files may belong to the subordinate ids of rootless podman.
        rm -rf "$storage" 2>/dev/null || podman unshare rm -rf "$storage"
    fi
}
trap cleanup EXIT

if [ -z "$from" ]; then
    from="$context/binaries"
    bash scripts/build-static.sh "$from" >&2
fi
(cd "$from" && sha256sum --check --strict SHA256SUMS) >&2

# One folder per architecture, as podman names them in TARGETARCH. The mode is set by COPY: a
# binary downloaded from a workflow artifact has lost its run bit.
for pair in amd64:x86_64-unknown-linux-musl arm64:aarch64-unknown-linux-musl; do
    mkdir -p "$context/${pair%%:*}"
    cp "$from/pyinit-${pair#*:}" "$context/${pair%%:*}/pyinit"
done
cat >"$context/Containerfile" <<'EOF'
FROM scratch
ARG TARGETARCH
COPY --chmod=0755 ${TARGETARCH}/pyinit /pyinit
ENTRYPOINT ["/pyinit"]
EOF
labels=(
    --label "org.opencontainers.image.title=pyinit"
    --label "org.opencontainers.image.description=pyinit's static binary at /pyinit, to COPY --from into a Python image"
    --label "org.opencontainers.image.version=$version"
    --label "org.opencontainers.image.licenses=MIT OR Apache-2.0"
    --label "org.opencontainers.image.source=$source_url"
)

if [ "${#destinations[@]}" -eq 0 ]; then
    image="localhost/pyinit:$version"
    if [ "${PYINIT_IMAGE_LOCK_HELD:-}" != 1 ]; then
        exec 9>"${TMPDIR:-/tmp}/pyinit-image.lock"
        flock --timeout 900 9
    fi
    case "$(uname -m)" in
        x86_64) platform=linux/amd64 ;;
        aarch64) platform=linux/arm64 ;;
        *) echo "error: no pyinit binary for $(uname -m)" >&2; exit 1 ;;
    esac
    podman rmi --force "$image" >/dev/null 2>&1 || true
    podman build --pull=never --no-cache --layers=false --platform "$platform" "${labels[@]}" \
        --tag "$image" --file "$context/Containerfile" "$context" >&2
    echo "$image"
    exit 0
fi

storage=$(mktemp -d)
private=(podman --root "$storage/root" --runroot "$storage/run" --storage-driver vfs)
list="localhost/pyinit:$version"
"${private[@]}" build --pull=never --no-cache --layers=false --platform linux/amd64,linux/arm64 "${labels[@]}" \
    --manifest "$list" --file "$context/Containerfile" "$context" >&2
for destination in "${destinations[@]}"; do
    "${private[@]}" manifest push --all "$list" "$destination" >&2
    echo "$destination"
done
