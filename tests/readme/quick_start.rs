//! The README's first screen: at most 450 lines, the quick start in its first 100 (five points,
//! the Dockerfile block with pip and `COPY --from`, the Kubernetes snippet, both commands, the
//! local try with `kill -TERM`); the snippet passes the manifest checker beside the Dockerfile
//! block (tests/kubernetes/check_deployment.py `--snippet`), and both name the same app port;
//! the local try runs as the README tells it (a request in flight at `kill -TERM <pid>`
//! finishes, exit 0); the README's drill command runs as written, as root and not; and its
//! native sidecar snippet says what examples/kubernetes/sidecar.yaml says.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::http::health_addr;
use crate::common::runc::{repo, venv_bin};
use crate::common::{PATIENCE, descendants_of, poll_until};
use crate::dist::{TempDir, cargo_version, output_within};

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("read README.md")
}

/// A fenced code block of the README: its language, its text, and the line of its closing fence.
struct Block {
    language: String,
    text: String,
    ends_at: usize,
}

fn code_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for (index, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (open.take(), fence) {
            (None, Some(language)) => open = Some((language.to_owned(), Vec::new())),
            (Some((language, lines)), Some(_)) => blocks.push(Block {
                language,
                text: lines.join("\n") + "\n",
                ends_at: index + 1,
            }),
            (Some((language, mut lines)), None) => {
                lines.push(line);
                open = Some((language, lines));
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    blocks
}

/// The README's first command line that starts with `start`, its continuation lines (a `\` at
/// the end) joined, as `sh` reads it.
pub fn readme_command(start: &str) -> String {
    let readme = readme();
    let joined = readme.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|line| line.starts_with(start))
        .unwrap_or_else(|| panic!("the README has no command starting with {start:?}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The blocks of the quick start, the README's first 100 lines: (Dockerfile, Deployment, the
/// local try's commands).
fn quick_start_blocks() -> (String, String, String) {
    let readme = readme();
    let blocks: Vec<Block> = code_blocks(&readme)
        .into_iter()
        .filter(|block| block.ends_at <= 100)
        .collect();
    let find = |language: &str, needle: &str| {
        blocks
            .iter()
            .find(|block| block.language == language && block.text.contains(needle))
            .map(|block| block.text.clone())
            .unwrap_or_else(|| panic!("no {language} block with {needle:?} in the first 100 lines"))
    };
    (
        find("dockerfile", "ENTRYPOINT"),
        find("yaml", "kind: Deployment"),
        find("sh", "kill -TERM"),
    )
}

#[test]
fn the_readme_is_short_and_starts_with_the_quick_start() {
    let readme = readme();
    let lines: Vec<&str> = readme.lines().collect();
    assert!(lines.len() <= 450, "README.md has {} lines", lines.len());
    let points = lines
        .iter()
        .take_while(|line| !line.starts_with("## "))
        .filter(|line| line.starts_with("- "))
        .count();
    assert_eq!(
        points, 5,
        "the README starts with {points} points, not five"
    );
    let first_screen = lines
        .iter()
        .take(100)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    let version = cargo_version();
    for needle in [
        "## Quick start",
        &format!("pip install --no-cache-dir pyinit-k8s=={version}"),
        &format!("COPY --from=ghcr.io/pyinit/pyinit:{version} /pyinit /usr/local/bin/pyinit"),
        "cargo run --release -- ",
        "bash scripts/test.sh",
        "kill -TERM <pid>",
    ] {
        assert!(
            first_screen.contains(needle),
            "the README's first 100 lines have no {needle:?}"
        );
    }
    let (dockerfile, deployment, _) = quick_start_blocks();
    assert!(dockerfile.contains("pyinit-k8s") && dockerfile.contains("COPY --from="));
    for needle in [
        "securityContext",
        "resources",
        "startupProbe",
        "readinessProbe",
        "livenessProbe",
        "terminationGracePeriodSeconds",
        "containerPort: 8558",
    ] {
        assert!(deployment.contains(needle), "the snippet has no {needle}");
    }
}

/// check_deployment.py `--snippet` on a Deployment and a Dockerfile written to `folder`.
fn check_snippet(folder: &Path, dockerfile: &str, deployment: &str) -> (bool, String) {
    std::fs::write(folder.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(folder.join("deployment.yaml"), deployment).unwrap();
    let output = output_within(
        Command::new(venv_bin("python3"))
            .arg(repo().join("tests/kubernetes/check_deployment.py"))
            .arg(folder.join("deployment.yaml"))
            .arg("--dockerfile")
            .arg(folder.join("Dockerfile"))
            .arg("--snippet"),
        Duration::from_secs(120),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The ports `host:` is followed by in `text`.
fn ports_after(text: &str, host: &str) -> Vec<String> {
    text.split(host)
        .skip(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect())
        .collect()
}

#[test]
fn the_readmes_kubernetes_snippet_agrees_with_its_dockerfile_block() {
    let (dockerfile, deployment, _) = quick_start_blocks();
    let folder = TempDir::new("readme-snippet");
    let (passed, report) = check_snippet(&folder.path, &dockerfile, &deployment);
    assert!(passed && report.contains("0 failed"), "{report}");
    for check in [
        "kubernetes-validate --strict passes",
        "the image's user has uid",
    ] {
        assert!(report.contains(&format!("ok   {check}")), "{report}");
    }
    // One app port: pyinit's probes in the ENTRYPOINT, the server's bind in the CMD and in the
    // pod's args, and the container's `http` port.
    let mut ports = ports_after(&dockerfile, "http://127.0.0.1:");
    assert_eq!(ports.len(), 3, "three probes of the app: {dockerfile}");
    ports.extend(ports_after(&dockerfile, "0.0.0.0:"));
    ports.extend(ports_after(&deployment, "--bind=0.0.0.0:"));
    ports.extend(ports_after(&deployment, "name: http, containerPort: "));
    assert_eq!(ports.len(), 6, "{dockerfile}{deployment}");
    assert!(ports.iter().all(|port| *port == ports[0]), "{ports:?}");

    // The control: a readiness probe too slow for the pre-stop delay, a pod user the image does
    // not have, and a pod that sets `command` each fail the checker.
    let slow = deployment.replacen(
        "readinessProbe: { httpGet: { path: /readyz, port: health }, periodSeconds: 1",
        "readinessProbe: { httpGet: { path: /readyz, port: health }, periodSeconds: 3",
        1,
    );
    let other_user = deployment.replacen("runAsUser: 10001", "runAsUser: 10002", 1);
    let with_command = deployment.replacen("args: [", "command: [pyinit]\n          args: [", 1);
    for mutant in [slow, other_user, with_command] {
        assert_ne!(mutant, deployment, "a control no longer applies");
        let (passed, report) = check_snippet(&folder.path, &dockerfile, &mutant);
        assert!(!passed, "the checker accepted:\n{mutant}\n{report}");
    }
}

/// The TCP connections (local port, remote port) in state ESTABLISHED of the sockets `pid`
/// holds, from its /proc/PID/net/tcp.
fn established(pid: u32) -> Vec<(u16, u16)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|link| {
            let link = link.to_str()?.to_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let port = |address: &str| u16::from_str_radix(address.rsplit(':').next()?, 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state, inode) = (
                fields.get(1)?,
                fields.get(2)?,
                fields.get(3)?,
                fields.get(9)?,
            );
            let ours = *state == "01" && inodes.iter().any(|mine| mine == inode);
            ours.then(|| Some((port(local)?, port(remote)?)))?
        })
        .collect()
}

/// Whether the app (`app_pid`, listening on `app_port`) has accepted a connection of the process
/// tree under `client`: the request is in the app's hands, not in its listen backlog.
fn accepted(app_pid: u32, app_port: u16, client: u32) -> bool {
    let client_ports: Vec<u16> = std::iter::once(client)
        .chain(descendants_of(client))
        .flat_map(established)
        .filter(|(_, remote)| *remote == app_port)
        .map(|(local, _)| local)
        .collect();
    established(app_pid)
        .iter()
        .any(|(local, remote)| *local == app_port && client_ports.contains(remote))
}

/// A shell running one of the README's lines; killed on drop if it still runs.
struct Shell(Child);

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shell(line: &str) -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", line])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The README's local try: its first command, then from "another terminal" its three lines, on
/// free ports (the README says to change both numbers when 8000 and 8558 are taken), `<pid>`
/// the pid of pyinit's "pyinit is not PID 1 (pid N)" line. The readiness check passes, the
/// request is in the app's hands when `kill -TERM` comes, it finishes, and pyinit exits 0.
#[test]
fn the_readmes_local_try_runs_as_written() {
    let (_, _, try_block) = quick_start_blocks();
    let commands: Vec<&str> = try_block
        .lines()
        .map(|line| line.split("   #").next().unwrap_or(line).trim())
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(commands.len(), 3, "{try_block}");
    let (mut running, app_port) = crate::dist::wheels::start_readme_first_command();
    let health = health_addr(&running);
    let on_free_ports = |line: &str| {
        line.replace("localhost:8558", &format!("localhost:{}", health.port()))
            .replace("localhost:8000", &format!("localhost:{app_port}"))
    };
    let [readyz, request, kill] = [0, 1, 2].map(|index| on_free_ports(commands[index]));
    assert!(
        readyz.starts_with("curl ") && readyz.contains("/readyz?verbose"),
        "{readyz}"
    );
    poll_until(PATIENCE, "the README's readyz?verbose to pass", || {
        let output = shell(&readyz).output().unwrap();
        String::from_utf8_lossy(&output.stdout).contains("readyz check passed")
    });

    let request = request
        .strip_suffix('&')
        .expect("the request runs in the background");
    assert!(request.contains("/slow?s=3"), "{request}");
    let curl = Shell(shell(request).spawn().unwrap());
    let app_line = running
        .stdout
        .wait_for_line("the app's ready line", PATIENCE, |line| {
            line.starts_with("ready port=")
        });
    let app_pid: u32 = app_line
        .rsplit("pid=")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    poll_until(PATIENCE, "the app to accept the request", || {
        accepted(app_pid, app_port, curl.0.id())
    });

    let said = running
        .stderr
        .wait_for("pyinit is not PID 1 (pid ", PATIENCE);
    let pid = said
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    assert_eq!(pid, running.pyinit_pid.to_string(), "{said}");
    assert_eq!(kill, "kill -TERM <pid>");
    let killed = shell(&kill.replace("<pid>", pid)).output().unwrap();
    assert!(killed.status.success(), "{killed:?}");

    let mut curl = curl;
    let mut finished = None;
    poll_until(PATIENCE, "the request in flight to finish", || {
        finished = curl.0.try_wait().unwrap();
        finished.is_some()
    });
    let mut answer = String::new();
    let mut stdout = curl.0.stdout.take().unwrap();
    std::io::Read::read_to_string(&mut stdout, &mut answer).unwrap();
    let status = running.wait_exit(PATIENCE);
    let stderr = running.stderr.joined();
    assert!(finished.is_some_and(|status| status.success()), "{stderr}");
    assert_eq!(answer, "slept 3s\n", "{stderr}");
    assert!(
        readme().contains("(`slept 3s`)"),
        "the README no longer says what it answers"
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// The README's drill command, from a clone (`cargo run --release --` is the binary under test,
/// on PATH as `pyinit`), by `sh` in the repository's root with no PYINIT_* variable: as root, as
/// CI runs it, and as nobody with no capabilities. Each run has a network namespace of its own,
/// its loopback brought up, so that the command's port 8000 is free beside other tests.
#[test]
fn the_readmes_drill_command_runs_as_written_as_root_and_not() {
    let command = readme_command("cargo run --release -- drill ").replacen(
        "cargo run --release --",
        "pyinit",
        1,
    );
    for (how, stdout) in crate::drill::drill_passes_as_root_and_nobody(&command, repo(), None) {
        assert!(
            stdout.contains("in flight at SIGTERM") && !stdout.contains("0 in flight at SIGTERM"),
            "{how}: no request in flight:\n{stdout}"
        );
    }
}

/// Whether every key the README's sidecar snippet gives its container has the same value in
/// examples/kubernetes/sidecar.yaml's init container of that name; with what differs.
fn sidecar_snippet_matches(snippet: &str) -> (bool, String) {
    const COMPARE: &str = "import sys, yaml\n\
        snippet = yaml.safe_load(open(sys.argv[1]))['initContainers']\n\
        docs = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]\n\
        whole = {c['name']: c for d in docs\n\
                 for c in d['spec']['template']['spec'].get('initContainers', [])}\n\
        wrong = [(c['name'], k) for c in snippet for k in c if whole.get(c['name'], {}).get(k) != c[k]]\n\
        print(wrong or 'same')\n\
        sys.exit(1 if wrong else 0)\n";
    let folder = TempDir::new("readme-sidecar");
    let path = folder.path.join("snippet.yaml");
    std::fs::write(&path, snippet).expect("write the snippet");
    let output = output_within(
        Command::new(venv_bin("python3"))
            .args(["-c", COMPARE])
            .arg(&path)
            .arg(crate::examples::sidecar()),
        PATIENCE,
    );
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

#[test]
fn the_readmes_sidecar_snippet_is_the_sidecar_example() {
    let readme = readme();
    let snippet = code_blocks(&readme)
        .into_iter()
        .find(|block| block.language == "yaml" && block.text.contains("initContainers:"))
        .expect("the README's native sidecar snippet")
        .text;
    // A YAML list item indented under a bullet: the block's own indentation is removed first.
    let indent = snippet
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let snippet: String = snippet
        .lines()
        .map(|line| line.get(indent..).unwrap_or("").to_owned() + "\n")
        .collect();
    let (same, said) = sidecar_snippet_matches(&snippet);
    assert!(
        same,
        "the README's sidecar snippet differs from sidecar.yaml: {said}"
    );
    // The comparison can fail: another health address is told apart.
    let changed = snippet.replace("0.0.0.0:8558", "0.0.0.0:9000");
    assert_ne!(changed, snippet);
    let (same, said) = sidecar_snippet_matches(&changed);
    assert!(!same, "a changed snippet passed: {said}");
    assert!(said.contains("'health', 'command'"), "{said}");
}
