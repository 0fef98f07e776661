//! The documentation stays true: every flag and `PYINIT_*` variable that `--help` lists (for
//! pyinit and for `pyinit drill`) appears in docs/flags.md; `--help` groups the flags by concern
//! and `-h` is one screen with two examples, neither wider than 100 columns; every command of the
//! Install section of docs/install.md runs, and no page tells anyone to `pip install pyinit`,
//! which is another project on PyPI.

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::{PATIENCE, pyinit_bin};

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

/// A page of docs/, by its file name.
fn page(name: &str) -> String {
    let path = format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

#[test]
fn flags_page_lists_every_flag_and_variable() {
    let flags = page("flags.md");
    let mut listed = flags_and_variables(&["--help"]);
    listed.extend(flags_and_variables(&["drill", "--help"]));
    assert!(
        listed.len() > 60,
        "too few flags found in --help: {listed:?}"
    );
    let missing: Vec<&String> = listed
        .iter()
        .filter(|name| !flags.contains(&format!("`{name}")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/flags.md does not list: {missing:?}"
    );
}

/// The Install section of docs/install.md, from its `# Install` title to the next heading of
/// level 1 or 2 outside a code block: its text and its code blocks as (language, lines).
fn install_section() -> (String, Vec<(String, Vec<String>)>) {
    let page = page("install.md");
    let mut in_code = false;
    let mut section: Option<Vec<&str>> = None;
    for line in page.lines() {
        let heading = !in_code && (line.starts_with("# ") || line.starts_with("## "));
        match section.as_mut() {
            None if heading && line == "# Install" => section = Some(vec![line]),
            Some(_) if heading => break,
            Some(lines) => lines.push(line),
            None => {}
        }
        in_code ^= line.starts_with("```");
    }
    let section = section.expect("an Install section").join("\n");
    let mut blocks = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in section.lines() {
        match (current.take(), line.strip_prefix("```")) {
            (None, Some(language)) => current = Some((language.to_owned(), Vec::new())),
            (Some(block), Some("")) => blocks.push(block),
            (Some((language, mut lines)), _) => {
                lines.push(line.to_owned());
                current = Some((language, lines));
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "an unclosed code block in Install");
    (section, blocks)
}

/// Every command of the Install section of docs/install.md runs, in its order, as a user would run
/// it: the pip commands in a fresh venv against the tests' offline index (which holds the wheels
/// just built, gunicorn's and maturin's), the build scripts and cargo commands in the repository's
/// root (through `dist::run_once`, shared with the tests that need their output), maturin's
/// `--out dist` in a temporary folder instead of the clone's dist/. Each Dockerfile line is built
/// in podman, offline, on the local base image, and the built image must run `pyinit --version`.
/// A command this test does not know fails it, so none is left out.
#[test]
fn every_command_of_the_install_section_runs() {
    use crate::dist::{
        OfflineIndex, TempDir, base_image, cargo_version, fresh_venv, output_within, run_once,
        static_binary,
    };
    use std::time::Duration;

    let (section, blocks) = install_section();
    for expected in [
        "pip install pyinit-k8s",
        "RUN pip install",
        "COPY --from=ghcr.io/",
        "COPY pyinit",
        "cargo build",
    ] {
        assert!(section.contains(expected), "Install has no {expected:?}");
    }
    let index = OfflineIndex::of_wheels_and_wheelhouse();
    let scratch = TempDir::new("readme-install");
    let venv = fresh_venv(&scratch.path);
    let bin = venv.join("bin");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let dist = scratch.path.join("dist");
    let version = cargo_version();
    let mut ran = Vec::new();

    for (language, lines) in &blocks {
        for line in lines.iter().map(|line| line.trim()) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match language.as_str() {
                "sh" if line.starts_with("pip ") || line.starts_with("maturin ") => {
                    let command_line = if line.starts_with("maturin ") {
                        assert!(line.contains(" --out dist"), "{line}");
                        line.replace(" --out dist", &format!(" --out {}", dist.display()))
                    } else {
                        line.to_owned()
                    };
                    // pip only reaches the offline index; maturin runs cargo, whose crates
                    // are already on the machine.
                    let mut command = if line.starts_with("pip ") {
                        index.command("sh")
                    } else {
                        Command::new("sh")
                    };
                    let output = output_within(
                        command
                            .args(["-c", &command_line])
                            .current_dir(crate::common::runc::repo())
                            .env("PATH", &path)
                            .env("VIRTUAL_ENV", &venv),
                        Duration::from_secs(600),
                    );
                    assert!(
                        output.status.success(),
                        "`{command_line}` failed:\n{}{}",
                        String::from_utf8_lossy(&output.stdout),
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                "sh" if line.starts_with("bash scripts/")
                    || line.starts_with("cargo build ")
                    || line.starts_with("rustup target add ") =>
                {
                    run_once(line);
                }
                "dockerfile" => {
                    let context = TempDir::new("readme-docker");
                    std::fs::copy(static_binary("x86_64"), context.path.join("pyinit")).unwrap();
                    let dockerfile = context.path.join("Dockerfile");
                    // The published image is this checkout's localhost/pyinit:VERSION here.
                    std::fs::write(
                        &dockerfile,
                        format!(
                            "FROM {}\nARG PIP_INDEX_URL\n{}\nRUN pyinit --version\n",
                            base_image(),
                            crate::dist::image::with_local_registry(line)
                        ),
                    )
                    .unwrap();
                    let build = || {
                        crate::dist::podman::build_offline(
                            &index,
                            &dockerfile,
                            &context.path,
                            &[format!("PIP_INDEX_URL={}", index.url())],
                        )
                    };
                    let (_image, log) = if line.starts_with("COPY --from=") {
                        crate::dist::image::with_local_image(|_| build())
                    } else {
                        build()
                    };
                    assert!(
                        log.contains(&format!("pyinit {version}")),
                        "`{line}` gave no working pyinit:\n{log}"
                    );
                }
                _ => panic!("Install has a {language} command this test cannot run: {line}"),
            }
            ran.push(line.to_owned());
        }
    }

    // What the commands left: pyinit in the venv, both wheels in dist/, both static binaries.
    let installed = output_within(Command::new(bin.join("pyinit")).arg("--version"), PATIENCE);
    assert_eq!(
        String::from_utf8_lossy(&installed.stdout).trim(),
        format!("pyinit {version}")
    );
    for arch in ["x86_64", "aarch64"] {
        let wheel = dist.join(crate::dist::wheel_name(&version, arch));
        assert!(wheel.is_file(), "no {}; ran {ran:#?}", wheel.display());
        assert!(static_binary(arch).is_file());
    }
    assert!(ran.len() >= 10, "too few commands found: {ran:#?}");
}

/// The package a `pip install` line names at `word`, if it is a requirement (not an option, a
/// file or a URL): the name before any version, extra or marker.
fn requirement_name(word: &str) -> Option<&str> {
    // Quotes, backticks and the sentence's punctuation around the word are not part of it.
    let word = word.trim_matches(['`', '"', '\'', '(', ')', '.', ',', ':']);
    if word.is_empty() || word.starts_with('-') || word.contains('/') || word.ends_with(".whl") {
        return None;
    }
    word.split(['=', '<', '>', '!', '~', '[', ';', '@', ' '])
        .next()
        .filter(|name| !name.is_empty())
}

/// The lines of `text` on which `pip install` (or `pip3 install`, `python -m pip install`, `uv
/// pip install`) names `package` (PyPI compares names case-insensitively, `-`, `_` and `.` alike).
fn pip_installs_of(text: &str, package: &str) -> Vec<String> {
    let normalize = |name: &str| name.to_ascii_lowercase().replace(['_', '.'], "-");
    text.lines()
        .filter(|line| {
            ["pip install ", "pip3 install "].iter().any(|command| {
                line.split(command).skip(1).any(|after| {
                    after
                        .split_whitespace()
                        .take_while(|word| !["&&", "||", ";", "|", "\\"].contains(word))
                        .filter_map(requirement_name)
                        .any(|name| normalize(name) == package)
                })
            })
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_page_tells_anyone_to_pip_install_pyinit() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("Dockerfile.example")];
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 5, "too few pages in docs/: {pages:?}");
    files.extend(pages);
    let mut found = Vec::new();
    let mut names_the_distribution = false;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        names_the_distribution |= !pip_installs_of(&text, crate::dist::DISTRIBUTION).is_empty();
        found.extend(
            pip_installs_of(&text, "pyinit")
                .into_iter()
                .map(|line| format!("{}: {line}", file.display())),
        );
    }
    assert!(
        found.is_empty(),
        "pip install of PyPI's `pyinit`:\n{}",
        found.join("\n")
    );
    assert!(
        names_the_distribution,
        "no page says `pip install {}`",
        crate::dist::DISTRIBUTION
    );

    // The control: each way of writing it is caught, and the distribution's name is not.
    for line in [
        "pip install pyinit",
        "RUN pip install --no-cache-dir pyinit==0.1.0",
        "python3 -m pip install -U PyInit>=0.1",
        "uv pip install 'pyinit[extra]' gunicorn",
        "pip3 install --index-url https://example.org/simple/ pyinit",
        "so never `pip install pyinit`.",
    ] {
        assert_eq!(pip_installs_of(line, "pyinit"), [line], "{line}");
    }
    for line in [
        "pip install pyinit-k8s==0.1.0",
        "pip install ./pyinit_k8s-0.1.0-py3-none-manylinux2014_x86_64.whl",
        "pip install maturin==1.16.0 && pyinit --version",
        "pip install pyinit_k8s",
    ] {
        assert!(pip_installs_of(line, "pyinit").is_empty(), "{line}");
    }
}

/// What `pyinit ARGS...` prints on stdout (a help text), exit 0, rendered as with no terminal:
/// `columns` wide, the width a terminal of that many columns would give it.
fn help_text(args: &[&str], columns: u16) -> String {
    let output = Command::new(pyinit_bin())
        .args(args)
        .env("COLUMNS", columns.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{args:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The four help texts: the summaries (`-h`) and the whole (`--help`) of both modes.
const HELP_ARGS: [&[&str]; 4] = [&["--help"], &["-h"], &["drill", "--help"], &["drill", "-h"]];

#[test]
fn every_help_line_fits_in_100_columns() {
    // 100 is the most pyinit lays its help out in, however wide the terminal says it is.
    for columns in [80, 100, 250] {
        for args in HELP_ARGS {
            let help = help_text(args, columns);
            let too_long: Vec<&str> = help
                .lines()
                .filter(|line| line.chars().count() > 100)
                .collect();
            assert!(
                too_long.is_empty(),
                "{args:?} at {columns} columns: lines over 100 characters:\n{}",
                too_long.join("\n")
            );
        }
    }
}

#[test]
fn the_summary_is_one_screen_with_two_examples_and_points_to_help() {
    for (args, first_example) in [
        (&["-h"][..], "pyinit --user app --readiness http://"),
        (
            &["drill", "-h"][..],
            "pyinit drill --allow-root --readiness http://",
        ),
    ] {
        // An 80-column terminal wraps more than no terminal at all (100).
        for columns in [80, 100] {
            let summary = help_text(args, columns);
            let lines = summary.lines().count();
            assert!(
                lines <= 60,
                "{args:?} at {columns} columns: {lines} lines:\n{summary}"
            );
            let examples: Vec<&str> = summary
                .lines()
                .skip_while(|line| *line != "Examples:")
                .map(str::trim)
                .filter(|line| line.starts_with("pyinit "))
                .collect();
            assert_eq!(examples.len(), 2, "{args:?}: {summary}");
            assert!(
                examples[0].starts_with(first_example) && examples[1].starts_with("pyinit drill "),
                "{args:?}: {examples:?}"
            );
            assert!(
                summary.contains("'--help' shows every flag"),
                "{args:?}: {summary}"
            );
        }
    }
}

/// The flags of a help text under each heading, in order of the headings, up to the examples.
fn flags_by_heading(help: &str) -> Vec<(String, Vec<String>)> {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in help.lines().take_while(|line| *line != "Examples:") {
        if let Some(heading) = line.strip_suffix(':').filter(|_| !line.starts_with(' ')) {
            sections.push((heading.to_owned(), Vec::new()));
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        // A flag's own line starts with it (`-h, --help`, `--user <USER>`); help text and
        // examples are indented further or start otherwise.
        let flag = Some(trimmed)
            .filter(|line| line.starts_with('-'))
            .and_then(|line| line.split([' ', ',']).find(|word| word.starts_with("--")));
        if let (Some((_, flags)), Some(flag), 2..=6) = (sections.last_mut(), flag, indent) {
            flags.push(flag.to_owned());
        }
    }
    sections
}

#[test]
fn help_groups_the_flags_by_concern() {
    let help = flags_by_heading(&help_text(&["--help"], 100));
    let drill_help = flags_by_heading(&help_text(&["drill", "--help"], 100));
    let heading_of = |sections: &[(String, Vec<String>)], flag: &str| {
        sections
            .iter()
            .find(|(_, flags)| flags.iter().any(|listed| listed == flag))
            .map(|(heading, _)| heading.clone())
    };
    for (flag, heading) in [
        ("--stop-signal", "Signals and the drain"),
        ("--grace-period", "Signals and the drain"),
        ("--deadline-dump-window", "Signals and the drain"),
        ("--remap-exit", "Signals and the drain"),
        ("--parent-death-signal", "Signals and the drain"),
        ("--server", "Server profile"),
        ("--readiness", "Probes"),
        ("--startup-initial-delay", "Probes"),
        ("--health-addr", "Health server"),
        ("--user", "Privileges"),
        ("--allow-privilege-escalation", "Privileges"),
        ("--web-concurrency", "Resource limits"),
        ("--rlimit", "Resource limits"),
        ("--prepare-multiproc-dir", "Resource limits"),
        ("--log-level", "Logging"),
    ] {
        for (name, sections) in [("--help", &help), ("drill --help", &drill_help)] {
            assert_eq!(
                heading_of(sections, flag).as_deref(),
                Some(heading),
                "{name}: {flag}"
            );
        }
    }
    assert_eq!(
        heading_of(&drill_help, "--drill-request").as_deref(),
        Some("Drill")
    );
    // Every flag has its concern: the general "Options" keep --help and --version only.
    for sections in [&help, &drill_help] {
        for (heading, flags) in sections.iter() {
            if heading == "Options" {
                assert_eq!(flags, &["--help", "--version"], "{sections:?}");
            }
        }
    }
}

#[test]
fn the_flags_page_has_the_headings_and_order_of_help() {
    let mut documented: Vec<(String, Vec<String>)> = Vec::new();
    for line in page("flags.md").lines() {
        if let Some(bold) = line.strip_prefix("**") {
            let heading = bold.split("**").next().unwrap_or_default();
            documented.push((heading.to_owned(), Vec::new()));
        } else if let (Some(row), Some((_, flags))) =
            (line.strip_prefix("| `--"), documented.last_mut())
        {
            let name: String = row
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            flags.push(format!("--{name}"));
        }
    }
    let concerns = |args: &[&str]| {
        flags_by_heading(&help_text(args, 100))
            .into_iter()
            .filter(|(heading, flags)| heading != "Options" && !flags.is_empty())
            .collect::<Vec<_>>()
    };
    let mut shown = concerns(&["--help"]);
    shown.extend(
        concerns(&["drill", "--help"])
            .into_iter()
            .filter(|(heading, _)| heading == "Drill"),
    );
    assert_eq!(documented, shown);
}
