//! Tidy checks run as a unit test: the boundaries `style.md` promises, enforced by reading the
//! source. The decision core imports no OS layer and reads no clock; `unsafe` stays in the
//! syscall owners; every file says what it owns.
//!
//! Purity is an allow-list: a pure file names only other pure files of the crate (through
//! `crate::`, `super::` or `self::`), `std` without its I/O, and the few items of other crates
//! that are values (`PURE_EXTERNAL`). Any other path into the crate or into a dependency of
//! Cargo.toml is an impurity, whatever it does.
//!
//! The checks read tokens, not substrings: comments and string literals are skipped, `use`
//! trees are expanded and their aliases followed, `core::` and `alloc::` count as `std::`, and a
//! `#[cfg(test)]` item is left out whole, wherever it stands. So `core::net::TcpStream` is a
//! socket as much as `std::net::TcpStream` is, and `unsafe impl` is as unsafe as `unsafe {`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// Rust source as tokens, without comments, string and char literals, lifetimes and numbers.
fn tokens(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let at = |index: usize| chars.get(index).copied().unwrap_or('\0');
    let mut found = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let c = at(index);
        if c.is_whitespace() {
            index += 1;
        } else if c == '/' && at(index + 1) == '/' {
            while index < chars.len() && at(index) != '\n' {
                index += 1;
            }
        } else if c == '/' && at(index + 1) == '*' {
            index = block_comment_end(&chars, index);
        } else if let Some(end) = raw_string_end(&chars, index) {
            index = end;
        } else if c == '"' || ((c == 'b' || c == 'c') && at(index + 1) == '"') {
            index += if c == '"' { 1 } else { 2 };
            while index < chars.len() && at(index) != '"' {
                index += if at(index) == '\\' { 2 } else { 1 };
            }
            index += 1;
        } else if c == '\'' || (c == 'b' && at(index + 1) == '\'') {
            index = char_or_lifetime_end(&chars, index);
        } else if c.is_alphabetic() || c == '_' {
            let start = index;
            while at(index).is_alphanumeric() || at(index) == '_' {
                index += 1;
            }
            let word: String = chars.get(start..index).unwrap_or_default().iter().collect();
            if word == "r" && at(index) == '#' {
                // A raw identifier, `r#type`: the word after the hash.
                index += 1;
                continue;
            }
            found.push(Token::Ident(word));
        } else if c.is_ascii_digit() {
            while at(index).is_alphanumeric() || at(index) == '_' {
                index += 1;
            }
        } else if c == ':' && at(index + 1) == ':' {
            found.push(Token::PathSep);
            index += 2;
        } else {
            found.push(Token::Punct(c));
            index += 1;
        }
    }
    found
}

/// Where a block comment starting at `index` ends, the comments nested in it included.
fn block_comment_end(chars: &[char], mut index: usize) -> usize {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut depth = 0;
    loop {
        if at(index) == '/' && at(index + 1) == '*' {
            depth += 1;
            index += 2;
        } else if at(index) == '*' && at(index + 1) == '/' {
            depth -= 1;
            index += 2;
            if depth == 0 {
                break;
            }
        } else if index >= chars.len() {
            break;
        } else {
            index += 1;
        }
    }
    index
}

/// Where a char literal (`'a'`, `'\n'`, `b'u'`) or a lifetime (`'a`) starting at `index` ends.
fn char_or_lifetime_end(chars: &[char], index: usize) -> usize {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    // A char literal ends with a quote within a few characters; a lifetime does not.
    let start = if at(index) == '\'' {
        index + 1
    } else {
        index + 2
    };
    let end = if at(start) == '\\' {
        (start + 2..chars.len()).find(|&i| at(i) == '\'')
    } else if at(start + 1) == '\'' {
        Some(start + 1)
    } else {
        None
    };
    match end {
        Some(end) => end + 1,
        None => {
            let mut index = start;
            while at(index).is_alphanumeric() || at(index) == '_' {
                index += 1;
            }
            index
        }
    }
}

/// Where a raw string starting at `index` (`r"`, `r#"`, `br##"`, ...) ends, if one starts there.
fn raw_string_end(chars: &[char], index: usize) -> Option<usize> {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut cursor = index;
    if at(cursor) == 'b' || at(cursor) == 'c' {
        cursor += 1;
    }
    if at(cursor) != 'r' || (index > 0 && (at(index - 1).is_alphanumeric() || at(index - 1) == '_'))
    {
        return None;
    }
    cursor += 1;
    let mut hashes = 0;
    while at(cursor) == '#' {
        hashes += 1;
        cursor += 1;
    }
    if at(cursor) != '"' {
        return None;
    }
    cursor += 1;
    while cursor < chars.len() {
        if at(cursor) == '"' && (1..=hashes).all(|n| at(cursor + n) == '#') {
            return Some(cursor + 1 + hashes);
        }
        cursor += 1;
    }
    Some(cursor)
}

fn is_punct(token: Option<&Token>, c: char) -> bool {
    token == Some(&Token::Punct(c))
}

fn is_ident(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Ident(found)) if found == word)
}

/// The tokens without the items marked `#[cfg(test)]` (a test module, a test-only impl...).
fn without_test_items(tokens: &[Token]) -> Vec<Token> {
    let test_attribute = |i: usize| {
        is_punct(tokens.get(i), '#')
            && is_punct(tokens.get(i + 1), '[')
            && is_ident(tokens.get(i + 2), "cfg")
            && is_punct(tokens.get(i + 3), '(')
            && is_ident(tokens.get(i + 4), "test")
            && is_punct(tokens.get(i + 5), ')')
            && is_punct(tokens.get(i + 6), ']')
    };
    let mut kept = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        if !test_attribute(index) {
            kept.extend(tokens.get(index).cloned());
            index += 1;
            continue;
        }
        // Skip the item: up to a `;` outside any brackets, or the end of its first `{ }` block.
        index += 7;
        let mut depth = 0_i32;
        while let Some(token) = tokens.get(index) {
            index += 1;
            match token {
                Token::Punct('{' | '(' | '[') => depth += 1,
                Token::Punct('}' | ')' | ']') => {
                    depth -= 1;
                    if depth == 0 && *token == Token::Punct('}') {
                        break;
                    }
                }
                Token::Punct(';') if depth == 0 => break,
                _ => {}
            }
        }
    }
    kept
}

/// Every path the code names, `use` trees expanded and aliases followed, with `core::` and
/// `alloc::` read as `std::`.
fn paths(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut uses: Vec<(Vec<String>, String)> = Vec::new();
    let mut named: Vec<Vec<String>> = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        if is_ident(tokens.get(index), "use") {
            index = use_tree(tokens, index + 1, Vec::new(), &mut uses);
            continue;
        }
        let before = |back: usize| index.checked_sub(back).and_then(|i| tokens.get(i));
        // A path starts at a name that no `::` joins to one before it (`::std` starts one).
        let joined = before(1) == Some(&Token::PathSep)
            && matches!(before(2), Some(Token::Ident(_) | Token::Punct('>')));
        let starts_path = matches!(tokens.get(index), Some(Token::Ident(_))) && !joined;
        if !starts_path {
            index += 1;
            continue;
        }
        let mut path = Vec::new();
        while let Some(Token::Ident(segment)) = tokens.get(index) {
            path.push(segment.clone());
            if tokens.get(index + 1) == Some(&Token::PathSep) {
                index += 2;
            } else {
                index += 1;
                break;
            }
        }
        named.push(path);
    }
    let aliases: HashMap<String, Vec<String>> = uses
        .iter()
        .map(|(path, alias)| (alias.clone(), path.clone()))
        .collect();
    let mut all: Vec<Vec<String>> = uses.into_iter().map(|(path, _)| path).collect();
    for path in named {
        let resolved = match path.split_first() {
            Some((first, rest)) if path.len() > 1 || aliases.contains_key(first) => {
                match aliases.get(first) {
                    Some(full) => full.iter().chain(rest).cloned().collect(),
                    None => path,
                }
            }
            _ => continue,
        };
        all.push(resolved);
    }
    all.into_iter().map(canonical).collect()
}

fn canonical(mut path: Vec<String>) -> Vec<String> {
    if let Some(first) = path.first_mut()
        && (first == "core" || first == "alloc")
    {
        *first = "std".to_owned();
    }
    path
}

/// Reads one `use` tree from `index`; pushes each full path with the name it is known by, and
/// returns where the tree ends.
fn use_tree(
    tokens: &[Token],
    mut index: usize,
    prefix: Vec<String>,
    uses: &mut Vec<(Vec<String>, String)>,
) -> usize {
    let mut path = prefix;
    if tokens.get(index) == Some(&Token::PathSep) {
        index += 1;
    }
    loop {
        match tokens.get(index) {
            // `a::{self, b}` names `a`; a leading `self::` stays, it says where the path starts.
            Some(Token::Ident(segment)) if segment == "self" && !path.is_empty() => {
                index += 1;
            }
            Some(Token::Ident(segment)) => {
                path.push(segment.clone());
                index += 1;
            }
            Some(Token::Punct('*')) => {
                path.push("*".to_owned());
                // A glob brings in no name of its own, but its module is named.
                uses.push((path, String::new()));
                return skip_semicolon(tokens, index + 1);
            }
            Some(Token::Punct('{')) => {
                index += 1;
                while !is_punct(tokens.get(index), '}') && index < tokens.len() {
                    index = use_tree(tokens, index, path.clone(), uses);
                    if is_punct(tokens.get(index), ',') {
                        index += 1;
                    }
                }
                return skip_semicolon(tokens, index + 1);
            }
            _ => break,
        }
        if tokens.get(index) == Some(&Token::PathSep) {
            index += 1;
        } else {
            break;
        }
    }
    let mut name = path.last().cloned().unwrap_or_default();
    if is_ident(tokens.get(index), "as")
        && let Some(Token::Ident(alias)) = tokens.get(index + 1)
    {
        name = alias.clone();
        index += 2;
    }
    uses.push((path, name));
    skip_semicolon(tokens, index)
}

fn skip_semicolon(tokens: &[Token], index: usize) -> usize {
    if is_punct(tokens.get(index), ';') {
        index + 1
    } else {
        index
    }
}

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

/// `path` from the crate root, if it is a path into the crate (`crate::`, `super::`, `self::`).
fn within_crate(path: &[String], module: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => module.to_vec(),
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

/// Why `path` has no place in a pure file, if it has none.
fn impurity(path: &[String], file: &PureFile<'_>) -> Option<String> {
    let joined = path.join("::");
    let starts_with = |prefix: &[&str]| {
        path.len() >= prefix.len() && path.iter().zip(prefix).all(|(segment, p)| segment == p)
    };
    let reads_clock = path.ends_with(&["Instant".to_owned(), "now".to_owned()])
        || path.ends_with(&["SystemTime".to_owned(), "now".to_owned()]);
    if reads_clock {
        return Some(format!("{joined} (a clock)"));
    }
    if let Some(item) = within_crate(path, &file.module) {
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
    let paths = paths(&code);
    let mut found: Vec<String> = (paths.iter())
        .filter_map(|path| impurity(path, file))
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
fn every_crate_path_finds_the_file_that_defines_it() {
    let path = |text: &str| -> Vec<String> { text.split("::").map(str::to_owned).collect() };
    for (item, file) in [
        ("signals::spec::Signal", "src/signals/spec.rs"),
        ("signals::forward_signal", "src/signals/mod.rs"),
        ("signals::spec", "src/signals/spec.rs"),
        ("exit::ChildStatus", "src/exit.rs"),
        ("container::facts::Limit::Limited", "src/container/facts.rs"),
        ("Mode", "src/main.rs"),
    ] {
        assert_eq!(defining_file(root(), &path(item)), file, "{item}");
    }
    assert_eq!(module_of("src/config/cli.rs"), ["config", "cli"]);
    assert_eq!(module_of("src/log/mod.rs"), ["log"]);
    assert_eq!(module_of("src/exit.rs"), ["exit"]);
    let module = module_of("src/container/env.rs");
    assert_eq!(
        within_crate(&path("super::facts::Limit"), &module),
        Some(path("container::facts::Limit"))
    );
    assert_eq!(
        within_crate(&path("super::super::exit::USAGE"), &module),
        Some(path("exit::USAGE"))
    );
    assert_eq!(
        within_crate(&path("self::tests"), &module),
        Some(path("container::env::tests"))
    );
    assert_eq!(within_crate(&path("std::fs"), &module), None);
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

#[test]
fn unsafe_is_found_in_every_form_and_only_in_code() {
    for code in [
        "unsafe { libc::getpid() }",
        "fn f() { unsafe{ x() } }",
        "unsafe impl Send for Guard {}",
        "unsafe fn raw() {}",
        "pub unsafe trait Zeroable {}",
        "unsafe extern \"C\" { fn getpid() -> i32; }",
        "#[unsafe(no_mangle)] fn f() {}",
        "let f = |x| unsafe {\n    x.read()\n};",
    ] {
        assert!(uses_unsafe(code), "{code}");
    }
    for code in [
        "// unsafe { }",
        "/* unsafe impl */ fn f() {}",
        "/* outer /* unsafe */ still a comment */",
        "let s = \"unsafe {\";",
        "let s = r#\"unsafe \" impl\"#;",
        "let c = '\"'; let s = \"un\\\"safe\";",
        "fn unsafe_code_is_denied<'a>(x: &'a str) {}",
        "let b = b'u';",
    ] {
        assert!(!uses_unsafe(code), "{code}");
    }
}

/// A pure file `src/supervisor/mod.rs` in a crate where `units`, `exit` and `supervisor` are
/// pure, but not `supervisor::driver`.
fn impurities_in_supervisor(code: &str) -> Vec<String> {
    let dependencies: Vec<String> = ["tokio", "nix", "clap", "hyper", "tracing", "signal_hook"]
        .map(str::to_owned)
        .to_vec();
    let is_pure = |item: &[String]| match item {
        [first, ..] if first == "units" || first == "exit" => true,
        [first, second, ..] if first == "supervisor" => second != "driver",
        [first] => first == "supervisor",
        _ => false,
    };
    let file = PureFile {
        module: module_of("src/supervisor/mod.rs"),
        dependencies: &dependencies,
        is_pure: &is_pure,
    };
    impurities(code, &file)
}

#[test]
fn impurities_are_found_whatever_they_are_called() {
    for (code, what) in [
        ("use core::net::TcpStream;", "std::net::TcpStream"),
        (
            "use std::net::{SocketAddr, UdpSocket};",
            "std::net::UdpSocket",
        ),
        ("use std::{fs, io};", "std::fs"),
        (
            "use std::fs as files; fn f() { files::read(\"x\"); }",
            "std::fs::read",
        ),
        (
            "fn f() { let _ = ::std::fs::read(\"x\"); }",
            "std::fs::read",
        ),
        ("use tokio as t;", "tokio"),
        ("use nix::sys::signal::kill;", "nix::sys::signal::kill"),
        ("fn f() { tokio::spawn(async {}); }", "tokio::spawn"),
        ("fn f() { tracing::debug!(\"x\"); }", "tracing::debug"),
        ("fn f() { libc::getpid(); }", "libc::getpid"),
        (
            "use std::time::Instant; fn f() { Instant::now(); }",
            "Instant::now",
        ),
        (
            "use std::time::Instant as Clock; fn f() { Clock::now(); }",
            "Instant::now",
        ),
        ("use crate::clock::now;", "crate::clock::now"),
        ("fn f(t: std::time::Instant) { t.elapsed(); }", "elapsed"),
        ("#[cfg(test)]\nfn helper() {}\nuse std::fs;", "std::fs"),
        ("use std::process::Command;", "std::process::Command"),
        // Paths into impure files of the crate, however they are spelled.
        (
            "use crate::signals::forward_signal;",
            "crate::signals::forward_signal",
        ),
        (
            "fn f() { crate::signals::forward_signal(1); }",
            "crate::signals::forward_signal",
        ),
        ("use super::clock;", "super::clock"),
        (
            "use self::driver::run_supervisor;",
            "self::driver::run_supervisor",
        ),
        (
            "use crate::signals as s; fn f() { s::kill_all(); }",
            "crate::signals::kill_all",
        ),
        ("use super::*;", "super::*"),
    ] {
        let found = impurities_in_supervisor(code);
        assert!(
            found.iter().any(|impurity| impurity.contains(what)),
            "{code}: {found:?}"
        );
    }
    for code in [
        "use core::net::{IpAddr, Ipv4Addr, SocketAddr};",
        "use std::net::SocketAddr; fn f(a: SocketAddr) {}",
        "pub use nix::sys::signal::Signal; fn f() { Signal::try_from(15); }",
        "use std::time::{Duration, Instant}; fn f(now: Instant) -> Instant { now }",
        "use crate::units::format_duration;",
        "use super::exit::ChildStatus; fn f() { crate::exit::code(); }",
        "use self::tests_helpers::x;",
        "use clap::ValueEnum;",
        "use hyper::{Method, StatusCode};",
        "fn f() { State::Running; Vec::new(); Self::new(); }",
        "// tokio::spawn, std::fs::read\nfn f() {}",
        "fn f() { let s = \"std::fs::read\"; }",
        "#[cfg(test)]\nmod tests {\n    use std::fs;\n    fn t() { tokio::spawn(async {}); }\n}",
        "#[cfg(test)]\nuse std::time::Instant;",
        "fn now() {} fn f() { now(); }",
    ] {
        assert_eq!(
            impurities_in_supervisor(code),
            Vec::<String>::new(),
            "{code}"
        );
    }
}

#[test]
fn the_dependencies_are_read_from_the_manifest() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nclap = \"4\"\n# note = 1\n\
                    http-body-util = \"0.1\"\n[dev-dependencies]\ntempfile = \"3\"\n";
    assert_eq!(dependencies(manifest), ["clap", "http_body_util"]);
}
