//! The release workflows under `.github/workflows` (release.yml and the reusable workflows it
//! calls) pass `scripts/lint-workflows.sh` clean: actionlint (syntax, expressions, the needs and
//! outputs between jobs) and zizmor, offline (actions pinned by commit, no credentials persisted
//! by checkout, each job's permissions, template injection). Each linter is also shown broken
//! copies, so a linter that reads nothing or accepts everything fails here. And the rules of the
//! release that neither linter states are read from the files themselves: a version tag is the
//! only trigger, `permissions: {}` at the top of every file, every action pinned by a full
//! commit with its version beside it, no secret at all (PyPI and crates.io by trusted
//! publishing, ghcr.io with the job's own token), `id-token: write` only in the two publish
//! jobs, one Rust toolchain.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{TempDir, output_within, text_of};
use crate::common::PATIENCE;
use crate::common::runc::repo;

const WORKFLOWS: [&str; 3] = [
    "release.yml",
    "build-release-binaries.yml",
    "build-docker.yml",
];

fn workflow_path(name: &str) -> PathBuf {
    repo().join(".github/workflows").join(name)
}

fn read_workflow(name: &str) -> String {
    std::fs::read_to_string(workflow_path(name)).expect("read a workflow")
}

fn lint(files: &[PathBuf]) -> Output {
    output_within(
        Command::new("bash")
            .arg(repo().join("scripts/lint-workflows.sh"))
            .args(files)
            .stdin(Stdio::null()),
        PATIENCE,
    )
}

#[test]
fn the_workflows_are_exactly_the_release_ones_and_both_linters_pass_them() {
    let mut found: Vec<String> = std::fs::read_dir(repo().join(".github/workflows"))
        .expect("read .github/workflows")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut expected: Vec<String> = WORKFLOWS.iter().map(|name| (*name).to_owned()).collect();
    expected.sort();
    assert_eq!(found, expected);

    // With no arguments the script lints every workflow.
    let output = lint(&[]);
    let text = text_of(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("actionlint: 3 files, 0 findings"), "{text}");
    assert!(text.contains("No findings to report"), "{text}");
}

/// Copies of the three workflows in `scratch`, with each (from, to) of `changes` made in `file`.
fn broken_copies(scratch: &Path, file: &str, changes: &[(&str, &str)]) -> Vec<PathBuf> {
    WORKFLOWS
        .iter()
        .map(|name| {
            let mut text = read_workflow(name);
            for (from, to) in changes.iter().filter(|_| *name == file) {
                assert!(text.contains(from), "{file} has no {from:?}");
                text = text.replacen(from, to, 1);
            }
            let path = scratch.join(name);
            std::fs::write(&path, text).expect("write a copy");
            path
        })
        .collect()
}

/// A broken copy: the file, what is changed in it into what, and the finding that must follow.
type BrokenCopy<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn each_linter_reports_a_broken_copy() {
    let cases: [BrokenCopy; 5] = [
        (
            "release.yml",
            &[(
                "needs.plan.outputs.version }}",
                "needs.plan.outputs.versoin }}",
            )],
            "property \"versoin\" is not defined",
        ),
        (
            "release.yml",
            &[(
                "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1",
                "actions/checkout@v7",
            )],
            "unpinned-uses",
        ),
        (
            "build-release-binaries.yml",
            &[("        with:\n          persist-credentials: false\n", "")],
            "artipacked",
        ),
        (
            "release.yml",
            // No block at the top, and none on the plan job: it gets the default permissions.
            &[
                ("permissions: {}\n", ""),
                (
                    "    timeout-minutes: 5\n    permissions:\n      contents: read\n",
                    "    timeout-minutes: 5\n",
                ),
            ],
            "excessive-permissions",
        ),
        (
            "release.yml",
            &[(
                "if [ \"$TAG\" != \"v$version\" ]; then",
                "if [ \"${{ github.ref_name }}\" != \"v$version\" ]; then",
            )],
            "template-injection",
        ),
    ];
    for (file, changes, finding) in cases {
        let scratch = TempDir::new("broken-workflows");
        let output = lint(&broken_copies(&scratch.path, file, changes));
        let text = text_of(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{changes:?} in {file} must fail the lint:\n{text}"
        );
        assert!(
            text.contains(finding),
            "{changes:?} in {file} must be reported as {finding:?}:\n{text}"
        );
    }
}

/// The lines of `text` that use an action or a reusable workflow: what follows `uses: `.
fn uses_of(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            line.strip_prefix("uses: ").map(str::to_owned)
        })
        .collect()
}

#[test]
fn the_release_rules_hold_in_every_file() {
    let release = read_workflow("release.yml");
    assert!(
        release.contains("on:\n  push:\n    tags:\n      - \"v[0-9]+.[0-9]+.[0-9]+*\"\n\n"),
        "release.yml is not started by a version tag alone"
    );
    let mut toolchains = Vec::new();
    let mut id_tokens = 0;
    for name in WORKFLOWS {
        let text = read_workflow(name);
        assert!(
            text.lines().any(|line| line == "permissions: {}"),
            "{name} has no top-level `permissions: {{}}`"
        );
        assert!(!text.contains("secrets."), "{name} uses a stored secret");
        if name != "release.yml" {
            assert!(
                text.contains("on:\n  workflow_call:"),
                "{name} is not a reusable workflow"
            );
        }
        for uses in uses_of(&text) {
            if uses.starts_with("./.github/workflows/") {
                continue;
            }
            // owner/name@<40 hex digits> # vX.Y.Z
            let (action, rest) = uses.split_once('@').expect("an action@ref");
            let (commit, comment) = rest.split_once(" # v").unwrap_or((rest, ""));
            assert!(
                action.contains('/')
                    && commit.len() == 40
                    && commit.chars().all(|c| c.is_ascii_hexdigit())
                    && comment.split('.').count() == 3,
                "{name}: `uses: {uses}` is not pinned by commit with its version"
            );
        }
        let checkouts = text.matches("uses: actions/checkout@").count();
        assert_eq!(
            text.matches("persist-credentials: false").count(),
            checkouts,
            "{name}: a checkout persists its credentials"
        );
        id_tokens += text.matches("id-token: write").count();
        assert!(
            name == "release.yml" || !text.contains("id-token"),
            "{name} asks for an id-token"
        );
        toolchains.extend(
            text.lines()
                .filter_map(|line| line.trim().strip_prefix("RUST_TOOLCHAIN: "))
                .map(str::to_owned),
        );
    }
    assert_eq!(id_tokens, 2, "id-token: write outside the two publish jobs");
    assert!(!toolchains.is_empty());
    assert!(
        toolchains
            .iter()
            .all(|toolchain| *toolchain == toolchains[0]),
        "the workflows build with different toolchains: {toolchains:?}"
    );
}
