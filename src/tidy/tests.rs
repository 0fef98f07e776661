//! The tidy checker's own tests: the reader finds `unsafe` and impurities however they are
//! spelled and only in code, a crate path leads to the file that defines it, and the manifest's
//! dependencies are read.

use super::*;

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
        within_crate(&path("super::facts::Limit"), &module, &[]),
        Some(path("container::facts::Limit"))
    );
    assert_eq!(
        within_crate(&path("super::super::exit::USAGE"), &module, &[]),
        Some(path("exit::USAGE"))
    );
    assert_eq!(
        within_crate(&path("self::tests"), &module, &[]),
        Some(path("container::env::tests"))
    );
    assert_eq!(within_crate(&path("std::fs"), &module, &[]), None);
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
        // A child module named bare, as `use drain::..` in config/mod.rs.
        (
            "mod driver; use driver::run_supervisor;",
            "driver::run_supervisor",
        ),
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
