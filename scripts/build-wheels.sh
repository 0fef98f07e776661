#!/usr/bin/env bash
# Builds pyinit's wheels with maturin (pyproject.toml, `bindings = "bin"`), one for x86_64 and one
# for aarch64, into target/wheels (or the folder given as the first argument), then checks each:
# its name has the version from Cargo.toml and both platform tags (manylinux2014 for glibc
# systems, musllinux_1_1 for musl ones), and the binary inside is byte for byte the static release
# binary that scripts/build-static.sh checks. maturin comes from target/dist-venv
# (scripts/install-deps.sh); cargo's release builds are shared with build-static.sh, so after it
# this takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/wheels}
maturin=target/dist-venv/bin/maturin
if [ ! -x "$maturin" ]; then
    echo "error: $maturin is missing: run scripts/install-deps.sh first" >&2
    exit 1
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

mkdir -p "$out"
# Only this build's wheels: a local index built from the folder must not offer an old version.
rm -f "$out"/pyinit-*.whl
for arch in x86_64 aarch64; do
    target="$arch-unknown-linux-musl"
    "$maturin" build --release --locked --target "$target" \
        --compatibility manylinux2014 musllinux_1_1 --out "$out" >&2
    wheel="$out/pyinit-$version-py3-none-manylinux2014_$arch.manylinux_2_17_$arch.musllinux_1_1_$arch.whl"
    if [ ! -f "$wheel" ]; then
        echo "error: maturin did not build $wheel; $out holds: $(ls "$out")" >&2
        exit 1
    fi
    /usr/bin/python3 - "$wheel" "target/$target/release/pyinit" "pyinit-$version.data/scripts/pyinit" <<'PY'
import hashlib, sys, zipfile
wheel, binary, member = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    inside = archive.read(member)
    mode = archive.getinfo(member).external_attr >> 16
if inside != open(binary, "rb").read():
    sys.exit(f"error: {member} in {wheel} is not {binary}")
if not mode & 0o111:
    sys.exit(f"error: {member} in {wheel} is not executable (mode {oct(mode)})")
print(f"{wheel}: {member} is {binary} (sha256 {hashlib.sha256(inside).hexdigest()[:16]})")
PY
done
