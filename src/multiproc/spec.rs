//! The pure half of preparing prometheus_client's multiprocess directory: which directory the
//! app's environment names, what its value may be, and which of its entries are the last run's
//! files. The environment is a lookup function and names are bytes, so tests pass closures and
//! literals; `mod.rs` opens the directory and removes the files.
//!
//! prometheus_client turns multiprocess mode on when either variable is in the environment, even
//! empty, and then uses `PROMETHEUS_MULTIPROC_DIR`, or the older lower-case
//! `prometheus_multiproc_dir` when the upper-case one is absent: so does pyinit. Each of its
//! processes writes `counter_PID.db`, `gauge_MODE_PID.db`, `histogram_PID.db` and
//! `summary_PID.db` there, and its collector serves every file that the pattern `*.db` matches
//! (Python's glob, where `*` never matches a leading dot): those are the files pyinit removes.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The variable prometheus_client reads first.
pub const VARIABLE: &str = "PROMETHEUS_MULTIPROC_DIR";
/// The older name, used by prometheus_client only when [`VARIABLE`] is absent.
pub const LEGACY_VARIABLE: &str = "prometheus_multiproc_dir";

/// The directory the app's prometheus_client will use, as its environment names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiprocDir {
    /// The variable that named it.
    pub variable: &'static str,
    /// The value, as given.
    pub path: PathBuf,
    /// The directory it is in: symbolic links on the way there are followed (`/var/run` is one on
    /// Debian), but the directory itself is opened only if it is not one.
    pub parent: PathBuf,
    /// Its own name in `parent`.
    pub name: OsString,
}

/// A value that names no directory pyinit could prepare, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidDir {
    pub variable: &'static str,
    pub value: OsString,
    pub reason: InvalidReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidReason {
    /// Set to the empty string: prometheus_client is still in multiprocess mode then.
    Empty,
    /// Not an absolute path.
    Relative,
    /// `/`, or a path that ends in `..`: no directory of its own.
    NoName,
}

impl fmt::Display for InvalidDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self.reason {
            InvalidReason::Empty => {
                "it is empty, which still turns prometheus_client's multiprocess mode on: its \
                 processes would write into their working directory and its collector refuses \
                 the path"
            }
            InvalidReason::Relative => {
                "not an absolute path: the app may change its working directory (gunicorn \
                 --chdir) before prometheus_client resolves it"
            }
            InvalidReason::NoName => "it must name a directory of its own, not / or ..",
        };
        write!(
            f,
            "invalid value '{}' for {}: {reason}; set an absolute path, unset it, or pass \
             --prepare-multiproc-dir off",
            Path::new(&self.value).display(),
            self.variable,
        )
    }
}

impl std::error::Error for InvalidDir {}

/// The multiprocess directory the app's environment names, if any (`lookup` reads one variable
/// of it): the variable that wins as in prometheus_client, checked.
pub fn multiproc_dir(
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<Option<MultiprocDir>, InvalidDir> {
    let Some((variable, value)) = [VARIABLE, LEGACY_VARIABLE]
        .into_iter()
        .find_map(|variable| lookup(variable).map(|value| (variable, value)))
    else {
        return Ok(None);
    };
    let invalid = |reason| InvalidDir {
        variable,
        value: value.clone(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid(InvalidReason::Empty));
    }
    let path = PathBuf::from(&value);
    if !path.is_absolute() {
        return Err(invalid(InvalidReason::Relative));
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(invalid(InvalidReason::NoName));
    };
    Ok(Some(MultiprocDir {
        variable,
        parent: parent.to_path_buf(),
        name: name.to_os_string(),
        path,
    }))
}

/// True for a name that prometheus_client's collector reads: `*.db`, not hidden.
pub fn is_prometheus_file(name: &[u8]) -> bool {
    name.ends_with(b".db") && !name.starts_with(b".")
}

/// The mode a directory gets from the app's own `mkdir(path, 0o777)` under `umask`, with the
/// setgid bit it inherited from its parent (a Kubernetes `fsGroup` volume has it) kept.
pub fn app_directory_mode(umask: u32, inherited_setgid: bool) -> u32 {
    let setgid = if inherited_setgid { 0o2000 } else { 0 };
    (0o777 & !umask) | setgid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    #[test]
    fn no_variable_means_nothing_to_prepare() {
        assert_eq!(multiproc_dir(env(&[])), Ok(None));
        assert_eq!(
            multiproc_dir(env(&[("PROMETHEUS_MULTIPROC", "/x")])),
            Ok(None)
        );
    }

    #[test]
    fn the_upper_case_variable_wins_as_in_prometheus_client() {
        let dir = multiproc_dir(env(&[
            ("prometheus_multiproc_dir", "/old"),
            ("PROMETHEUS_MULTIPROC_DIR", "/metrics"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(dir.variable, "PROMETHEUS_MULTIPROC_DIR");
        assert_eq!(dir.path, Path::new("/metrics"));

        let legacy = multiproc_dir(env(&[("prometheus_multiproc_dir", "/old")]))
            .unwrap()
            .unwrap();
        assert_eq!(legacy.variable, "prometheus_multiproc_dir");
        assert_eq!(legacy.path, Path::new("/old"));
    }

    #[test]
    fn an_empty_upper_case_variable_still_wins() {
        // prometheus_client tests `in os.environ`: an empty value hides the lower-case one.
        let error = multiproc_dir(env(&[
            ("PROMETHEUS_MULTIPROC_DIR", ""),
            ("prometheus_multiproc_dir", "/old"),
        ]))
        .unwrap_err();
        assert_eq!(error.variable, "PROMETHEUS_MULTIPROC_DIR");
        assert_eq!(error.reason, InvalidReason::Empty);
    }

    #[test]
    fn parent_and_name() {
        for (value, parent, name) in [
            ("/metrics", "/", "metrics"),
            ("/tmp/prometheus/", "/tmp", "prometheus"),
            ("/var/run/app/prom", "/var/run/app", "prom"),
            ("/tmp/./prom", "/tmp/.", "prom"),
        ] {
            let dir = multiproc_dir(env(&[("PROMETHEUS_MULTIPROC_DIR", value)]))
                .unwrap()
                .unwrap();
            assert_eq!(dir.parent, Path::new(parent), "{value}");
            assert_eq!(dir.name, OsString::from(name), "{value}");
        }
    }

    #[test]
    fn values_that_name_no_directory() {
        for (value, reason) in [
            ("", InvalidReason::Empty),
            ("metrics", InvalidReason::Relative),
            ("./metrics", InvalidReason::Relative),
            ("/", InvalidReason::NoName),
            ("/tmp/..", InvalidReason::NoName),
        ] {
            let error = multiproc_dir(env(&[("PROMETHEUS_MULTIPROC_DIR", value)])).unwrap_err();
            assert_eq!(error.reason, reason, "{value:?}");
            let message = error.to_string();
            assert!(
                message.starts_with(&format!(
                    "invalid value '{value}' for PROMETHEUS_MULTIPROC_DIR: "
                )),
                "{message}"
            );
            assert!(message.contains("--prepare-multiproc-dir off"), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn the_files_prometheus_client_reads_are_removed() {
        for name in [
            "counter_7.db",
            "gauge_livesum_12.db",
            "gauge_all_12.db",
            "gauge_mostrecent_3.db",
            "histogram_4242.db",
            "summary_1.db",
            // The collector reads any *.db, so a stray one would be served too.
            "other.db",
            "x.db",
        ] {
            assert!(is_prometheus_file(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn everything_else_is_kept() {
        for name in [
            ".",
            "..",
            ".db",
            ".counter_7.db",
            "counter_7.db.tmp",
            "counter_7.DB",
            "counter_7db",
            "notes.txt",
            "db",
            "",
        ] {
            assert!(!is_prometheus_file(name.as_bytes()), "{name:?}");
        }
    }

    #[test]
    fn directory_modes_follow_the_umask() {
        assert_eq!(app_directory_mode(0o022, false), 0o755);
        assert_eq!(app_directory_mode(0o027, false), 0o750);
        assert_eq!(app_directory_mode(0o002, true), 0o2775);
        assert_eq!(app_directory_mode(0o777, false), 0);
    }
}
