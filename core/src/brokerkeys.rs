//! The token broker's key file, `broker.keys`: one `<key id> <base64 of 32
//! bytes>` per line, `#` comments and blank lines ignored; the first key
//! encrypts, every key decrypts. The server reads it; the operator and the
//! server (without `broker.encryption_key_file`) write it; both through here.

/// The key of the file in the operator's Secret and its name on disk.
pub const FILE_NAME: &str = "broker.keys";
/// The comment a written file starts with.
pub const HEADER: &str = "# AuthPlane token broker keys: `<key id> <base64>`, the first encrypts; add new keys on top";

/// The key lines, with their 1-based line numbers, trimmed.
pub fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// A key line as (key id, base64 key); `None` when it is not two fields.
pub fn split(line: &str) -> Option<(&str, &str)> {
    line.split_once(char::is_whitespace).map(|(kid, b64)| (kid, b64.trim()))
}

/// One key line.
pub fn line(kid: &str, b64: &str) -> String {
    format!("{kid} {b64}")
}

/// A new file holding one key.
pub fn file(kid: &str, b64: &str) -> String {
    format!("{HEADER}\n{}\n", line(kid, b64))
}

/// The id of a key made at `unix` seconds (`k<unix>`), as the server and
/// the operator name the keys they make.
pub fn made_id(unix: i64) -> String {
    format!("k{unix}")
}

/// When a key with a [`made_id`] was made; `None` for another id.
pub fn made_at(kid: &str) -> Option<i64> {
    kid.strip_prefix('k').and_then(|t| t.parse().ok())
}

/// The id of the first (encrypting) key.
pub fn current_id(text: &str) -> Option<&str> {
    key_lines(text).next().and_then(|(_, l)| split(l).map(|(kid, _)| kid).or(Some(l)))
}

/// `text` with `new_line` as its first key, after the leading comments: the
/// new key encrypts, every older line still decrypts.
pub fn prepend(text: &str, new_line: &str) -> String {
    let header: Vec<&str> =
        text.lines().take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#')).collect();
    let mut out = String::new();
    for l in header.iter().copied().chain(std::iter::once(new_line)).chain(text.lines().skip(header.len())) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_goes_on_top_and_every_old_line_stays() {
        let first = file(&made_id(100), "AAAA");
        assert_eq!(current_id(&first), Some("k100"));
        assert_eq!(made_at("k100"), Some(100));
        let rotated = prepend(&first, &line("k200", "BBBB"));
        let lines: Vec<&str> = rotated.lines().collect();
        assert_eq!(lines, vec![HEADER, "k200 BBBB", "k100 AAAA"]);
        assert_eq!(current_id(&rotated), Some("k200"));
        assert_eq!(key_lines(&rotated).map(|(n, _)| n).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!((current_id("mykey AAAA\n"), made_at("mykey")), (Some("mykey"), None));
        assert_eq!(current_id("# only a comment\n\n"), None);
    }
}
