//! logfmt: `time=… level=… msg=… key=value …`, so `grep trace_id=…` works.

use std::fmt::Write as _;

use crate::Value;

/// `time=… level=… msg=…` and the fields, newline included.
pub fn line(time: &str, level: &str, msg: &str, fields: &[(&str, Value)]) -> String {
    let mut out = String::with_capacity(160);
    let _ = write!(out, "time={time} level={level} msg=");
    push_value(&mut out, msg);
    push_fields(&mut out, fields);
    out.push('\n');
    out
}

/// ` key=value` for each field: text as [`push_value`], numbers and booleans
/// as they print (`3`, `-4`, `1.5`, `true`).
pub fn push_fields(out: &mut String, fields: &[(&str, Value)]) {
    for (k, v) in fields {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        match v {
            Value::Str(s) => push_value(out, s),
            Value::I64(n) => {
                let _ = write!(out, "{n}");
            }
            Value::U64(n) => {
                let _ = write!(out, "{n}");
            }
            Value::F64(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
        }
    }
}

/// The value as is, or [quoted](push_quoted) when it is empty or holds a
/// space, `=`, a quote or a control character.
pub fn push_value(out: &mut String, s: &str) {
    let needs_quotes = s.is_empty() || s.chars().any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
    if needs_quotes {
        push_quoted(out, s);
    } else {
        out.push_str(s);
    }
}

/// The value in quotes, escaping `"`, `\` and control characters (`\n`,
/// `\r`, `\t`, else `\u{…}`) so one event stays one line.
pub fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let line = line(
            "T",
            "ERROR",
            "token issuance failed",
            &[
                ("error", Value::Str("ErrInvalidPKCE".into())),
                ("n", Value::U64(3)),
                ("d", Value::I64(-4)),
                ("ms", Value::F64(0.25)),
                ("ok", Value::Bool(true)),
                ("kind", Value::Str("AuthServer".into())),
                ("note", Value::Str("a b=\"c\"".into())),
                ("multi", Value::Str("a \"b\"\nc\\d\te\u{1}".into())),
                ("empty", Value::Str(String::new())),
                ("url", Value::Str("http://h/p?q=1".into())),
            ],
        );
        assert_eq!(
            line,
            "time=T level=ERROR msg=\"token issuance failed\" error=ErrInvalidPKCE n=3 d=-4 ms=0.25 ok=true \
             kind=AuthServer note=\"a b=\\\"c\\\"\" multi=\"a \\\"b\\\"\\nc\\\\d\\te\\u{1}\" empty=\"\" url=\"http://h/p?q=1\"\n"
        );
        assert_eq!(super::line("t", "INFO", "reconciled", &[]), "time=t level=INFO msg=reconciled\n");
    }
}
