//! The files a user copies: `examples/kubernetes/deployment.yaml` must agree with the pyinit
//! flags in it and pass the Kubernetes schemas (tests/kubernetes/check_deployment.py, run by the
//! end-to-end venv's Python), `examples/kubernetes/sidecar.yaml` must be a native health sidecar
//! done right (tests/kubernetes/check_sidecar.py) and pass them too, and `Dockerfile.example` must pass hadolint and pin the pyinit that
//! Cargo.toml builds on a tagged python image. Each checker is also shown a broken copy, so a
//! checker that accepts everything fails here. (tests/dist/podman.rs builds and runs the image.)
//!
//! And the real pyinit must accept how both files start it: `tests/kubernetes/pyinit_argv.py`
//! reads the manifest's command and env and the Dockerfile's ENTRYPOINT, ENV and users, and the
//! binary under test runs with exactly those flags and variables, the app replaced by
//! `/bin/true`, in a network namespace of its own (so the files' fixed health port is free).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::runc::{repo, venv_bin};
use crate::common::{Finished, PATIENCE, Pyinit};

pub fn deployment() -> PathBuf {
    repo().join("examples/kubernetes/deployment.yaml")
}

pub fn dockerfile() -> PathBuf {
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
    pub env: Vec<(String, String)>,
    /// The pod's runAsUser and runAsGroup.
    pub run_as: Option<(u32, u32)>,
    /// /etc/passwd and /etc/group entries the image creates.
    pub passwd: Vec<String>,
    pub group: Vec<String>,
}

/// How `file` (`kind` "deployment" or "dockerfile") starts pyinit; the podman tests run the
/// image with it too.
pub fn invocation(kind: &str, file: &Path) -> Invocation {
    let output = Command::new(venv_bin("python3"))
        .arg(repo().join("tests/kubernetes/pyinit_argv.py"))
        .arg(kind)
        .arg(file)
        .output()
        .expect("run pyinit_argv.py");
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

/// The real pyinit with the file's flags and variables (and nothing of the test's environment),
/// running `/bin/true` instead of the app.
fn pyinit_as_in(invocation: &Invocation) -> Pyinit {
    invocation
        .env
        .iter()
        .fold(
            Pyinit::new().env_clear().private_network(),
            |pyinit, (name, value)| pyinit.env(name, value),
        )
        .args(&invocation.args)
        .app(vec!["/bin/true".into()])
}

/// pyinit accepted its flags, applied them (the health server on the file's address) and ran the
/// app to its exit code 0, which it passed on.
fn assert_accepted(finished: &Finished, invocation: &Invocation, how: &str) {
    let stderr = finished.stderr_text();
    assert_eq!(
        finished.code(),
        Some(0),
        "pyinit {:?} -- /bin/true, {how}:\n{stderr}",
        invocation.args
    );
    assert!(
        !stderr.contains("pyinit: "),
        "a set-up error, {how}:\n{stderr}"
    );
    for expected in [
        "app started",
        "app exited code=0",
        "health server listening addr=",
    ] {
        assert!(
            stderr.contains(expected),
            "no {expected:?}, {how}:\n{stderr}"
        );
    }
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

#[test]
fn pyinit_accepts_the_deployments_command_and_env() {
    let invocation = invocation("deployment", &deployment());
    let (uid, gid) = invocation.run_as.expect("the pod sets runAsUser");
    let addr = health_addr_of(&invocation);
    // As the pod starts it (runAsUser, no capabilities, no_new_privs: --user then changes
    // nothing), and as a runtime without that securityContext would (root: --user drops).
    for (how, pyinit) in [
        (
            "as the pod's user",
            // The kubelet adds the API server's address to every container; pyinit's defaults
            // (the pre-stop delay) follow it.
            pyinit_as_in(&invocation)
                .started_by_pod_as(uid, gid)
                .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
                .env("KUBERNETES_SERVICE_PORT", "443"),
        ),
        ("as root", pyinit_as_in(&invocation)),
    ] {
        // Only to see the ids in the log; it changes nothing else.
        let finished = pyinit.env("PYINIT_LOG_LEVEL", "debug").run();
        assert_accepted(&finished, &invocation, how);
        let stderr = finished.stderr_text();
        for expected in [
            format!("health server listening addr={addr}"),
            format!("privileges set uid={uid} gid={gid}"),
        ] {
            assert!(
                stderr.contains(&expected),
                "no {expected:?}, {how}:\n{stderr}"
            );
        }
    }
}

/// A copy of the host's `/etc/{name}` with the image's entries first (they win a lookup).
struct EtcFile {
    path: PathBuf,
}

impl EtcFile {
    fn new(name: &str, image_entries: &[String]) -> EtcFile {
        let host = std::fs::read_to_string(Path::new("/etc").join(name)).expect("read /etc");
        let path =
            std::env::temp_dir().join(format!("pyinit-dockerfile-{name}-{}", std::process::id()));
        std::fs::write(&path, format!("{}\n{host}", image_entries.join("\n")))
            .expect("write the image's /etc file");
        EtcFile { path }
    }
}

impl Drop for EtcFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn pyinit_accepts_the_dockerfiles_entrypoint_and_env() {
    let invocation = invocation("dockerfile", &dockerfile());
    assert!(
        !invocation.passwd.is_empty(),
        "the image creates no user for --user"
    );
    // The image has no USER: pyinit starts as root and drops to the image's user (--user).
    let passwd = EtcFile::new("passwd", &invocation.passwd);
    let group = EtcFile::new("group", &invocation.group);
    let finished = pyinit_as_in(&invocation)
        .bind_file(&passwd.path, "/etc/passwd")
        .bind_file(&group.path, "/etc/group")
        // Only to see the drop in the log; it changes nothing else.
        .env("PYINIT_LOG_LEVEL", "debug")
        .run();
    assert_accepted(&finished, &invocation, "as root in the image");
    let stderr = finished.stderr_text();
    assert!(
        stderr.contains(&format!(
            "health server listening addr={}",
            health_addr_of(&invocation)
        )),
        "{stderr}"
    );
    // name:x:uid:gid:...
    let user: Vec<&str> = invocation.passwd[0].split(':').collect();
    let dropped = format!("privileges set uid={} gid={}", user[2], user[3]);
    assert!(stderr.contains(&dropped), "no {dropped:?}:\n{stderr}");
}

#[test]
fn a_flag_pyinit_does_not_know_fails_these_checks() {
    // The controls: the same path with one unknown flag ends in a usage error, and so does a
    // pod whose runAsUser is not the --user the manifest names (the pod's user is really used).
    let mut invocation = invocation("deployment", &deployment());
    let (uid, gid) = invocation.run_as.expect("the pod sets runAsUser");
    let finished = pyinit_as_in(&invocation)
        .started_by_pod_as(uid + 1, gid + 1)
        .run();
    assert_eq!(finished.code(), Some(2), "{}", finished.stderr_text());
    assert!(
        finished.stderr_text().contains("not root"),
        "{}",
        finished.stderr_text()
    );
    invocation.args.push("--health-port=8558".to_owned());
    let finished = pyinit_as_in(&invocation).run();
    assert_eq!(finished.code(), Some(2), "{}", finished.stderr_text());
    assert!(
        finished.stderr_text().contains("--health-port"),
        "{}",
        finished.stderr_text()
    );
}

pub fn sidecar() -> PathBuf {
    repo().join("examples/kubernetes/sidecar.yaml")
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
        let output = check_sidecar(&mutant.path);
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

/// The real pyinit as the pod starts the sidecar (its command, the pod's user, no capabilities,
/// in Kubernetes): a health sidecar on the manifest's port, which a SIGTERM ends at once with 0,
/// as it must when it comes after the main containers have exited.
#[test]
fn pyinit_runs_as_the_sidecar_example_starts_it() {
    let invocation = invocation("sidecar", &sidecar());
    let (uid, gid) = invocation.run_as.expect("the pod sets runAsUser");
    let mut running = invocation
        .env
        .iter()
        .fold(
            Pyinit::new().env_clear().private_network(),
            |pyinit, (name, value)| pyinit.env(name, value),
        )
        .args(&invocation.args)
        .started_by_pod_as(uid, gid)
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .start();
    let addr = health_addr_of(&invocation);
    running
        .stderr
        .wait_for(&format!("health server listening addr={addr}"), PATIENCE);
    running.stderr.wait_for("health sidecar", PATIENCE);
    let sent = std::time::Instant::now();
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(2),
        "the sidecar took {:?} to exit",
        sent.elapsed()
    );
    assert!(
        !running.stderr.contains("pyinit: "),
        "{}",
        running.stderr.joined()
    );
}
