//! The crate as crates.io would receive it (`cargo install pyinit`): `cargo publish --dry-run
//! --locked` packages it and builds the package, and the package carries the sources, the lock
//! file and the README, with the metadata crates.io shows, and none of the tests, fixtures,
//! benchmarks, examples, scripts or workflows. (The release workflow publishes it; this is as far
//! as a machine without a crates.io token can go.)
//!
//! `--allow-dirty` lets the check run in a working copy with uncommitted changes; on a clean
//! clone, as CI runs it, it changes nothing. After the test build the dry run takes a few
//! seconds: it builds the package into target/ with the test build's dependencies.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{cargo_version, output_within, text_of};
use crate::common::runc::repo;

/// Time for a dry run that compiles the dependencies on a loaded 2-core machine.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(600);

fn cargo(args: &[&str]) -> std::process::Output {
    output_within(
        Command::new(env!("CARGO"))
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::null()),
        PUBLISH_PATIENCE,
    )
}

#[test]
fn cargo_publish_dry_run_packages_the_sources_alone_and_builds_them() {
    let output = cargo(&["publish", "--dry-run", "--locked", "--allow-dirty"]);
    let text = text_of(&output);
    assert!(output.status.success(), "{text}");
    let version = cargo_version();
    for expected in [
        "Packaged ".to_owned(),
        format!("Verifying pyinit v{version}"),
        "aborting upload due to dry run".to_owned(),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in:\n{text}");
    }

    let listed = cargo(&["package", "--list", "--locked", "--allow-dirty"]);
    assert!(listed.status.success(), "{}", text_of(&listed));
    let files: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for expected in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "src/main.rs",
        "build.rs",
        "link/discard-unwind-tables.ld",
    ] {
        assert!(
            files.iter().any(|file| file == expected),
            "{expected} is not in the package: {files:?}"
        );
    }
    let outside: Vec<&String> = files
        .iter()
        .filter(|file| {
            !file.starts_with("src/")
                && ![
                    "Cargo.toml",
                    "Cargo.toml.orig",
                    "Cargo.lock",
                    "README.md",
                    "build.rs",
                    "link/discard-unwind-tables.ld",
                    ".cargo_vcs_info.json",
                ]
                .contains(&file.as_str())
        })
        .collect();
    assert!(outside.is_empty(), "files beyond the sources: {outside:?}");

    // What crates.io shows comes from the packaged manifest.
    let manifest = std::fs::read_to_string(
        repo()
            .join("target/package")
            .join(format!("pyinit-{version}"))
            .join("Cargo.toml"),
    )
    .expect("the packaged Cargo.toml");
    for expected in [
        "name = \"pyinit\"",
        "repository = \"https://github.com/pyinit/pyinit\"",
        "readme = \"README.md\"",
        "keywords = [",
        "categories = [\"command-line-utilities\"]",
        "license = \"MIT OR Apache-2.0\"",
    ] {
        assert!(
            manifest.contains(expected),
            "no {expected:?} in:\n{manifest}"
        );
    }
    assert!(!manifest.contains("publish = false"), "{manifest}");
}
