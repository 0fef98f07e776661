//! pyinit as the example files start it: the Deployment's args and env with the image's
//! ENTRYPOINT (as the pod's user and as root), the Dockerfile's ENTRYPOINT and CMD, each with the
//! image's users in /etc/passwd and /etc/group; the sidecar example's init container, its own
//! command with no app, as the pod's user; the startupProbe's path against an app that starts
//! listening late; and the README's first command, whose example app logs requests but not
//! health checks.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Invocation, deployment, dockerfile, health_addr_of, invocation, sidecar};
use crate::common::http::{free_port, get, health_addr, metric, send_raw};
use crate::common::runc::example;
use crate::common::{Finished, PATIENCE, PYTHON, Pyinit, poll_until};

/// A copy of the host's `/etc/{name}` with the image's entries first (they win a lookup).
struct EtcFile {
    path: PathBuf,
}

impl EtcFile {
    fn new(name: &str, image_entries: &[String]) -> EtcFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let host = std::fs::read_to_string(Path::new("/etc").join(name)).expect("read /etc");
        let path = std::env::temp_dir().join(format!(
            "pyinit-dockerfile-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
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

/// The image's /etc/passwd and /etc/group, for pyinit to look its `--user` up in.
struct ImageUsers {
    passwd: EtcFile,
    group: EtcFile,
}

impl ImageUsers {
    fn of(invocation: &Invocation) -> ImageUsers {
        assert!(
            !invocation.passwd.is_empty(),
            "the image creates no user for --user"
        );
        ImageUsers {
            passwd: EtcFile::new("passwd", &invocation.passwd),
            group: EtcFile::new("group", &invocation.group),
        }
    }
}

/// The real pyinit with the file's flags and variables (and nothing of the test's environment),
/// in a network namespace of its own.
fn pyinit_with(invocation: &Invocation) -> Pyinit {
    invocation
        .env
        .iter()
        .fold(
            Pyinit::new().env_clear().private_network(),
            |pyinit, (name, value)| pyinit.env(name, value),
        )
        .args(&invocation.args)
}

/// The real pyinit with the file's flags and variables and the image's users, running
/// `/bin/true` instead of the app.
fn pyinit_as_in(invocation: &Invocation, users: &ImageUsers) -> Pyinit {
    pyinit_with(invocation)
        .bind_file(&users.passwd.path, "/etc/passwd")
        .bind_file(&users.group.path, "/etc/group")
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

#[test]
fn pyinit_accepts_the_deployments_args_and_env_with_the_images_entrypoint() {
    let invocation = invocation("deployment", &deployment());
    assert!(
        invocation.pod_command.is_empty() && !invocation.pod_args.is_empty(),
        "the Deployment must pass only args: {invocation:?}"
    );
    let users = ImageUsers::of(&invocation);
    let (uid, gid) = invocation.run_as.expect("the pod sets runAsUser");
    let addr = health_addr_of(&invocation);
    // As the pod starts it (runAsUser, no capabilities, no_new_privs: --user then changes
    // nothing), and as a runtime without that securityContext would (root: --user drops).
    for (how, pyinit) in [
        (
            "as the pod's user",
            // The kubelet adds the API server's address to every container; pyinit's defaults
            // (the pre-stop delay) follow it.
            pyinit_as_in(&invocation, &users)
                .started_by_pod_as(uid, gid)
                .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
                .env("KUBERNETES_SERVICE_PORT", "443"),
        ),
        ("as root", pyinit_as_in(&invocation, &users)),
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

#[test]
fn pyinit_accepts_the_dockerfiles_entrypoint_and_env() {
    let invocation = invocation("dockerfile", &dockerfile());
    // The image has no USER: pyinit starts as root and drops to the image's user (--user).
    let users = ImageUsers::of(&invocation);
    let finished = pyinit_as_in(&invocation, &users)
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
    // pod whose runAsUser is not the --user the image names (the pod's user is really used).
    let mut invocation = invocation("deployment", &deployment());
    let users = ImageUsers::of(&invocation);
    let (uid, gid) = invocation.run_as.expect("the pod sets runAsUser");
    let finished = pyinit_as_in(&invocation, &users)
        .started_by_pod_as(uid + 1, gid + 1)
        .run();
    assert_eq!(finished.code(), Some(2), "{}", finished.stderr_text());
    assert!(
        finished.stderr_text().contains("not root"),
        "{}",
        finished.stderr_text()
    );
    invocation.args.push("--health-port=8558".to_owned());
    let finished = pyinit_as_in(&invocation, &users).run();
    assert_eq!(finished.code(), Some(2), "{}", finished.stderr_text());
    assert!(
        finished.stderr_text().contains("--health-port"),
        "{}",
        finished.stderr_text()
    );
}

/// The real pyinit as the pod starts the sidecar (its command, the pod's user, no capabilities,
/// in Kubernetes): a health sidecar on the manifest's port, which a SIGTERM ends at once with 0,
/// as it must when it comes after the main containers have exited.
#[test]
fn pyinit_runs_as_the_sidecar_example_starts_it() {
    let invocation = invocation("sidecar", &sidecar());
    assert!(
        invocation.app.is_empty(),
        "the sidecar runs no app: {invocation:?}"
    );
    let (uid, gid) = invocation.run_as.expect("the pod sets runAsUser");
    let mut running = pyinit_with(&invocation)
        .started_by_pod_as(uid, gid)
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .start();
    let addr = health_addr_of(&invocation);
    running
        .stderr
        .wait_for(&format!("health server listening addr={addr}"), PATIENCE);
    running.stderr.wait_for("health sidecar", PATIENCE);
    let sent = Instant::now();
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).code(), Some(0));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "the sidecar took {:?} to exit",
        sent.elapsed()
    );
    assert!(
        !running.stderr.contains("pyinit: "),
        "{}",
        running.stderr.joined()
    );
}

/// Whether something listens on 127.0.0.1:`port` (a refused connection says no).
fn listens(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .is_ok()
}

/// The Deployment's pyinit (the image's ENTRYPOINT with the pod's env, as the pod's user) in
/// front of an app that starts listening `LISTEN_AFTER` after it starts, as an app with slow
/// imports does: the path of the Deployment's startupProbe answers 503 while the app does not
/// listen, and 200 once it answers, so the kubelet's startup budget runs until the app is up.
/// /livez, which the startupProbe once asked, answers 200 all along: it says that pyinit runs.
/// The ports are free ones (tests run side by side): the app's in place of 8000 in the flags,
/// the health server's on loopback in place of 0.0.0.0:8558.
#[test]
fn the_deployments_startup_probe_fails_until_the_app_answers() {
    const LISTEN_AFTER: &str = "5";
    let invocation = invocation("deployment", &deployment());
    let users = ImageUsers::of(&invocation);
    let (uid, gid) = invocation.run_as.expect("the pod sets runAsUser");
    let startup_path = invocation.probe_path("startupProbe").to_owned();
    let app_port = free_port();
    let args: Vec<String> = invocation
        .args
        .iter()
        .map(|arg| {
            arg.replace("127.0.0.1:8000", &format!("127.0.0.1:{app_port}"))
                .replace(&health_addr_of(&invocation), "127.0.0.1:0")
        })
        .collect();
    assert!(
        args.iter().any(|arg| arg.contains(&app_port.to_string())),
        "the image's flags no longer probe 127.0.0.1:8000: {args:?}"
    );
    let late_app = format!(
        "sleep {LISTEN_AFTER} && exec {PYTHON} {}",
        example("app/app.py").display()
    );
    let running = invocation
        .env
        .iter()
        .fold(Pyinit::new().env_clear(), |pyinit, (name, value)| {
            pyinit.env(name, value)
        })
        .env("PORT", app_port.to_string())
        .bind_file(&users.passwd.path, "/etc/passwd")
        .bind_file(&users.group.path, "/etc/group")
        .started_by_pod_as(uid, gid)
        .args(&args)
        .app(vec!["/bin/sh".into(), "-c".into(), late_app.into()])
        .start();
    let health = health_addr(&running);

    // Each answer counts only if the app still did not listen after it came.
    let mut answers_before_listening = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let startup = get(health, &startup_path).status;
        let livez = get(health, "/livez").status;
        if listens(app_port) {
            break;
        }
        answers_before_listening.push((startup, livez));
        assert!(
            Instant::now() < deadline,
            "the app never listened:\n{}",
            running.stderr.joined()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        answers_before_listening.len() >= 3,
        "too few answers before the app listened ({answers_before_listening:?}):\n{}",
        running.stderr.joined()
    );
    assert!(
        answers_before_listening
            .iter()
            .all(|(startup, livez)| *startup == 503 && *livez == 200),
        "{startup_path} must answer 503 (and /livez 200) until the app listens:\
         {answers_before_listening:?}\n{}",
        running.stderr.joined()
    );
    poll_until(
        PATIENCE,
        "the startupProbe's path to answer 200 once the app answers",
        || get(health, &startup_path).status == 200,
    );
    poll_until(PATIENCE, "/readyz to answer 200", || {
        get(health, "/readyz").status == 200
    });
}

/// The README's first command: the bundled example app under pyinit, probed every second. The app
/// logs the requests it serves, but neither pyinit's probes of /healthz nor anyone's /healthz.
#[test]
fn the_example_app_logs_requests_but_not_health_checks() {
    let (mut running, app_port) = crate::dist::wheels::start_readme_first_command();
    let health = health_addr(&running);
    let app = SocketAddr::from(([127, 0, 0, 1], app_port));
    poll_until(PATIENCE, "three successful readiness probes", || {
        metric(
            health,
            "pyinit_probe_results_total{probe=\"readiness\",result=\"success\"}",
        )
        .is_some_and(|count| count >= 3.0)
    });
    assert_eq!(get(app, "/").status, 200);
    assert_eq!(get(app, "/slow?s=0").status, 200);
    assert_eq!(get(app, "/healthz").status, 200);
    assert_eq!(get(app, "/nowhere").status, 404);
    // A probe of another path, as the kubelet would send it.
    let probe = send_raw(
        app,
        b"GET /?from=probe HTTP/1.1\r\nHost: pod\r\nUser-Agent: kube-probe/1.36\r\n\
          Connection: close\r\n\r\n",
    );
    assert!(probe.starts_with("HTTP/1.0 200"), "{probe}");
    running.signal("TERM");
    let status = running.wait_exit(PATIENCE);
    running.stderr.wait_closed(Duration::from_secs(5));
    let stderr = running.stderr.joined();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let app_lines: Vec<String> = running
        .stderr
        .all()
        .into_iter()
        .filter(|line| line.starts_with("app: "))
        .collect();
    for expected in [
        "\"GET / HTTP/1.1\" 200",
        "\"GET /slow?s=0 HTTP/1.1\" 200",
        "\"GET /nowhere HTTP/1.1\" 404",
    ] {
        assert!(
            app_lines.iter().any(|line| line.contains(expected)),
            "the app did not log {expected:?}:\n{stderr}"
        );
    }
    assert!(
        !app_lines
            .iter()
            .any(|line| line.contains("/healthz") || line.contains("from=probe")),
        "the app logged a health check:\n{stderr}"
    );
}
