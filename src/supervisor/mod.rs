//! The supervisor: every decision pyinit makes after the app is spawned, as a pure state machine.
//!
//! [`Supervisor::step`] maps (state, event, now) to a new state and a list of [`Action`]s. It reads
//! no clock, makes no syscall and never awaits: the driver (`driver.rs`) turns signals, reaper
//! reports and timers into events, and actions into syscalls. The phases are
//! `Running → Draining → Stopping → Exited`:
//!
//! - **Running**: signals are forwarded (after `--signal-map`); the stop signal (`--stop-signal`,
//!   TERM by default) starts the drain, and so does SIGTERM whatever the stop signal is.
//! - **Draining** from that signal at T: readiness is false at once; at T + pre-stop delay the
//!   app gets its own stop signal (`Policy::app_stop_signal`, which `config` decided from
//!   `--signal-map`, the server's profile and the stop signal); at T +
//!   hard-stop-after the optional hard-stop signal; at T + drain timeout everything left gets the
//!   dump signal (`--deadline-dump`), or at once SIGKILL. A second stop request sends the app its
//!   stop signal again and moves nothing.
//! - **Stopping**: the app is gone, or was still running at the drain deadline. An overdue app
//!   and everything with it get SIGKILL at the end of the dump window (at once without a dump),
//!   whatever the dump signal did to them, and pyinit exits 137 however the app ended: past the
//!   deadline what is left is killed, never asked. What an app that exited before the deadline
//!   left behind gets SIGTERM, then SIGKILL after the orphan grace (never later than the drain
//!   deadline). pyinit exits once no child is left, or after `kill_wait` if the kernel never
//!   hands some process back.
//! - **Exited**: the exit code is decided and returned as the last action of the step.
//!
//! Without an app (a health sidecar, [`Workload::Sidecar`]) the stop signal, SIGTERM or SIGINT
//! only turns readiness false, and pyinit exits 0 once the pre-stop delay has passed.
//!
//! Each `State` variant carries what its decisions need and nothing else: the workload while it
//! runs (the app's pid, or none for a sidecar), the drain's start and which of its signals went out, what became of the app and the
//! next step (SIGKILL at, give up at) while stopping, the code once exited. Decisions read only
//! the state and the [`Policy`]. Beside the state the supervisor keeps what it counts and
//! records: the probes' results, counted by Kubernetes' rules (`probe::threshold`), the signals
//! forwarded and orphans reaped, the container's resources ([`Event::Resources`] is only
//! recorded) and the shutdown record, which is written as things happen, for the drill, and
//! never read back by a decision.
//!
//! `Status` is a view: after every step one function, `Supervisor::view`, derives all of it
//! (phase, draining, the app's state, the checks with live and ready, the rest copied) from the
//! state and those fields, so the supervisor stays the one writer of what readers see. A change
//! of `live` or `ready` is found by comparing the view before the step with the view after it,
//! and announced once as a [`Notice`]. The probers get a narrower view of their own,
//! [`Supervisor::probe_gate`]: which probes may run.
//!
//! Beside this file, pure as it is: `policy.rs`, the rules it applies ([`Policy`]); `event.rs`,
//! what goes in ([`Workload`], [`Event`]); `action.rs`, what comes out ([`Action`], with its
//! [`Reason`] and [`Notice`]); `state.rs`, the private `State` and its parts.

pub mod action;
pub mod driver;
pub mod event;
pub mod policy;
pub mod resize;
mod state;

use std::time::Instant;

use self::action::{Action, Notice, Reason};
use self::event::{Event, Workload};
use self::policy::{DeadlineDump, Policy};
use self::state::{AppEnd, Drain, State, StopStep, Stopping};
use crate::exit::{self, ChildStatus};
use crate::probe::spec::ProbeKind;
use crate::probe::threshold::{ProbeGate, ProbeReport, Probes};
use crate::signals::spec::Signal;
use crate::status::{AppState, Check, Checks, Phase, Resources, ShutdownRecord, Status};

/// The state machine: the state, what pyinit has counted and recorded beside it, and the view of
/// both that readers get.
#[derive(Debug)]
pub struct Supervisor {
    policy: Policy,
    state: State,
    /// Every configured probe's results, counted by Kubernetes' rules.
    probes: Probes,
    /// What happened during the shutdown, with when: written as it happens, for the readers of
    /// `Status` (the drill above all). No decision reads it back.
    shutdown: ShutdownRecord,
    /// Signals forwarded to the app, indexed by signal number.
    signals_forwarded: [u64; 32],
    /// Exited processes reaped that were neither the app nor a probe.
    orphans_reaped: u64,
    resources: Resources,
    /// The server whose profile applies, for `/metrics`.
    server: Option<&'static str>,
    /// `/readyz` passed after some step: the health server's hold is over for good.
    has_been_ready: bool,
    /// The view of all the above after the last step; only [`Supervisor::view`] builds it.
    status: Status,
}

impl Supervisor {
    /// A supervisor for the app or for a health sidecar.
    pub fn new(policy: Policy, workload: Workload) -> Self {
        let mut supervisor = Supervisor {
            policy,
            state: State::Running(workload),
            probes: Probes::default(),
            shutdown: ShutdownRecord::default(),
            signals_forwarded: [0; 32],
            orphans_reaped: 0,
            resources: Resources::default(),
            server: None,
            has_been_ready: false,
            status: Status::default(),
        };
        supervisor.status = supervisor.view();
        supervisor
    }

    /// Adds the configured probes, whose results will arrive as [`Event::Probe`].
    pub fn with_probes(mut self, probes: Probes) -> Self {
        self.probes = probes;
        self.status = self.view();
        self
    }

    /// Records the container's limits as read at start, for `/metrics` until the driver's first
    /// [`Event::Resources`].
    pub fn with_resource_limits(
        mut self,
        cpu_limit_millicpus: Option<u64>,
        memory_limit_bytes: Option<u64>,
    ) -> Self {
        self.resources.cpu_limit_millicpus = cpu_limit_millicpus;
        self.resources.memory_limit_bytes = memory_limit_bytes;
        self.status = self.view();
        self
    }

    /// Records the server whose profile applies, for `/metrics`.
    pub fn with_server(mut self, server: Option<&'static str>) -> Self {
        self.server = server;
        self.status = self.view();
        self
    }

    /// The app's pid while it runs (an app overdue at the deadline until it is reaped included):
    /// the driver tells the app's exit from the orphans' by it. `None` for a sidecar and once the
    /// app is gone.
    pub fn app_pid(&self) -> Option<i32> {
        self.state.running_app_pid()
    }

    /// The app's pid while it runs and no drain has begun: the only time its worker count may
    /// follow the CPU limit (a server that shuts down is not resized).
    pub fn app_pid_before_drain(&self) -> Option<i32> {
        match self.state {
            State::Running(Workload::App { pid }) => Some(pid),
            State::Running(Workload::Sidecar)
            | State::Draining(..)
            | State::Stopping(_)
            | State::Exited { .. } => None,
        }
    }

    /// The snapshot the health server reads, as of the last step.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Everything `Status` publishes, derived from the state and the supervisor's fields: the
    /// one place where the view is made, so it can never disagree with what decides.
    fn view(&self) -> Status {
        let app = self.app_state();
        let draining = self.shutdown.drain_started_at.is_some();
        let checks = Checks::new(app, self.shutdown.drain_signal, &self.probes);
        Status {
            phase: self.state.phase(),
            app,
            draining,
            signals_forwarded: self.signals_forwarded,
            orphans_reaped: self.orphans_reaped,
            probes: self.probes.clone(),
            has_been_ready: self.has_been_ready || checks.ready(),
            checks,
            shutdown: self.shutdown.clone(),
            resources: self.resources,
            server: self.server,
        }
    }

    /// Which probes may run: none once the app is gone (stopped at the deadline included) or
    /// pyinit exits, a sidecar's too; before that, as startup gating says.
    pub fn probe_gate(&self) -> ProbeGate {
        match self.state {
            State::Running(_) | State::Draining(..) => ProbeGate::open(&self.probes),
            State::Stopping(_) | State::Exited { .. } => ProbeGate::Closed,
        }
    }

    /// The app as readers see it: running (until an overdue app is reaped), exited with its code
    /// when its status could be read, or absent for a sidecar.
    fn app_state(&self) -> AppState {
        if let Some(pid) = self.state.running_app_pid() {
            AppState::Running { pid }
        } else if self.state.is_sidecar() {
            AppState::Sidecar
        } else {
            AppState::Exited {
                exit_code: self.shutdown.app_status.map(ChildStatus::exit_code),
            }
        }
    }

    /// When the driver must send [`Event::Timer`]; `None` when nothing is scheduled.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Running(_) | State::Exited { .. } => None,
            // A sidecar: the pre-stop delay is all there is.
            State::Draining(Workload::Sidecar, drain) => {
                Some(drain.started_at + self.policy.pre_stop_delay)
            }
            State::Draining(Workload::App { .. }, drain) => {
                let mut next = drain.started_at + self.policy.drain_timeout;
                if !drain.stop_sent {
                    next = next.min(drain.started_at + self.policy.pre_stop_delay);
                }
                if let Some(hard_stop) = self.policy.hard_stop
                    && !drain.hard_stop_sent
                {
                    next = next.min(drain.started_at + hard_stop.after);
                }
                Some(next)
            }
            State::Stopping(Stopping { next, .. }) => match next {
                StopStep::KillAt(at) | StopStep::GiveUpAt(at) => Some(at),
            },
        }
    }

    /// Applies one event at time `now` and returns what to do, in order: an `Exit` comes last.
    pub fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Signal(signal) => self.on_signal(signal, now, &mut actions),
            Event::Reaped {
                app,
                n_orphans,
                children_left,
            } => self.on_reaped(app, n_orphans, children_left, now, &mut actions),
            Event::Timer => self.on_timer(now, &mut actions),
            Event::Probe(report) => self.on_probe(&report, &mut actions),
            Event::Resources(resources) => self.resources = resources,
        }
        let after = self.view();
        // Kept only from a step's view: the builders' views before the first step (a sidecar
        // without probes, ready until `with_probes` adds them) are not what readers saw.
        self.has_been_ready = after.has_been_ready;
        let before = std::mem::replace(&mut self.status, after);
        self.announce_verdicts(&before, &mut actions);
        if let State::Exited { code, .. } = self.state
            && before.phase != Phase::Exited
        {
            actions.push(Action::Exit(code));
        }
        actions
    }

    fn on_probe(&mut self, report: &ProbeReport, actions: &mut Vec<Action>) {
        let Some(verdict) = self.probes.record(report) else {
            return;
        };
        if report.kind == ProbeKind::Startup {
            actions.push(Action::Notice(Notice::StartupChanged {
                verdict,
                reason: report.message.clone(),
            }));
        }
    }

    /// Announces each change of `live` and `ready` between the view `before` the step and the
    /// view after it, once. The app's exit and the drain's start are announced by their own
    /// notices, so the changes they cause are not.
    fn announce_verdicts(&self, before: &Status, actions: &mut Vec<Action>) {
        let after = &self.status;
        let app_exited = before.app.is_running() && !after.app.is_running();
        let drain_started = !before.draining && after.draining;
        if app_exited {
            return;
        }
        let (ready, live) = (after.checks.ready(), after.checks.live());
        if ready != before.checks.ready() && !drain_started {
            actions.push(Action::Notice(Notice::ReadinessChanged {
                ready,
                reason: failing_reasons(after.checks.readiness()),
            }));
        }
        // At the drain's start /livez stops holding the probes against the app, but they fail
        // as before: "live again" would not be true.
        if live != before.checks.live() && !drain_started {
            actions.push(Action::Notice(Notice::LivenessChanged {
                live,
                reason: failing_reasons(after.checks.liveness()),
            }));
        }
    }

    /// Whether `signal` asks pyinit to stop: the stop signal, and SIGTERM whatever the stop
    /// signal is (every runtime's default, and what a runtime that does not know the pod's
    /// stopSignal sends); for a sidecar, which has no app to pass SIGINT to, SIGINT too.
    fn asks_to_stop(&self, signal: Signal) -> bool {
        signal == self.policy.stop_signal
            || signal == Signal::SIGTERM
            || (signal == Signal::SIGINT && self.state.is_sidecar())
    }

    fn on_signal(&mut self, signal: Signal, now: Instant, actions: &mut Vec<Action>) {
        let stop_request = self.asks_to_stop(signal);
        match self.state {
            // A sidecar: a stop request ends the probes' service, there is nothing to forward.
            State::Running(Workload::Sidecar) if stop_request => {
                self.start_drain(Workload::Sidecar, signal, now, actions);
            }
            State::Running(Workload::App { pid }) if stop_request => {
                self.start_drain(Workload::App { pid }, signal, now, actions);
                if self.policy.pre_stop_delay.is_zero() {
                    self.send_stop_signal(pid, now, actions);
                }
            }
            State::Draining(Workload::App { pid }, _) if stop_request => {
                // A repeated stop request ends a pre-stop delay early but moves no deadline.
                self.send_stop_signal(pid, now, actions);
            }
            State::Running(Workload::App { pid }) | State::Draining(Workload::App { pid }, _) => {
                self.forward(signal, pid, actions);
            }
            // No app to forward to: a sidecar, or the app is gone or past its deadline.
            State::Running(Workload::Sidecar)
            | State::Draining(Workload::Sidecar, _)
            | State::Stopping(_)
            | State::Exited { .. } => {
                actions.push(Action::Notice(Notice::SignalIgnored { received: signal }));
            }
        }
    }

    fn start_drain(
        &mut self,
        workload: Workload,
        signal: Signal,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let drain = Drain {
            started_at: now,
            stop_sent: false,
            hard_stop_sent: false,
        };
        self.state = State::Draining(workload, drain);
        self.shutdown.drain_started_at = Some(now);
        self.shutdown.drain_signal = Some(signal);
        actions.push(Action::Notice(Notice::DrainStarted {
            signal,
            pre_stop_delay: self.policy.pre_stop_delay,
            drain_timeout: self.policy.drain_timeout,
            hard_stop: self.policy.hard_stop,
        }));
    }

    fn send_stop_signal(&mut self, app_pid: i32, now: Instant, actions: &mut Vec<Action>) {
        if let State::Draining(_, drain) = &mut self.state {
            drain.stop_sent = true;
        }
        match self.policy.app_stop_signal {
            Some(signal) => {
                // The first stop signal is the one the shutdown record keeps.
                self.shutdown.stop_signal.get_or_insert((signal, now));
                self.push_forward(signal, app_pid, Reason::StopSignal, actions);
            }
            None => actions.push(Action::Notice(Notice::SignalDropped {
                received: self.policy.stop_signal,
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
            .and_then(|index| self.signals_forwarded.get_mut(index))
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

    /// One reaping pass: the orphans are counted, and the app's exit (or its loss, or the last of
    /// what it left behind) moves the stop on.
    fn on_reaped(
        &mut self,
        app: Option<ChildStatus>,
        n_orphans: usize,
        children_left: bool,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        self.orphans_reaped += u64::try_from(n_orphans).unwrap_or(u64::MAX);
        match (self.state.running_app_pid(), app) {
            (Some(pid), Some(status)) => {
                self.on_app_reaped(pid, status, children_left, now, actions);
            }
            // Without any child left the app is gone too, even if its status could not be read.
            (Some(_), None) if !children_left => self.on_app_lost(now),
            // A sidecar (exec probes that exit do not end it), or the app is gone already:
            // pyinit ends once what the app left behind is reaped too.
            (None, _) if !children_left => {
                if let State::Stopping(stopping) = self.state {
                    self.exit(stopping.app.exit_code());
                }
            }
            (Some(_), None) | (None, _) => {}
        }
    }

    /// The app's status came in: pyinit ends with it, or first stops what the app left behind;
    /// an app overdue at the deadline keeps its SIGKILL and pyinit's 137.
    fn on_app_reaped(
        &mut self,
        pid: i32,
        status: ChildStatus,
        children_left: bool,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        self.shutdown.app_status = Some(status);
        self.shutdown.app_exited_at = Some(now);
        let drain_started_at = self.state.drain_started_at();
        let overdue = matches!(
            self.state,
            State::Stopping(Stopping {
                app: AppEnd::Overdue { .. },
                ..
            })
        );
        let clean_stop = self.is_clean_death_by_stop_signal(status);
        self.shutdown.clean_death_by_stop_signal = clean_stop;
        actions.push(Action::Notice(Notice::AppExited {
            status,
            since_drain: drain_started_at.map(|started| now.saturating_duration_since(started)),
            after_deadline: overdue,
            clean_stop,
        }));
        let code = if clean_stop { 0 } else { status.exit_code() };
        if overdue {
            self.on_overdue_app_reaped(pid, children_left);
        } else if !children_left {
            self.exit(code);
        } else {
            self.stop_leftovers(code, drain_started_at, now, actions);
        }
    }

    /// The app died of the stop signal the drain sent it, and its server dies of that signal on
    /// purpose once it has drained.
    fn is_clean_death_by_stop_signal(&self, status: ChildStatus) -> bool {
        let stop_sent = matches!(
            self.state,
            State::Draining(
                _,
                Drain {
                    stop_sent: true,
                    ..
                }
            )
        );
        stop_sent
            && self.policy.clean_death_by_stop_signal
            && (self.policy.app_stop_signal)
                .is_some_and(|signal| status == ChildStatus::Signaled(signal as i32))
    }

    /// Past the deadline what is left is killed, not asked: the next step (the SIGKILL at the end
    /// of the dump window, or the wait for the reaper after it) stands, and the code stays 137,
    /// whatever the app died of (the dump signal's 135, most often).
    fn on_overdue_app_reaped(&mut self, pid: i32, children_left: bool) {
        if let State::Stopping(stopping) = &mut self.state {
            stopping.app = AppEnd::Overdue { pid, reaped: true };
        }
        if !children_left {
            self.exit(exit::KILLED_AT_DEADLINE);
        }
    }

    /// No child is left and the app's status was not among them: the app is gone all the same.
    fn on_app_lost(&mut self, now: Instant) {
        self.shutdown.app_exited_at = Some(now);
        // 137 for an app overdue at the deadline; otherwise pyinit cannot say how it ended.
        let code = match self.state {
            State::Stopping(stopping) => stopping.app.exit_code(),
            State::Running(_) | State::Draining(..) | State::Exited { .. } => 1,
        };
        self.exit(code);
    }

    /// The app exited and left processes behind: they are asked to stop, then killed after the
    /// orphan grace, never later than the drain deadline.
    fn stop_leftovers(
        &mut self,
        code: u8,
        drain_started_at: Option<Instant>,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let mut kill_at = now + self.policy.orphan_grace;
        if let Some(started) = drain_started_at {
            kill_at = kill_at.min(started + self.policy.drain_timeout);
        }
        self.state = State::Stopping(Stopping {
            app: AppEnd::Exited { code },
            drain_started_at,
            next: StopStep::KillAt(kill_at),
        });
        self.shutdown.left_behind = true;
        actions.push(Action::SignalRemaining(Signal::SIGTERM));
    }

    fn on_timer(&mut self, now: Instant, actions: &mut Vec<Action>) {
        match self.state {
            State::Running(_) | State::Exited { .. } => {}
            State::Draining(Workload::Sidecar, drain) => {
                if now >= drain.started_at + self.policy.pre_stop_delay {
                    self.exit(0);
                }
            }
            State::Draining(Workload::App { pid }, drain) => {
                if now >= drain.started_at + self.policy.drain_timeout {
                    self.miss_deadline(pid, drain.started_at, now, actions);
                    return;
                }
                if !drain.stop_sent && now >= drain.started_at + self.policy.pre_stop_delay {
                    self.send_stop_signal(pid, now, actions);
                }
                if let Some(hard_stop) = self.policy.hard_stop
                    && !drain.hard_stop_sent
                    && now >= drain.started_at + hard_stop.after
                {
                    if let State::Draining(_, drain) = &mut self.state {
                        drain.hard_stop_sent = true;
                    }
                    self.shutdown.hard_stop_sent_at = Some(now);
                    self.push_forward(hard_stop.signal, pid, Reason::HardStop, actions);
                }
            }
            State::Stopping(stopping) => match stopping.next {
                StopStep::KillAt(at) if now >= at => {
                    // The end of the dump window is no news: the deadline's error line said it.
                    if let AppEnd::Exited { .. } = stopping.app {
                        actions.push(Action::Notice(Notice::LeftoversKilled));
                    }
                    self.kill_remaining(stopping.app, stopping.drain_started_at, now, actions);
                }
                StopStep::GiveUpAt(at) if now >= at => {
                    actions.push(Action::Notice(Notice::GaveUpWaiting));
                    self.exit(stopping.app.exit_code());
                }
                StopStep::KillAt(_) | StopStep::GiveUpAt(_) => {}
            },
        }
    }

    /// The app is still running at the drain deadline: the dump signal to everything left, with
    /// the SIGKILL at the end of the window, or without a dump the SIGKILL at once.
    fn miss_deadline(
        &mut self,
        app_pid: i32,
        drain_started_at: Instant,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let dump = self.policy.deadline_dump;
        actions.push(Action::Notice(Notice::DeadlineMissed {
            drain_timeout: self.policy.drain_timeout,
            dump,
        }));
        self.shutdown.killed_at_deadline = true;
        let overdue = AppEnd::Overdue {
            pid: app_pid,
            reaped: false,
        };
        match dump {
            Some(DeadlineDump { signal, window }) => {
                actions.push(Action::DumpTracebacks { signal, window });
                self.state = State::Stopping(Stopping {
                    app: overdue,
                    drain_started_at: Some(drain_started_at),
                    next: StopStep::KillAt(now + window),
                });
            }
            None => self.kill_remaining(overdue, Some(drain_started_at), now, actions),
        }
    }

    /// The last signal: SIGKILL to everything left, then the wait for the reaper, `kill_wait` at
    /// most. Every SIGKILL, at the drain deadline (or the end of its dump window) and at the end
    /// of the orphan grace, is sent here; a step before one of them only has to schedule it as a
    /// `StopStep::KillAt`.
    fn kill_remaining(
        &mut self,
        app: AppEnd,
        drain_started_at: Option<Instant>,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        actions.push(Action::SignalRemaining(Signal::SIGKILL));
        self.state = State::Stopping(Stopping {
            app,
            drain_started_at,
            next: StopStep::GiveUpAt(now + self.policy.kill_wait),
        });
    }

    /// Ends the state machine with `code` (before `--remap-exit`): the app's, 0 for a sidecar,
    /// 137 for an app still running at the deadline (whatever it died of), and 1 for a status
    /// lost before the deadline. `step` turns it into the last action.
    fn exit(&mut self, code: u8) {
        self.state = State::Exited {
            code: self.policy.remap.apply(code),
            sidecar: self.state.is_sidecar(),
        };
    }
}

/// `readiness: connection refused; shutdown: draining after SIGTERM`: every failed check.
fn failing_reasons(checks: &[Check]) -> String {
    checks
        .iter()
        .filter(|check| !check.passed)
        .map(|check| format!("{}: {}", check.name, check.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
