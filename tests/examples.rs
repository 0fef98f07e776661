//! The files a user copies: `examples/kubernetes/deployment.yaml` must agree with the pyinit
//! flags in it and pass the Kubernetes schemas (tests/kubernetes/check_deployment.py, run by the
//! end-to-end venv's Python), and `Dockerfile.example` must pass hadolint. Each checker is also
//! shown a broken copy, so a checker that accepts everything fails here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::runc::{repo, venv_bin};

fn deployment() -> PathBuf {
    repo().join("examples/kubernetes/deployment.yaml")
}

fn dockerfile() -> PathBuf {
    repo().join("Dockerfile.example")
}

fn check_deployment(manifest: &Path) -> Output {
    Command::new(venv_bin("python3"))
        .arg(repo().join("tests/kubernetes/check_deployment.py"))
        .arg(manifest)
        .arg("--dockerfile")
        .arg(dockerfile())
        .output()
        .expect("run check_deployment.py")
}

fn text_of(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A temporary copy of `original` with `from` replaced by `to`; removed on drop.
struct Mutant {
    path: PathBuf,
}

impl Mutant {
    fn new(original: &Path, from: &str, to: &str) -> Mutant {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let text = std::fs::read_to_string(original).expect("read the original");
        assert!(
            text.contains(from),
            "{} has no {from:?}",
            original.display()
        );
        let path = std::env::temp_dir().join(format!(
            "pyinit-mutant-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            original
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("file")
        ));
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write the mutant");
        Mutant { path }
    }
}

impl Drop for Mutant {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn the_deployment_agrees_with_its_pyinit_flags_and_validates() {
    let output = check_deployment(&deployment());
    let text = text_of(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("kubernetes-validate --strict passes"),
        "{text}"
    );
    assert!(text.contains("\n0 failed"), "{text}");
}

#[test]
fn the_deployment_check_catches_each_disagreement() {
    // (what is changed, into what, the FAIL line it must cause)
    let cases = [
        (
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: 40",
            "--grace-period (30s) = terminationGracePeriodSeconds (40s)",
        ),
        (
            "--drain-timeout=25s",
            "--drain-timeout=29s",
            "--drain-timeout (29s) + 2s margin",
        ),
        (
            "value: \"15\"",
            "value: \"22\"",
            "GRACEFUL_TIMEOUT (22s) < --drain-timeout",
        ),
        (
            "port: health",
            "port: http",
            "readinessProbe asks pyinit: GET /readyz on port 8000",
        ),
        ("path: /livez", "path: /healthz", "startupProbe asks pyinit"),
        (
            "--health-addr=0.0.0.0:8558",
            "--health-addr=0.0.0.0:9000",
            "livenessProbe asks pyinit",
        ),
        (
            "--user=10001:10001",
            "--user=10002",
            "--user (10002) is runAsUser:runAsGroup",
        ),
        (
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
            "readOnlyRootFilesystem: true",
        ),
        (
            "allowPrivilegeEscalation: false",
            "allowPrivilegeEscalation: true",
            "allowPrivilegeEscalation: false",
        ),
        ("- ALL", "- NET_RAW", "capabilities drop ALL"),
        (
            "memory: 512Mi",
            "memory: 128Mi",
            "memory: request 256Mi <= limit 128Mi",
        ),
        (
            "automountServiceAccountToken: false",
            "automountServiceAccountTokens: false",
            "Additional properties are not allowed",
        ),
    ];
    for (from, to, expected_failure) in cases {
        let mutant = Mutant::new(&deployment(), from, to);
        let output = check_deployment(&mutant.path);
        let text = text_of(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{from:?} -> {to:?} must fail the check:\n{text}"
        );
        assert!(
            text.lines()
                .any(|line| line.starts_with("FAIL") && line.contains(expected_failure)),
            "{from:?} -> {to:?} must fail with {expected_failure:?}:\n{text}"
        );
    }
}

#[test]
fn the_dockerfile_agreement_is_checked_too() {
    let mutant = Mutant::new(&dockerfile(), "--uid 10001", "--uid 10002");
    let output = Command::new(venv_bin("python3"))
        .arg(repo().join("tests/kubernetes/check_deployment.py"))
        .arg(deployment())
        .arg("--dockerfile")
        .arg(&mutant.path)
        .output()
        .expect("run check_deployment.py");
    let text = text_of(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL the image's user has uid 10001"),
        "{text}"
    );
}

fn hadolint(dockerfile: &Path) -> Output {
    Command::new(venv_bin("hadolint"))
        .arg("--no-color")
        .arg(dockerfile)
        .output()
        .expect("run hadolint")
}

#[test]
fn the_dockerfile_example_passes_hadolint() {
    let output = hadolint(&dockerfile());
    assert_eq!(output.status.code(), Some(0), "{}", text_of(&output));

    // The control: an unpinned base image is a finding, so hadolint does read the file.
    let mutant = Mutant::new(&dockerfile(), "FROM python:3.13-slim", "FROM python:latest");
    let output = hadolint(&mutant.path);
    let text = text_of(&output);
    assert_ne!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("DL3007"), "{text}");
}
