//! Durations as pyinit writes and reads them: as flags spell them (`500ms`, `30s`, `2m`, a bare
//! number of seconds, like Kubernetes' `*Seconds` fields), the shortest exact form for messages,
//! and whole milliseconds for log fields and reports.
//!
//! Pure: every layer may use them. The clock is `clock.rs`'s.

use std::time::Duration;

/// The longest duration any flag takes: far beyond any grace period or probe period.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `500ms`, `30s`, `2m`, `1h`, `1.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split_at = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split_at);
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(expected_duration()),
    };
    let value: f64 = number.parse().map_err(|_| expected_duration())?;
    let duration =
        Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| expected_duration())?;
    // Deadlines are instants plus durations; a bound keeps that sum from overflowing.
    if duration > MAX_DURATION {
        return Err("expected a duration of at most 365 days".to_owned());
    }
    Ok(duration)
}

fn expected_duration() -> String {
    "expected a duration such as 500ms, 30s, 2m or a number of seconds".to_owned()
}

/// `30s`, `1500ms`, `2m`: the shortest exact form in whole milliseconds, for messages and logs.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(60_000) && millis > 0 {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// Whole milliseconds, for `*_ms` log fields and reports; saturates instead of wrapping.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_accepted_form() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("1.5s", Duration::from_millis(1500)),
            (" 10s ", Duration::from_secs(10)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn durations_that_are_rejected() {
        for text in [
            "9999999999h",
            "8761h",
            "1e30",
            "abc",
            "",
            "s",
            "10x",
            "-5s",
            "1..2s",
            "10 s",
            "5d",
        ] {
            assert!(parse_duration(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn durations_format_back() {
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(MAX_DURATION), "525600m");
    }

    #[test]
    fn milliseconds_saturate() {
        assert_eq!(millis(Duration::from_micros(2500)), 2);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
