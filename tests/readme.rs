//! The README's flag table stays true: every flag and `PYINIT_*` variable that `--help` lists
//! (for pyinit and for `pyinit drill`) appears in README.md.

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::pyinit_bin;

fn flags_and_variables(args: &[&str]) -> BTreeSet<String> {
    let output = Command::new(pyinit_bin()).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?} --help failed");
    let help = String::from_utf8(output.stdout).unwrap();
    let mut found = BTreeSet::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(flag) = trimmed.strip_prefix("--") {
            let name: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if name != "help" && name != "version" {
                found.insert(format!("--{name}"));
            }
        }
        if let Some(start) = trimmed.find("[env: ") {
            let variable: String = trimmed[start + 6..]
                .chars()
                .take_while(|c| *c != '=')
                .collect();
            found.insert(variable);
        }
    }
    found
}

#[test]
fn readme_lists_every_flag_and_variable() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut listed = flags_and_variables(&["--help"]);
    listed.extend(flags_and_variables(&["drill", "--help"]));
    assert!(
        listed.len() > 60,
        "too few flags found in --help: {listed:?}"
    );
    let missing: Vec<&String> = listed
        .iter()
        .filter(|name| !readme.contains(&format!("`{name}")))
        .collect();
    assert!(missing.is_empty(), "README.md does not list: {missing:?}");
}
