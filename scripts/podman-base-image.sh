#!/usr/bin/env bash
# Makes the local base image that the podman test builds Dockerfile.example on, since no image
# registry can be reached: a minimal Debian bookworm (debootstrap) with Debian's python3, pip and
# venv, where pip installs system-wide (EXTERNALLY-MANAGED removed) as in the official python
# images, imported into podman. Prints the image's name on stdout; everything else goes to stderr.
#
# The image is cached: its tag holds a hash of this script, so a changed recipe makes a new one
# (and removes the old), and a second run finds it with `podman image exists` in well under a
# second. A lock serialises runs from parallel test processes or worktrees.
set -euo pipefail
cd "$(dirname "$0")/.."

repository=localhost/pyinit-e2e-python
tag="bookworm-$(sha256sum scripts/podman-base-image.sh | cut -c1-12)"
image="$repository:$tag"

exec 9>/var/lock/pyinit-podman-base-image.lock
flock --timeout 900 9

if podman image exists "$image"; then
    echo "$image"
    exit 0
fi

# The Debian archive that apt's own sources name (deb822 or one-line format), so debootstrap
# downloads from the same mirror as apt-get.
mirror=$(
    { grep -hs -m1 '^URIs:' /etc/apt/sources.list.d/debian.sources || true; } | awk '{print $2}'
    { grep -hs -E '^deb +(\[[^]]*\] +)?[a-z]+://[^ ]+ +bookworm( |$)' /etc/apt/sources.list || true; } \
        | sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}'
)
mirror=$(echo "$mirror" | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/pyinit-e2e-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm from $mirror into $rootfs" >&2
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >&2
# As in the official python images: `pip install` as root installs system-wide, into /usr/local.
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . \
    | podman import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$image" >&2

# Images of an older recipe are never used again.
podman images --format '{{.Repository}}:{{.Tag}}' \
    | { grep -x "$repository:.*" || true; } \
    | { grep -vx "$image" || true; } \
    | while read -r old; do podman rmi "$old" >&2 || true; done

echo "$image"
