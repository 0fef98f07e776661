//! Where the app was stuck, read from the tracebacks Python printed at the drain deadline.
//!
//! faulthandler prints, for each process that got the dump signal, a `Fatal Python error: ...`
//! line and then one section per thread: a header (`Current thread 0x... (most recent call
//! first):` for the thread that took the signal, `Thread 0x... (most recent call first):` for the
//! others), then one `  File "PATH", line N in FUNCTION` line per frame, innermost first. The
//! innermost frame of each thread is where it waits; [`stuck_frames`] returns it for every thread
//! of every process, in the order printed. Every thread, not only the one that took the signal:
//! in a threaded server the main thread is often just joining the request thread that is stuck.
//!
//! Pure: the text is a parameter (the drill reads it from the app's stderr, after the deadline).

use std::fmt;

/// The innermost frame of one thread: where it was when the dump signal came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StuckFrame {
    pub file: String,
    pub line: u32,
    pub function: String,
}

/// `/app/db.py:12 in wait_for_database_forever`, the report's form.
impl fmt::Display for StuckFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} in {}", self.file, self.line, self.function)
    }
}

/// The innermost frame of every thread in the tracebacks of `text`, in the order printed; other
/// lines (the app's own output, pyinit's log) are skipped.
pub fn stuck_frames(text: &str) -> Vec<StuckFrame> {
    let mut frames = Vec::new();
    // True after a thread's header, until its first frame.
    let mut awaiting_innermost = false;
    for line in text.lines() {
        if is_thread_header(line) {
            awaiting_innermost = true;
        } else if awaiting_innermost {
            if let Some(frame) = parse_frame(line) {
                frames.push(frame);
            }
            // A thread without Python frames (`  <no Python frame>`) has nothing to show.
            awaiting_innermost = false;
        }
    }
    frames
}

/// The same frames with how many threads were stuck in each, in the order first seen: four
/// workers stuck on one call make one line of the report.
pub fn group_frames(frames: &[StuckFrame]) -> Vec<(StuckFrame, usize)> {
    let mut grouped: Vec<(StuckFrame, usize)> = Vec::new();
    for frame in frames {
        match grouped.iter_mut().find(|(seen, _)| seen == frame) {
            Some((_, count)) => *count += 1,
            None => grouped.push((frame.clone(), 1)),
        }
    }
    grouped
}

/// `Current thread 0x00007f... (most recent call first):` or `Thread 0x...`; Python 3.13 may add
/// the thread's name before the parenthesis.
fn is_thread_header(line: &str) -> bool {
    let line = line.trim_end();
    (line.starts_with("Current thread 0x") || line.starts_with("Thread 0x"))
        && line.ends_with("(most recent call first):")
}

/// `  File "/app/db.py", line 12 in wait_for_database_forever`.
fn parse_frame(line: &str) -> Option<StuckFrame> {
    let rest = line.trim_end().strip_prefix("  File \"")?;
    // The path may hold quotes and commas: the line number is after the last `", line `.
    let (file, rest) = rest.rsplit_once("\", line ")?;
    let (number, function) = rest.split_once(" in ")?;
    Some(StuckFrame {
        file: file.to_owned(),
        line: number.parse().ok()?,
        function: function.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What gunicorn's master and a stuck sync worker print on SIGBUS (Python 3.11), with the
    /// app's and pyinit's lines around them.
    const GUNICORN: &str = r#"[2026-12-01 23:24:47 +0000] [2] [INFO] Handling signal: term
2026-12-01T23:24:50.158793Z ERROR app did not drain within the deadline: sending BUS ...
Fatal Python error: Bus error

Current thread 0x00007f93b06c62c0 (most recent call first):
  File "/venv/lib/python3.11/site-packages/gunicorn/arbiter.py", line 487 in stop
  File "/venv/lib/python3.11/site-packages/gunicorn/arbiter.py", line 405 in halt
  File "/venv/bin/gunicorn", line 8 in <module>
Fatal Python error: Bus error

Current thread 0x00007f93b06c62c0 (most recent call first):
  File "/app/stuck_app.py", line 23 in wait_for_database_forever
  File "/app/stuck_app.py", line 30 in app
  File "/venv/lib/python3.11/site-packages/gunicorn/workers/sync.py", line 184 in handle_request

Extension modules: _cffi_backend (total: 1)
2026-12-01T23:24:50.163561Z  INFO pyinit exiting code=137
"#;

    fn frame(file: &str, line: u32, function: &str) -> StuckFrame {
        StuckFrame {
            file: file.to_owned(),
            line,
            function: function.to_owned(),
        }
    }

    #[test]
    fn the_innermost_frame_of_each_process() {
        assert_eq!(
            stuck_frames(GUNICORN),
            [
                frame(
                    "/venv/lib/python3.11/site-packages/gunicorn/arbiter.py",
                    487,
                    "stop"
                ),
                frame("/app/stuck_app.py", 23, "wait_for_database_forever"),
            ]
        );
        assert_eq!(
            stuck_frames(GUNICORN)[1].to_string(),
            "/app/stuck_app.py:23 in wait_for_database_forever"
        );
    }

    #[test]
    fn every_thread_counts_not_only_the_one_that_took_the_signal() {
        let threaded = r#"Fatal Python error: Bus error

Thread 0x00007f97b6fff6c0 (most recent call first):
  File "/app/stuck_app.py", line 23 in wait_for_database_forever
  File "/usr/lib/python3.11/threading.py", line 995 in _bootstrap

Thread 0x00007f97b6ffe6c0 [ThreadPoolExecutor-0_0] (most recent call first):
  <no Python frame>

Current thread 0x00007f97b7bdf2c0 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 1132 in _wait_for_tstate_lock
  File "/usr/lib/python3.11/threading.py", line 1112 in join
"#;
        assert_eq!(
            stuck_frames(threaded),
            [
                frame("/app/stuck_app.py", 23, "wait_for_database_forever"),
                frame(
                    "/usr/lib/python3.11/threading.py",
                    1132,
                    "_wait_for_tstate_lock"
                ),
            ]
        );
    }

    #[test]
    fn odd_paths_and_output_without_tracebacks() {
        let odd = "Current thread 0x1 (most recent call first):\n  File \"/a \"b\", line 3.py\", line 7 in <module>\n";
        assert_eq!(
            stuck_frames(odd),
            [frame("/a \"b\", line 3.py", 7, "<module>")]
        );
        // A frame line outside a traceback, or cut short, is not a stuck frame.
        let noise = "  File \"/x.py\", line 1 in f\nThread 0x2 (most recent call first):\n  File \"/y.py\", line\n";
        assert_eq!(stuck_frames(noise), []);
        assert_eq!(stuck_frames(""), []);
    }

    #[test]
    fn identical_frames_are_counted_once_each() {
        let db = frame("/app/db.py", 12, "query");
        let lock = frame("/app/cache.py", 40, "acquire");
        assert_eq!(
            group_frames(&[db.clone(), lock.clone(), db.clone(), db.clone()]),
            [(db, 3), (lock, 1)]
        );
    }
}
