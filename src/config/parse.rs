//! Pure value parsers used as clap `value_parser`s: durations, exit-code pairs.
//!
//! Each returns a message that says what was expected; clap puts the flag and the value in front
//! of it. Signal names and `--signal-map` pairs are parsed by `signals`, which owns the name table.

use std::time::Duration;

/// Parses `500ms`, `30s`, `2m`, `1h`, `1.5s` or a bare number of seconds, as Kubernetes'
/// `*Seconds` fields are written.
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
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| expected_duration())
}

fn expected_duration() -> String {
    "expected a duration such as 500ms, 30s, 2m or a number of seconds".to_owned()
}

/// Parses one `--remap-exit FROM=TO` pair of exit codes (0..=255).
pub fn parse_exit_pair(text: &str) -> Result<(u8, u8), String> {
    let expected = || "expected FROM=TO with exit codes 0-255, such as 143=0".to_owned();
    let (from, to) = text.split_once('=').ok_or_else(expected)?;
    let from = from.trim().parse::<u8>().map_err(|_| expected())?;
    let to = to.trim().parse::<u8>().map_err(|_| expected())?;
    Ok((from, to))
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
        for text in ["abc", "", "s", "10x", "-5s", "1..2s", "10 s", "5d"] {
            assert!(parse_duration(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn exit_pairs() {
        assert_eq!(parse_exit_pair("143=0"), Ok((143, 0)));
        assert_eq!(parse_exit_pair("1=255"), Ok((1, 255)));
        for text in ["143", "256=0", "a=b", "=0", "-1=0"] {
            assert!(parse_exit_pair(text).is_err(), "{text} should be rejected");
        }
    }
}
