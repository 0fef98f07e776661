#!/usr/bin/env bash
# Benchmarks pyinit side by side with tini, tini-static, dumb-init and catatonit: installs the
# peers and wrk (Debian packages), builds the static pyinit, the C children and the hyper
# ceiling server, then runs bench.py (every init in the same run, interleaved, several rounds).
# Everything runs on this machine over loopback, and every step is bounded in count and time.
# Usage: bash bench/run.sh [--rounds N] [--json FILE] ...   (bench.py --help lists the options)
# Builds go to $CARGO_TARGET_DIR when set, else to the repository's target/.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages (apt-get only when one is missing) and the musl target.
bash scripts/apt-install.sh tini dumb-init catatonit wrk gcc util-linux

target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --locked --target x86_64-unknown-linux-musl --target-dir "$target_dir"
cargo build --release --locked --manifest-path bench/ceiling/Cargo.toml \
    --target x86_64-unknown-linux-musl --target-dir "$target_dir/bench-ceiling"
mkdir -p "$target_dir/bench"
gcc -O2 -Wall -o "$target_dir/bench/sigchild" bench/src/sigchild.c
gcc -O2 -Wall -o "$target_dir/bench/orphans" bench/src/orphans.c

export PYINIT_BENCH_TARGET_DIR="$target_dir"
# Debian's python3: the benchmark needs nothing but its standard library.
exec /usr/bin/python3 bench/bench.py "$@"
