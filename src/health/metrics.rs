//! `/metrics`: pyinit's state in Prometheus' text exposition format, rendered from `Status`.
//!
//! Pure: the text is a function of the status alone. Each group of metrics is one small
//! function writing into an [`Exposition`]; a new group is one more function and one more line
//! in [`render_metrics`].
//!
//! A value pyinit does not know is left out, family and all, never written as NaN or 0: the CPU
//! and memory limits when none is set or they cannot be read, the memory use when the cgroup's
//! file cannot be read, the OOM-kill count when there is no OOM-kill counter to watch, and the
//! app's exit code until it has exited.

use std::fmt::{Display, Write as _};

use crate::container::env::format_millicpus;
use crate::probe::threshold::{LastResult, Outcome};
use crate::signals::spec::{FORWARDED, Signal, short_name};
use crate::status::{AppState, Status};

/// Text being written in the exposition format: `# HELP`, `# TYPE`, then samples.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a metric family. `kind` is `gauge`, `counter` or `summary`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample; label values are escaped as the format asks.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, label_value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(label_value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn flag(value: bool) -> u8 {
    u8::from(value)
}

/// The whole `/metrics` answer.
pub fn render_metrics(status: &Status) -> String {
    let mut out = Exposition::default();
    write_build_info(&mut out);
    write_server_info(&mut out, status);
    write_app(&mut out, status);
    write_probes(&mut out, status);
    write_signals(&mut out, status);
    write_resources(&mut out, status);
    out.into_text()
}

fn write_build_info(out: &mut Exposition) {
    out.family("pyinit_build_info", "gauge", "pyinit's version; always 1.");
    out.sample(
        "pyinit_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
}

fn write_server_info(out: &mut Exposition, status: &Status) {
    out.family(
        "pyinit_server_info",
        "gauge",
        "The server whose profile pyinit applies (none without one); always 1.",
    );
    let server = status.server.unwrap_or("none");
    out.sample("pyinit_server_info", &[("server", server)], 1);
}

fn write_app(out: &mut Exposition, status: &Status) {
    out.family(
        "pyinit_app_up",
        "gauge",
        "1 while the app runs (0 in sidecar mode).",
    );
    out.sample("pyinit_app_up", &[], flag(status.app.is_running()));
    out.family("pyinit_ready", "gauge", "1 while /readyz answers 200.");
    out.sample("pyinit_ready", &[], flag(status.checks.ready()));
    out.family("pyinit_live", "gauge", "1 while /livez answers 200.");
    out.sample("pyinit_live", &[], flag(status.checks.live()));
    out.family("pyinit_draining", "gauge", "1 from the first SIGTERM on.");
    out.sample("pyinit_draining", &[], flag(status.draining));
    if let AppState::Exited {
        exit_code: Some(code),
    } = status.app
    {
        out.family(
            "pyinit_app_exit_code",
            "gauge",
            "The app's exit code (128+N for signal N), once it has exited.",
        );
        out.sample("pyinit_app_exit_code", &[], code);
    }
    out.family(
        "pyinit_orphans_reaped_total",
        "counter",
        "Zombies reaped that were neither the app nor a probe.",
    );
    out.sample("pyinit_orphans_reaped_total", &[], status.orphans_reaped);
}

fn write_probes(out: &mut Exposition, status: &Status) {
    if status.probes.iter().next().is_none() {
        return;
    }
    write_last_result_gauge(
        out,
        status,
        "pyinit_probe_success",
        "1 if the probe's last run succeeded; absent before its first run.",
        |last| flag(last.outcome.passed()),
    );
    out.family(
        "pyinit_probe_results_total",
        "counter",
        "Probe runs by result (a timeout is also a failure for the thresholds).",
    );
    for probe in status.probes.iter() {
        for (outcome, count) in [
            (Outcome::Success, probe.n_success),
            (Outcome::Failure, probe.n_failure),
            (Outcome::Timeout, probe.n_timeout),
        ] {
            out.sample(
                "pyinit_probe_results_total",
                &[("probe", probe.kind.name()), ("result", outcome.name())],
                count,
            );
        }
    }
    out.family(
        "pyinit_probe_duration_seconds",
        "summary",
        "Time taken by probe runs.",
    );
    for probe in status.probes.iter() {
        let labels = [("probe", probe.kind.name())];
        out.sample(
            "pyinit_probe_duration_seconds_sum",
            &labels,
            probe.duration_total.as_secs_f64(),
        );
        out.sample(
            "pyinit_probe_duration_seconds_count",
            &labels,
            probe.n_success + probe.n_failure + probe.n_timeout,
        );
    }
    write_last_result_gauge(
        out,
        status,
        "pyinit_probe_last_duration_seconds",
        "Time taken by the probe's last run.",
        |last| last.duration.as_secs_f64(),
    );
}

/// A gauge with one sample per probe that has run, read from its last result.
fn write_last_result_gauge<V: Display>(
    out: &mut Exposition,
    status: &Status,
    name: &str,
    help: &str,
    value: impl Fn(&LastResult) -> V,
) {
    out.family(name, "gauge", help);
    for probe in status.probes.iter() {
        if let Some(last) = &probe.last {
            out.sample(name, &[("probe", probe.kind.name())], value(last));
        }
    }
}

fn write_signals(out: &mut Exposition, status: &Status) {
    out.family(
        "pyinit_signals_forwarded_total",
        "counter",
        "Signals sent to the app, by the name sent (after --signal-map).",
    );
    for (number, count) in status.signals_forwarded.iter().enumerate() {
        let Some(signal) = i32::try_from(number)
            .ok()
            .and_then(|number| Signal::try_from(number).ok())
        else {
            continue;
        };
        // Every forwarded signal appears, at 0 too, so that rate() works from the first scrape.
        if *count > 0 || FORWARDED.contains(&signal) {
            out.sample(
                "pyinit_signals_forwarded_total",
                &[("signal", short_name(signal))],
                count,
            );
        }
    }
}

fn write_resources(out: &mut Exposition, status: &Status) {
    let resources = &status.resources;
    if let Some(millicpus) = resources.cpu_limit_millicpus {
        out.family(
            "pyinit_cpu_limit_cores",
            "gauge",
            "The container's CPU limit (CFS quota / period), read every second (an in-place \
             resize changes it); absent without one.",
        );
        // Printed as the app's PYINIT_CPU_LIMIT is: exact decimals, no float noise.
        out.sample("pyinit_cpu_limit_cores", &[], format_millicpus(millicpus));
    }
    if let Some(bytes) = resources.memory_limit_bytes {
        out.family(
            "pyinit_memory_limit_bytes",
            "gauge",
            "The container's memory limit, read every second (an in-place resize changes it); \
             absent without one.",
        );
        out.sample("pyinit_memory_limit_bytes", &[], bytes);
    }
    if let Some(bytes) = resources.memory_usage_bytes {
        out.family(
            "pyinit_memory_usage_bytes",
            "gauge",
            "The container cgroup's memory use (memory.current, v1 memory.usage_in_bytes), read \
             every second.",
        );
        out.sample("pyinit_memory_usage_bytes", &[], bytes);
    }
    if let Some(kills) = resources.oom_kills {
        out.family(
            "pyinit_oom_kills_total",
            "counter",
            "Processes in the container OOM-killed since pyinit started.",
        );
        out.sample("pyinit_oom_kills_total", &[], kills);
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a fake clock starts at some instant; which one does not matter"
)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::probe::spec::{ProbeConfig, ProbeKind, ProbeTarget, ProbeTiming};
    use crate::probe::threshold::{ProbeReport, Probes};
    use crate::status::{Checks, Resources};

    #[test]
    fn app_and_signal_metrics() {
        let mut status = Status {
            app: AppState::Running { pid: 7 },
            orphans_reaped: 3,
            ..Status::default()
        };
        status.signals_forwarded[15] = 2;
        status.signals_forwarded[9] = 1;
        status.checks = Checks::new(status.app, status.shutdown.drain_signal, &status.probes);
        let text = render_metrics(&status);
        for line in [
            "# TYPE pyinit_app_up gauge\npyinit_app_up 1\n",
            "pyinit_ready 1\n",
            "pyinit_live 1\n",
            "pyinit_draining 0\n",
            "pyinit_orphans_reaped_total 3\n",
            "pyinit_signals_forwarded_total{signal=\"TERM\"} 2\n",
            "pyinit_signals_forwarded_total{signal=\"USR1\"} 0\n",
            "pyinit_signals_forwarded_total{signal=\"KILL\"} 1\n",
            "pyinit_build_info{version=\"",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("pyinit_app_exit_code"));
        assert!(!text.contains("pyinit_probe"));
        status.app = AppState::Exited {
            exit_code: Some(143),
        };
        assert!(render_metrics(&status).contains("pyinit_app_exit_code 143\n"));
    }

    #[test]
    fn the_server_is_a_label_of_an_info_metric() {
        let status = Status {
            server: Some("gunicorn"),
            ..Status::default()
        };
        assert!(render_metrics(&status).contains(
            "# TYPE pyinit_server_info gauge\npyinit_server_info{server=\"gunicorn\"} 1\n"
        ));
        assert!(
            render_metrics(&Status::default()).contains("pyinit_server_info{server=\"none\"} 1\n")
        );
    }

    #[test]
    fn probe_metrics() {
        let mut probes = Probes::new(&[ProbeConfig {
            kind: ProbeKind::Liveness,
            target: ProbeTarget::Tcp {
                addr: "127.0.0.1:1".parse().unwrap(),
            },
            timing: ProbeTiming::KUBERNETES_DEFAULT,
        }]);
        let began = Instant::now();
        for (outcome, millis) in [(Outcome::Success, 250), (Outcome::Timeout, 1000)] {
            probes.record(&ProbeReport {
                kind: ProbeKind::Liveness,
                outcome,
                message: String::new(),
                began,
                duration: Duration::from_millis(millis),
                failure_counts: true,
            });
        }
        let status = Status {
            probes,
            ..Status::default()
        };
        let text = render_metrics(&status);
        for line in [
            "pyinit_probe_success{probe=\"liveness\"} 0\n",
            "pyinit_probe_results_total{probe=\"liveness\",result=\"success\"} 1\n",
            "pyinit_probe_results_total{probe=\"liveness\",result=\"timeout\"} 1\n",
            "pyinit_probe_duration_seconds_sum{probe=\"liveness\"} 1.25\n",
            "pyinit_probe_duration_seconds_count{probe=\"liveness\"} 2\n",
            "pyinit_probe_last_duration_seconds{probe=\"liveness\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn resource_metrics_with_their_units() {
        let status = Status {
            resources: Resources {
                cpu_limit_millicpus: Some(1500),
                memory_limit_bytes: Some(268_435_456),
                memory_usage_bytes: Some(52_428_800),
                oom_kills: Some(1),
            },
            ..Status::default()
        };
        let text = render_metrics(&status);
        for lines in [
            "# HELP pyinit_cpu_limit_cores The container's CPU limit",
            "# TYPE pyinit_cpu_limit_cores gauge\npyinit_cpu_limit_cores 1.5\n",
            "# TYPE pyinit_memory_limit_bytes gauge\npyinit_memory_limit_bytes 268435456\n",
            "# TYPE pyinit_memory_usage_bytes gauge\npyinit_memory_usage_bytes 52428800\n",
            "# TYPE pyinit_oom_kills_total counter\npyinit_oom_kills_total 1\n",
        ] {
            assert!(text.contains(lines), "missing {lines:?} in\n{text}");
        }
        for (millicpus, printed) in [(500, "0.5"), (2000, "2"), (250, "0.25"), (1, "0.001")] {
            let status = Status {
                resources: Resources {
                    cpu_limit_millicpus: Some(millicpus),
                    ..Resources::default()
                },
                ..Status::default()
            };
            let line = format!("\npyinit_cpu_limit_cores {printed}\n");
            assert!(render_metrics(&status).contains(&line), "{millicpus}");
        }
    }

    #[test]
    fn unknown_resources_are_left_out_not_nan() {
        // No limit, no readable cgroup file, no OOM-kill counter.
        let text = render_metrics(&Status::default());
        for name in [
            "pyinit_cpu_limit_cores",
            "pyinit_memory_limit_bytes",
            "pyinit_memory_usage_bytes",
            "pyinit_oom_kills_total",
        ] {
            assert!(!text.contains(name), "{name} in\n{text}");
        }
        assert!(!text.to_lowercase().contains("nan"), "{text}");
        // A counter that is readable but never rose says 0.
        let status = Status {
            resources: Resources {
                oom_kills: Some(0),
                ..Resources::default()
            },
            ..Status::default()
        };
        assert!(render_metrics(&status).contains("\npyinit_oom_kills_total 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("l", "a\"b\\c\nd")], 1);
        assert_eq!(out.into_text(), "m{l=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
