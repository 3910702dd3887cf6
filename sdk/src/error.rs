//! Why a token was refused. Every variant has a stable [`VerifyError::err_name`]
//! (the `error=` field of the WARN log line, listed in the guide) and maps to
//! one HTTP answer in [`crate::challenge`].

/// Why [`crate::Verifier::verify`] refused a token.
///
/// `Display` is the detailed reason for logs; it may quote claim values but
/// never the token. [`VerifyError::description`] is the short, fixed text sent
/// to the client in `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("not a compact JWS: {0}")]
    Malformed(&'static str),
    /// RFC 8725 §3.1: the algorithm is fixed by us, never taken from the token.
    #[error("alg {0:?} is not accepted (only ES256)")]
    UnsupportedAlg(String),
    /// RFC 8725 §3.11 / RFC 9068 §4: `typ` must be `at+jwt`.
    #[error("typ {0:?} is not at+jwt")]
    WrongType(Option<String>),
    /// RFC 8725 §3.10: keys come from the issuer's JWKS only.
    #[error("header parameter {0:?} is not accepted")]
    ForbiddenHeader(&'static str),
    #[error("header has no kid")]
    MissingKid,
    #[error("kid {0:?} is not in the issuer's JWKS")]
    UnknownKid(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("iss {got:?} is not the configured issuer {expected:?}")]
    WrongIssuer { got: String, expected: String },
    #[error("aud {got:?} does not contain this resource {expected:?}")]
    WrongAudience { got: Vec<String>, expected: String },
    #[error("expired at {exp} (now {now}, leeway {leeway}s)")]
    Expired { exp: i64, now: i64, leeway: i64 },
    #[error("not valid before {nbf} (now {now}, leeway {leeway}s)")]
    NotYetValid { nbf: i64, now: i64, leeway: i64 },
    #[error("issued in the future at {iat} (now {now}, leeway {leeway}s)")]
    IssuedInFuture { iat: i64, now: i64, leeway: i64 },
    #[error("claim {0:?} is missing or has the wrong type")]
    MissingClaim(&'static str),
    /// RFC 9449 §7.1: a DPoP-bound token presented as a bearer token.
    #[error("token is DPoP-bound (cnf.jkt) but was sent as a Bearer token")]
    DpopBound,
    /// The resource requires DPoP and a bearer token was sent.
    #[error("this resource requires DPoP-bound tokens; a Bearer token was sent")]
    DpopRequired,
    /// A DPoP proof (or its binding to the token) failed one rule.
    #[error("DPoP: {}", .0.detail)]
    Dpop(authplane_core::dpop::DpopError),
    /// No key set could be fetched to answer for this token: none was ever
    /// fetched, or the refetch for an unknown `kid` failed.
    #[error("no JWKS available: {0}")]
    KeysUnavailable(String),
    /// The refetch for an unknown `kid` did not complete in time (the AS is
    /// slow or hangs); it goes on in the background.
    #[error("JWKS refetch for an unknown kid did not complete within {timeout_ms} ms")]
    KeysRefreshTimeout { timeout_ms: u64 },
    /// The cached keys are older than the maximum age and could not be
    /// refreshed: they are no longer trusted.
    #[error("cached JWKS is {age} s old, more than the maximum of {max_age} s, and could not be refreshed")]
    KeysStale { age: i64, max_age: i64 },
}

impl VerifyError {
    /// The stable error name used in logs and the error catalog.
    pub fn err_name(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) => "ErrMalformedToken",
            VerifyError::UnsupportedAlg(_) => "ErrUnsupportedAlg",
            VerifyError::WrongType(_) => "ErrWrongTokenType",
            VerifyError::ForbiddenHeader(_) => "ErrForbiddenHeader",
            VerifyError::MissingKid => "ErrMissingKid",
            VerifyError::UnknownKid(_) => "ErrUnknownKid",
            VerifyError::BadSignature => "ErrInvalidSignature",
            VerifyError::WrongIssuer { .. } => "ErrWrongIssuer",
            VerifyError::WrongAudience { .. } => "ErrWrongAudience",
            VerifyError::Expired { .. } => "ErrTokenExpired",
            VerifyError::NotYetValid { .. } => "ErrTokenNotYetValid",
            VerifyError::IssuedInFuture { .. } => "ErrTokenIssuedInFuture",
            VerifyError::MissingClaim(_) => "ErrMissingClaim",
            VerifyError::DpopBound => "ErrDpopBoundToken",
            VerifyError::DpopRequired => "ErrDpopRequired",
            VerifyError::Dpop(e) => e.reason.err_name(),
            VerifyError::KeysUnavailable(_) => "ErrJwksUnavailable",
            VerifyError::KeysRefreshTimeout { .. } => "ErrJwksRefreshTimeout",
            VerifyError::KeysStale { .. } => "ErrJwksStale",
        }
    }

    /// The OAuth error code (RFC 6750 §3.1) the client sees.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::KeysUnavailable(_)
            | VerifyError::KeysRefreshTimeout { .. }
            | VerifyError::KeysStale { .. } => "temporarily_unavailable",
            // RFC 9449 §7.1: a proof problem is `invalid_dpop_proof`.
            VerifyError::Dpop(_) => "invalid_dpop_proof",
            _ => "invalid_token",
        }
    }

    /// A fixed, client-safe `error_description` (RFC 6750 §3: only
    /// `%x20-21 / %x23-5B / %x5D-7E`, so no claim values are echoed).
    pub fn description(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) => "The access token is not a well-formed JWT",
            VerifyError::UnsupportedAlg(_) => "The access token must be signed with ES256",
            VerifyError::WrongType(_) => "The access token must have typ at+jwt",
            VerifyError::ForbiddenHeader(_) => "The access token header carries a key reference that is not accepted",
            VerifyError::MissingKid => "The access token header has no kid",
            VerifyError::UnknownKid(_) => {
                "The access token was signed by a key the authorization server does not publish"
            }
            VerifyError::BadSignature => "The access token signature is invalid",
            VerifyError::WrongIssuer { .. } => "The access token was issued by another authorization server",
            VerifyError::WrongAudience { .. } => "The access token audience does not include this resource",
            VerifyError::Expired { .. } => "The access token expired",
            VerifyError::NotYetValid { .. } => "The access token is not valid yet",
            VerifyError::IssuedInFuture { .. } => "The access token was issued in the future",
            VerifyError::MissingClaim(_) => "The access token lacks a required claim",
            VerifyError::DpopBound => {
                "The access token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof"
            }
            VerifyError::DpopRequired => "This resource requires a DPoP-bound access token and a DPoP proof",
            VerifyError::Dpop(e) => {
                use authplane_core::dpop::Reason;
                match e.reason {
                    Reason::Replay => "The DPoP proof was already used",
                    Reason::HtuMismatch => "The DPoP proof htu is not the URL of this request",
                    Reason::HtmMismatch => "The DPoP proof htm is not the method of this request",
                    Reason::Iat => "The DPoP proof iat is outside the accepted window",
                    Reason::Signature => "The DPoP proof signature is invalid",
                    Reason::Alg => "The DPoP proof alg is not accepted",
                    Reason::Nonce => "The DPoP proof nonce is missing or stale",
                    Reason::Ath => "The DPoP proof ath is not the hash of the access token",
                    Reason::KeyMismatch => "The DPoP proof key is not the key the access token is bound to",
                    Reason::Malformed => "The DPoP proof is missing or malformed",
                }
            }
            VerifyError::KeysUnavailable(_) => "The authorization server keys could not be fetched",
            VerifyError::KeysRefreshTimeout { .. } => "The authorization server keys could not be fetched in time",
            VerifyError::KeysStale { .. } => "The cached authorization server keys are too old to be trusted",
        }
    }

    /// The `reason` label of a DPoP refusal (the AS's metric labels).
    pub fn dpop_reason(&self) -> Option<&'static str> {
        match self {
            VerifyError::Dpop(e) => Some(e.reason.label()),
            VerifyError::DpopBound | VerifyError::DpopRequired => Some("malformed"),
            _ => None,
        }
    }

    /// True when the refusal is about DPoP, so the challenge names that scheme's error.
    pub(crate) fn is_dpop(&self) -> bool {
        matches!(self, VerifyError::Dpop(_) | VerifyError::DpopRequired)
    }

    /// True when the fault is ours (or the AS's), not the token's.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            VerifyError::KeysUnavailable(_) | VerifyError::KeysRefreshTimeout { .. } | VerifyError::KeysStale { .. }
        )
    }
}

/// Why fetching the AS metadata or JWKS failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("GET {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("GET {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: response larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("GET {url}: not the expected JSON document: {reason}")]
    Json { url: String, reason: String },
    /// RFC 8414 §3.3: the metadata's `issuer` must equal the issuer it was fetched for.
    #[error(
        "metadata at {url} names issuer {got:?}, expected {expected:?} (check the issuer passed to the SDK and AUTHPLANE_SERVER_ISSUER)"
    )]
    IssuerMismatch { url: String, got: String, expected: String },
    #[error("JWKS at {url} has no usable ES256 P-256 signing key")]
    NoUsableKeys { url: String },
}

impl FetchError {
    pub fn err_name(&self) -> &'static str {
        match self {
            FetchError::Http { .. }
            | FetchError::Status { .. }
            | FetchError::TooLarge { .. }
            | FetchError::Json { .. } => "ErrJwksFetch",
            FetchError::IssuerMismatch { .. } => "ErrIssuerMismatch",
            FetchError::NoUsableKeys { .. } => "ErrJwksEmpty",
        }
    }
}
