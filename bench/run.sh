#!/usr/bin/env bash
# Benchmarks pyinit side by side with tini, tini-static, dumb-init and catatonit: installs the
# peers and wrk (Debian packages), builds the static pyinit, the C children and the hyper
# ceiling server, then runs one suite (every init in the same run, interleaved, several rounds):
#   bench.py     size and memory (the default suite)
#   rollout.py   a rolling restart under load, in runc containers with gunicorn and uvicorn
#   probing.py   what a readiness check costs, by exec, by httpGet on the app, by pyinit's /readyz
#   floor.py     pyinit's idle and loaded memory beside the floor of its dependencies (bench/ceiling)
#   servers.py   what each common Python server does with the kubelet's SIGTERM, under pyinit, tini
#                and dumb-init, in runc containers (celery against a redis-server on loopback)
#   readiness.py time to Ready after the app answers: a kubelet probing the app, or pyinit's /readyz
# The rollout, probing, servers and readiness suites also need the end-to-end venv
# (scripts/install-deps.sh), all but readiness runc too, and servers redis-server.
# Everything runs on this machine over loopback, and every step is bounded in count and time.
# Usage: bash bench/run.sh [rollout|probing|floor|servers|readiness] [--rounds N] [--json FILE] ...   (SUITE.py --help)
# Builds go to $CARGO_TARGET_DIR when set, else to the repository's target/.
set -euo pipefail
cd "$(dirname "$0")/.."

suite=bench
case "${1:-}" in
    rollout | probing | floor | servers | readiness) suite=$1; shift ;;
esac

# Debian packages (apt-get only when one is missing) and the musl target.
bash scripts/apt-install.sh tini dumb-init catatonit wrk gcc util-linux
if [ "$suite" != bench ]; then
    # runc and the venv with the pinned servers.
    bash scripts/install-deps.sh
fi
if [ "$suite" = servers ]; then
    bash scripts/apt-install.sh redis-server
fi

target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --locked --target x86_64-unknown-linux-musl --target-dir "$target_dir"
if [ "$suite" = bench ] || [ "$suite" = floor ]; then
    cargo build --release --locked --manifest-path bench/ceiling/Cargo.toml \
        --target x86_64-unknown-linux-musl --target-dir "$target_dir/bench-ceiling"
fi
if [ "$suite" = bench ]; then
    mkdir -p "$target_dir/bench"
    gcc -O2 -Wall -o "$target_dir/bench/sigchild" bench/src/sigchild.c
    gcc -O2 -Wall -o "$target_dir/bench/orphans" bench/src/orphans.c
fi

export PYINIT_BENCH_TARGET_DIR="$target_dir"
# Debian's python3: the benchmark needs nothing but its standard library (the servers under test
# come from the venv).
exec /usr/bin/python3 "bench/$suite.py" "$@"
