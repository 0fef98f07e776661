//! `/metrics`: pyinit's state in Prometheus' text exposition format, rendered from `Status`.
//!
//! Pure: the text is a function of the status alone. Each group of metrics is one small
//! function writing into an [`Exposition`]; a new group (container limits, OOM kills) is one
//! more function and one more line in [`render_metrics`].

use std::fmt::{Display, Write as _};

use crate::probe::threshold::Outcome;
use crate::signals::{FORWARDED, Signal, short_name};
use crate::status::Status;

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
    write_app(&mut out, status);
    write_probes(&mut out, status);
    write_signals(&mut out, status);
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

fn write_app(out: &mut Exposition, status: &Status) {
    out.family(
        "pyinit_app_up",
        "gauge",
        "1 while the app runs (0 in sidecar mode).",
    );
    out.sample("pyinit_app_up", &[], flag(status.app_pid.is_some()));
    out.family("pyinit_ready", "gauge", "1 while /readyz answers 200.");
    out.sample("pyinit_ready", &[], flag(status.ready));
    out.family("pyinit_live", "gauge", "1 while /livez answers 200.");
    out.sample("pyinit_live", &[], flag(status.live));
    out.family("pyinit_draining", "gauge", "1 from the first SIGTERM on.");
    out.sample("pyinit_draining", &[], flag(status.draining));
    if let Some(code) = status.app_exit_code {
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
    out.family(
        "pyinit_probe_success",
        "gauge",
        "1 if the probe's last run succeeded; absent before its first run.",
    );
    for probe in status.probes.iter() {
        if let Some(last) = &probe.last {
            out.sample(
                "pyinit_probe_success",
                &[("probe", probe.kind.name())],
                flag(last.outcome.passed()),
            );
        }
    }
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
    out.family(
        "pyinit_probe_last_duration_seconds",
        "gauge",
        "Time taken by the probe's last run.",
    );
    for probe in status.probes.iter() {
        if let Some(last) = &probe.last {
            out.sample(
                "pyinit_probe_last_duration_seconds",
                &[("probe", probe.kind.name())],
                last.duration.as_secs_f64(),
            );
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::probe::spec::{ProbeConfig, ProbeKind, ProbeTarget, ProbeTiming};
    use crate::probe::threshold::{ProbeReport, Probes};

    #[test]
    fn app_and_signal_metrics() {
        let mut status = Status {
            app_pid: Some(7),
            has_app: true,
            orphans_reaped: 3,
            ..Status::default()
        };
        status.signals_forwarded[15] = 2;
        status.signals_forwarded[9] = 1;
        status.refresh_verdicts();
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
        status.app_exit_code = Some(143);
        assert!(render_metrics(&status).contains("pyinit_app_exit_code 143\n"));
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
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("l", "a\"b\\c\nd")], 1);
        assert_eq!(out.into_text(), "m{l=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
