//! OAuth errors: one enum, each variant with a stable `ErrName` (logs and
//! docs/reference/errors.md), its RFC error code, HTTP status and metric
//! reason. `http/` turns it into RFC 6749 §5.2 JSON or an error redirect.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    InvalidPkce,
    CodeReplay,
    RefreshReuse,
    RedirectUriMismatch,
    RedirectUriChanged,
    UnknownClient,
    InvalidTarget,
    InvalidScope,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    AccessDenied,
    LoginFailed,
    InvalidClientMetadata,
    InvalidRedirectUri,
    RegistrationDisabled,
    InvalidToken,
    ServerError,
    TemporarilyUnavailable,
    LoginThrottled,
    ClientThrottled,
    RateLimited,
    Overloaded,
    /// RFC 9449 §5.2: a DPoP proof is missing or fails a rule.
    InvalidDpopProof,
    /// RFC 9449 §8: the proof needs a (fresh) server nonce.
    UseDpopNonce,
    /// Sign-in through an identity provider failed (the page says why).
    UpstreamLoginFailed,
}

impl Kind {
    /// The stable name in logs (`error=ErrInvalidPKCE`) and the error catalog.
    pub fn name(self) -> &'static str {
        match self {
            Kind::InvalidRequest => "ErrInvalidRequest",
            Kind::InvalidClient => "ErrInvalidClient",
            Kind::InvalidGrant => "ErrInvalidGrant",
            Kind::InvalidPkce => "ErrInvalidPKCE",
            Kind::CodeReplay => "ErrCodeReplay",
            Kind::RefreshReuse => "ErrRefreshReuse",
            Kind::RedirectUriMismatch => "ErrRedirectURIMismatch",
            Kind::RedirectUriChanged => "ErrRedirectURIChanged",
            Kind::UnknownClient => "ErrUnknownClient",
            Kind::InvalidTarget => "ErrInvalidTarget",
            Kind::InvalidScope => "ErrInvalidScope",
            Kind::UnauthorizedClient => "ErrUnauthorizedClient",
            Kind::UnsupportedGrantType => "ErrUnsupportedGrantType",
            Kind::UnsupportedResponseType => "ErrUnsupportedResponseType",
            Kind::AccessDenied => "ErrAccessDenied",
            Kind::LoginFailed => "ErrLoginFailed",
            Kind::InvalidClientMetadata => "ErrInvalidClientMetadata",
            Kind::InvalidRedirectUri => "ErrInvalidRedirectURI",
            Kind::RegistrationDisabled => "ErrRegistrationDisabled",
            Kind::InvalidToken => "ErrInvalidToken",
            Kind::ServerError => "ErrServer",
            Kind::TemporarilyUnavailable => "ErrTemporarilyUnavailable",
            Kind::LoginThrottled => "ErrLoginThrottled",
            Kind::ClientThrottled => "ErrClientThrottled",
            Kind::RateLimited => "ErrRateLimited",
            Kind::Overloaded => "ErrOverloaded",
            Kind::InvalidDpopProof => "ErrDpopInvalidProof",
            Kind::UseDpopNonce => "ErrDpopNonce",
            Kind::UpstreamLoginFailed => "ErrUpstreamLogin",
        }
    }

    /// The OAuth `error` code (RFC 6749 §4.1.2.1, §5.2; RFC 7591 §3.2.2; RFC 8707 §2).
    pub fn code(self) -> &'static str {
        match self {
            Kind::InvalidRequest | Kind::RedirectUriMismatch | Kind::UnknownClient => "invalid_request",
            Kind::InvalidClient => "invalid_client",
            Kind::InvalidGrant
            | Kind::InvalidPkce
            | Kind::CodeReplay
            | Kind::RefreshReuse
            | Kind::RedirectUriChanged => "invalid_grant",
            Kind::InvalidTarget => "invalid_target",
            Kind::InvalidScope => "invalid_scope",
            Kind::UnauthorizedClient => "unauthorized_client",
            Kind::UnsupportedGrantType => "unsupported_grant_type",
            Kind::UnsupportedResponseType => "unsupported_response_type",
            Kind::AccessDenied | Kind::LoginFailed | Kind::RegistrationDisabled | Kind::UpstreamLoginFailed => {
                "access_denied"
            }
            Kind::InvalidClientMetadata => "invalid_client_metadata",
            Kind::InvalidRedirectUri => "invalid_redirect_uri",
            Kind::InvalidToken => "invalid_token",
            Kind::ServerError => "server_error",
            Kind::TemporarilyUnavailable
            | Kind::LoginThrottled
            | Kind::ClientThrottled
            | Kind::RateLimited
            | Kind::Overloaded => "temporarily_unavailable",
            Kind::InvalidDpopProof => "invalid_dpop_proof",
            Kind::UseDpopNonce => "use_dpop_nonce",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Kind::InvalidClient | Kind::InvalidToken => 401,
            Kind::RegistrationDisabled | Kind::AccessDenied => 403,
            Kind::ServerError => 500,
            Kind::TemporarilyUnavailable | Kind::Overloaded => 503,
            Kind::LoginThrottled | Kind::ClientThrottled | Kind::RateLimited => 429,
            _ => 400,
        }
    }

    /// The `reason` label of `authserver_auth_denied_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Kind::InvalidRequest | Kind::UnknownClient | Kind::InvalidClientMetadata | Kind::InvalidRedirectUri => {
                "invalid_request"
            }
            Kind::InvalidClient | Kind::InvalidToken => "invalid_client",
            Kind::InvalidGrant => "invalid_grant",
            Kind::InvalidPkce => "invalid_pkce",
            Kind::CodeReplay => "code_replay",
            Kind::RefreshReuse => "refresh_reuse",
            Kind::RedirectUriMismatch | Kind::RedirectUriChanged => "redirect_uri_mismatch",
            Kind::InvalidTarget => "invalid_target",
            Kind::InvalidScope => "invalid_scope",
            Kind::UnauthorizedClient | Kind::RegistrationDisabled => "unauthorized_client",
            Kind::UnsupportedGrantType => "unsupported_grant_type",
            Kind::UnsupportedResponseType => "unsupported_response_type",
            Kind::AccessDenied => "access_denied",
            Kind::LoginFailed => "login_failed",
            Kind::ServerError | Kind::TemporarilyUnavailable => "server_error",
            Kind::LoginThrottled => "login_throttled",
            Kind::ClientThrottled => "client_auth_throttled",
            Kind::RateLimited => "rate_limited",
            Kind::Overloaded => "overloaded",
            Kind::InvalidDpopProof | Kind::UseDpopNonce => "invalid_dpop_proof",
            Kind::UpstreamLoginFailed => "upstream_login_failed",
        }
    }
}

/// An OAuth failure with a human description (never a secret).
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub description: String,
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    pub retry_after: Option<u64>,
    /// The DPoP rule that failed, when one did: its `ErrDpop…` name replaces
    /// the kind's in logs, and it is counted in
    /// `authplane_dpop_proofs_rejected_total{reason}`.
    pub dpop: Option<authplane_core::dpop::Reason>,
    /// A fresh `DPoP-Nonce` header value to send with the answer.
    pub dpop_nonce: Option<String>,
    /// What failed underneath (a storage error): its log name and detail.
    /// Logged once by the HTTP layer when it answers; never sent.
    pub cause: Option<Box<(&'static str, String)>>,
}

impl Error {
    pub fn new(kind: Kind, description: impl Into<String>) -> Self {
        Error { kind, description: description.into(), retry_after: None, dpop: None, dpop_nonce: None, cause: None }
    }

    /// A refused DPoP proof: `use_dpop_nonce` for a nonce problem,
    /// `invalid_dpop_proof` naming the rule otherwise.
    pub fn dpop(e: authplane_core::dpop::DpopError) -> Self {
        let kind =
            if e.reason == authplane_core::dpop::Reason::Nonce { Kind::UseDpopNonce } else { Kind::InvalidDpopProof };
        Error { dpop: Some(e.reason), ..Error::new(kind, e.detail) }
    }

    /// Marks an error of another kind (e.g. `invalid_grant` for a key that
    /// does not match a binding) as a DPoP rejection.
    pub fn with_dpop_reason(mut self, reason: authplane_core::dpop::Reason) -> Self {
        self.dpop = Some(reason);
        self
    }

    /// The stable name for logs: the DPoP rule's when one failed.
    pub fn name(&self) -> &'static str {
        self.dpop.map_or(self.kind.name(), |r| r.err_name())
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.kind.name(), self.kind.code(), self.description)
    }
}

impl std::error::Error for Error {}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        let detail = crate::store::one_line(&e.to_string());
        match e {
            StoreError::Corrupt(_) => Error {
                cause: Some(Box::new(("ErrCorruptRow", detail))),
                ..Error::new(Kind::ServerError, "stored data cannot be read; see the server log")
            },
            _ => Error {
                cause: Some(Box::new(("ErrDatabase", detail))),
                ..Error::new(Kind::TemporarilyUnavailable, "storage is unavailable; retry later")
            },
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        crate::store::StoreError::from(e).into()
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant; the match below fails to compile when one is added
    /// without being listed here.
    const ALL: [Kind; 29] = [
        Kind::InvalidRequest,
        Kind::InvalidClient,
        Kind::InvalidGrant,
        Kind::InvalidPkce,
        Kind::CodeReplay,
        Kind::RefreshReuse,
        Kind::RedirectUriMismatch,
        Kind::RedirectUriChanged,
        Kind::UnknownClient,
        Kind::InvalidTarget,
        Kind::InvalidScope,
        Kind::UnauthorizedClient,
        Kind::UnsupportedGrantType,
        Kind::UnsupportedResponseType,
        Kind::AccessDenied,
        Kind::LoginFailed,
        Kind::InvalidClientMetadata,
        Kind::InvalidRedirectUri,
        Kind::RegistrationDisabled,
        Kind::InvalidToken,
        Kind::ServerError,
        Kind::TemporarilyUnavailable,
        Kind::LoginThrottled,
        Kind::ClientThrottled,
        Kind::RateLimited,
        Kind::Overloaded,
        Kind::InvalidDpopProof,
        Kind::UseDpopNonce,
        Kind::UpstreamLoginFailed,
    ];

    #[test]
    fn the_error_catalog_lists_every_error_with_its_code_and_reason() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/reference/errors.md")).unwrap();
        for k in ALL {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", k.name())))
                .unwrap_or_else(|| panic!("{} missing from errors.md", k.name()));
            assert!(row.contains(&format!("`{}`", k.code())), "{}: code {} not in {row}", k.name(), k.code());
            assert!(row.contains(&format!("| `{}` |", k.reason())), "{}: reason {} not in {row}", k.name(), k.reason());
            assert!(
                crate::metrics::DENIAL_REASONS.contains(&k.reason()),
                "{} is not a pre-registered reason",
                k.reason()
            );
        }
        let names: std::collections::HashSet<_> = ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), ALL.len(), "names are unique");
    }

    #[test]
    fn all_is_exhaustive() {
        // Adding a variant makes this match non-exhaustive: add it to ALL too.
        for k in ALL {
            match k {
                Kind::InvalidRequest
                | Kind::InvalidClient
                | Kind::InvalidGrant
                | Kind::InvalidPkce
                | Kind::CodeReplay
                | Kind::RefreshReuse
                | Kind::RedirectUriMismatch
                | Kind::RedirectUriChanged
                | Kind::UnknownClient
                | Kind::InvalidTarget
                | Kind::InvalidScope
                | Kind::UnauthorizedClient
                | Kind::UnsupportedGrantType
                | Kind::UnsupportedResponseType
                | Kind::AccessDenied
                | Kind::LoginFailed
                | Kind::InvalidClientMetadata
                | Kind::InvalidRedirectUri
                | Kind::RegistrationDisabled
                | Kind::InvalidToken
                | Kind::ServerError
                | Kind::TemporarilyUnavailable
                | Kind::LoginThrottled
                | Kind::ClientThrottled
                | Kind::RateLimited
                | Kind::Overloaded
                | Kind::InvalidDpopProof
                | Kind::UseDpopNonce
                | Kind::UpstreamLoginFailed => {}
            }
        }
    }
}
