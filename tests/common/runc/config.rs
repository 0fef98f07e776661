//! The bundle's config.json: the OCI runtime configuration a [`Bundle`] describes, written with
//! a few lines of JSON rather than a serialization crate.

use std::fmt::{self, Write as _};
use std::path::Path;

use super::{Bundle, PYINIT_IN_CONTAINER};

/// The capabilities a container started as root gets from a default container runtime; pyinit
/// must be able to drop them itself.
const ROOT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Host folders every container gets read-only: enough for Debian's python3 and a glibc binary.
const HOST_SYSTEM_FOLDERS: &[&str] = &["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"];

/// The OCI runtime configuration of `bundle`, as JSON text.
pub(super) fn config_json(bundle: &Bundle) -> String {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
        // Before the binds below: a repo that lives under /tmp on the host gets its
        // mountpoints inside this tmpfs.
        mount(
            "/tmp",
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777", "size=65536k"],
        ),
    ];
    if bundle.host_folders {
        for folder in HOST_SYSTEM_FOLDERS {
            mounts.push(read_only_bind(Path::new(folder), Path::new(folder)));
        }
    }
    for (host_path, container_path) in &bundle.binds {
        mounts.push(read_only_bind(host_path, container_path));
    }
    for volume in &bundle.volumes {
        let access = if volume.writable { "rw" } else { "ro" };
        mounts.push(Json::obj([
            (
                "destination",
                Json::str(volume.container_path.display().to_string()),
            ),
            ("type", Json::str("bind")),
            ("source", Json::str(volume.host_dir.display().to_string())),
            ("options", Json::strs(&["rbind", access, "nosuid", "nodev"])),
        ]));
    }
    mounts.push(Json::obj([
        ("destination", Json::str(PYINIT_IN_CONTAINER)),
        ("type", Json::str("bind")),
        ("source", Json::str(bundle.pyinit.display().to_string())),
        ("options", Json::strs(&["bind", "ro"])),
    ]));

    let mut argv = vec![PYINIT_IN_CONTAINER.to_owned()];
    argv.extend(bundle.args.iter().cloned());
    let env: Vec<String> = bundle
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();

    let mut resources = vec![(
        "devices",
        Json::Arr(vec![Json::obj([
            ("allow", Json::Bool(false)),
            ("access", Json::str("rwm")),
        ])]),
    )];
    if let Some((quota, period)) = bundle.cpu {
        resources.push((
            "cpu",
            Json::obj([("quota", Json::Int(quota)), ("period", Json::Int(period))]),
        ));
    }
    if let Some(limit) = bundle.memory_limit {
        resources.push((
            "memory",
            Json::obj([("limit", Json::Int(limit)), ("swap", Json::Int(limit))]),
        ));
    }

    let capabilities = Json::strs(ROOT_CAPABILITIES);
    let config = Json::obj([
        ("ociVersion", Json::str("1.0.2")),
        (
            "process",
            Json::obj([
                ("terminal", Json::Bool(false)),
                (
                    "user",
                    Json::obj([("uid", Json::Int(0)), ("gid", Json::Int(0))]),
                ),
                ("args", Json::Arr(argv.into_iter().map(Json::Str).collect())),
                ("env", Json::Arr(env.into_iter().map(Json::Str).collect())),
                ("cwd", Json::str(bundle.cwd.clone())),
                (
                    "capabilities",
                    Json::obj([
                        ("bounding", capabilities.clone()),
                        ("effective", capabilities.clone()),
                        ("permitted", capabilities),
                    ]),
                ),
                (
                    "rlimits",
                    Json::Arr(vec![Json::obj([
                        ("type", Json::str("RLIMIT_NOFILE")),
                        ("hard", Json::Int(4096)),
                        ("soft", Json::Int(4096)),
                    ])]),
                ),
                // A root container's default: pyinit sets no_new_privs itself.
                ("noNewPrivileges", Json::Bool(false)),
            ]),
        ),
        (
            "root",
            Json::obj([
                ("path", Json::str("rootfs")),
                ("readonly", Json::Bool(true)),
            ]),
        ),
        ("hostname", Json::str("pyinit-e2e")),
        ("mounts", Json::Arr(mounts)),
        (
            "linux",
            Json::obj([
                ("resources", Json::obj(resources)),
                // No network namespace: the test reaches the app on 127.0.0.1.
                (
                    "namespaces",
                    Json::Arr(
                        ["pid", "ipc", "uts", "mount"]
                            .into_iter()
                            .map(|kind| Json::obj([("type", Json::str(kind))]))
                            .collect(),
                    ),
                ),
                (
                    "maskedPaths",
                    Json::strs(&[
                        "/proc/acpi",
                        "/proc/asound",
                        "/proc/kcore",
                        "/proc/keys",
                        "/proc/latency_stats",
                        "/proc/timer_list",
                        "/proc/timer_stats",
                        "/proc/sched_debug",
                        "/sys/firmware",
                        "/proc/scsi",
                    ]),
                ),
                (
                    "readonlyPaths",
                    Json::strs(&[
                        "/proc/bus",
                        "/proc/fs",
                        "/proc/irq",
                        "/proc/sys",
                        "/proc/sysrq-trigger",
                    ]),
                ),
            ]),
        ),
    ]);
    config.to_string()
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Json {
    Json::obj([
        ("destination", Json::str(destination)),
        ("type", Json::str(kind)),
        ("source", Json::str(source)),
        ("options", Json::strs(options)),
    ])
}

fn read_only_bind(host_path: &Path, container_path: &Path) -> Json {
    Json::obj([
        (
            "destination",
            Json::str(container_path.display().to_string()),
        ),
        ("type", Json::str("bind")),
        ("source", Json::str(host_path.display().to_string())),
        ("options", Json::strs(&["rbind", "ro", "nosuid", "nodev"])),
    ])
}

/// Just enough JSON to write config.json.
#[derive(Debug, Clone)]
enum Json {
    Bool(bool),
    Int(i64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    fn str(text: impl Into<String>) -> Json {
        Json::Str(text.into())
    }

    fn strs(texts: &[&str]) -> Json {
        Json::Arr(texts.iter().map(|text| Json::str(*text)).collect())
    }

    fn obj(fields: impl IntoIterator<Item = (&'static str, Json)>) -> Json {
        Json::Obj(fields.into_iter().collect())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Bool(value) => write!(f, "{value}"),
            Json::Int(value) => write!(f, "{value}"),
            Json::Str(text) => write_json_string(f, text),
            Json::Arr(items) => {
                f.write_char('[')?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Json::Obj(fields) => {
                f.write_char('{')?;
                for (index, (key, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        f.write_char(',')?;
                    }
                    write_json_string(f, key)?;
                    write!(f, ":{value}")?;
                }
                f.write_char('}')
            }
        }
    }
}

fn write_json_string(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_char('"')?;
    for character in text.chars() {
        match character {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            control if u32::from(control) < 0x20 => write!(f, "\\u{:04x}", u32::from(control))?,
            other => f.write_char(other)?,
        }
    }
    f.write_char('"')
}

#[test]
fn json_strings_are_escaped() {
    let text = Json::obj([("a", Json::strs(&["q\"b\\n\nt\u{1}"]))]).to_string();
    assert_eq!(text, r#"{"a":["q\"b\\n\nt\u0001"]}"#);
}
