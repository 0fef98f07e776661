//! The files a user copies: the Kubernetes examples (`examples/kubernetes`: a Deployment, a
//! Service and a PodDisruptionBudget) must agree with `Dockerfile.example`, whose ENTRYPOINT holds
//! pyinit's flags, and pass the Kubernetes schemas (tests/kubernetes/check_deployment.py, run by
//! the end-to-end venv's Python); `examples/kubernetes/sidecar.yaml`, beside them, must be a
//! native health sidecar done right (tests/kubernetes/check_sidecar.py) and pass the schemas
//! too; `Dockerfile.example` must pass hadolint and pin the pyinit that Cargo.toml builds on a
//! tagged python image. Each checker is also shown broken copies, so a checker that accepts
//! everything fails here, and a folder with other examples beside these, so that one which
//! chokes on them fails too. (tests/dist/podman.rs builds and runs the image.)
//!
//! And the real pyinit must accept how the files start it: `tests/kubernetes/pyinit_argv.py`
//! reads the Dockerfile's ENTRYPOINT, CMD, ENV and users and the manifest's args and env, and the
//! binary under test runs with exactly those flags and variables, the app replaced by
//! `/bin/true`, in a network namespace of its own (so the files' fixed health port is free); the
//! sidecar's init container with its own command, no app, until the SIGTERM that ends it. With
//! the same flags, the path of the Deployment's startupProbe answers 503 until an app that
//! starts listening late answers, and 200 from then on. The example app that the README's first
//! command runs logs its requests, but not the health checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::runc::{repo, venv_bin};
use crate::dist::TempDir;

mod running;

/// The Kubernetes examples' folder.
pub fn kubernetes_examples() -> PathBuf {
    repo().join("examples/kubernetes")
}

pub fn deployment() -> PathBuf {
    kubernetes_examples().join("deployment.yaml")
}

/// pyinit as a native health sidecar beside an app of another image: its init container sets
/// its own `command`, so neither Dockerfile.example nor check_deployment.py has a say in it.
pub fn sidecar() -> PathBuf {
    kubernetes_examples().join("sidecar.yaml")
}

pub fn dockerfile() -> PathBuf {
    repo().join("Dockerfile.example")
}

/// The image that deployment.yaml runs, tag aside: the one Dockerfile.example builds. Other
/// examples in the folder run other images, which the checker does not take for this one.
const EXAMPLE_IMAGE: &str = "registry.example.com/example-app";

/// check_deployment.py on a folder of manifests, with the Dockerfile of the example's image.
fn check_examples(folder: &Path, dockerfile: &Path) -> Output {
    Command::new(venv_bin("python3"))
        .arg(repo().join("tests/kubernetes/check_deployment.py"))
        .arg(folder)
        .arg("--dockerfile")
        .arg(dockerfile)
        .args(["--image", EXAMPLE_IMAGE])
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

/// `text` with the first `from` replaced by `to`; `what` names the file in the failure.
fn replaced(text: &str, from: &str, to: &str, what: &Path) -> String {
    assert!(text.contains(from), "{} has no {from:?}", what.display());
    text.replacen(from, to, 1)
}

/// A temporary copy of `original` with `from` replaced by `to`; removed on drop.
struct Mutant {
    path: PathBuf,
}

impl Mutant {
    fn new(original: &Path, from: &str, to: &str) -> Mutant {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let text = std::fs::read_to_string(original).expect("read the original");
        let path = std::env::temp_dir().join(format!(
            "pyinit-mutant-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            original
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("file")
        ));
        std::fs::write(&path, replaced(&text, from, to, original)).expect("write the mutant");
        Mutant { path }
    }
}

impl Drop for Mutant {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A temporary copy of the Kubernetes examples' folder (every manifest in it), with `from`
/// replaced by `to` in `file` when one is given.
fn examples_copy(change: Option<(&str, &str, &str)>) -> TempDir {
    let copy = TempDir::new("kubernetes-examples");
    for entry in std::fs::read_dir(kubernetes_examples()).expect("read examples/kubernetes") {
        let path = entry.expect("a folder entry").path();
        let name = path.file_name().expect("a file name").to_owned();
        let mut text = std::fs::read_to_string(&path).expect("read a manifest");
        if let Some((file, from, to)) = change
            && name == file
        {
            text = replaced(&text, from, to, &path);
        }
        std::fs::write(copy.path.join(name), text).expect("write the copy");
    }
    if let Some((file, _, _)) = change {
        assert!(
            copy.path.join(file).exists(),
            "no {file} in examples/kubernetes"
        );
    }
    copy
}

fn assert_checked_and_valid(text: &str) {
    assert!(
        text.contains("kubernetes-validate --strict passes"),
        "{text}"
    );
    assert!(text.contains("\n0 failed"), "{text}");
    // The Service and the budget were checked against the Deployment, not skipped.
    for expected in [
        "deployment.yaml: Deployment/example-app: pyinit's flags come from the image's ENTRYPOINT",
        "service.yaml: Service/example-app port 80 targets the app's port 8000",
        "pdb.yaml: PodDisruptionBudget/example-app lets a drain evict a pod and keeps another",
    ] {
        assert!(
            text.lines()
                .any(|line| line.starts_with("ok") && line.contains(expected)),
            "no ok line with {expected:?}:\n{text}"
        );
    }
}

#[test]
fn the_kubernetes_examples_agree_with_the_image_and_validate() {
    let output = check_examples(&kubernetes_examples(), &dockerfile());
    let text = text_of(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert_checked_and_valid(&text);
    // The sidecar example in the same folder: validated with the others (a schema error in it
    // fails the check, as the next test shows with another example) and skipped, its pyinit
    // being an init container's with a `command` of its own (check_sidecar.py checks it).
    let skipped = "sidecar.yaml: Deployment/sidecar-example: no container runs pyinit";
    assert!(
        text.lines()
            .any(|line| line.starts_with("skip") && line.contains(skipped)),
        "no skip line with {skipped:?}:\n{text}"
    );
}

/// Another example beside these, as the folder may hold: a Deployment whose pyinit runs as a
/// native sidecar (an init container that keeps running) next to an app of another image, its
/// Service, and a ConfigMap. The checker validates them and skips them.
const OTHER_EXAMPLE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: other-app
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: other-app
  template:
    metadata:
      labels:
        app.kubernetes.io/name: other-app
    spec:
      initContainers:
        - name: pyinit
          image: ghcr.io/pyinit/pyinit:0.1.0
          restartPolicy: Always
          command: [/pyinit, --readiness, "http://127.0.0.1:9000/healthz"]
      containers:
        - name: app
          image: registry.example.com/other-app:2.0.0
---
apiVersion: v1
kind: Service
metadata:
  name: other-app
spec:
  selector:
    app.kubernetes.io/name: other-app
  ports:
    - port: 80
      targetPort: 9000
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: other-app
data:
  key: value
"#;

#[test]
fn other_examples_in_the_folder_are_skipped_not_failed() {
    let copy = examples_copy(None);
    std::fs::write(copy.path.join("other.yaml"), OTHER_EXAMPLE).expect("write other.yaml");
    let output = check_examples(&copy.path, &dockerfile());
    let text = text_of(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert_checked_and_valid(&text);
    for expected in [
        "other.yaml: Deployment/other-app: no container runs pyinit",
        "other.yaml: Service/other-app: selects no pod of a checked Deployment",
    ] {
        assert!(
            text.lines()
                .any(|line| line.starts_with("skip") && line.contains(expected)),
            "no skip line with {expected:?}:\n{text}"
        );
    }

    // The control: the same folder with the other example broken fails the schema check.
    std::fs::write(
        copy.path.join("other.yaml"),
        OTHER_EXAMPLE.replacen("restartPolicy: Always", "restartPolicies: Always", 1),
    )
    .expect("write other.yaml");
    let output = check_examples(&copy.path, &dockerfile());
    let text = text_of(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Additional properties are not allowed"),
        "{text}"
    );
}

#[test]
fn the_examples_check_catches_each_disagreement() {
    // (the file, what is changed, into what, the FAIL line it must cause)
    let cases = [
        (
            "deployment.yaml",
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: 40",
            "--grace-period (30s) = terminationGracePeriodSeconds (40s): set PYINIT_GRACE_PERIOD",
        ),
        (
            "deployment.yaml",
            "value: \"15\"",
            "value: \"22\"",
            "GRACEFUL_TIMEOUT (22s) < --drain-timeout",
        ),
        (
            "deployment.yaml",
            "          args:\n",
            "          command: [pyinit, --user=10001, --]\n          args:\n",
            "pyinit's flags come from the image's ENTRYPOINT alone (the pod's `command` replaces it",
        ),
        (
            "deployment.yaml",
            "path: /readyz\n              port: health",
            "path: /readyz\n              port: http",
            "readinessProbe asks pyinit: GET /readyz on port 8000",
        ),
        (
            "deployment.yaml",
            "path: /readyz/startup",
            "path: /livez",
            "startupProbe fails until the app answers: /livez answers 200 as soon as pyinit runs",
        ),
        (
            "deployment.yaml",
            "periodSeconds: 1\n            timeoutSeconds: 1\n            successThreshold: 1",
            "periodSeconds: 3\n            timeoutSeconds: 1\n            successThreshold: 1",
            "the kubelet sees /readyz turn 503 within 6s",
        ),
        (
            "deployment.yaml",
            "runAsUser: 10001",
            "runAsUser: 10002",
            "--user (app = 10001:10001) is runAsUser:runAsGroup (10002:10001)",
        ),
        (
            "deployment.yaml",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
            "readOnlyRootFilesystem: true",
        ),
        (
            "deployment.yaml",
            "mountPath: /tmp",
            "mountPath: /var/tmp",
            "/tmp is a writable emptyDir on the read-only root",
        ),
        (
            "deployment.yaml",
            "allowPrivilegeEscalation: false",
            "allowPrivilegeEscalation: true",
            "allowPrivilegeEscalation: false",
        ),
        (
            "deployment.yaml",
            "- ALL",
            "- NET_RAW",
            "capabilities drop ALL",
        ),
        (
            "deployment.yaml",
            "type: RuntimeDefault",
            "type: Unconfined",
            "seccompProfile is RuntimeDefault or Localhost (Unconfined)",
        ),
        (
            "deployment.yaml",
            "memory: 512Mi",
            "memory: 128Mi",
            "memory: request 256Mi <= limit 128Mi",
        ),
        (
            "deployment.yaml",
            "automountServiceAccountToken: false",
            "automountServiceAccountTokens: false",
            "Additional properties are not allowed",
        ),
        (
            "service.yaml",
            "targetPort: http",
            "targetPort: health",
            "Service/example-app port 80 targets the app's port 8000",
        ),
        (
            "pdb.yaml",
            "maxUnavailable: 1",
            "maxUnavailable: 0",
            "lets a drain evict a pod and keeps another (0 of 2",
        ),
        (
            "pdb.yaml",
            "matchLabels:\n      app.kubernetes.io/name: example-app",
            "matchLabels:\n      app.kubernetes.io/name: example-ap",
            "a PodDisruptionBudget selects",
        ),
    ];
    for (file, from, to, expected_failure) in cases {
        let copy = examples_copy(Some((file, from, to)));
        assert_fails_with(
            &check_examples(&copy.path, &dockerfile()),
            &format!("{file}: {from:?} -> {to:?}"),
            expected_failure,
        );
    }
}

#[test]
fn the_dockerfiles_flags_are_checked_against_the_pod() {
    // (what is changed in Dockerfile.example, into what, the FAIL line it must cause)
    let cases = [
        (
            "\"--health-addr\", \"0.0.0.0:8558\"",
            "\"--health-addr\", \"0.0.0.0:9000\"",
            "livenessProbe asks pyinit",
        ),
        (
            "\"--startup\", \"http://127.0.0.1:8000/healthz\", \\\n",
            "",
            "/readyz/startup is 404 without a pyinit --startup probe",
        ),
        (
            "\"--startup-failure-threshold\", \"60\"",
            "\"--startup-failure-threshold\", \"10\"",
            "pyinit's startup budget (10s",
        ),
        (
            "\"--liveness\", \"http://127.0.0.1:8000/healthz\", ",
            "",
            "pyinit probes the app's liveness (--liveness)",
        ),
        (
            "\"--user\", \"app\"",
            "\"--user\", \"nobody\"",
            "a user name the Dockerfile does not create",
        ),
        (
            "--uid 10001",
            "--uid 10002",
            "the image's user has uid 10001",
        ),
        (
            "STOPSIGNAL SIGTERM",
            "STOPSIGNAL SIGINT",
            "STOPSIGNAL SIGTERM",
        ),
    ];
    for (from, to, expected_failure) in cases {
        let mutant = Mutant::new(&dockerfile(), from, to);
        assert_fails_with(
            &check_examples(&kubernetes_examples(), &mutant.path),
            &format!("Dockerfile.example: {from:?} -> {to:?}"),
            expected_failure,
        );
    }
}

fn assert_fails_with(output: &Output, change: &str, expected_failure: &str) {
    let text = text_of(output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{change} must fail the check:\n{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("FAIL") && line.contains(expected_failure)),
        "{change} must fail with {expected_failure:?}:\n{text}"
    );
}

fn check_sidecar(manifest: &Path) -> Output {
    Command::new(venv_bin("python3"))
        .arg(repo().join("tests/kubernetes/check_sidecar.py"))
        .arg(manifest)
        .output()
        .expect("run check_sidecar.py")
}

#[test]
fn the_sidecar_example_is_a_native_health_sidecar_and_validates() {
    let output = check_sidecar(&sidecar());
    let text = text_of(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("kubernetes-validate --strict passes") && text.contains("\n0 failed"),
        "{text}"
    );
    // The sidecar's image is the pyinit this Cargo.toml builds.
    let manifest = std::fs::read_to_string(sidecar()).expect("read sidecar.yaml");
    let image = format!(
        "image: ghcr.io/pyinit/pyinit:{}",
        crate::dist::cargo_version()
    );
    assert!(manifest.contains(&image), "no {image:?} in sidecar.yaml");
}

#[test]
fn the_sidecar_check_catches_each_mistake() {
    // (what is changed, into what, the FAIL line it must cause)
    let cases = [
        (
            "          restartPolicy: Always",
            "          restartPolicy: OnFailure",
            "the sidecar has restartPolicy: Always",
        ),
        (
            "          restartPolicy: Always",
            "          restartPolicys: Always",
            "Additional properties are not allowed",
        ),
        (
            "            - --liveness=tcp://127.0.0.1:8000",
            "            - --liveness=tcp://127.0.0.1:8000\n            - --pre-stop-delay=5s",
            "the sidecar sets no pre-stop delay (5s)",
        ),
        (
            "          restartPolicy: Always\n",
            "          restartPolicy: Always\n          startupProbe: {httpGet: {path: /livez, port: 8558}}\n",
            "the sidecar has no startupProbe",
        ),
        (
            "path: /readyz\n              port: 8558",
            "path: /readyz\n              port: 8000",
            "app's readinessProbe asks the sidecar",
        ),
        (
            "seconds: 5",
            "seconds: 29",
            "app's preStop sleep (29s) leaves",
        ),
        (
            "seconds: 5",
            "second: 5",
            "'seconds' is a required property",
        ),
        (
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: 60",
            "--grace-period (30s) = terminationGracePeriodSeconds (60s)",
        ),
    ];
    for (from, to, expected_failure) in cases {
        let mutant = Mutant::new(&sidecar(), from, to);
        assert_fails_with(
            &check_sidecar(&mutant.path),
            &format!("sidecar.yaml: {from:?} -> {to:?}"),
            expected_failure,
        );
    }
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

    // The control: an unpinned pip package is a finding, so hadolint does read the file.
    let pin = format!(
        "{}=={}",
        crate::dist::DISTRIBUTION,
        crate::dist::cargo_version()
    );
    let mutant = Mutant::new(&dockerfile(), &pin, crate::dist::DISTRIBUTION);
    let output = hadolint(&mutant.path);
    let text = text_of(&output);
    assert_ne!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("DL3013"), "{text}");
}

/// What hadolint cannot see through the `ARG`: the default base image is a tagged python image,
/// and pip installs exactly the pyinit that this Cargo.toml builds (the podman test builds it).
#[test]
fn the_dockerfile_installs_this_pyinit_on_a_tagged_python_image() {
    let text = std::fs::read_to_string(dockerfile()).expect("read Dockerfile.example");
    let lines: Vec<&str> = text.lines().collect();
    let default_image = lines
        .iter()
        .find_map(|line| line.strip_prefix("ARG PYTHON_IMAGE="))
        .expect("ARG PYTHON_IMAGE=... with a default");
    let (repository, tag) = default_image.split_once(':').expect("a tag");
    assert_eq!(repository, "python");
    assert!(
        tag.starts_with("3.") && tag != "latest",
        "not a pinned Python version: {default_image}"
    );
    assert!(lines.contains(&"FROM ${PYTHON_IMAGE}"), "{text}");
    assert!(lines.contains(&"ARG PIP_INDEX_URL"), "{text}");
    let pin = format!(
        "pip install --no-cache-dir {}=={}",
        crate::dist::DISTRIBUTION,
        crate::dist::cargo_version()
    );
    assert!(
        lines.iter().any(|line| line.contains(&pin)),
        "no `{pin}` in Dockerfile.example"
    );
}

/// How a user's file starts pyinit, as `pyinit_argv.py` reads it.
#[derive(Debug, Default)]
pub struct Invocation {
    /// pyinit's own arguments, before the `--`.
    pub args: Vec<String>,
    /// The app's argv, which the tests replace.
    pub app: Vec<String>,
    /// Every variable pyinit starts with: the image's ENV, the container's env over it.
    pub env: Vec<(String, String)>,
    /// The container's own `command`, `args` and `env`, as a runtime is given them.
    pub pod_command: Vec<String>,
    pub pod_args: Vec<String>,
    pub pod_env: Vec<String>,
    /// The path of each httpGet probe: (startupProbe, /readyz/startup), ...
    pub probes: Vec<(String, String)>,
    /// The pod's runAsUser and runAsGroup.
    pub run_as: Option<(u32, u32)>,
    /// /etc/passwd and /etc/group entries the image creates.
    pub passwd: Vec<String>,
    pub group: Vec<String>,
}

impl Invocation {
    /// The path the manifest's probe of `kind` (`startupProbe`, ...) asks.
    pub fn probe_path(&self, kind: &str) -> &str {
        self.probes
            .iter()
            .find_map(|(probe, path)| (probe == kind).then_some(path.as_str()))
            .unwrap_or_else(|| panic!("the manifest has no httpGet {kind}"))
    }
}

/// How `file` (`kind` "deployment", "dockerfile" or "sidecar") starts pyinit; the podman tests
/// run the image with it too. The Deployment's container passes only `args`, so its pyinit flags
/// come from Dockerfile.example's ENTRYPOINT; the sidecar's init container sets its `command`, and
/// runs no app.
pub fn invocation(kind: &str, file: &Path) -> Invocation {
    let mut command = Command::new(venv_bin("python3"));
    command
        .arg(repo().join("tests/kubernetes/pyinit_argv.py"))
        .arg(kind)
        .arg(file);
    if kind == "deployment" {
        command.arg(dockerfile());
    }
    let output = command.output().expect("run pyinit_argv.py");
    assert_eq!(output.status.code(), Some(0), "{}", text_of(&output));
    let mut invocation = Invocation::default();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let (fact, value) = line.split_once(' ').unwrap_or((line, ""));
        let value = value.to_owned();
        match fact {
            "arg" => invocation.args.push(value),
            "app" => invocation.app.push(value),
            "env" => {
                let (name, value) = value.split_once('=').expect("NAME=VALUE");
                invocation.env.push((name.to_owned(), value.to_owned()));
            }
            "pod-command" => invocation.pod_command.push(value),
            "pod-args" => invocation.pod_args.push(value),
            "pod-env" => invocation.pod_env.push(value),
            "probe" => {
                let (kind, path) = value.split_once(' ').expect("KIND PATH");
                invocation.probes.push((kind.to_owned(), path.to_owned()));
            }
            "run-as" => {
                let ids: Vec<u32> = value.split(' ').map(|id| id.parse().unwrap()).collect();
                invocation.run_as = Some((ids[0], ids[1]));
            }
            "passwd" => invocation.passwd.push(value),
            "group" => invocation.group.push(value),
            _ => panic!("unknown line from pyinit_argv.py: {line:?}"),
        }
    }
    assert!(
        kind == "sidecar" || !invocation.app.is_empty(),
        "{} starts no app after `--`",
        file.display()
    );
    invocation
}

/// The --health-addr value pyinit must have bound.
pub fn health_addr_of(invocation: &Invocation) -> String {
    let args = &invocation.args;
    args.iter()
        .enumerate()
        .find_map(|(index, arg)| {
            arg.strip_prefix("--health-addr=")
                .map(str::to_owned)
                .or_else(|| (arg == "--health-addr").then(|| args[index + 1].clone()))
        })
        .unwrap_or_else(|| "0.0.0.0:8558".to_owned())
}
