//! The wheels of `scripts/build-wheels.sh`: the x86_64 one installs into a fresh venv from the
//! file alone and its `pyinit` runs the README's first command; pip's own resolver (`pip
//! download --platform ... --only-binary :all:`) accepts each wheel on glibc (manylinux) and musl
//! (musllinux) systems of its architecture, and refuses it where it must: the other
//! architecture, a glibc older than manylinux2014's 2.17, a musl older than 1.1.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::output_within;
use super::{ARCHITECTURES, DISTRIBUTION, TempDir, cargo_version, dist_venv_bin, fresh_venv};
use super::{text_of, wheels};
use crate::common::http::get;
use crate::common::runc::{free_port, repo};
use crate::common::{Lines, PATIENCE, descendants_of, poll_until, send_signal};

/// The README's first command, after `cargo run --release --`: pyinit's flags and the app.
pub fn readme_first_command() -> Vec<String> {
    crate::readme::readme_command("cargo run --release -- ")
        .split_whitespace()
        .skip(4)
        .map(str::to_owned)
        .collect()
}

/// The README's first command, started from the repository's root with the example app on a
/// free port (its `PORT`, and the probe's URL with it); with that port.
pub fn start_readme_first_command() -> (crate::common::Running, u16) {
    let app_port = free_port();
    let args: Vec<String> = readme_first_command()
        .into_iter()
        .map(|arg| arg.replace("127.0.0.1:8000", &format!("127.0.0.1:{app_port}")))
        .collect();
    let running = crate::common::Pyinit::new()
        .current_dir(repo())
        .env("PORT", app_port.to_string())
        .args(&args)
        .start();
    (running, app_port)
}

/// A pyinit process that is SIGKILLed with everything below it on drop.
struct Started {
    child: Child,
    stderr: Lines,
}

impl Drop for Started {
    fn drop(&mut self) {
        for pid in descendants_of(self.child.id()) {
            send_signal(pid, "KILL");
        }
        send_signal(self.child.id(), "KILL");
        let _ = self.child.kill();
        #[allow(
            clippy::disallowed_methods,
            reason = "the test harness reaps its own child"
        )]
        let _ = self.child.wait();
    }
}

/// Runs `pyinit` (an installed one) as the README's first command does, from the repository's
/// root with `bin` first on PATH, the example app on a free port; checks that `/readyz` turns
/// 200 and that SIGTERM drains it to exit 0.
pub fn run_the_readmes_first_command(pyinit: &Path, bin: &Path) {
    let app_port = free_port();
    let args: Vec<String> = readme_first_command()
        .into_iter()
        .map(|arg| arg.replace("127.0.0.1:8000", &format!("127.0.0.1:{app_port}")))
        .collect();
    assert!(
        args.iter().any(|arg| arg.contains(&app_port.to_string())),
        "the README's command no longer probes 127.0.0.1:8000: {args:?}"
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new(pyinit)
        .args(&args)
        .current_dir(repo())
        .env("PATH", path)
        .env("PORT", app_port.to_string())
        .env("PYINIT_HEALTH_ADDR", "127.0.0.1:0")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the installed pyinit");
    let stderr = Lines::from_pipe(child.stderr.take().expect("stderr"));
    let mut started = Started { child, stderr };
    let line = started.stderr.wait_for("health server listening", PATIENCE);
    let health: std::net::SocketAddr = line
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    poll_until(
        PATIENCE,
        "/readyz of the installed pyinit to answer 200",
        || get(health, "/readyz").status == 200,
    );
    send_signal(started.child.id(), "TERM");
    let mut exit = None;
    poll_until(
        PATIENCE,
        "the installed pyinit to exit after SIGTERM",
        || {
            #[allow(
                clippy::disallowed_methods,
                reason = "the test harness waits for its own child"
            )]
            let status = started.child.try_wait().expect("try_wait");
            exit = status;
            exit.is_some()
        },
    );
    assert_eq!(
        exit.and_then(|status| status.code()),
        Some(0),
        "stderr:\n{}",
        started.stderr.joined()
    );
}

#[test]
fn the_wheel_installs_from_the_file_alone_and_runs_the_readmes_first_command() {
    let (_, wheel) = wheels()
        .into_iter()
        .find(|(arch, _)| *arch == "x86_64")
        .expect("the x86_64 wheel");
    let scratch = TempDir::new("wheel-venv");
    let venv = fresh_venv(&scratch.path);
    let install = output_within(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--disable-pip-version-check", "--no-index"])
            .arg(&wheel),
        Duration::from_secs(120),
    );
    assert!(install.status.success(), "{}", text_of(&install));

    let pyinit = venv.join("bin/pyinit");
    let version = output_within(Command::new(&pyinit).arg("--version"), PATIENCE);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("pyinit {}", cargo_version()),
        "{}",
        text_of(&version)
    );
    run_the_readmes_first_command(&pyinit, &venv.join("bin"));

    // pip removes what it installed: the wheel's RECORD lists the binary.
    let uninstall = output_within(
        Command::new(venv.join("bin/pip")).args(["uninstall", "--yes", DISTRIBUTION]),
        Duration::from_secs(60),
    );
    assert!(uninstall.status.success(), "{}", text_of(&uninstall));
    assert!(!pyinit.exists(), "pip uninstall left {}", pyinit.display());
}

/// A system as pip describes it: the platform tags it accepts, most specific first, as pip's
/// `packaging.tags` lists them for that libc version and architecture.
#[derive(Debug)]
enum System {
    Glibc(u32),
    Musl(u32),
    Plain,
}

impl System {
    fn platforms(&self, arch: &str) -> Vec<String> {
        match self {
            System::Glibc(minor) => {
                // packaging lists manylinux_2_5 and up on x86_64, 2_17 and up elsewhere, plus
                // the legacy aliases.
                let oldest = if arch == "x86_64" { 5 } else { 17 };
                let mut tags: Vec<String> = (oldest..=*minor)
                    .rev()
                    .map(|glibc| format!("manylinux_2_{glibc}_{arch}"))
                    .collect();
                for (alias, glibc) in [
                    ("manylinux2014", 17),
                    ("manylinux2010", 12),
                    ("manylinux1", 5),
                ] {
                    if *minor >= glibc && (arch == "x86_64" || glibc == 17) {
                        tags.push(format!("{alias}_{arch}"));
                    }
                }
                tags
            }
            System::Musl(minor) => (0..=*minor)
                .rev()
                .map(|musl| format!("musllinux_1_{musl}_{arch}"))
                .collect(),
            System::Plain => vec![format!("linux_{arch}")],
        }
    }
}

/// What `pip download pyinit` picks from `wheels` for `system` on `arch`, if anything.
fn pip_picks(find_links: &Path, system: &System, arch: &str, python: &str) -> Option<String> {
    let platforms = system.platforms(arch);
    assert!(
        !platforms.is_empty(),
        "{system:?} on {arch} has no platform tag"
    );
    let downloads = TempDir::new("pip-download");
    let mut command = Command::new(dist_venv_bin("pip"));
    command
        .args([
            "download",
            "--disable-pip-version-check",
            "--no-index",
            "--no-deps",
        ])
        .arg("--find-links")
        .arg(find_links)
        .args(["--only-binary", ":all:", "--implementation", "cp"])
        .args(["--python-version", python, "--dest"])
        .arg(&downloads.path);
    for platform in &platforms {
        command.args(["--platform", platform]);
    }
    let output = output_within(
        command.arg(format!("{DISTRIBUTION}=={}", cargo_version())),
        Duration::from_secs(120),
    );
    let picked: Vec<String> = std::fs::read_dir(&downloads.path)
        .expect("read the download folder")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    if output.status.success() {
        assert_eq!(picked.len(), 1, "{picked:?}");
        picked.into_iter().next()
    } else {
        let text = text_of(&output);
        assert!(
            text.contains(&format!(
                "No matching distribution found for {DISTRIBUTION}"
            )),
            "pip failed for another reason than the tags:\n{text}"
        );
        None
    }
}

#[test]
fn pips_resolver_accepts_each_wheel_on_glibc_and_musl_systems_of_its_architecture() {
    let find_links = TempDir::new("find-links");
    let mut names: Vec<(&str, String)> = Vec::new();
    for (arch, wheel) in wheels() {
        let name = wheel
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        std::fs::copy(&wheel, find_links.path.join(&name)).expect("copy the wheel");
        names.push((arch, name));
    }
    let wheel_for = |arch: &str| -> String {
        names
            .iter()
            .find(|(wheel_arch, _)| *wheel_arch == arch)
            .map(|(_, name)| name.clone())
            .expect("a wheel per architecture")
    };

    // (system, Python version, whether pip must accept the wheel): Debian 12 and
    // python:3.13-slim (glibc 2.36 and 2.41), CentOS 7 (2.17), Alpine (musl 1.2); the refusals
    // show that the tags decide.
    let cases = [
        (System::Glibc(41), "3.13", true),
        (System::Glibc(36), "3.11", true),
        (System::Glibc(17), "3.8", true),
        (System::Musl(2), "3.13", true),
        (System::Musl(1), "3.12", true),
        (System::Glibc(16), "3.13", false),
        (System::Musl(0), "3.13", false),
        (System::Plain, "3.13", false),
    ];
    for arch in ARCHITECTURES {
        for (system, python, accepted) in &cases {
            if matches!(system, System::Glibc(minor) if *minor < 17) && arch != "x86_64" {
                continue; // no manylinux tag exists for glibc before 2.17 on aarch64
            }
            let picked = pip_picks(&find_links.path, system, arch, python);
            let expected = accepted.then(|| wheel_for(arch));
            assert_eq!(
                picked,
                expected,
                "{system:?} on {arch}, Python {python}: platforms {:?}",
                system.platforms(arch)
            );
        }
    }
}
