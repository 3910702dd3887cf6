//! Scope tokens (RFC 6749 §3.3).

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Splits a space-delimited `scope` parameter, dropping empty items and duplicates
/// while keeping the client's order.
pub fn split(scope: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_tokens() {
        assert!(is_valid_scope_token("tools/read"));
        assert!(is_valid_scope_token("offline_access"));
        assert!(!is_valid_scope_token(""));
        assert!(!is_valid_scope_token("a b"));
        assert!(!is_valid_scope_token("quote\"d"));
        assert!(!is_valid_scope_token("back\\slash"));
        assert!(!is_valid_scope_token("naïve"));
    }

    #[test]
    fn split_keeps_order_and_drops_duplicates() {
        assert_eq!(split("b  a b "), vec!["b", "a"]);
        assert!(split("").is_empty());
    }
}
