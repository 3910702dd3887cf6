//! JSON: one object a line, `time`, `level`, `msg` first, then the fields in
//! their order.

use std::fmt::Write as _;

use crate::Value;

/// The object for one event, newline included. A field named `time`,
/// `level` or `msg` is written as well (the key is then there twice); a
/// non-finite float is `null`.
pub fn line(time: &str, level: &str, msg: &str, fields: &[(&str, Value)]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::with_capacity(200);
    let _ = write!(out, "{{\"time\":{},\"level\":{},\"msg\":{}", q(time), q(level), q(msg));
    for (k, v) in fields {
        let _ = write!(out, ",{}:", q(k));
        match v {
            Value::Str(s) => out.push_str(&q(s)),
            Value::I64(n) => {
                let _ = write!(out, "{n}");
            }
            Value::U64(n) => {
                let _ = write!(out, "{n}");
            }
            Value::F64(n) if n.is_finite() => {
                let _ = write!(out, "{n}");
            }
            Value::F64(_) => out.push_str("null"),
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_one_valid_object() {
        let line = line(
            "T",
            "INFO",
            "hi",
            &[("ok", Value::Bool(true)), ("s", Value::Str("x\ny".into())), ("n", Value::F64(f64::NAN))],
        );
        assert_eq!(line, "{\"time\":\"T\",\"level\":\"INFO\",\"msg\":\"hi\",\"ok\":true,\"s\":\"x\\ny\",\"n\":null}\n");
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "hi");
        assert_eq!(v["ok"], true);
        assert_eq!(v["s"], "x\ny");
    }
}
