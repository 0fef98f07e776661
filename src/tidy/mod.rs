//! Tidy checks run as a unit test: the boundaries `style.md` promises, enforced by reading the
//! source. The decision core imports no OS layer and reads no clock; `unsafe` stays in the
//! syscall owners; every file says what it owns.
//!
//! Purity is an allow-list: a pure file names only other pure files of the crate (through
//! `crate::`, `super::` or `self::`), `std` without its I/O, and the few items of other crates
//! that are values (`PURE_EXTERNAL`). Any other path into the crate or into a dependency of
//! Cargo.toml is an impurity, whatever it does.
//!
//! The checks read tokens, not substrings (`tokens.rs`): comments and string literals are
//! skipped, `use` trees are expanded and their aliases followed, `core::` and `alloc::` count as
//! `std::`, and a `#[cfg(test)]` item is left out whole, wherever it stands. So
//! `core::net::TcpStream` is a socket as much as `std::net::TcpStream` is, and `unsafe impl` is
//! as unsafe as `unsafe {`. The checker's own tests are in `tests.rs`.

mod tokens;

use std::path::{Path, PathBuf};

use self::tokens::{Token, is_ident, paths, tokens, without_test_items};

/// Files that hold pure decisions: they name only each other, `std` without files, sockets,
/// processes or threads, no clock (`Instant::now`, `SystemTime::now`, `.elapsed()`), and of
/// other crates only `PURE_EXTERNAL`.
const PURE_FILES: &[&str] = &[
    "src/supervisor/mod.rs",
    "src/supervisor/action.rs",
    "src/supervisor/event.rs",
    "src/supervisor/policy.rs",
    "src/supervisor/state.rs",
    "src/config/mod.rs",
    "src/config/cli.rs",
    "src/config/drain.rs",
    "src/config/parse.rs",
    "src/config/probe_flags.rs",
    "src/exit.rs",
    "src/units.rs",
    "src/json.rs",
    "src/log/spec.rs",
    "src/signals/spec.rs",
    "src/signals/disposition.rs",
    "src/drill/report.rs",
    "src/drill/stop_handling.rs",
    "src/drill/spec.rs",
    "src/drill/traceback.rs",
    "src/status.rs",
    "src/container/cgroup.rs",
    "src/container/facts.rs",
    "src/container/env.rs",
    "src/container/checks.rs",
    "src/container/resize.rs",
    "src/privileges/passwd.rs",
    "src/privileges/spec.rs",
    "src/privileges/rlimit.rs",
    "src/multiproc/spec.rs",
    "src/probe/spec.rs",
    "src/probe/threshold.rs",
    "src/probe/schedule.rs",
    "src/probe/redirect.rs",
    "src/probe/grpc_wire.rs",
    "src/health/routes.rs",
    "src/health/metrics.rs",
    "src/server/mod.rs",
    "src/server/recognise.rs",
];

/// The syscall owners, the only files that may hold `unsafe`, one per line so that additions
/// merge cleanly: each block there has a `// SAFETY:` comment and its function an
/// `#[allow(unsafe_code, reason = ...)]`.
const UNSAFE_ALLOWED: &[&str] = &[
    "src/spawn.rs",       // pre_exec and the raw rt_sigaction between fork and exec
    "src/reaper.rs",      // the raw waitpid status
    "src/signals/mod.rs", // the origin of a caught signal
];

/// What a pure file may name of other crates: clap's flag definitions, and values that do no
/// I/O (nix's names for the kernel's numbers, hyper's response types).
const PURE_EXTERNAL: &[&[&str]] = &[
    &["clap"],
    &["nix", "sys", "signal", "Signal"],
    &["nix", "sys", "resource", "Resource"],
    &["nix", "sys", "resource", "RLIM_INFINITY"],
    &["nix", "sys", "resource", "rlim_t"],
    &["hyper", "Method"],
    &["hyper", "Response"],
    &["hyper", "StatusCode"],
    &["hyper", "header"],
    &["hyper", "body", "Bytes"],
    &["http_body_util", "Full"],
];

/// The `std` modules that do I/O, start threads or processes.
const STD_FORBIDDEN: &[&[&str]] = &[
    &["std", "fs"],
    &["std", "process"],
    &["std", "thread"],
    &["std", "os"],
];

/// What `std::net` holds besides sockets: address values, which parsing and printing need.
const NET_VALUES: &[&str] = &[
    "SocketAddr",
    "SocketAddrV4",
    "SocketAddrV6",
    "IpAddr",
    "Ipv4Addr",
    "Ipv6Addr",
    "AddrParseError",
];

/// Where a pure file stands, to judge the paths it names.
struct PureFile<'a> {
    /// Its module, from the crate root: `["config", "cli"]` for `src/config/cli.rs`.
    module: Vec<String>,
    /// The crates of Cargo.toml's `[dependencies]`, as code names them (`http_body_util`).
    dependencies: &'a [String],
    /// Whether an item (a path from the crate root) is defined in a pure file.
    is_pure: &'a dyn Fn(&[String]) -> bool,
}

/// The module of a file under `src/`: `src/config/cli.rs` is `config::cli`, `src/log/mod.rs` is
/// `log`, `src/main.rs` the crate root.
fn module_of(relative: &str) -> Vec<String> {
    let inner = relative.trim_start_matches("src/").trim_end_matches(".rs");
    let mut module: Vec<String> = inner.split('/').map(str::to_owned).collect();
    if module
        .last()
        .is_some_and(|last| last == "mod" || last == "main")
    {
        module.pop();
    }
    module
}

/// `path` from the crate root, if it is a path into the crate (`crate::`, `super::`, `self::`,
/// or the name of one of the file's own child modules, `children`, which a path may name bare:
/// `use drain::DrainTiming` in `config/mod.rs`).
fn within_crate(path: &[String], module: &[String], children: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => module.to_vec(),
        child if children.iter().any(|name| name == child) => {
            let mut base = module.to_vec();
            base.extend(path.iter().cloned());
            return Some(base);
        }
        _ => return None,
    };
    let mut rest = path;
    if first == "crate" || first == "self" {
        rest = path.get(1..).unwrap_or_default();
    }
    while let Some((segment, after)) = rest.split_first()
        && segment == "super"
    {
        base.pop();
        rest = after;
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The file under `root` that defines the item at `path` (from the crate root): the deepest
/// module file on the way, or `src/main.rs` for the crate root.
fn defining_file(root: &Path, path: &[String]) -> String {
    for depth in (1..=path.len()).rev() {
        let module = path.get(..depth).unwrap_or_default().join("/");
        for candidate in [format!("src/{module}.rs"), format!("src/{module}/mod.rs")] {
            if root.join(&candidate).is_file() {
                return candidate;
            }
        }
    }
    "src/main.rs".to_owned()
}

/// Why `path` has no place in a pure file (whose own child modules are `children`), if it has
/// none.
fn impurity(path: &[String], file: &PureFile<'_>, children: &[String]) -> Option<String> {
    let joined = path.join("::");
    let starts_with = |prefix: &[&str]| {
        path.len() >= prefix.len() && path.iter().zip(prefix).all(|(segment, p)| segment == p)
    };
    let reads_clock = path.ends_with(&["Instant".to_owned(), "now".to_owned()])
        || path.ends_with(&["SystemTime".to_owned(), "now".to_owned()]);
    if reads_clock {
        return Some(format!("{joined} (a clock)"));
    }
    if let Some(item) = within_crate(path, &file.module, children) {
        return (!(file.is_pure)(&item)).then(|| format!("{joined} (not in a pure file)"));
    }
    let first = path.first()?;
    if first == "std" {
        if STD_FORBIDDEN.iter().any(|prefix| starts_with(prefix)) {
            return Some(joined);
        }
        if starts_with(&["std", "net"])
            && let Some(item) = path.get(2)
            && !NET_VALUES.contains(&item.as_str())
        {
            return Some(format!("{joined} (a socket)"));
        }
        return None;
    }
    let another_crate = file.dependencies.contains(first) || first == "libc";
    let allowed = PURE_EXTERNAL.iter().any(|prefix| starts_with(prefix));
    (another_crate && !allowed).then(|| format!("{joined} (not a value of another crate)"))
}

/// Everything in `source` (outside its test items) that a pure file must not use.
fn impurities(source: &str, file: &PureFile<'_>) -> Vec<String> {
    let code = without_test_items(&tokens(source));
    let children = child_modules(&code);
    let paths = paths(&code);
    let mut found: Vec<String> = (paths.iter())
        .filter_map(|path| impurity(path, file, &children))
        .collect();
    for window in code.windows(3) {
        if let [Token::Punct('.'), Token::Ident(method), Token::Punct('(')] = window
            && method == "elapsed"
        {
            found.push(".elapsed() (a clock)".to_owned());
        }
    }
    found
}

/// The modules `code` declares (`mod drain;`, `pub mod cli;`, `mod tests { .. }`).
fn child_modules(code: &[Token]) -> Vec<String> {
    (code.windows(2))
        .filter_map(|pair| match pair {
            [Token::Ident(keyword), Token::Ident(name)] if keyword == "mod" => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// The crates of Cargo.toml's `[dependencies]` table, as code names them.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_table = false;
    let mut found = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == "[dependencies]";
        } else if in_table
            && let Some((name, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            found.push(name.trim().replace('-', "_"));
        }
    }
    found
}

fn uses_unsafe(source: &str) -> bool {
    tokens(source)
        .iter()
        .any(|token| is_ident(Some(token), "unsafe"))
}

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
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let dependencies = dependencies(&manifest);
    assert!(
        dependencies.contains(&"tokio".to_owned()),
        "{dependencies:?}"
    );
    let is_pure = |item: &[String]| PURE_FILES.contains(&defining_file(root(), item).as_str());
    for relative in PURE_FILES {
        let source = std::fs::read_to_string(root().join(relative)).unwrap();
        let file = PureFile {
            module: module_of(relative),
            dependencies: &dependencies,
            is_pure: &is_pure,
        };
        let found = impurities(&source, &file);
        assert!(found.is_empty(), "{relative} must not use {found:?}");
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
fn unsafe_lives_only_in_the_syscall_owners() {
    let mut files = Vec::new();
    source_files(&root().join("src"), &mut files);
    let mut n_allowed_seen = 0;
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        if !uses_unsafe(&source) {
            continue;
        }
        let allowed = UNSAFE_ALLOWED.iter().any(|allowed| path.ends_with(allowed));
        assert!(allowed, "{} uses unsafe", path.display());
        n_allowed_seen += 1;
    }
    // The scan sees the unsafe that is there: the syscall owners do use it.
    assert!(
        n_allowed_seen > 0,
        "no unsafe found at all: the scan is broken"
    );
}

mod tests;
