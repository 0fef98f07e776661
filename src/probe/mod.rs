//! The prober: one task per configured probe, scheduled by Kubernetes' rules, each result sent
//! to the supervisor as a [`ProbeReport`].
//!
//! The rules themselves are pure code: when to probe (initial delay, period, and the fast
//! first-pass phase of readiness and startup) in `schedule.rs`, thresholds and startup gating in
//! `threshold.rs`; the supervisor counts and publishes the results, so it stays the one writer
//! of readiness and liveness. A task here only waits for its turn, runs one probe of its kind
//! (`http.rs`, `tcp.rs`, `grpc.rs`, `exec.rs`, `file.rs`) within the timeout, tells its schedule
//! what the probe heard ([`ProbeAnswer::heard`]: each kind says whether anything answered a
//! failure), and reports. It
//! learns whether startup is done and whether the app is gone from its [`ProbeGate`], which the
//! supervisor publishes after every step, never from `Status`. The health server never calls in
//! here: a request never waits for a probe.
//!
//! A probe that passes with a caveat (an http probe whose last answer is a redirect it did not
//! follow, which the kubelet records as a warning event) says so in [`ProbeAnswer::warning`];
//! the task logs the first such warning of its probe, and no later one, so that a redirect met
//! every period does not fill the log.
//!
//! What a probe found is said twice. [`ProbeAnswer::message`] is the kind of result (`status
//! 500`, `exit code 1`, `connection refused`, `timed out after 1s`): it goes into `Status`, and
//! the health port, which anyone who reaches it may read, shows it. [`ProbeAnswer::detail`] is
//! the whole story when it says more: an exec probe's output, the URL a redirect led to with its
//! query. It goes to pyinit's log only (stderr, kept as the container's log, like the kubelet's
//! events that keep a probe's output): the task logs a failure's detail once, until the detail
//! changes or the probe passes.

pub mod exec;
pub mod file;
pub mod grpc;
pub mod grpc_wire;
pub mod http;
pub mod redirect;
pub mod schedule;
pub mod spec;
pub mod tcp;
pub mod threshold;

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use self::schedule::{Heard, Schedule};
use self::spec::{ProbeConfig, ProbeKind, ProbeTarget};
use self::threshold::{Outcome, ProbeGate, ProbeReport};
use crate::clock::now;
use crate::reaper::Reaper;
use crate::units::format_duration;

/// What one probe run found, before it is stamped with its kind and times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeAnswer {
    pub outcome: Outcome,
    /// The kind of result, which the health port shows: never a probe's output, a URL's query
    /// or its user info.
    pub message: String,
    /// The whole message, for pyinit's log alone, when it says more than `message`.
    pub detail: Option<String>,
    /// Something the user should hear of once, though the probe's outcome stands.
    pub warning: Option<String>,
    /// Whether the app answered a failed probe (a status, an exit code), as against nothing
    /// answering at all (a connection refused, a timeout): see [`ProbeAnswer::heard`].
    pub answered: bool,
}

impl ProbeAnswer {
    pub fn success(message: impl Into<String>) -> Self {
        ProbeAnswer {
            outcome: Outcome::Success,
            message: message.into(),
            detail: None,
            warning: None,
            answered: true,
        }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        ProbeAnswer {
            outcome: Outcome::Failure,
            message: message.into(),
            detail: None,
            warning: None,
            answered: true,
        }
    }

    pub fn timed_out(timeout: Duration) -> Self {
        ProbeAnswer {
            outcome: Outcome::Timeout,
            message: format!("timed out after {}", format_duration(timeout)),
            detail: None,
            warning: None,
            answered: true,
        }
    }

    /// Adds the whole message, for the log: `detail` says what `message` says, and more.
    pub fn with_detail(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn with_warning(mut self, warning: String) -> Self {
        self.warning = Some(warning);
        self
    }

    /// Marks a failure that nothing answered: the app does not listen yet, or has not answered
    /// within the timeout. Before the first pass such a probe is repeated soon: it costs the
    /// app nothing, or (a connection waiting in the listen backlog of a server still importing
    /// its app) the answer comes the moment the app can give it. Every failure is answered
    /// unless its kind says otherwise, so that a kind that cannot tell is never fast.
    pub fn nothing_answered(mut self) -> Self {
        self.answered = false;
        self
    }

    /// What the probe heard of the app, for the schedule.
    pub fn heard(&self) -> Heard {
        if self.outcome.passed() {
            Heard::Passed
        } else if self.answered {
            Heard::NotReady
        } else {
            Heard::Nothing
        }
    }
}

/// An I/O error in a few lowercase words: `connection refused`, without `(os error 111)`.
pub fn describe_io_error(error: &io::Error) -> String {
    let text = error.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".to_owned(),
    }
}

/// What exec probes need beyond their argv: the reaper that owns their exit, and the
/// environment and working directory the app got (HOME, USER, WEB_CONCURRENCY, ...), as the
/// kubelet runs an exec probe in the container's own environment and working directory.
#[derive(Debug, Clone)]
pub struct ExecContext {
    pub reaper: Arc<Reaper>,
    pub env: Arc<[(OsString, OsString)]>,
    pub working_dir: Option<Arc<Path>>,
}

/// The probers' gate, shared by the driver, which sets it after every step, and the probers,
/// which wait on it: the last gate and a wake-up for those waiting. A watch channel would do the
/// same, but a second kind of one (beside `Status`'s) costs about 3 KB of code; this is a few
/// hundred bytes.
#[derive(Debug)]
pub struct SharedGate {
    gate: AtomicU8,
    changed: Notify,
}

impl SharedGate {
    pub fn new(gate: ProbeGate) -> Self {
        SharedGate {
            gate: AtomicU8::new(gate.into()),
            changed: Notify::new(),
        }
    }

    /// Sets the gate; wakes the probers waiting on it if it changed.
    pub fn set(&self, gate: ProbeGate) {
        if self.gate.swap(gate.into(), Ordering::SeqCst) != u8::from(gate) {
            self.changed.notify_waiters();
        }
    }

    /// Waits until the gate lets a probe of `kind` run (true) or has closed (false).
    async fn wait_for_turn(&self, kind: ProbeKind) -> bool {
        loop {
            // Created before the gate is read, so a change in between still wakes it: a Notified
            // receives every notify_waiters that comes after its creation, polled or not
            // (tokio's docs, `Notified::enable`).
            let changed = self.changed.notified();
            let gate = ProbeGate::from(self.gate.load(Ordering::SeqCst));
            if gate == ProbeGate::Closed || gate.admits(kind) {
                return gate != ProbeGate::Closed;
            }
            changed.await;
        }
    }
}

/// Starts one task per configured probe on the current runtime.
pub fn spawn_probers(
    configs: Vec<ProbeConfig>,
    gate: &Arc<SharedGate>,
    report_tx: &mpsc::Sender<ProbeReport>,
    exec_context: &ExecContext,
) {
    for config in configs {
        tokio::spawn(run_prober(
            config,
            Arc::clone(gate),
            report_tx.clone(),
            exec_context.clone(),
        ));
    }
}

/// One probe's life: wait for the initial delay and for startup, then probe as the schedule says
/// (fast until a readiness or startup probe first passes, then once per period) until the app
/// is gone (or, for a startup probe, until startup is done).
async fn run_prober(
    config: ProbeConfig,
    gate: Arc<SharedGate>,
    report_tx: mpsc::Sender<ProbeReport>,
    exec_context: ExecContext,
) {
    let kind = config.kind;
    let mut schedule = Schedule::new(kind, config.timing, now());
    let mut logged = Logged::default();
    loop {
        tokio::time::sleep_until(tokio::time::Instant::from_std(schedule.next_at())).await;
        // Startup gating: liveness and readiness wait here until the startup probe succeeded.
        if !gate.wait_for_turn(kind).await {
            // The app is gone, or pyinit exits: nothing left to probe.
            break;
        }
        let began = now();
        let failure_counts = schedule.began(began);
        let answer = probe_once(&config.target, config.timing.timeout, &exec_context).await;
        logged.log(kind.name(), &answer);
        schedule.ended(answer.heard());
        let report = ProbeReport {
            kind,
            outcome: answer.outcome,
            message: answer.message,
            began,
            duration: now().saturating_duration_since(began),
            failure_counts,
        };
        debug!(
            probe = kind.name(),
            result = report.outcome.name(),
            message = %report.message,
            "probe finished"
        );
        if report_tx.send(report).await.is_err() {
            break;
        }
    }
    debug!(probe = kind.name(), "prober stopped");
}

/// What one prober has logged already, so that it says each thing once.
#[derive(Debug, Default)]
struct Logged {
    /// The first warning of a passing probe was logged: later ones are not.
    warned: bool,
    /// The detail of the last failure, logged; cleared when the probe passes.
    failure_detail: Option<String>,
}

impl Logged {
    /// Logs `answer`'s first warning, and its detail when it failed with another detail than the
    /// failure before it (a probe that fails every period with the same output says it once).
    fn log(&mut self, probe: &'static str, answer: &ProbeAnswer) {
        if let Some(warning) = &answer.warning
            && !self.warned
        {
            warn!(probe, "{warning}");
            self.warned = true;
        }
        if answer.outcome.passed() {
            self.failure_detail = None;
            return;
        }
        if let Some(detail) = &answer.detail
            && self.failure_detail.as_ref() != Some(detail)
        {
            info!(
                probe,
                result = answer.outcome.name(),
                "{probe} probe failed: {detail}"
            );
            self.failure_detail = Some(detail.clone());
        }
    }
}

/// Runs one probe of any kind, bounded by `timeout`.
async fn probe_once(
    target: &ProbeTarget,
    timeout: Duration,
    exec_context: &ExecContext,
) -> ProbeAnswer {
    match target {
        ProbeTarget::Http { addr, host, path } => {
            http::probe_http(*addr, host, path, timeout).await
        }
        ProbeTarget::Tcp { addr } => tcp::probe_tcp(*addr, timeout).await,
        ProbeTarget::Grpc { addr, service } => grpc::probe_grpc(*addr, service, timeout).await,
        ProbeTarget::Exec { argv } => {
            let working_dir = exec_context.working_dir.as_deref();
            exec::probe_exec(
                argv,
                &exec_context.env,
                working_dir,
                timeout,
                &exec_context.reaper,
            )
            .await
        }
        ProbeTarget::File { path, max_age } => {
            file::probe_file(path, *max_age, std::time::SystemTime::now())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::probe::spec::{ProbeKind, ProbeTiming};

    fn file_probe(kind: ProbeKind, path: &Path) -> ProbeConfig {
        ProbeConfig {
            kind,
            target: ProbeTarget::File {
                path: path.to_path_buf(),
                max_age: None,
            },
            timing: ProbeTiming {
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: NonZeroU32::MIN,
                failure_threshold: NonZeroU32::MIN,
                initial_delay: Duration::from_secs(5),
            },
        }
    }

    fn missing_file_probe(kind: ProbeKind) -> ProbeConfig {
        file_probe(kind, Path::new("/nonexistent/pyinit-heartbeat"))
    }

    fn exec_context() -> ExecContext {
        ExecContext {
            reaper: Arc::new(Reaper::new()),
            env: Arc::from([]),
            working_dir: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_prober_waits_for_the_initial_delay_then_probes_once_per_period() {
        let gate = Arc::new(SharedGate::new(ProbeGate::Started));
        let (report_tx, mut report_rx) = mpsc::channel(4);
        let start = now();
        tokio::spawn(run_prober(
            missing_file_probe(ProbeKind::Liveness),
            Arc::clone(&gate),
            report_tx,
            exec_context(),
        ));
        let first = report_rx.recv().await.unwrap();
        assert_eq!(first.began, start + Duration::from_secs(5));
        assert_eq!(first.outcome, Outcome::Failure);
        assert_eq!(first.message, "no such file");
        let second = report_rx.recv().await.unwrap();
        assert_eq!(second.began, first.began + Duration::from_secs(10));
        assert!(second.failure_counts);
        // The app is gone: the prober stops.
        gate.set(ProbeGate::Closed);
        assert_eq!(report_rx.recv().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_prober_is_fast_until_its_first_pass_then_keeps_the_period() {
        let heartbeat =
            std::env::temp_dir().join(format!("pyinit-unit-{}-first-pass", std::process::id()));
        let _ = std::fs::remove_file(&heartbeat);
        let gate = Arc::new(SharedGate::new(ProbeGate::Started));
        let (report_tx, mut report_rx) = mpsc::channel(4);
        let start = now();
        tokio::spawn(run_prober(
            file_probe(ProbeKind::Readiness, &heartbeat),
            Arc::clone(&gate),
            report_tx,
            exec_context(),
        ));
        // The initial delay holds; then, while there is no file, a probe every 100 ms, whose
        // failures after the first do not count toward the threshold.
        let first = report_rx.recv().await.unwrap();
        assert_eq!(first.began, start + Duration::from_secs(5));
        assert!(first.failure_counts);
        for n in 1..=3 {
            let report = report_rx.recv().await.unwrap();
            assert_eq!(report.began, first.began + n * Duration::from_millis(100));
            assert_eq!(report.outcome, Outcome::Failure);
            assert!(!report.failure_counts);
        }
        std::fs::write(&heartbeat, b"").unwrap();
        let passed = report_rx.recv().await.unwrap();
        assert_eq!(passed.began, first.began + Duration::from_millis(400));
        assert_eq!(passed.outcome, Outcome::Success);
        // Passed: the period from there, even once it fails again.
        std::fs::remove_file(&heartbeat).unwrap();
        let failed = report_rx.recv().await.unwrap();
        assert_eq!(failed.began, passed.began + Duration::from_secs(10));
        assert!(failed.failure_counts);
        let next = report_rx.recv().await.unwrap();
        assert_eq!(next.began, failed.began + Duration::from_secs(10));
        gate.set(ProbeGate::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_prober_waits_for_startup() {
        let gate = Arc::new(SharedGate::new(ProbeGate::Starting));
        let (report_tx, mut report_rx) = mpsc::channel(4);
        let start = now();
        tokio::spawn(run_prober(
            missing_file_probe(ProbeKind::Liveness),
            Arc::clone(&gate),
            report_tx,
            exec_context(),
        ));
        let nothing = tokio::time::timeout(Duration::from_secs(60), report_rx.recv()).await;
        assert!(nothing.is_err(), "a liveness probe ran before startup");
        let done_at = now();
        assert!(done_at >= start + Duration::from_secs(60));
        gate.set(ProbeGate::Started);
        // The initial delay has long passed: it probes at once.
        let first = report_rx.recv().await.unwrap();
        assert_eq!(first.kind, ProbeKind::Liveness);
        assert_eq!(first.began, done_at);
    }

    #[test]
    fn io_errors_read_as_a_few_lowercase_words() {
        let refused = io::Error::from_raw_os_error(111);
        assert_eq!(describe_io_error(&refused), "connection refused");
        let other = io::Error::other("Broken thing");
        assert_eq!(describe_io_error(&other), "broken thing");
    }

    #[test]
    fn timeouts_name_the_timeout() {
        let answer = ProbeAnswer::timed_out(Duration::from_millis(300));
        assert_eq!(answer.outcome, Outcome::Timeout);
        assert_eq!(answer.message, "timed out after 300ms");
    }

    #[test]
    fn a_failure_is_answered_unless_its_kind_says_nothing_answered() {
        // As an exec probe reports its exit code and its timeout: never fast.
        assert_eq!(ProbeAnswer::success("exit code 0").heard(), Heard::Passed);
        assert_eq!(ProbeAnswer::failure("exit code 1").heard(), Heard::NotReady);
        let timed_out = ProbeAnswer::timed_out(Duration::from_secs(1));
        assert_eq!(timed_out.heard(), Heard::NotReady);
        assert_eq!(timed_out.nothing_answered().heard(), Heard::Nothing);
    }
}
