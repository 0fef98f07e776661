//! OOM detection: the cgroup's OOM-kill counter (`oom_kill` in v2 `memory.events`, v1
//! `memory.oom_control`, kept open from start: `watch.rs`), read at start, whenever a process
//! pyinit reaps died by a SIGKILL that pyinit did not send, on a slow poll, and once at exit.
//!
//! The kernel raises the counter before it sends its SIGKILL, so by the time the victim is reaped
//! the rise is visible. A rise that no reaped process claims (a gunicorn worker is reaped by its
//! master, never by pyinit) is reported by the poll one period later, without a pid: on cgroup v1
//! that log line is the only trace such a kill leaves. Each kill is logged once, at error, and
//! counted for `/metrics`, with the memory limit in force (the driver hands it a new one after an
//! in-place resize). This module only reports: the supervisor's decisions and the exit code
//! (137 when the app itself was killed) do not depend on it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{debug, error};

use super::cgroup::{self, CgroupVersion};
use super::facts::{ContainerFacts, Limit, format_bytes};
use super::watch::KeptFile;

/// How often the counter is read when nothing else prompts it.
pub const POLL_PERIOD: Duration = Duration::from_secs(1);

/// A process that died by SIGKILL, as the driver knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    /// The app's main process.
    App { pid: i32 },
    /// Any other process pyinit reaped: a worker or an orphan.
    Process { pid: i32 },
    /// Processes pyinit never saw die (their parent reaped them).
    Unseen { count: u64 },
}

/// One OOM kill, ready to be logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomReport {
    pub victim: Victim,
    pub memory_limit_bytes: Limit<u64>,
}

impl OomReport {
    pub fn pid(&self) -> Option<i32> {
        match self.victim {
            Victim::App { pid } | Victim::Process { pid } => Some(pid),
            Victim::Unseen { .. } => None,
        }
    }
}

impl fmt::Display for OomReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.victim {
            Victim::App { pid } => write!(f, "the app (pid {pid}) was OOM-killed")?,
            Victim::Process { pid } => {
                write!(f, "a process in the container (pid {pid}) was OOM-killed")?
            }
            Victim::Unseen { count: 1 } => f.write_str(
                "a process in the container was OOM-killed (its parent reaped it, so pyinit has \
                 no pid)",
            )?,
            Victim::Unseen { count } => write!(
                f,
                "{count} processes in the container were OOM-killed (their parents reaped them, \
                 so pyinit has no pids)"
            )?,
        }
        match self.memory_limit_bytes {
            Limit::Limited(bytes) => write!(
                f,
                ": the container reached its memory limit of {}; raise \
                 resources.limits.memory or lower the app's memory use",
                format_bytes(bytes)
            ),
            Limit::Unlimited => f.write_str(
                ": no memory limit is set, so the node ran out of memory; set \
                 resources.limits.memory",
            ),
            Limit::Unknown => f.write_str(" (the memory limit is unknown)"),
        }
    }
}

/// The number of OOM kills seen since start; the driver copies it into `Status` for `/metrics`.
/// Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct OomKillCount(Arc<AtomicU64>);

impl OomKillCount {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, kills: u64) {
        self.0.fetch_add(kills, Ordering::Relaxed);
    }
}

/// Which counter rises have been reported; pure, fed with counter values.
#[derive(Debug)]
struct Ledger {
    /// The counter value up to which every kill has been reported.
    accounted: u64,
    /// A value above `accounted` seen by the previous poll and not yet claimed.
    unclaimed_seen: Option<u64>,
}

impl Ledger {
    /// A rise of the counter claimed by reaped victims, in order, one kill each.
    fn claim(&mut self, counter: u64, victims: &[Victim]) -> Vec<Victim> {
        let rise = self.rise_to(counter);
        let claimed: Vec<Victim> = victims
            .iter()
            .copied()
            .take(usize::try_from(rise).unwrap_or(usize::MAX))
            .collect();
        self.accounted += u64::try_from(claimed.len()).unwrap_or(0);
        claimed
    }

    /// A poll: a rise still unclaimed since the previous poll (or any rise, at exit) is reported
    /// as processes pyinit never saw die.
    fn poll(&mut self, counter: u64, final_check: bool) -> Option<Victim> {
        let rise = self.rise_to(counter);
        if rise == 0 {
            self.unclaimed_seen = None;
            return None;
        }
        let reportable = if final_check {
            Some(counter)
        } else {
            self.unclaimed_seen.filter(|seen| *seen > self.accounted)
        };
        let victim = reportable.map(|up_to| {
            let count = up_to - self.accounted;
            self.accounted = up_to;
            Victim::Unseen { count }
        });
        self.unclaimed_seen = (counter > self.accounted).then_some(counter);
        victim
    }

    fn rise_to(&mut self, counter: u64) -> u64 {
        // The counter never falls in one cgroup; if it does, start again from there.
        if counter < self.accounted {
            self.accounted = counter;
        }
        counter - self.accounted
    }
}

/// Watches the OOM-kill counter of the container's memory cgroup.
#[derive(Debug)]
pub struct OomMonitor {
    /// `memory.events` (v1 `memory.oom_control`), kept open as the resource poll's files are.
    counter: Option<KeptFile>,
    memory_limit_bytes: Limit<u64>,
    ledger: Ledger,
    pyinit_sent_sigkill: bool,
    kills: OomKillCount,
}

impl OomMonitor {
    /// Reads the counter's starting value; without a readable counter the monitor does nothing.
    pub fn new(facts: &ContainerFacts) -> OomMonitor {
        let counter = facts.memory_cgroup.as_ref().and_then(|dir| {
            KeptFile::open(&dir.path.join(match dir.version {
                CgroupVersion::V1 => "memory.oom_control",
                CgroupVersion::V2 => "memory.events",
            }))
        });
        let mut monitor = OomMonitor {
            counter,
            memory_limit_bytes: facts.memory_limit_bytes,
            ledger: Ledger {
                accounted: 0,
                unclaimed_seen: None,
            },
            pyinit_sent_sigkill: false,
            kills: OomKillCount::default(),
        };
        match monitor.read_counter() {
            Some(counter) => monitor.ledger.accounted = counter,
            None => {
                debug!("no OOM-kill counter: OOM kills will not be reported");
                monitor.counter = None;
            }
        }
        monitor
    }

    /// The shared count of OOM kills, for `/metrics`.
    pub fn kill_count(&self) -> OomKillCount {
        self.kills.clone()
    }

    /// Whether the OOM-kill counter was readable at start; without it no kill is ever counted.
    pub fn has_counter(&self) -> bool {
        self.counter.is_some()
    }

    /// The memory limit changed (an in-place resize): later reports name the new one.
    pub fn set_memory_limit(&mut self, memory_limit_bytes: Limit<u64>) {
        self.memory_limit_bytes = memory_limit_bytes;
    }

    /// pyinit itself sent a SIGKILL: from now on a SIGKILL death is not evidence of an OOM kill.
    pub fn note_sigkill_sent(&mut self) {
        self.pyinit_sent_sigkill = true;
    }

    /// Called with the processes of one reaping pass that died by SIGKILL, the app first.
    pub fn check_reaped(&mut self, killed: &[Victim]) {
        if killed.is_empty() || self.pyinit_sent_sigkill {
            return;
        }
        let Some(counter) = self.read_counter() else {
            return;
        };
        for victim in self.ledger.claim(counter, killed) {
            self.report(victim);
        }
    }

    /// The slow poll: reports kills that no reaped process claimed within one period.
    pub fn poll(&mut self) {
        self.poll_counter(false);
    }

    /// At exit: reports every kill not yet reported, at once.
    pub fn final_check(&mut self) {
        self.poll_counter(true);
    }

    fn poll_counter(&mut self, final_check: bool) {
        let Some(counter) = self.read_counter() else {
            return;
        };
        if let Some(victim) = self.ledger.poll(counter, final_check) {
            self.report(victim);
        }
    }

    fn report(&self, victim: Victim) {
        let kills = match victim {
            Victim::Unseen { count } => count,
            Victim::App { .. } | Victim::Process { .. } => 1,
        };
        self.kills.add(kills);
        let report = self.report_for(victim);
        error!(
            pid = report.pid(),
            memory_limit_bytes = self.memory_limit_bytes.limited(),
            oom_kills = self.kills.get(),
            "{report}"
        );
    }

    /// What the log says of `victim`: the memory limit in force now.
    fn report_for(&self, victim: Victim) -> OomReport {
        OomReport {
            victim,
            memory_limit_bytes: self.memory_limit_bytes,
        }
    }

    fn read_counter(&self) -> Option<u64> {
        self.counter
            .as_ref()?
            .read(cgroup::parse_oom_kill_count)?
            .map_err(|failure| debug!("OOM-kill counter: {failure}"))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(accounted: u64) -> Ledger {
        Ledger {
            accounted,
            unclaimed_seen: None,
        }
    }

    #[test]
    fn a_reaped_sigkill_claims_a_rise() {
        let mut ledger = ledger(3);
        let app = Victim::App { pid: 7 };
        assert_eq!(ledger.claim(4, &[app]), [app]);
        // The same counter value is not claimed twice.
        assert_eq!(ledger.claim(4, &[Victim::Process { pid: 8 }]), []);
        assert_eq!(ledger.poll(4, false), None);
        assert_eq!(ledger.poll(4, true), None);
    }

    #[test]
    fn a_sigkill_without_a_rise_is_not_an_oom_kill() {
        let mut ledger = ledger(0);
        assert_eq!(ledger.claim(0, &[Victim::Process { pid: 8 }]), []);
    }

    #[test]
    fn more_victims_than_kills_claim_only_the_rise() {
        let mut ledger = ledger(0);
        let victims = [Victim::App { pid: 7 }, Victim::Process { pid: 8 }];
        assert_eq!(ledger.claim(1, &victims), [Victim::App { pid: 7 }]);
    }

    #[test]
    fn an_unclaimed_rise_is_reported_one_poll_later() {
        let mut ledger = ledger(0);
        // The first poll sees the rise but leaves the reaper a period to claim it.
        assert_eq!(ledger.poll(2, false), None);
        assert_eq!(ledger.poll(2, false), Some(Victim::Unseen { count: 2 }));
        assert_eq!(ledger.poll(2, false), None);
        // A rise claimed between two polls is not reported again.
        assert_eq!(ledger.poll(3, false), None);
        assert_eq!(ledger.claim(3, &[Victim::Process { pid: 9 }]).len(), 1);
        assert_eq!(ledger.poll(3, false), None);
        // A rise that grows between polls reports what was seen first, then the rest.
        assert_eq!(ledger.poll(4, false), None);
        assert_eq!(ledger.poll(6, false), Some(Victim::Unseen { count: 1 }));
        assert_eq!(ledger.poll(6, false), Some(Victim::Unseen { count: 2 }));
    }

    #[test]
    fn the_final_check_reports_at_once() {
        let mut ledger = ledger(5);
        assert_eq!(ledger.poll(6, true), Some(Victim::Unseen { count: 1 }));
        assert_eq!(ledger.poll(6, true), None);
    }

    #[test]
    fn messages_name_the_victim_and_the_limit() {
        let report = |victim, memory_limit_bytes| {
            OomReport {
                victim,
                memory_limit_bytes,
            }
            .to_string()
        };
        assert_eq!(
            report(Victim::App { pid: 7 }, Limit::Limited(64 << 20)),
            "the app (pid 7) was OOM-killed: the container reached its memory limit of 64 MiB; \
             raise resources.limits.memory or lower the app's memory use"
        );
        assert!(
            report(Victim::Process { pid: 8 }, Limit::Unlimited)
                .starts_with("a process in the container (pid 8) was OOM-killed: no memory limit")
        );
        assert!(
            report(Victim::Unseen { count: 2 }, Limit::Unknown)
                .starts_with("2 processes in the container were OOM-killed")
        );
    }

    #[test]
    fn the_monitor_reads_the_fixture_counter() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cgroup/v1-limited");
        let facts = crate::container::read_facts(&root);
        let mut monitor = OomMonitor::new(&facts);
        assert!(monitor.has_counter());
        monitor.check_reaped(&[Victim::App { pid: 7 }]);
        monitor.final_check();
        assert_eq!(monitor.kill_count().get(), 0);
        // After a resize the report names the limit in force.
        let app = Victim::App { pid: 7 };
        assert!(
            monitor
                .report_for(app)
                .to_string()
                .contains("limit of 64 MiB")
        );
        monitor.set_memory_limit(Limit::Limited(128 << 20));
        assert!(
            monitor
                .report_for(app)
                .to_string()
                .contains("limit of 128 MiB")
        );
        monitor.set_memory_limit(Limit::Unlimited);
        assert!((monitor.report_for(app).to_string()).contains("no memory limit is set"));
        let facts = crate::container::read_facts(&root.join("does-not-exist"));
        assert!(!OomMonitor::new(&facts).has_counter());
    }
}
