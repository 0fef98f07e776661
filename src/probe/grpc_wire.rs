//! The bytes of one `grpc.health.v1.Health/Check` call and what its answer means: the two
//! protobuf messages and gRPC's length-prefixed framing, encoded and decoded by hand, the
//! `grpc-status`, `grpc-message` and `grpc-timeout` values, and the verdict on an answer.
//!
//! The messages, from grpc/grpc `src/proto/grpc/health/v1/health.proto` (proto3):
//!
//! ```text
//! message HealthCheckRequest  { string service = 1; }              // field 1, wire type 2
//! message HealthCheckResponse { ServingStatus status = 1; }         // field 1, wire type 0
//! enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
//! ```
//!
//! proto3 leaves a field at its default off the wire: an empty service is an empty request, and
//! an empty response is UNKNOWN. Each message travels as grpc/grpc `doc/PROTOCOL-HTTP2.md` has
//! it: a compressed-flag byte, a 4-byte big-endian length, the message.
//!
//! The verdict follows the kubelet's `pkg/probe/grpc/grpc.go` (kubernetes/kubernetes): SERVING
//! passes ("service healthy"); any other status fails ("service unhealthy (responded with
//! ...)"); a non-OK `grpc-status` fails, UNIMPLEMENTED as "this server does not implement the
//! grpc health protocol" and DEADLINE_EXCEEDED as a timeout. The server's `grpc-message` is the
//! app's own text: it goes into the verdict's detail, for pyinit's log, never into the message
//! the health port shows. Pure: `grpc.rs` does the I/O.

use std::time::Duration;

use super::threshold::Outcome;
use crate::units::format_duration;

/// The method the kubelet calls: `grpc.health.v1.Health`'s unary `Check`.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// The most of an answer's DATA a probe keeps: a HealthCheckResponse is two bytes (seven
/// framed); anything this long is not one.
pub const MAX_ANSWER_DATA: usize = 16 * 1024;

/// gRPC's status codes by number (grpc/grpc `doc/statuscodes.md`), as the spec names them.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const OK: u32 = 0;
const DEADLINE_EXCEEDED: u32 = 4;
const UNIMPLEMENTED: u32 = 12;

/// `HealthCheckResponse.status`.
const SERVING: u64 = 1;
const SERVING_STATUS_NAMES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// What came back for one Check call, as the transport read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckAnswer {
    /// The HTTP status of the answer's headers.
    pub http_status: u16,
    /// The raw `grpc-status` value, from the trailers or from a trailers-only answer's headers.
    pub grpc_status: Option<Vec<u8>>,
    /// The raw (percent-encoded) `grpc-message` value, from the same place.
    pub grpc_message: Option<Vec<u8>>,
    /// The answer's DATA, at most [`MAX_ANSWER_DATA`] bytes of it.
    pub data: Vec<u8>,
}

/// The request's DATA: `HealthCheckRequest { service }` as one length-prefixed message.
pub fn encode_check_request(service: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(service.len() + 11);
    if !service.is_empty() {
        // Key: field 1, wire type 2 (length-delimited); then the length and the UTF-8 bytes.
        message.push(1 << 3 | 2);
        push_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0); // not compressed
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let [low, ..] = value.to_le_bytes();
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        // Seven bits at a time, low first; the high bit says more follow.
        out.push(low | 0x80);
    }
}

/// Reads a base-128 varint from the front of `bytes`; `None` when it is cut off or too long.
fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Drops `n` bytes from the front of `bytes`; `None` when there are fewer.
fn skip(bytes: &mut &[u8], n: u64) -> Option<()> {
    let n = usize::try_from(n).ok()?;
    *bytes = bytes.get(n..)?;
    Some(())
}

/// The `status` field of a HealthCheckResponse message (proto3: absent is 0, UNKNOWN). Fields
/// pyinit does not know are skipped by their wire type, as protobuf parsers do.
fn decode_response_message(mut message: &[u8]) -> Result<u64, String> {
    let malformed = || "malformed HealthCheckResponse".to_owned();
    let mut status = 0;
    while !message.is_empty() {
        let key = read_varint(&mut message).ok_or_else(malformed)?;
        let skipped = match key & 7 {
            0 => {
                let value = read_varint(&mut message).ok_or_else(malformed)?;
                if key >> 3 == 1 {
                    status = value;
                }
                Some(())
            }
            1 => skip(&mut message, 8),
            2 => read_varint(&mut message).and_then(|length| skip(&mut message, length)),
            5 => skip(&mut message, 4),
            _ => None,
        };
        skipped.ok_or_else(malformed)?;
    }
    Ok(status)
}

/// The ServingStatus in the answer's DATA, which must hold exactly one uncompressed
/// length-prefixed HealthCheckResponse.
pub fn decode_check_response(data: &[u8]) -> Result<u64, String> {
    let Some((header, rest)) = data.split_at_checked(5) else {
        return Err(match data.len() {
            0 => "no HealthCheckResponse in the answer".to_owned(),
            _ => "HealthCheckResponse cut off".to_owned(),
        });
    };
    let [flag, length @ ..] = header else {
        return Err("HealthCheckResponse cut off".to_owned());
    };
    if *flag != 0 {
        return Err("compressed HealthCheckResponse (the probe asked for none)".to_owned());
    }
    let length = length
        .try_into()
        .map(u32::from_be_bytes)
        .ok()
        .and_then(|length| usize::try_from(length).ok())
        .unwrap_or(usize::MAX);
    match rest.split_at_checked(length) {
        None => Err("HealthCheckResponse cut off".to_owned()),
        Some((message, [])) => decode_response_message(message),
        Some(_) => Err("more than one message in a unary answer".to_owned()),
    }
}

/// `SERVING`, `NOT_SERVING`, ...; a number the enum does not name is written as itself.
pub fn serving_status_name(status: u64) -> String {
    usize::try_from(status)
        .ok()
        .and_then(|index| SERVING_STATUS_NAMES.get(index))
        .map_or_else(|| status.to_string(), |name| (*name).to_owned())
}

/// `NOT_FOUND`, `UNIMPLEMENTED`, ...; a code past the spec's list is written as a number.
pub fn status_code_name(code: u32) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|index| CODE_NAMES.get(index))
        .map_or_else(|| format!("code {code}"), |name| (*name).to_owned())
}

/// A `grpc-message` value percent-decoded as the protocol spells it, on one line: broken
/// escapes stay as they are, invalid UTF-8 and control characters become replacements.
pub fn decode_grpc_message(value: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some((&byte, after)) = rest.split_first() {
        let escaped = match (byte, after) {
            (b'%', [high, low, ..]) => hex_digit(*high)
                .zip(hex_digit(*low))
                .map(|(high, low)| high << 4 | low),
            _ => None,
        };
        match escaped {
            Some(decoded) => {
                bytes.push(decoded);
                rest = after.get(2..).unwrap_or_default();
            }
            None => {
                bytes.push(byte);
                rest = after;
            }
        }
    }
    String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// The `grpc-timeout` header for the time left: an integer of at most 8 digits and a unit, in
/// milliseconds while they fit (a probe's timeout always does), else in seconds.
pub fn grpc_timeout(left: Duration) -> String {
    let millis = left.as_millis().max(1);
    if millis <= 99_999_999 {
        format!("{millis}m")
    } else {
        format!("{}S", left.as_secs().min(99_999_999))
    }
}

/// One probe's verdict. `message` is what the health port shows, which anyone who reaches it may
/// read: never the app's own words. `detail`, for pyinit's log alone, adds them when the server
/// said something (its `grpc-message`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    pub outcome: Outcome,
    pub message: String,
    pub detail: Option<String>,
}

impl Judged {
    fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Judged {
            outcome,
            message: message.into(),
            detail: None,
        }
    }

    fn failure(message: impl Into<String>) -> Self {
        Judged::new(Outcome::Failure, message)
    }

    /// The message and, after it, what the server said: the detail, when it said anything.
    fn told(mut self, said: &str) -> Self {
        if !said.is_empty() {
            self.detail = Some(format!("{}: {said}", self.message));
        }
        self
    }
}

/// Judges one answer as the kubelet's grpc prober does; `timeout` names the probe's timeout
/// when the server says its deadline passed.
pub fn judge(answer: &CheckAnswer, timeout: Duration) -> Judged {
    let Some(status) = &answer.grpc_status else {
        // No status at all: not a gRPC server's answer (the protocol requires one).
        return Judged::failure(match answer.http_status {
            200 => "health rpc probe failed: the answer has no grpc-status".to_owned(),
            other => format!("health rpc probe failed: HTTP status {other} without grpc-status"),
        });
    };
    let code = std::str::from_utf8(status)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    let Some(code) = code else {
        let shown = String::from_utf8_lossy(status);
        return Judged::failure("health rpc probe failed: malformed grpc-status")
            .told(&format!("'{shown}'"));
    };
    let said = answer
        .grpc_message
        .as_deref()
        .map(decode_grpc_message)
        .unwrap_or_default();
    let name = status_code_name(code);
    match code {
        OK => judge_response(&answer.data),
        UNIMPLEMENTED => Judged::failure(format!(
            "this server does not implement the grpc health protocol (grpc.health.v1.Health): \
             {name}"
        ))
        .told(&said),
        DEADLINE_EXCEEDED => Judged::new(
            Outcome::Timeout,
            format!(
                "health rpc did not complete within {} ({name})",
                format_duration(timeout)
            ),
        )
        .told(&said),
        _ => Judged::failure(format!("health rpc probe failed: {name}")).told(&said),
    }
}

/// An OK answer: SERVING passes, any other status fails with its name.
fn judge_response(data: &[u8]) -> Judged {
    match decode_check_response(data) {
        Ok(SERVING) => Judged::new(Outcome::Success, "service healthy"),
        Ok(status) => Judged::failure(format!(
            "service unhealthy (responded with \"{}\")",
            serving_status_name(status)
        )),
        Err(error) => Judged::failure(format!("health rpc probe failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A framed HealthCheckResponse with `message` as its protobuf bytes.
    fn framed(message: &[u8]) -> Vec<u8> {
        let mut data = vec![0];
        data.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        data.extend_from_slice(message);
        data
    }

    fn answer(status: &str, message: Option<&str>, data: Vec<u8>) -> CheckAnswer {
        CheckAnswer {
            http_status: 200,
            grpc_status: Some(status.as_bytes().to_vec()),
            grpc_message: message.map(|text| text.as_bytes().to_vec()),
            data,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[test]
    fn requests_encode_the_service_as_field_1() {
        // The kubelet's default: an empty service, an empty message.
        assert_eq!(encode_check_request(""), [0, 0, 0, 0, 0]);
        assert_eq!(
            encode_check_request("x"),
            [0, 0, 0, 0, 3, 0x0a, 1, b'x'],
            "key 0x0a = field 1, wire type 2"
        );
        // A name of 200 bytes takes a two-byte length varint: 200 = 0xc8 0x01.
        let long = "s".repeat(200);
        let encoded = encode_check_request(&long);
        assert_eq!(encoded[..8], [0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
        assert_eq!(encoded.len(), 5 + 203);
    }

    #[test]
    fn responses_decode_their_status() {
        assert_eq!(decode_check_response(&framed(&[0x08, 1])), Ok(1));
        assert_eq!(decode_check_response(&framed(&[0x08, 2])), Ok(2));
        // proto3 leaves UNKNOWN (0) off the wire: an empty message.
        assert_eq!(decode_check_response(&framed(&[])), Ok(0));
        // Unknown fields of every wire type are skipped; the status is still found.
        let with_others = [
            0x10, 0x96, 0x01, // field 2, varint 150
            0x19, 1, 2, 3, 4, 5, 6, 7, 8, // field 3, fixed64
            0x22, 2, b'h', b'i', // field 4, 2 bytes
            0x2d, 1, 2, 3, 4, // field 5, fixed32
            0x08, 3, // status SERVICE_UNKNOWN
        ];
        assert_eq!(decode_check_response(&framed(&with_others)), Ok(3));
        // A status past the enum is kept as its number.
        assert_eq!(decode_check_response(&framed(&[0x08, 0x80, 0x01])), Ok(128));
    }

    #[test]
    fn broken_responses_are_errors() {
        let cases: [(Vec<u8>, &str); 8] = [
            (vec![], "no HealthCheckResponse in the answer"),
            (vec![0, 0, 0], "HealthCheckResponse cut off"),
            (vec![0, 0, 0, 0, 2, 0x08], "HealthCheckResponse cut off"),
            (
                vec![1, 0, 0, 0, 2, 0x08, 1],
                "compressed HealthCheckResponse (the probe asked for none)",
            ),
            (
                [framed(&[0x08, 1]), framed(&[0x08, 1])].concat(),
                "more than one message in a unary answer",
            ),
            (framed(&[0x08]), "malformed HealthCheckResponse"),
            (framed(&[0x0b]), "malformed HealthCheckResponse"),
            (framed(&[0x22, 5, 1]), "malformed HealthCheckResponse"),
        ];
        for (data, expected) in cases {
            assert_eq!(
                decode_check_response(&data),
                Err(expected.to_owned()),
                "{data:?}"
            );
        }
        // A varint of more than ten bytes.
        let endless = framed(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        assert!(decode_check_response(&endless).is_err());
    }

    /// A verdict: its outcome, message and detail.
    fn verdict(outcome: Outcome, message: &str, detail: Option<&str>) -> Judged {
        Judged {
            outcome,
            message: message.to_owned(),
            detail: detail.map(str::to_owned),
        }
    }

    #[test]
    fn serving_passes_and_every_other_status_fails_with_its_name() {
        let serving = judge(&answer("0", None, framed(&[0x08, 1])), TIMEOUT);
        assert_eq!(serving, verdict(Outcome::Success, "service healthy", None));
        for (message, name) in [
            (vec![0x08, 2], "NOT_SERVING"),
            (vec![], "UNKNOWN"),
            (vec![0x08, 3], "SERVICE_UNKNOWN"),
            (vec![0x08, 7], "7"),
        ] {
            // An OK status's grpc-message says nothing the verdict needs.
            let judged = judge(&answer("0", Some("fine"), framed(&message)), TIMEOUT);
            let expected = format!("service unhealthy (responded with \"{name}\")");
            assert_eq!(judged, verdict(Outcome::Failure, &expected, None));
        }
    }

    #[test]
    fn non_ok_statuses_fail_with_their_code_and_keep_the_apps_words_for_the_log() {
        let unimplemented = judge(&answer("12", Some("Method not found!"), vec![]), TIMEOUT);
        let kubelets = "this server does not implement the grpc health protocol \
                        (grpc.health.v1.Health): UNIMPLEMENTED";
        assert_eq!(
            unimplemented,
            verdict(
                Outcome::Failure,
                kubelets,
                Some(&format!("{kubelets}: Method not found!"))
            )
        );
        let not_found = judge(&answer("5", None, vec![]), TIMEOUT);
        assert_eq!(
            not_found,
            verdict(Outcome::Failure, "health rpc probe failed: NOT_FOUND", None)
        );
        let unavailable = judge(&answer("14", Some("token%3Dsecret%0A"), vec![]), TIMEOUT);
        assert_eq!(
            unavailable,
            verdict(
                Outcome::Failure,
                "health rpc probe failed: UNAVAILABLE",
                Some("health rpc probe failed: UNAVAILABLE: token=secret")
            )
        );
        let deadline = judge(&answer("4", Some("Deadline Exceeded"), vec![]), TIMEOUT);
        assert_eq!(
            deadline,
            verdict(
                Outcome::Timeout,
                "health rpc did not complete within 1s (DEADLINE_EXCEEDED)",
                Some(
                    "health rpc did not complete within 1s (DEADLINE_EXCEEDED): Deadline Exceeded"
                )
            )
        );
        let beyond = judge(&answer("99", None, vec![]), TIMEOUT);
        assert_eq!(beyond.message, "health rpc probe failed: code 99");
        // An OK status cannot make a broken message pass.
        let empty = judge(&answer("0", None, vec![]), TIMEOUT);
        assert_eq!(
            empty,
            verdict(
                Outcome::Failure,
                "health rpc probe failed: no HealthCheckResponse in the answer",
                None
            )
        );
    }

    #[test]
    fn answers_without_a_grpc_status_fail() {
        let mut plain = CheckAnswer {
            http_status: 404,
            ..CheckAnswer::default()
        };
        assert_eq!(
            judge(&plain, TIMEOUT).message,
            "health rpc probe failed: HTTP status 404 without grpc-status"
        );
        plain.http_status = 200;
        plain.data = framed(&[0x08, 1]);
        assert_eq!(
            judge(&plain, TIMEOUT).message,
            "health rpc probe failed: the answer has no grpc-status"
        );
        let garbled = judge(&answer("OK", None, vec![]), TIMEOUT);
        assert_eq!(
            garbled,
            verdict(
                Outcome::Failure,
                "health rpc probe failed: malformed grpc-status",
                Some("health rpc probe failed: malformed grpc-status: 'OK'")
            )
        );
    }

    #[test]
    fn grpc_messages_are_percent_decoded_on_one_line() {
        let cases = [
            ("plain text", "plain text"),
            ("caf%C3%A9", "café"),
            ("100%25", "100%"),
            ("broken %zz and %4", "broken %zz and %4"),
            ("line%0Abreak", "line break"),
            ("bad utf-8 %FF", "bad utf-8 \u{fffd}"),
        ];
        for (raw, decoded) in cases {
            assert_eq!(decode_grpc_message(raw.as_bytes()), decoded, "{raw}");
        }
    }

    #[test]
    fn the_grpc_timeout_fits_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_millis(300)), "300m");
        assert_eq!(grpc_timeout(Duration::from_secs(1)), "1000m");
        assert_eq!(grpc_timeout(Duration::ZERO), "1m");
        assert_eq!(grpc_timeout(Duration::from_secs(200_000)), "200000S");
    }
}
