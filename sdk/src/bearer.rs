//! Reading the access token from `Authorization` headers (RFC 6750 §2.1,
//! RFC 9449 §7.1). Framework-neutral: callers pass the raw header values.

/// What the `Authorization` header(s) of a request hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credentials<'a> {
    /// No `Authorization` header, or one with another scheme (`Basic`):
    /// answered with a plain challenge.
    None,
    Bearer(&'a str),
    /// `Authorization: DPoP <token>` (RFC 9449 §7.1): needs a `DPoP` proof.
    Dpop(&'a str),
    /// RFC 6750 §3.1 `invalid_request`.
    Invalid(&'static str),
}

pub(crate) fn credentials<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Credentials<'a> {
    let Some(first) = values.next() else { return Credentials::None };
    if values.next().is_some() {
        return Credentials::Invalid("More than one Authorization header");
    }
    let Ok(value) = std::str::from_utf8(first) else {
        return Credentials::Invalid("The Authorization header is not valid text");
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    // RFC 9110 §11.1: the scheme is case-insensitive.
    let dpop = scheme.eq_ignore_ascii_case("DPoP");
    if !dpop && !scheme.eq_ignore_ascii_case("Bearer") {
        return Credentials::None;
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Credentials::Invalid(if dpop {
            "The DPoP credentials are empty"
        } else {
            "The Bearer credentials are empty"
        });
    }
    if token.contains(' ') {
        return Credentials::Invalid(if dpop {
            "The DPoP credentials contain a space"
        } else {
            "The Bearer credentials contain a space"
        });
    }
    if dpop { Credentials::Dpop(token) } else { Credentials::Bearer(token) }
}

/// A CORS preflight carries no credentials (Fetch standard), so it passes
/// through unauthenticated to whatever CORS handling the application has.
pub(crate) fn is_preflight(method: &str, has_origin: bool, has_acrm: bool) -> bool {
    method == "OPTIONS" && has_origin && has_acrm
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(values: &[&'static str]) -> Credentials<'static> {
        credentials(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(c(&[]), Credentials::None);
        assert_eq!(c(&["Bearer abc.def.ghi"]), Credentials::Bearer("abc.def.ghi"));
        assert_eq!(c(&["bearer   abc "]), Credentials::Bearer("abc"));
        assert_eq!(c(&["Basic dXNlcjpwYXNz"]), Credentials::None);
        assert_eq!(c(&["DPoP abc"]), Credentials::Dpop("abc"));
        assert_eq!(c(&["dpop abc"]), Credentials::Dpop("abc"));
        assert_eq!(c(&["Bearer"]), Credentials::Invalid("The Bearer credentials are empty"));
        assert_eq!(c(&["Bearer a b"]), Credentials::Invalid("The Bearer credentials contain a space"));
        assert!(matches!(c(&["Bearer a", "Bearer b"]), Credentials::Invalid(_)));
    }
}
