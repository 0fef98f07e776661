//! JSON as pyinit writes it: the drill's report and the log's JSON lines. Pure, and small on
//! purpose: pyinit writes a few flat objects and never reads JSON, so a serializer crate would
//! cost more binary than it saves code.
//!
//! [`JsonObject`] adds `"key":value` fields in order; any [`JsonValue`] goes in as a value:
//! numbers and booleans as themselves, strings escaped, `None` as `null`, slices as arrays and
//! objects nested.

use std::fmt::Write as _;

/// Something that writes itself as one JSON value.
pub trait JsonValue {
    fn write_json(&self, out: &mut String);
}

macro_rules! json_number {
    ($($number:ty),*) => {$(
        impl JsonValue for $number {
            fn write_json(&self, out: &mut String) {
                write_display(out, self);
            }
        }
    )*};
}

json_number!(bool, u8, u32, u64, u128, usize);

fn write_display(out: &mut String, value: &dyn std::fmt::Display) {
    let _ = write!(out, "{value}");
}

impl JsonValue for str {
    fn write_json(&self, out: &mut String) {
        push_json_string(out, self);
    }
}

impl JsonValue for String {
    fn write_json(&self, out: &mut String) {
        push_json_string(out, self);
    }
}

impl<T: JsonValue + ?Sized> JsonValue for &T {
    fn write_json(&self, out: &mut String) {
        (**self).write_json(out);
    }
}

impl<T: JsonValue> JsonValue for Option<T> {
    fn write_json(&self, out: &mut String) {
        match self {
            Some(value) => value.write_json(out),
            None => out.push_str("null"),
        }
    }
}

impl<T: JsonValue> JsonValue for [T] {
    fn write_json(&self, out: &mut String) {
        out.push('[');
        for (index, value) in self.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            value.write_json(out);
        }
        out.push(']');
    }
}

impl<T: JsonValue> JsonValue for Vec<T> {
    fn write_json(&self, out: &mut String) {
        self.as_slice().write_json(out);
    }
}

/// A JSON object written as its fields are added, in that order.
#[derive(Debug)]
pub struct JsonObject {
    /// `{` and the fields so far, without the closing brace.
    text: String,
}

impl JsonObject {
    pub fn new() -> Self {
        JsonObject {
            text: String::from("{"),
        }
    }

    /// Adds `"key":value`.
    pub fn field(&mut self, key: &str, value: impl JsonValue) -> &mut Self {
        self.add_field(key, &value);
        self
    }

    // One copy of the code for every type of value: the binary stays small.
    fn add_field(&mut self, key: &str, value: &dyn JsonValue) {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        push_json_string(&mut self.text, key);
        self.text.push(':');
        value.write_json(&mut self.text);
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

impl JsonValue for JsonObject {
    fn write_json(&self, out: &mut String) {
        out.push_str(&self.text);
        out.push('}');
    }
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
        let mut inner = JsonObject::new();
        inner.field("n", 7_u64).field("none", None::<u8>);
        let mut outer = JsonObject::new();
        outer
            .field("passed", true)
            .field("name", "a \"quoted\"\nline")
            .field("list", vec!["x".to_owned(), "y".to_owned()])
            .field("empty", Vec::<u32>::new())
            .field("inner", Some(inner));
        assert_eq!(
            outer.finish(),
            r#"{"passed":true,"name":"a \"quoted\"\nline","list":["x","y"],"empty":[],"inner":{"n":7,"none":null}}"#
        );
        assert_eq!(JsonObject::new().finish(), "{}");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut line = String::new();
        push_json_string(&mut line, "a\u{1}b\\c\u{7f}é\r\n\u{8}\u{c}\t");
        assert_eq!(line, "\"a\\u0001b\\\\c\u{7f}é\\r\\n\\b\\f\\t\"");
    }
}
