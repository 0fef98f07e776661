//! Every link of README.md and docs/*.md resolves: a relative link to a file or folder of the
//! repository, an anchor to a heading of its page (GitHub's slugs), and a link to
//! `https://github.com/pyinit/pyinit/blob/main/PATH` (a file) or `.../tree/main/PATH` (a folder)
//! to PATH in this checkout, its anchor too. The README links only absolutely, as PyPI renders it
//! from the wheel's metadata, where a relative link leads nowhere (docs/install.md says so).

use std::path::{Path, PathBuf};

use crate::common::runc::repo;

const BLOB: &str = "https://github.com/pyinit/pyinit/blob/main/";
const TREE: &str = "https://github.com/pyinit/pyinit/tree/main/";

/// The inline links' targets of a Markdown text, outside code blocks and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Code spans are no links: drop every other backtick-delimited piece.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(index, _)| index % 2 == 0)
            .map(|(_, piece)| piece)
            .collect::<Vec<_>>()
            .join("");
        for after in prose.split("](").skip(1) {
            let target: String = after.chars().take_while(|c| *c != ')').collect();
            targets.push(target);
        }
    }
    targets
}

/// GitHub's anchor for a heading's text: lower case, every character but letters, digits,
/// spaces, `-` and `_` dropped, spaces made `-`.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (ATX, outside code blocks), a repeated one with
/// GitHub's `-1`, `-2` suffixes.
fn anchors(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        let heading = line.get(hashes..).and_then(|rest| rest.strip_prefix(' '));
        if let (false, 1..=6, Some(heading)) = (in_code, hashes, heading) {
            let base = slug(heading.trim());
            let repeats = found
                .iter()
                .filter(|anchor| {
                    **anchor == base
                        || anchor
                            .strip_prefix(&format!("{base}-"))
                            .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .count();
            found.push(match repeats {
                0 => base,
                n => format!("{base}-{n}"),
            });
        }
    }
    found
}

/// Why `target`, linked from `page`, does not resolve, if it does not.
fn broken(page: &Path, target: &str) -> Option<String> {
    let (address, anchor) = match target.split_once('#') {
        Some((address, anchor)) => (address, Some(anchor)),
        None => (target, None),
    };
    let (path, folder): (PathBuf, Option<bool>) = if let Some(path) = address.strip_prefix(BLOB) {
        (repo().join(path), Some(false))
    } else if let Some(path) = address.strip_prefix(TREE) {
        (repo().join(path), Some(true))
    } else if address.starts_with("https://github.com/pyinit/pyinit") {
        return Some("a link into this repository that is neither blob/main nor tree/main".into());
    } else if address.contains("://") || address.starts_with("mailto:") {
        return None;
    } else if address.is_empty() {
        (page.to_owned(), None)
    } else {
        (page.parent().unwrap().join(address), None)
    };
    match folder {
        Some(true) if !path.is_dir() => return Some(format!("{} is no folder", path.display())),
        Some(false) if !path.is_file() => return Some(format!("{} is no file", path.display())),
        None if !path.exists() => return Some(format!("{} does not exist", path.display())),
        _ => {}
    }
    let anchor = anchor?;
    let text = std::fs::read_to_string(&path).ok()?;
    (!anchors(&text).iter().any(|known| known == anchor))
        .then(|| format!("no heading of {} has the anchor #{anchor}", path.display()))
}

fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    pages.sort();
    pages.insert(0, repo().join("README.md"));
    pages
}

#[test]
fn every_link_of_the_readme_and_the_docs_resolves() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in link_targets(&text) {
            checked += 1;
            if let Some(why) = broken(&page, &target) {
                failures.push(format!("{}: ({target}): {why}", page.display()));
            }
        }
    }
    assert!(checked >= 60, "too few links found: {checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_readme_links_absolutely_to_every_docs_page() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let targets = link_targets(&readme);
    let relative: Vec<&String> = targets
        .iter()
        .filter(|target| !target.contains("://") && !target.starts_with('#'))
        .collect();
    assert!(
        relative.is_empty(),
        "relative links break on PyPI: {relative:?}"
    );
    for page in pages().iter().skip(1) {
        let name = page.file_name().unwrap().to_str().unwrap();
        let address = format!("{BLOB}docs/{name}");
        assert!(
            targets.iter().any(|target| target == &address),
            "the README does not link {address}"
        );
    }
}

#[test]
fn anchors_follow_githubs_slugs() {
    let page = "# `pyinit drill`: rehearse a shutdown\n```sh\n# not a heading\n```\n\
                ## The pod's lifecycle: stop signals, preStop hooks, in-place resize\n\
                ### Time to Ready\n## Time to Ready\n#No heading\n";
    assert_eq!(
        anchors(page),
        [
            "pyinit-drill-rehearse-a-shutdown",
            "the-pods-lifecycle-stop-signals-prestop-hooks-in-place-resize",
            "time-to-ready",
            "time-to-ready-1",
        ]
    );
    let targets = link_targets("[a](x.md) `[b](y.md)` [`c`](z.md#d)\n```\n[e](f)\n```\n");
    assert_eq!(targets, ["x.md", "z.md#d"]);
    let readme = repo().join("README.md");
    assert!(broken(&readme, "docs/nowhere.md").is_some());
    assert!(broken(&readme, &format!("{BLOB}docs/signals.md#nowhere")).is_some());
    assert!(broken(&readme, &format!("{BLOB}examples/kubernetes")).is_some());
    assert!(broken(&readme, &format!("{TREE}examples/kubernetes")).is_none());
    assert!(broken(&readme, &format!("{BLOB}docs/signals.md#reliability-notes")).is_none());
}
