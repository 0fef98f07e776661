//! The file probe: a heartbeat file, for workers (Celery, RQ) that serve no HTTP. It passes when
//! the file exists and, with `max-age`, was modified within it.
//!
//! The check is one stat(2) on the runtime's thread: pyinit starts no thread to hand it to, so
//! the file must be local (an emptyDir or tmpfs), where a stat never blocks for long.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{ProbeAnswer, describe_io_error};
use crate::units::format_duration;

/// Checks `path` against `max_age` as of `now` (wall-clock time, as file times are).
pub fn probe_file(path: &Path, max_age: Option<Duration>, now: SystemTime) -> ProbeAnswer {
    let answer = check(path, max_age, now);
    if answer.outcome.passed() {
        answer
    } else {
        // A stat costs the app nothing: before the first pass, whatever failed (no file yet, a
        // heartbeat left stale by the container before), the schedule may look again soon.
        answer.nothing_answered()
    }
}

fn check(path: &Path, max_age: Option<Duration>, now: SystemTime) -> ProbeAnswer {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return ProbeAnswer::failure("no such file");
        }
        Err(error) => return ProbeAnswer::failure(describe_io_error(&error)),
    };
    let Some(max_age) = max_age else {
        return ProbeAnswer::success("exists");
    };
    let modified = match metadata.modified() {
        Ok(modified) => modified,
        Err(error) => return ProbeAnswer::failure(describe_io_error(&error)),
    };
    // A modification time in the future (clock skew) counts as fresh.
    let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
    let age_seconds = age.as_secs_f64();
    if age <= max_age {
        ProbeAnswer::success(format!("modified {age_seconds:.1}s ago"))
    } else {
        ProbeAnswer::failure(format!(
            "stale: modified {age_seconds:.1}s ago, max-age {}",
            format_duration(max_age)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::schedule::Heard;
    use crate::probe::threshold::Outcome;

    fn heartbeat(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("pyinit-unit-{}-{name}", std::process::id()));
        std::fs::write(&path, b"beat").unwrap();
        path
    }

    #[test]
    fn fresh_stale_and_missing_heartbeats() {
        let path = heartbeat("beat");
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let max_age = Some(Duration::from_secs(10));
        let fresh = probe_file(&path, max_age, modified + Duration::from_secs(3));
        assert_eq!(fresh, ProbeAnswer::success("modified 3.0s ago"));
        let stale = probe_file(&path, max_age, modified + Duration::from_secs(11));
        assert_eq!(stale.outcome, Outcome::Failure);
        assert_eq!(stale.heard(), Heard::Nothing);
        assert_eq!(stale.message, "stale: modified 11.0s ago, max-age 10s");
        let skewed = probe_file(&path, max_age, modified - Duration::from_secs(5));
        assert_eq!(skewed.outcome, Outcome::Success);
        let exists = probe_file(&path, None, modified + Duration::from_secs(3600));
        assert_eq!(exists, ProbeAnswer::success("exists"));
        std::fs::remove_file(&path).unwrap();
        let missing = probe_file(&path, max_age, modified);
        assert_eq!(
            missing,
            ProbeAnswer::failure("no such file").nothing_answered()
        );
    }
}
