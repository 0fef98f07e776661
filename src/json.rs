//! JSON as pyinit writes it: the drill's report and the log's JSON lines. Pure, and small on
//! purpose: pyinit writes a few flat objects and never reads JSON, so a serializer crate would
//! cost more binary than it saves code.
//!
//! [`object`] writes `{"key":value,...}` from a list of fields, [`array`] a list of values, each
//! a [`JsonValue`]: `null`, a boolean, a number, a string (escaped), or a nested object or array
//! already written. The fields are a list, not a chain of calls, so that the writer is two
//! small functions in the binary, whatever the report holds.

use std::fmt::Write as _;

/// One JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonValue<'a> {
    Null,
    Bool(bool),
    Number(u128),
    String(&'a str),
    /// JSON text already written: a nested [`object`] or [`array`].
    Written(String),
}

impl JsonValue<'_> {
    /// A number, or `null` for `None`.
    pub fn number_or_null(value: Option<u128>) -> Self {
        value.map_or(JsonValue::Null, JsonValue::Number)
    }

    fn write(&self, out: &mut String) {
        match self {
            JsonValue::Null => out.push_str("null"),
            JsonValue::Bool(value) => {
                let _ = write!(out, "{value}");
            }
            JsonValue::Number(value) => {
                let _ = write!(out, "{value}");
            }
            JsonValue::String(text) => push_json_string(out, text),
            JsonValue::Written(json) => out.push_str(json),
        }
    }
}

impl<'a> JsonValue<'a> {
    /// A string, or `null` for `None`.
    pub fn string_or_null(value: Option<&'a str>) -> Self {
        value.map_or(JsonValue::Null, JsonValue::String)
    }
}

/// `{"key":value,...}`, the fields in the order given.
pub fn object(fields: &[(&str, JsonValue<'_>)]) -> String {
    let mut out = String::from("{");
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_string(&mut out, key);
        out.push(':');
        value.write(&mut out);
    }
    out.push('}');
    out
}

/// `[value,...]`.
pub fn array(values: &[JsonValue<'_>]) -> String {
    let mut out = String::from("[");
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        value.write(&mut out);
    }
    out.push(']');
    out
}

/// `text` as a JSON string: quotes, backslashes and control characters escaped.
pub fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            control if control < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(control));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_nest_with_every_kind_of_value() {
        let inner = object(&[
            ("n", JsonValue::Number(7)),
            ("none", JsonValue::string_or_null(None)),
        ]);
        let listed = array(&[JsonValue::String("x"), JsonValue::String("y")]);
        let outer = object(&[
            ("passed", JsonValue::Bool(true)),
            ("name", JsonValue::String("a \"quoted\"\nline")),
            ("list", JsonValue::Written(listed)),
            ("empty", JsonValue::Written(array(&[]))),
            ("inner", JsonValue::Written(inner)),
            ("null", JsonValue::number_or_null(None)),
        ]);
        assert_eq!(
            outer,
            concat!(
                r#"{"passed":true,"name":"a \"quoted\"\nline","list":["x","y"],"empty":[],"#,
                r#""inner":{"n":7,"none":null},"null":null}"#
            )
        );
        assert_eq!(object(&[]), "{}");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut line = String::new();
        push_json_string(&mut line, "a\u{1}b\\c\u{7f}é\r\n\u{8}\u{c}\t");
        assert_eq!(line, "\"a\\u0001b\\\\c\u{7f}é\\r\\n\\b\\f\\t\"");
    }
}
