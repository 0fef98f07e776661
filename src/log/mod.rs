//! Logging: tracing events on stderr as text or JSON, one line and one write each; stdout
//! belongs to the app.
//!
//! A small subscriber of pyinit's own rather than tracing-subscriber's: pyinit logs events and
//! no spans, and the general one (its span registry and its serde-based JSON) cost binary size
//! and memory at start ("Size and memory" in docs/benchmarks.md has what bench/ measured). The
//! lines keep tracing-subscriber's shape:
//! text is `TIMESTAMP LEVEL message key=value ...` (string values quoted, a field named
//! `message` shown bare); JSON is one flat object per line with `timestamp`, `level`, then every
//! field in order (numbers and booleans as JSON values, everything else as strings).

pub mod spec;

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::json::push_json_string;
use spec::{LogFormat, LogLevel};

/// Installs the global subscriber. Called once, early in set-up.
pub fn init_logging(format: LogFormat, level: LogLevel) {
    let max_level = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    // A second initialisation (never done) would only keep the first subscriber.
    let _ = tracing::subscriber::set_global_default(StderrLog { format, max_level });
}

/// Writes every enabled event to stderr as one line.
#[derive(Debug)]
struct StderrLog {
    format: LogFormat,
    max_level: LevelFilter,
}

impl StderrLog {
    fn format_line(&self, event: &Event<'_>, now: SystemTime) -> String {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let timestamp = Rfc3339 {
            seconds: since_epoch.as_secs(),
            micros: since_epoch.subsec_micros(),
        };
        let level = event.metadata().level();
        let mut line = String::with_capacity(256);
        match self.format {
            LogFormat::Text => {
                let _ = write!(line, "{timestamp} {:>5} ", level.as_str());
                event.record(&mut TextFields {
                    line: &mut line,
                    first: true,
                });
            }
            LogFormat::Json => {
                let _ = write!(
                    line,
                    "{{\"timestamp\":\"{timestamp}\",\"level\":\"{}\"",
                    level.as_str()
                );
                event.record(&mut JsonFields { line: &mut line });
                line.push('}');
            }
        }
        line.push('\n');
        line
    }
}

impl Subscriber for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max_level >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn event(&self, event: &Event<'_>) {
        let line = self.format_line(event, SystemTime::now());
        // One write per line, so that lines never interleave; a failed write has nowhere to go.
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    // pyinit opens no spans; any a dependency opens are accepted and left out of the lines.
    fn new_span(&self, _attributes: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// A UTC time as `2026-11-25T17:13:55.867670Z`.
struct Rfc3339 {
    seconds: u64,
    micros: u32,
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.seconds / 86_400);
        let of_day = self.seconds % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60,
            self.micros
        )
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's algorithm,
/// in unsigned arithmetic since pyinit never logs before 1970).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A field's name as written: a raw identifier loses its `r#`.
fn field_name(field: &Field) -> &'static str {
    let name = field.name();
    name.strip_prefix("r#").unwrap_or(name)
}

/// `message key=value ...`: values in their `Debug` form, so strings are quoted; a field named
/// `message` is written bare.
struct TextFields<'a> {
    line: &'a mut String,
    first: bool,
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        match value.source() {
            Some(source) => self.record_debug(
                field,
                &format_args!("{value} {}.sources={}", field_name(field), Sources(source)),
            ),
            None => self.record_debug(field, &format_args!("{value}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.first {
            self.line.push(' ');
        }
        self.first = false;
        let _ = match field_name(field) {
            "message" => write!(self.line, "{value:?}"),
            name => write!(self.line, "{name}={value:?}"),
        };
    }
}

/// An error's chain of sources: `[first, second]`.
struct Sources<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        let mut next = Some(self.0);
        let mut first = true;
        while let Some(error) = next {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{error}")?;
            next = error.source();
        }
        f.write_str("]")
    }
}

/// `,"key":value` for each field, after `timestamp` and `level`.
struct JsonFields<'a> {
    line: &'a mut String,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(',');
        push_json_string(self.line, field_name(field));
        self.line.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.line, "{value:?}");
        } else {
            self.line.push_str("null");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_string(self.line, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.key(field);
        push_json_string(self.line, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        push_json_string(self.line, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing::{debug, error, info, warn};

    use super::*;

    /// Formats events as pyinit would, at a fixed time, into a list instead of stderr.
    struct Capture {
        log: StderrLog,
        lines: Arc<Mutex<Vec<String>>>,
    }

    impl Subscriber for Capture {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            self.log.enabled(metadata)
        }
        fn event(&self, event: &Event<'_>) {
            let at = UNIX_EPOCH + Duration::from_micros(1_795_627_238_557_791);
            let line = self.log.format_line(event, at);
            self.lines.lock().unwrap().push(line);
        }
        fn new_span(&self, attributes: &Attributes<'_>) -> Id {
            self.log.new_span(attributes)
        }
        fn record(&self, _span: &Id, _values: &Record<'_>) {}
        fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
        fn enter(&self, _span: &Id) {}
        fn exit(&self, _span: &Id) {}
    }

    fn capture(format: LogFormat, max_level: LevelFilter, emit: impl FnOnce()) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let capture = Capture {
            log: StderrLog { format, max_level },
            lines: Arc::clone(&lines),
        };
        tracing::subscriber::with_default(capture, emit);
        lines.lock().unwrap().clone()
    }

    fn emit_examples() {
        let argv = vec!["/bin/sh", "-c", "exit 3"];
        info!(pid = 7720, argv = ?argv, grace_period_ms = 30000_u64, "app started");
        debug!(probe = "readiness", result = "failure", message = %"connection refused", "probe finished");
        warn!(ready = false, ratio = 0.5, "a \"quoted\"\ttab");
        error!(r#type = -3_i64, "negative");
    }

    #[test]
    fn text_lines_keep_tracing_subscribers_shape() {
        let lines = capture(LogFormat::Text, LevelFilter::TRACE, emit_examples);
        assert_eq!(
            lines,
            [
                "2026-11-25T17:20:38.557791Z  INFO app started pid=7720 argv=[\"/bin/sh\", \"-c\", \"exit 3\"] grace_period_ms=30000\n",
                "2026-11-25T17:20:38.557791Z DEBUG probe finished probe=\"readiness\" result=\"failure\" connection refused\n",
                "2026-11-25T17:20:38.557791Z  WARN a \"quoted\"\ttab ready=false ratio=0.5\n",
                "2026-11-25T17:20:38.557791Z ERROR negative type=-3\n",
            ]
        );
    }

    #[test]
    fn json_lines_are_flat_objects() {
        let lines = capture(LogFormat::Json, LevelFilter::TRACE, emit_examples);
        assert_eq!(
            lines,
            [
                "{\"timestamp\":\"2026-11-25T17:20:38.557791Z\",\"level\":\"INFO\",\"message\":\"app started\",\"pid\":7720,\"argv\":\"[\\\"/bin/sh\\\", \\\"-c\\\", \\\"exit 3\\\"]\",\"grace_period_ms\":30000}\n",
                "{\"timestamp\":\"2026-11-25T17:20:38.557791Z\",\"level\":\"DEBUG\",\"message\":\"probe finished\",\"probe\":\"readiness\",\"result\":\"failure\",\"message\":\"connection refused\"}\n",
                "{\"timestamp\":\"2026-11-25T17:20:38.557791Z\",\"level\":\"WARN\",\"message\":\"a \\\"quoted\\\"\\ttab\",\"ready\":false,\"ratio\":0.5}\n",
                "{\"timestamp\":\"2026-11-25T17:20:38.557791Z\",\"level\":\"ERROR\",\"message\":\"negative\",\"type\":-3}\n",
            ]
        );
    }

    #[test]
    fn levels_below_the_threshold_are_left_out() {
        let lines = capture(LogFormat::Text, LevelFilter::WARN, emit_examples);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains(" WARN "), "{lines:?}");
        assert!(lines[1].contains("ERROR "), "{lines:?}");
    }

    #[test]
    fn errors_show_their_sources() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot read the file")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let failure = Outer(std::io::Error::other("disk on fire"));
        let emit = || {
            let source: &(dyn std::error::Error + 'static) = &failure;
            error!(error = source, "failed");
        };
        let text = capture(LogFormat::Text, LevelFilter::TRACE, emit);
        assert!(
            text[0].ends_with("failed error=cannot read the file error.sources=[disk on fire]\n"),
            "{text:?}"
        );
        let json = capture(LogFormat::Json, LevelFilter::TRACE, emit);
        assert!(
            json[0].ends_with("\"error\":\"cannot read the file\"}\n"),
            "{json:?}"
        );
    }

    #[test]
    fn timestamps_are_utc_rfc3339_with_microseconds() {
        let at = |seconds, micros| Rfc3339 { seconds, micros }.to_string();
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(951_868_799, 999_999), "2000-02-29T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(at(1_795_627_238, 557_791), "2026-11-25T17:20:38.557791Z");
    }
}
