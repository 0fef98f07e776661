//! The supervisor: every decision pyinit makes after the app is spawned, as a pure state machine.
//!
//! [`Supervisor::step`] maps (state, event, now) to a new state and a list of [`Action`]s. It reads
//! no clock, makes no syscall and never awaits: the driver (`driver.rs`) turns signals, reaper
//! reports and timers into events, and actions into syscalls. The phases are
//! `Running → Draining → Stopping → Exited`:
//!
//! - **Running**: signals are forwarded (after `--signal-map`); SIGTERM starts the drain.
//! - **Draining** from the SIGTERM at T: readiness is false at once; at T + pre-stop delay the app
//!   gets its stop signal; at T + hard-stop-after the optional hard-stop signal; at T + drain
//!   timeout everything left is SIGKILLed. A second SIGTERM is forwarded again and moves nothing.
//! - **Stopping**: the app is gone. What it left behind gets SIGTERM, then SIGKILL after the
//!   orphan grace (never later than the drain deadline); pyinit exits once no child is left, or
//!   after `kill_wait` if the kernel never hands some process back.
//!
//! Without an app (sidecar mode) a SIGTERM or SIGINT only turns readiness false, and pyinit exits 0
//! once the pre-stop delay has passed.
//!
//! The container's memory use and OOM-kill count arrive as [`Event::ResourceUsage`] and are
//! only recorded, so that the supervisor stays the one writer of `Status`.
//!
//! Probe results arrive as [`Event::Probe`] and are counted inside `Status` by Kubernetes' rules
//! (`probe::threshold`); after every step `live` and `ready` are recomputed from the status, and
//! each change is announced once as a [`Notice`].

pub mod driver;

use std::time::{Duration, Instant};

use crate::exit::{self, ChildStatus, ExitRemap};
use crate::probe::spec::ProbeKind;
use crate::probe::threshold::{ProbeReport, Probes, Verdict};
use crate::signals::{ForwardTarget, RewriteMap, Signal};
use crate::status::{Phase, Status};

/// An optional middle rung between the stop signal and SIGKILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HardStop {
    pub signal: Signal,
    /// Measured from the SIGTERM that started the drain.
    pub after: Duration,
}

/// The rules the supervisor applies; built from the validated configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    pub forward_to: ForwardTarget,
    pub rewrite: RewriteMap,
    pub pre_stop_delay: Duration,
    pub drain_timeout: Duration,
    pub hard_stop: Option<HardStop>,
    /// How long processes left behind by an exited app get between SIGTERM and SIGKILL.
    pub orphan_grace: Duration,
    /// How long to wait for SIGKILLed processes to be reaped before exiting anyway.
    pub kill_wait: Duration,
    pub remap: ExitRemap,
}

/// Something that happened, as the driver reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// pyinit caught a signal (never SIGCHLD: that becomes `Reaped`).
    Signal(Signal),
    /// One reaping pass.
    Reaped {
        /// The app's status, if the app was among the reaped.
        app: Option<ChildStatus>,
        /// Other exited processes reaped in this pass.
        n_orphans: usize,
        /// False once `waitpid` says pyinit has no child at all.
        children_left: bool,
    },
    /// The deadline from [`Supervisor::next_deadline`] has come.
    Timer,
    /// A probe finished.
    Probe(ProbeReport),
    /// The driver's periodic reading of the container's memory use and OOM-kill count; only
    /// recorded in `Status`, for `/metrics`: no decision depends on it.
    ResourceUsage {
        memory_usage_bytes: Option<u64>,
        oom_kills: Option<u64>,
    },
}

/// Why a signal is being sent to the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// pyinit received a signal (possibly rewritten) and passes it on.
    Forwarded { received: Signal },
    /// The stop signal of a drain, after the pre-stop delay.
    StopSignal,
    /// `--hard-stop-signal` at `--hard-stop-after`.
    HardStop,
}

/// A lifecycle step worth one log event; the driver picks the level and the words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    DrainStarted {
        pre_stop_delay: Duration,
        drain_timeout: Duration,
        hard_stop: Option<HardStop>,
    },
    SignalDropped {
        received: Signal,
    },
    SignalIgnored {
        received: Signal,
    },
    AppExited {
        status: ChildStatus,
        since_drain: Option<Duration>,
    },
    /// The app was still running at the drain deadline.
    DeadlineMissed {
        drain_timeout: Duration,
    },
    /// Processes the app left behind were still there after the orphan grace.
    LeftoversKilled,
    /// Some process was not reaped within `kill_wait` of the SIGKILL.
    GaveUpWaiting,
    /// The startup probe's verdict changed (succeeded, or reached its failure threshold).
    StartupChanged {
        verdict: Verdict,
        reason: String,
    },
    /// `/readyz` changed; `reason` names the failing checks when it turned false. Not sent when
    /// the drain or the app's exit caused it: those notices say so already.
    ReadinessChanged {
        ready: bool,
        reason: String,
    },
    /// `/livez` changed; as for readiness, not sent when the app's exit caused it.
    LivenessChanged {
        live: bool,
        reason: String,
    },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Forward {
        signal: Signal,
        pid: i32,
        target: ForwardTarget,
        reason: Reason,
    },
    /// Send this signal to every process pyinit is responsible for (all but itself).
    SignalRemaining(Signal),
    Notice(Notice),
    /// Exit pyinit with this code (already remapped).
    Exit(u8),
}

/// What the supervisor is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Draining {
        since: Instant,
        stop_sent: bool,
        hard_sent: bool,
    },
    Stopping {
        /// When the leftovers get SIGKILL; `None` once sent.
        kill_at: Option<Instant>,
        /// When pyinit exits even if some process was never reaped.
        give_up_at: Instant,
    },
    Exited,
}

/// The state machine.
#[derive(Debug)]
pub struct Supervisor {
    policy: Policy,
    state: State,
    /// False in sidecar mode.
    had_app: bool,
    status: Status,
}

impl Supervisor {
    /// A supervisor for an app that runs as `app_pid`, or for no app at all (sidecar mode).
    pub fn new(policy: Policy, app_pid: Option<i32>) -> Self {
        let mut status = Status {
            phase: Phase::Running,
            app_pid,
            has_app: app_pid.is_some(),
            ..Status::default()
        };
        status.refresh_verdicts();
        Supervisor {
            policy,
            state: State::Running,
            had_app: app_pid.is_some(),
            status,
        }
    }

    /// Adds the configured probes, whose results will arrive as [`Event::Probe`].
    pub fn with_probes(mut self, probes: Probes) -> Self {
        self.status.probes = probes;
        self.status.refresh_verdicts();
        self
    }

    /// Records the container's limits, read once at start, for `/metrics`.
    pub fn with_resource_limits(
        mut self,
        cpu_limit_millicpus: Option<u64>,
        memory_limit_bytes: Option<u64>,
    ) -> Self {
        self.status.resources.cpu_limit_millicpus = cpu_limit_millicpus;
        self.status.resources.memory_limit_bytes = memory_limit_bytes;
        self
    }

    /// The snapshot the health server reads.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// When the driver must send [`Event::Timer`]; `None` when nothing is scheduled.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Running | State::Exited => None,
            State::Draining {
                since,
                stop_sent,
                hard_sent,
            } => {
                if self.status.app_pid.is_none() {
                    return Some(since + self.policy.pre_stop_delay);
                }
                let mut next = since + self.policy.drain_timeout;
                if !stop_sent {
                    next = next.min(since + self.policy.pre_stop_delay);
                }
                if let Some(hard_stop) = self.policy.hard_stop
                    && !hard_sent
                {
                    next = next.min(since + hard_stop.after);
                }
                Some(next)
            }
            State::Stopping {
                kill_at,
                give_up_at,
            } => Some(kill_at.unwrap_or(give_up_at)),
        }
    }

    /// Applies one event at time `now` and returns what to do, in order.
    pub fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let app_was_running = self.status.app_pid.is_some();
        match event {
            Event::Signal(signal) => self.on_signal(signal, now, &mut actions),
            Event::Reaped {
                app,
                n_orphans,
                children_left,
            } => self.on_reaped(app, n_orphans, children_left, now, &mut actions),
            Event::Timer => self.on_timer(now, &mut actions),
            Event::Probe(report) => self.on_probe(&report, &mut actions),
            Event::ResourceUsage {
                memory_usage_bytes,
                oom_kills,
            } => {
                self.status.resources.memory_usage_bytes = memory_usage_bytes;
                self.status.resources.oom_kills = oom_kills;
            }
        }
        self.status.phase = match self.state {
            State::Running => Phase::Running,
            State::Draining { .. } => Phase::Draining,
            State::Stopping { .. } => Phase::Stopping,
            State::Exited => Phase::Exited,
        };
        let app_exited = app_was_running && self.status.app_pid.is_none();
        self.announce_verdicts(app_exited, &mut actions);
        actions
    }

    fn on_probe(&mut self, report: &ProbeReport, actions: &mut Vec<Action>) {
        let Some(verdict) = self.status.probes.record(report) else {
            return;
        };
        if report.kind == ProbeKind::Startup {
            actions.push(Action::Notice(Notice::StartupChanged {
                verdict,
                reason: report.message.clone(),
            }));
        }
    }

    /// Recomputes `live` and `ready` and announces each change once. The app's exit and the
    /// drain's start are announced by their own notices, so the changes they cause are not.
    fn announce_verdicts(&mut self, app_exited: bool, actions: &mut Vec<Action>) {
        let (was_live, was_ready) = (self.status.live, self.status.ready);
        self.status.refresh_verdicts();
        if app_exited {
            return;
        }
        let drain_started = actions
            .iter()
            .any(|action| matches!(action, Action::Notice(Notice::DrainStarted { .. })));
        let mut notices = Vec::new();
        if self.status.ready != was_ready && !drain_started {
            notices.push(Notice::ReadinessChanged {
                ready: self.status.ready,
                reason: failing_reasons(&self.status.readiness_checks()),
            });
        }
        if self.status.live != was_live {
            notices.push(Notice::LivenessChanged {
                live: self.status.live,
                reason: failing_reasons(&self.status.liveness_checks()),
            });
        }
        // Before an `Exit`, which must stay the last action.
        let at = actions
            .iter()
            .position(|action| matches!(action, Action::Exit(_)))
            .unwrap_or(actions.len());
        actions.splice(at..at, notices.into_iter().map(Action::Notice));
    }

    fn on_signal(&mut self, signal: Signal, now: Instant, actions: &mut Vec<Action>) {
        let Some(app_pid) = self.status.app_pid else {
            // Sidecar mode, or the app is already gone: nothing to forward to.
            let stops = matches!(signal, Signal::SIGTERM | Signal::SIGINT);
            if stops && !self.had_app && self.state == State::Running {
                self.start_drain(now, actions);
            } else {
                actions.push(Action::Notice(Notice::SignalIgnored { received: signal }));
            }
            return;
        };
        match self.state {
            State::Running if signal == Signal::SIGTERM => {
                self.start_drain(now, actions);
                if self.policy.pre_stop_delay.is_zero() {
                    self.send_stop_signal(app_pid, now, actions);
                }
            }
            State::Draining { .. } if signal == Signal::SIGTERM => {
                // A repeated SIGTERM ends a pre-stop delay early but moves no deadline.
                self.send_stop_signal(app_pid, now, actions);
            }
            State::Running | State::Draining { .. } => self.forward(signal, app_pid, actions),
            State::Stopping { .. } | State::Exited => {
                actions.push(Action::Notice(Notice::SignalIgnored { received: signal }));
            }
        }
    }

    fn start_drain(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.state = State::Draining {
            since: now,
            stop_sent: false,
            hard_sent: false,
        };
        self.status.shutdown.drain_started_at = Some(now);
        self.status.draining = true;
        actions.push(Action::Notice(Notice::DrainStarted {
            pre_stop_delay: self.policy.pre_stop_delay,
            drain_timeout: self.policy.drain_timeout,
            hard_stop: self.policy.hard_stop,
        }));
    }

    fn send_stop_signal(&mut self, app_pid: i32, now: Instant, actions: &mut Vec<Action>) {
        if let State::Draining { stop_sent, .. } = &mut self.state {
            *stop_sent = true;
        }
        match self.policy.rewrite.rewrite(Signal::SIGTERM) {
            Some(signal) => {
                // The first stop signal is the one the shutdown record keeps.
                if self.status.shutdown.stop_signal.is_none() {
                    self.status.shutdown.stop_signal = Some((signal, now));
                }
                self.push_forward(signal, app_pid, Reason::StopSignal, actions);
            }
            None => actions.push(Action::Notice(Notice::SignalDropped {
                received: Signal::SIGTERM,
            })),
        }
    }

    fn forward(&mut self, received: Signal, app_pid: i32, actions: &mut Vec<Action>) {
        match self.policy.rewrite.rewrite(received) {
            Some(signal) => {
                self.push_forward(signal, app_pid, Reason::Forwarded { received }, actions)
            }
            None => actions.push(Action::Notice(Notice::SignalDropped { received })),
        }
    }

    fn push_forward(
        &mut self,
        signal: Signal,
        pid: i32,
        reason: Reason,
        actions: &mut Vec<Action>,
    ) {
        if let Some(count) = usize::try_from(signal as i32)
            .ok()
            .and_then(|index| self.status.signals_forwarded.get_mut(index))
        {
            *count += 1;
        }
        actions.push(Action::Forward {
            signal,
            pid,
            target: self.policy.forward_to,
            reason,
        });
    }

    fn on_reaped(
        &mut self,
        app: Option<ChildStatus>,
        n_orphans: usize,
        children_left: bool,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        self.status.orphans_reaped += u64::try_from(n_orphans).unwrap_or(u64::MAX);
        let app_was_running = self.status.app_pid.is_some();
        // Without any child left the app is gone too, even if its status could not be read.
        let app_gone = app_was_running && (app.is_some() || !children_left);
        if app_gone {
            self.status.app_pid = None;
            self.status.shutdown.app_status = app;
            self.status.shutdown.app_exited_at = Some(now);
            if let Some(status) = app {
                self.status.app_exit_code = Some(status.exit_code());
                actions.push(Action::Notice(Notice::AppExited {
                    status,
                    since_drain: self
                        .status
                        .shutdown
                        .drain_started_at
                        .map(|started| now.saturating_duration_since(started)),
                }));
            }
        }
        if self.status.app_pid.is_some() || self.state == State::Exited {
            return;
        }
        if !children_left {
            if app_was_running || matches!(self.state, State::Stopping { .. }) {
                self.exit(actions);
            }
            return;
        }
        if app_gone {
            // The app exited and left processes behind: ask them to stop, then kill them.
            let mut kill_at = now + self.policy.orphan_grace;
            if let Some(started) = self.status.shutdown.drain_started_at {
                kill_at = kill_at.min(started + self.policy.drain_timeout);
            }
            self.state = State::Stopping {
                kill_at: Some(kill_at),
                give_up_at: kill_at + self.policy.kill_wait,
            };
            self.status.shutdown.left_behind = true;
            actions.push(Action::SignalRemaining(Signal::SIGTERM));
        }
    }

    fn on_timer(&mut self, now: Instant, actions: &mut Vec<Action>) {
        match self.state {
            State::Running | State::Exited => {}
            State::Draining {
                since,
                stop_sent,
                hard_sent,
            } => {
                let Some(app_pid) = self.status.app_pid else {
                    if now >= since + self.policy.pre_stop_delay {
                        self.exit(actions);
                    }
                    return;
                };
                if now >= since + self.policy.drain_timeout {
                    actions.push(Action::Notice(Notice::DeadlineMissed {
                        drain_timeout: self.policy.drain_timeout,
                    }));
                    actions.push(Action::SignalRemaining(Signal::SIGKILL));
                    self.status.shutdown.killed_at_deadline = true;
                    self.state = State::Stopping {
                        kill_at: None,
                        give_up_at: now + self.policy.kill_wait,
                    };
                    return;
                }
                if !stop_sent && now >= since + self.policy.pre_stop_delay {
                    self.send_stop_signal(app_pid, now, actions);
                }
                if let Some(hard_stop) = self.policy.hard_stop
                    && !hard_sent
                    && now >= since + hard_stop.after
                {
                    if let State::Draining { hard_sent, .. } = &mut self.state {
                        *hard_sent = true;
                    }
                    self.status.shutdown.hard_stop_sent_at = Some(now);
                    self.push_forward(hard_stop.signal, app_pid, Reason::HardStop, actions);
                }
            }
            State::Stopping {
                kill_at,
                give_up_at,
            } => match kill_at {
                Some(kill_at) if now >= kill_at => {
                    actions.push(Action::Notice(Notice::LeftoversKilled));
                    actions.push(Action::SignalRemaining(Signal::SIGKILL));
                    self.state = State::Stopping {
                        kill_at: None,
                        give_up_at: now + self.policy.kill_wait,
                    };
                }
                None if now >= give_up_at => {
                    actions.push(Action::Notice(Notice::GaveUpWaiting));
                    self.exit(actions);
                }
                _ => {}
            },
        }
    }

    /// The final code: the app's; 0 for a sidecar; if the app's status could not be read, 137
    /// when pyinit killed it at the deadline and 1 otherwise.
    fn exit(&mut self, actions: &mut Vec<Action>) {
        let code = match self.status.shutdown.app_status {
            Some(status) => status.exit_code(),
            None if !self.had_app => 0,
            None if self.status.shutdown.killed_at_deadline => exit::KILLED_AT_DEADLINE,
            None => 1,
        };
        self.state = State::Exited;
        actions.push(Action::Exit(self.policy.remap.apply(code)));
    }
}

/// `readiness: connection refused; shutdown: draining after SIGTERM`: every failed check.
fn failing_reasons(checks: &[crate::status::Check]) -> String {
    checks
        .iter()
        .filter(|check| !check.passed)
        .map(|check| format!("{}: {}", check.name, check.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
