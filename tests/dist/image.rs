//! The distribution image of `scripts/build-image.sh`, from which users copy pyinit into their
//! own images (`COPY --from=ghcr.io/pyinit/pyinit:VERSION /pyinit /usr/local/bin/pyinit`, as
//! `Dockerfile.example` and docs/install.md show it): `localhost/pyinit:VERSION` holds the
//! static binary at /pyinit and no other file, and a Python image whose Dockerfile copies it out
//! with exactly that line (the registry changed to `localhost`) runs the example app under it,
//! ready, then stopped cleanly. And the release's way: the same script builds linux/amd64 and
//! linux/arm64 from the binaries and SHA256SUMS of `scripts/build-static.sh DIR` into one image
//! index, pushed into a local OCI layout instead of ghcr.io, each platform with its own binary;
//! a binary that does not match SHA256SUMS is refused.
//!
//! `localhost/pyinit:VERSION` is one name in podman's storage, which every checkout on this
//! machine shares: [`with_local_image`] holds the script's lock from the build until the test
//! has made what it needs of the image.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::podman::{Container, build_without_network, podman_ok};
use super::{ARCHITECTURES, text_of};
use super::{BUILD_PATIENCE, TempDir, base_image, cargo_version, output_within, static_binary};
use crate::common::runc::{http_get, repo};
use crate::common::{PATIENCE, PYTHON};

/// Where the release publishes the image: the GitHub container registry of the repository that
/// Cargo.toml names (its placeholder owner, `pyinit`).
pub const PUBLISHED_IMAGE: &str = "ghcr.io/pyinit/pyinit";

/// Runs `scripts/build-image.sh` (localhost/pyinit:VERSION from this checkout's static binary),
/// then `use_image` with the image's name, holding the script's lock throughout.
pub fn with_local_image<R>(use_image: impl FnOnce(&str) -> R) -> R {
    let lock_path = std::env::temp_dir().join("pyinit-image.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("open the image lock");
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .expect("lock the image lock");
    let output = output_within(
        Command::new("bash")
            .arg("scripts/build-image.sh")
            .current_dir(repo())
            .env("PYINIT_IMAGE_LOCK_HELD", "1")
            .stdin(Stdio::null()),
        BUILD_PATIENCE,
    );
    assert!(
        output.status.success(),
        "build-image.sh failed:\n{}",
        text_of(&output)
    );
    let image = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(image, format!("localhost/pyinit:{}", cargo_version()));
    use_image(&image)
}

/// A line of a user's Dockerfile with the published image replaced by the local one.
pub fn with_local_registry(line: &str) -> String {
    line.replace(&format!("{PUBLISHED_IMAGE}:"), "localhost/pyinit:")
}

/// What an OCI image layout holds, as `tests/dist/oci_layout.py` lists it, sorted.
fn layout_entries(layout: &Path) -> Vec<String> {
    let output = output_within(
        Command::new(PYTHON)
            .arg(repo().join("tests/dist/oci_layout.py"))
            .arg(layout),
        PATIENCE,
    );
    assert!(output.status.success(), "{}", text_of(&output));
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// The SHA-256 of a file, as `sha256sum` prints it.
fn sha256_of(path: &Path) -> String {
    let output = output_within(Command::new("sha256sum").arg(path), PATIENCE);
    assert!(output.status.success(), "{}", text_of(&output));
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_owned()
}

/// The image of `platform` (`linux/amd64`) as `layout_entries` lists it when it holds `binary`
/// at /pyinit (mode 755, owned by root) and nothing else.
fn only_the_binary(platform: &str, binary: &Path) -> Vec<String> {
    let size = std::fs::metadata(binary).expect("the binary").len();
    vec![
        format!(
            "file {platform} pyinit 100755 0 0 {size} {}",
            sha256_of(binary)
        ),
        format!("image {platform} entrypoint=[\"/pyinit\"] layers=1"),
    ]
}

/// Dockerfile.example's `COPY --from=` line (a comment there, beside pip), uncommented.
fn dockerfile_example_copy_line() -> String {
    let text = std::fs::read_to_string(repo().join("Dockerfile.example")).expect("read it");
    text.lines()
        .filter_map(|line| {
            line.trim_start_matches('#')
                .trim()
                .strip_prefix("COPY --from=")
        })
        .map(|rest| format!("COPY --from={rest}"))
        .next()
        .expect("a COPY --from= line in Dockerfile.example")
}

#[test]
fn the_image_holds_the_binary_alone_and_a_python_image_copies_it_out_and_runs_an_app() {
    let version = cargo_version();
    let copy_line = dockerfile_example_copy_line();
    assert_eq!(
        copy_line,
        format!("COPY --from={PUBLISHED_IMAGE}:{version} /pyinit /usr/local/bin/pyinit")
    );
    let context = TempDir::new("copy-from");
    std::fs::copy(
        repo().join("examples/app/app.py"),
        context.path.join("app.py"),
    )
    .expect("copy the example app");
    let dockerfile = context.path.join("Dockerfile");
    std::fs::write(
        &dockerfile,
        format!(
            "FROM {}\n{}\nCOPY app.py /app/app.py\nENV HOST=0.0.0.0 PORT=8000\n\
             ENTRYPOINT [\"pyinit\", \"--user\", \"nobody\", \"--health-addr\", \"0.0.0.0:8558\", \
             \"--readiness\", \"http://127.0.0.1:8000/healthz\", \"--\", \"python3\", \"/app/app.py\"]\n",
            base_image(),
            with_local_registry(&copy_line)
        ),
    )
    .expect("write the Dockerfile");

    let python_image = with_local_image(|image| {
        // FROM scratch: one layer, one file, the static binary of this checkout.
        let saved = TempDir::new("image-save");
        let layout = saved.path.join("layout");
        let layout_arg = layout.to_str().expect("a UTF-8 path");
        podman_ok(&["save", "--format", "oci-dir", "--output", layout_arg, image]);
        assert_eq!(
            layout_entries(&layout),
            only_the_binary("linux/amd64", &static_binary("x86_64"))
        );
        build_without_network(&dockerfile, &context.path)
    });

    // As `docker run -p` starts it: pyinit, copied out of the image, drops to nobody and
    // supervises the app.
    let (container, app_port, _) = Container::run_published("8558", &[&python_image.name]);
    let answer = http_get(app_port, "/", Duration::from_secs(10));
    assert!(
        matches!(&answer, Ok((200, body)) if body.contains("hello from the example app")),
        "{answer:?}; logs:\n{}",
        container.logs()
    );
    let stop_started = Instant::now();
    podman_ok(&["stop", "--time", "30", &container.name]);
    let logs = container.logs();
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0", "{logs}");
    assert!(
        stop_started.elapsed() < Duration::from_secs(20),
        "podman stop took {:?}; logs:\n{logs}",
        stop_started.elapsed()
    );
    for expected in ["SIGTERM received", "app exited code=0"] {
        assert!(logs.contains(expected), "no {expected:?} in:\n{logs}");
    }
}

/// The release binaries of `scripts/build-static.sh DIR`, in a folder of their own.
fn release_binaries(parent: &Path) -> PathBuf {
    let binaries = parent.join("binaries");
    let output = output_within(
        Command::new("bash")
            .arg("scripts/build-static.sh")
            .arg(&binaries)
            .current_dir(repo())
            .stdin(Stdio::null()),
        BUILD_PATIENCE,
    );
    assert!(output.status.success(), "{}", text_of(&output));
    binaries
}

/// `scripts/build-image.sh --from BINARIES --push oci:LAYOUT:VERSION`, the release's build.
fn push_to_layout(binaries: &Path, layout: &Path) -> std::process::Output {
    let destination = format!("oci:{}:{}", layout.display(), cargo_version());
    output_within(
        Command::new("bash")
            .arg("scripts/build-image.sh")
            .arg("--from")
            .arg(binaries)
            .args(["--push", &destination])
            .current_dir(repo())
            .stdin(Stdio::null()),
        BUILD_PATIENCE,
    )
}

#[test]
fn the_release_image_is_one_index_for_amd64_and_arm64_with_each_ones_binary() {
    let scratch = TempDir::new("release-image");
    let binaries = release_binaries(&scratch.path);

    // The release binaries: named by target, byte for byte the checked static binaries, and
    // SHA256SUMS verifies them.
    let check = output_within(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&binaries),
        PATIENCE,
    );
    assert!(check.status.success(), "{}", text_of(&check));
    for arch in ARCHITECTURES {
        let released = binaries.join(format!("pyinit-{arch}-unknown-linux-musl"));
        assert_eq!(
            std::fs::read(&released).expect("a release binary"),
            std::fs::read(static_binary(arch)).expect("the static binary"),
            "{}",
            released.display()
        );
        assert!(
            text_of(&check).contains(&format!("pyinit-{arch}-unknown-linux-musl: OK")),
            "{}",
            text_of(&check)
        );
    }

    let layout = scratch.path.join("layout");
    let pushed = push_to_layout(&binaries, &layout);
    assert!(pushed.status.success(), "{}", text_of(&pushed));
    let mut expected = only_the_binary("linux/amd64", &static_binary("x86_64"));
    expected.extend(only_the_binary("linux/arm64", &static_binary("aarch64")));
    expected.sort();
    assert_eq!(layout_entries(&layout), expected);

    // A binary that is not the one SHA256SUMS names never reaches an image.
    let tampered = binaries.join("pyinit-aarch64-unknown-linux-musl");
    let mut bytes = std::fs::read(&tampered).expect("read");
    bytes.push(0);
    std::fs::write(&tampered, bytes).expect("write");
    let refused_layout = scratch.path.join("refused");
    let refused = push_to_layout(&binaries, &refused_layout);
    let text = text_of(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("pyinit-aarch64-unknown-linux-musl: FAILED"),
        "{text}"
    );
    assert!(!refused_layout.exists(), "an image was pushed:\n{text}");
}
