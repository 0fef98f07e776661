//! `Dockerfile.example` in a real engine, podman: built offline (`podman build --format docker`,
//! which keeps HEALTHCHECK) on the local base image of `scripts/podman-base-image.sh`, with pyinit
//! and gunicorn installed by pip from the tests' own index in a network namespace that has no
//! other network; then run with its ports published, as `docker run` would, and as the Deployment
//! of `examples/kubernetes/deployment.yaml` runs it (the image's ENTRYPOINT with the pod's args,
//! its env and securityContext).
//!
//! Podman's default rlimits exceed this machine's hard limits, so every `podman run` here passes
//! `--ulimit nofile=... --ulimit nproc=...`; that belongs to the test, not to the example. Every
//! podman command names runc, the runtime that starts containers on these machines. Images and
//! containers have unique names and are removed on every path.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{OfflineIndex, base_image, cargo_version, output_within};
use crate::common::runc::{free_port, http_get, repo};
use crate::common::{PATIENCE, descendants_of, poll_until};
use crate::examples::{deployment, dockerfile, health_addr_of, invocation};

/// Time for one podman build or run command on a loaded 2-core machine.
const PODMAN_PATIENCE: Duration = Duration::from_secs(300);

/// How long the in-flight request takes when the container is stopped.
const SLOW_SECONDS: u64 = 3;

/// `podman stop -t`: the seconds podman waits after the STOPSIGNAL before it SIGKILLs; the
/// grace period pyinit assumes by default.
const STOP_TIMEOUT_SECONDS: u64 = 30;

/// The machine's hard limits are lower than podman's defaults.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=4096:4096",
];

/// `podman --runtime runc ARGS`, its output, within `PODMAN_PATIENCE`.
pub fn podman(args: &[&str]) -> Output {
    output_within(
        Command::new("podman")
            .args(["--runtime", "runc"])
            .args(args),
        PODMAN_PATIENCE,
    )
}

fn text_of(output: &Output) -> String {
    super::text_of(output)
}

/// `podman ARGS` that must succeed; returns its stdout, trimmed.
pub fn podman_ok(args: &[&str]) -> String {
    let output = podman(args);
    assert!(
        output.status.success(),
        "podman {args:?} failed ({}):\n{}",
        output.status,
        text_of(&output)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A name no other test or run uses.
pub fn unique_name(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "pyinit-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// An image this test built; removed on drop.
#[derive(Debug)]
pub struct Image {
    pub name: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "--force", &self.name]);
    }
}

/// Builds `dockerfile` with `context` offline: base images only from local storage, packages
/// only from `index`, in its network namespace (`--network host` is that namespace).
pub fn build_offline(
    index: &OfflineIndex,
    dockerfile: &std::path::Path,
    context: &std::path::Path,
    build_args: &[String],
) -> (Image, String) {
    let image = Image {
        name: format!("localhost/{}:test", unique_name("image")),
    };
    let mut command = index.command("podman");
    command
        .args([
            "--runtime",
            "runc",
            "build",
            "--format",
            "docker",
            "--pull=never",
            // A layer cached by an earlier build would hide what pip installs from `index`.
            "--no-cache",
        ])
        .args(["--network", "host", "--file"])
        .arg(dockerfile)
        .args(["--tag", &image.name]);
    for build_arg in build_args {
        command.args(["--build-arg", build_arg]);
    }
    let output = output_within(command.arg(context), PODMAN_PATIENCE);
    let log = text_of(&output);
    assert!(
        output.status.success(),
        "podman build of {} failed:\n{log}",
        dockerfile.display()
    );
    (image, log)
}

/// Builds `dockerfile` with `context` and no network at all: base images only from local storage
/// (for a Dockerfile that installs nothing, such as one that copies pyinit from its image).
pub fn build_without_network(dockerfile: &std::path::Path, context: &std::path::Path) -> Image {
    let image = Image {
        name: format!("localhost/{}:test", unique_name("image")),
    };
    let mut command = Command::new("podman");
    command
        .args(["--runtime", "runc", "build", "--format", "docker"])
        .args(["--pull=never", "--no-cache", "--network", "none", "--file"])
        .arg(dockerfile)
        .args(["--tag", &image.name])
        .arg(context)
        .stdin(std::process::Stdio::null());
    let output = output_within(&mut command, PODMAN_PATIENCE);
    assert!(
        output.status.success(),
        "podman build of {} failed:\n{}",
        dockerfile.display(),
        text_of(&output)
    );
    image
}

/// A running container; `podman rm -f` on drop.
#[derive(Debug)]
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d` with the test's ulimits and `args` (options, image, command).
    pub fn run(args: &[&str]) -> Container {
        let container = Container {
            name: unique_name("container"),
        };
        let mut run_args = vec!["run", "--detach", "--name", &container.name];
        run_args.extend(ULIMITS);
        run_args.extend(args);
        podman_ok(&run_args);
        container
    }

    /// Runs a container with the app's port 8000 and pyinit's health port published on free
    /// ports of 127.0.0.1, as `docker run -p` does, then waits until `/readyz` answers 200;
    /// `args` come after the `--publish` options (podman options, the image, its arguments).
    /// Returns the container and its (app, health) ports on the host.
    pub fn run_published(health_container_port: &str, args: &[&str]) -> (Container, u16, u16) {
        let (app_port, health_port) = (free_port(), free_port());
        let app_publish = format!("127.0.0.1:{app_port}:8000");
        let health_publish = format!("127.0.0.1:{health_port}:{health_container_port}");
        let mut all = vec!["--publish", &app_publish, "--publish", &health_publish];
        all.extend(args);
        let container = Container::run(&all);
        container.wait_ready(health_port);
        (container, app_port, health_port)
    }

    pub fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
    }

    pub fn logs(&self) -> String {
        text_of(&podman(&["logs", &self.name]))
    }

    /// Waits until pyinit's `/readyz` on the published `health_port` answers 200.
    pub fn wait_ready(&self, health_port: u16) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok((200, _)) = http_get(health_port, "/readyz", Duration::from_secs(2)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz of {} never answered 200; logs:\n{}",
                self.name,
                self.logs()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `podman stop -t STOP_TIMEOUT_SECONDS` with a slow request in flight on `app_port`: the
    /// request completes with 200 and the container exits 0 by itself, long before podman would
    /// SIGKILL it. Returns the container's logs.
    fn assert_stop_drains_a_slow_request(&self, app_port: u16) -> String {
        let slow = thread::spawn(move || {
            http_get(
                app_port,
                &format!("/slow?s={SLOW_SECONDS}"),
                Duration::from_secs(STOP_TIMEOUT_SECONDS + 30),
            )
        });
        poll_until(PATIENCE, "the slow request to reach the app", || {
            self.logs().contains("slow request started")
        });
        let stop_started = Instant::now();
        podman_ok(&[
            "stop",
            "--time",
            &STOP_TIMEOUT_SECONDS.to_string(),
            &self.name,
        ]);
        let stop_took = stop_started.elapsed();
        let answer = slow.join().expect("the slow request's thread");
        let logs = self.logs();
        let exit_code = self.inspect("{{.State.ExitCode}}");
        assert!(
            matches!(&answer, Ok((200, _))),
            "the slow request: {answer:?}; logs:\n{logs}"
        );
        assert_eq!(exit_code, "0", "logs:\n{logs}");
        assert!(
            stop_took < Duration::from_secs(STOP_TIMEOUT_SECONDS - 5),
            "podman stop took {stop_took:?} of its {STOP_TIMEOUT_SECONDS}s; logs:\n{logs}"
        );
        logs
    }

    /// Asserts that the container's PID 1 (pyinit) and every process below it run as `uid`;
    /// returns their argv.
    fn assert_every_process_runs_as(&self, uid: u32) -> Vec<String> {
        let processes = self.process_uids();
        assert!(
            processes.iter().all(|(process_uid, _)| *process_uid == uid),
            "a process does not run as uid {uid}: {processes:?}"
        );
        processes.into_iter().map(|(_, argv)| argv).collect()
    }

    /// The uids of the container's PID 1 (pyinit) and of every process below it, with argv.
    fn process_uids(&self) -> Vec<(u32, String)> {
        let pid1: u32 = self.inspect("{{.State.Pid}}").parse().expect("a pid");
        std::iter::once(pid1)
            .chain(descendants_of(pid1))
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let uid = status
                    .lines()
                    .find_map(|line| line.strip_prefix("Uid:"))?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                let argv = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                Some((uid, String::from_utf8_lossy(&argv).replace('\0', " ")))
            })
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}

/// The uid that Dockerfile.example's `useradd --uid` gives the image's user.
fn image_user_uid() -> u32 {
    let invocation = invocation("dockerfile", &dockerfile());
    let passwd = invocation.passwd.first().expect("the image creates a user");
    passwd
        .split(':')
        .nth(2)
        .expect("name:x:uid:...")
        .parse()
        .expect("a uid")
}

/// The example image, built from the repository's root as the Dockerfile's comment says, with a
/// local base image and the tests' index.
fn build_example_image(index: &OfflineIndex) -> Image {
    let (image, log) = build_offline(
        index,
        &dockerfile(),
        repo(),
        &[
            format!("PYTHON_IMAGE={}", base_image()),
            format!("PIP_INDEX_URL={}", index.url()),
        ],
    );
    // pip chose the x86_64 wheel of this build from the index, by its platform tags.
    let wheel = super::wheel_name(&cargo_version(), "x86_64");
    assert!(log.contains(&wheel), "pip did not install {wheel}:\n{log}");
    image
}

#[test]
fn dockerfile_example_builds_offline_and_runs_and_drains_in_podman() {
    let index = OfflineIndex::of_wheels_and_wheelhouse();
    let image = build_example_image(&index);
    drop(index);

    // As `docker run -p` starts it: pyinit as root drops to the image's user.
    let (container, app_port, _) = Container::run_published("8558", &[&image.name]);

    // The image's HEALTHCHECK asks pyinit.
    let check = podman(&["healthcheck", "run", &container.name]);
    assert_eq!(check.status.code(), Some(0), "{}", text_of(&check));
    assert_eq!(container.inspect("{{.State.Health.Status}}"), "healthy");

    // pyinit (PID 1, after its drop) and every gunicorn process run as the image's user.
    let uid = image_user_uid();
    assert_ne!(uid, 0);
    let argvs = container.assert_every_process_runs_as(uid);
    assert!(
        argvs
            .iter()
            .filter(|argv| argv.contains("gunicorn"))
            .count()
            >= 2,
        "no gunicorn master and workers: {argvs:?}"
    );

    // `podman stop` sends the STOPSIGNAL: pyinit drains the app.
    let logs = container.assert_stop_drains_a_slow_request(app_port);
    assert!(logs.contains("app exited code=0"), "{logs}");
    drop(container);

    // As the Deployment runs the image: the image's ENTRYPOINT (the pod sets no command; its
    // args take the CMD's place, as `podman run IMAGE ARGS` does), its env, and its
    // securityContext (the pod's user, read-only root, no capabilities, no_new_privs, a tmpfs
    // /tmp).
    let pod = invocation("deployment", &deployment());
    let (uid, gid) = pod.run_as.expect("the pod sets runAsUser");
    let health_container_port = health_addr_of(&pod)
        .rsplit(':')
        .next()
        .expect("a port")
        .to_owned();
    let user = format!("{uid}:{gid}");
    let env: Vec<String> = pod
        .pod_env
        .iter()
        .cloned()
        // The kubelet adds the API server's address to every container.
        .chain(std::iter::once(
            "KUBERNETES_SERVICE_HOST=10.96.0.1".to_owned(),
        ))
        .collect();
    let mut args = vec![
        "--user",
        &user,
        "--read-only",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--tmpfs",
        "/tmp",
    ];
    let entrypoint = exec_form(pod.pod_command.iter().cloned());
    if !pod.pod_command.is_empty() {
        args.extend(["--entrypoint", &entrypoint]);
    }
    for variable in &env {
        args.extend(["--env", variable]);
    }
    args.push(&image.name);
    args.extend(pod.pod_args.iter().map(String::as_str));
    let (container, app_port, health_port) =
        Container::run_published(&health_container_port, &args);
    // What the kubelet's probes ask answers 200 once the app is up.
    for (kind, path) in &pod.probes {
        let answer = http_get(health_port, path, Duration::from_secs(2));
        assert!(
            matches!(answer, Ok((200, _))),
            "the {kind} path {path}: {answer:?}; logs:\n{}",
            container.logs()
        );
    }
    let argvs = container.assert_every_process_runs_as(uid);
    assert!(
        argvs
            .iter()
            .any(|argv| argv.contains(&pod.pod_args.join(" "))),
        "the pod's args are not the app's command: {argvs:?}"
    );
    container.assert_stop_drains_a_slow_request(app_port);
}

/// An image with `STOPSIGNAL SIGINT` and `ENV PYINIT_STOP_SIGNAL=INT`, as docs/signals.md
/// shows them: `podman stop` sends SIGINT, and pyinit drains on it as it does on SIGTERM. The
/// image is the local base image with those two lines (built without network in seconds); the
/// pyinit under test and the app fixture are mounted into it, and the container shares the
/// host's network, where the test reaches both ports.
#[test]
fn podman_stop_sends_the_images_stopsignal_and_pyinit_drains_on_it() {
    let context = super::TempDir::new("stopsignal");
    let dockerfile = context.path.join("Dockerfile");
    std::fs::write(
        &dockerfile,
        format!(
            "FROM {}\nSTOPSIGNAL SIGINT\nENV PYINIT_STOP_SIGNAL=INT\n",
            base_image()
        ),
    )
    .expect("write the Dockerfile");
    let image = build_without_network(&dockerfile, &context.path);
    assert_eq!(
        podman_ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.StopSignal}}",
            &image.name
        ]),
        "SIGINT"
    );
    let (app_port, health_port) = (free_port(), free_port());
    let pyinit_mount = format!("{}:/usr/local/bin/pyinit:ro", env!("CARGO_BIN_EXE_pyinit"));
    let fixtures_mount = format!("{}:/fixtures:ro", repo().join("tests/fixtures").display());
    let health_addr = format!("127.0.0.1:{health_port}");
    let readiness = format!("http://127.0.0.1:{app_port}/healthz");
    let app_port_text = app_port.to_string();
    let container = Container::run(&[
        "--network",
        "host",
        "--volume",
        &pyinit_mount,
        "--volume",
        &fixtures_mount,
        "--entrypoint",
        "pyinit",
        &image.name,
        "--allow-root",
        "--health-addr",
        &health_addr,
        "--readiness",
        &readiness,
        "--readiness-period",
        "200ms",
        "--pre-stop-delay",
        "1s",
        "--",
        "python3",
        "/fixtures/http_app.py",
        "--port",
        &app_port_text,
        "--stop-on",
        "INT",
    ]);
    container.wait_ready(health_port);
    let name = container.name.clone();
    let stop = thread::spawn(move || {
        let started = Instant::now();
        podman_ok(&["stop", "--time", &STOP_TIMEOUT_SECONDS.to_string(), &name]);
        started.elapsed()
    });
    // Readiness drops while the app still serves: the pre-stop delay of a drain.
    poll_until(PATIENCE, "/readyz to answer 503", || {
        matches!(
            http_get(health_port, "/readyz", Duration::from_secs(2)),
            Ok((503, _))
        )
    });
    let app = http_get(app_port, "/healthz", Duration::from_secs(2));
    assert!(
        matches!(app, Ok((200, _))),
        "the app during the delay: {app:?}"
    );
    let stop_took = stop.join().expect("the stop's thread");
    let logs = container.logs();
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0", "{logs}");
    assert!(
        stop_took >= Duration::from_millis(900) && stop_took < Duration::from_secs(10),
        "podman stop took {stop_took:?}; logs:\n{logs}"
    );
    for line in [
        "drain started: readiness is false signal=\"INT\"",
        "stop signal sent signal=\"INT\"",
        "signal INT",
        "app exited code=0",
    ] {
        assert!(logs.contains(line), "no {line:?} in:\n{logs}");
    }
}

/// A JSON array of strings, as `--entrypoint` takes an exec form (the words hold no quotes or
/// backslashes, which this checks).
fn exec_form(words: impl Iterator<Item = String>) -> String {
    let quoted: Vec<String> = words
        .map(|word| {
            assert!(
                !word.contains(['"', '\\']),
                "a word the test cannot quote: {word:?}"
            );
            format!("\"{word}\"")
        })
        .collect();
    format!("[{}]", quoted.join(","))
}
