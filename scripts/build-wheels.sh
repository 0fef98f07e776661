#!/usr/bin/env bash
# Builds pyinit's wheels (the PyPI distribution `pyinit-k8s`, whose command is `pyinit`) with
# maturin (pyproject.toml, `bindings = "bin"`), one for x86_64 and one for aarch64, into
# target/wheels (or the folder given as the first argument), then checks each: its name has the
# version from Cargo.toml and both platform tags (manylinux2014 for glibc systems, musllinux_1_1
# for musl ones), and the binary inside is byte for byte the static release binary that
# scripts/build-static.sh checks. cargo's release builds are shared with build-static.sh, so
# after it this takes seconds.
#
# Needs Rust (with the two musl targets: `rustup target add x86_64-unknown-linux-musl
# aarch64-unknown-linux-musl`) and a python3 on PATH, nothing else: maturin, pinned in
# scripts/maturin-requirements.txt, is installed into target/maturin-venv on the first run (and
# again when the pin changes).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/wheels}
venv=target/maturin-venv
requirements=scripts/maturin-requirements.txt
maturin=$venv/bin/maturin
stamp=$venv/.requirements.sha256
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$maturin" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "installing $(grep -m1 '^maturin==' "$requirements") into $venv" >&2
    rm -rf "$venv"
    mkdir -p target
    python3 -m venv "$venv"
    "$venv/bin/python3" -m pip install --disable-pip-version-check --no-input -q --no-deps \
        -r "$requirements"
    echo "$wanted" >"$stamp"
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
# The distribution's name as wheel file names spell it (PEP 427: `-` becomes `_`).
distribution=pyinit_k8s

mkdir -p "$out"
# Only this build's wheels: a local index built from the folder must not offer an old version.
rm -f "$out"/pyinit-*.whl "$out"/pyinit_k8s-*.whl
for arch in x86_64 aarch64; do
    target="$arch-unknown-linux-musl"
    "$maturin" build --release --locked --target "$target" \
        --compatibility manylinux2014 musllinux_1_1 --out "$out" >&2
    wheel="$out/$distribution-$version-py3-none-manylinux2014_$arch.manylinux_2_17_$arch.musllinux_1_1_$arch.whl"
    if [ ! -f "$wheel" ]; then
        echo "error: maturin did not build $wheel; $out holds: $(ls "$out")" >&2
        exit 1
    fi
    python3 - "$wheel" "target/$target/release/pyinit" "$distribution-$version.data/scripts/pyinit" <<'PY'
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
