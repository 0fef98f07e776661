//! Tidy checks run as a unit test: the boundaries `style.md` promises, enforced by reading the
//! source. The decision core imports no OS layer and reads no clock; every file says what it owns.

use std::path::{Path, PathBuf};

/// Files that hold pure decisions: no tokio, nix, std::fs, std::net, and no `Instant::now()`.
const PURE_FILES: &[&str] = &[
    "src/supervisor/mod.rs",
    "src/config/mod.rs",
    "src/config/cli.rs",
    "src/config/parse.rs",
    "src/config/probe_flags.rs",
    "src/exit.rs",
    "src/drill/report.rs",
    "src/drill/spec.rs",
    "src/status.rs",
    "src/container/cgroup.rs",
    "src/container/env.rs",
    "src/container/checks.rs",
    "src/privileges/passwd.rs",
    "src/privileges/spec.rs",
    "src/probe/spec.rs",
    "src/probe/threshold.rs",
    "src/health/routes.rs",
    "src/health/metrics.rs",
];

const FORBIDDEN_IN_PURE: &[&str] = &["tokio::", "nix::", "std::fs", "std::net", "Instant::now()"];

fn source_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn pure_files_stay_pure() {
    for relative in PURE_FILES {
        let text = std::fs::read_to_string(root().join(relative)).unwrap();
        // Unit tests may use what they like; only the code above them must stay pure.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for forbidden in FORBIDDEN_IN_PURE {
            assert!(
                !code.contains(forbidden),
                "{relative} must not use {forbidden}"
            );
        }
    }
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    source_files(&root().join("src"), &mut files);
    files.push(root().join("tests/integration.rs"));
    assert!(files.len() > 10);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} must start with a //! paragraph",
            path.display()
        );
    }
}

#[test]
fn unsafe_lives_only_in_spawn() {
    let mut files = Vec::new();
    source_files(&root().join("src"), &mut files);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let uses_unsafe = text.lines().any(|line| {
            let line = line.trim_start();
            !line.starts_with("//") && (line.contains("unsafe {") || line.contains("unsafe fn"))
        });
        // This file names the pattern it looks for.
        if uses_unsafe && !path.ends_with("src/tidy.rs") {
            assert!(
                path.ends_with("src/spawn.rs"),
                "{} uses unsafe",
                path.display()
            );
        }
    }
}
