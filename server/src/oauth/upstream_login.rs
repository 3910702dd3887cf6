//! The two steps of a sign-in through an identity provider, for the pages in
//! `http/ui.rs`: [`start`] stores what the callback must check and returns
//! the provider URL; [`finish`] checks the callback, verifies what the
//! provider says, maps the person to a local user and opens a session.

use authplane_core::config::UpstreamConfig;

use super::Deps;
use super::error::Error;
use super::login::SignedIn;
use super::token::RequestIds;
use super::upstream::{self, Failure, Identity, Tokens};
use crate::random::{secret_token, secure_eq, sha256_hex};
use crate::store::audit::{self, AuditEvent};
use crate::store::{entries, oauth as rows};

/// How long the person has at the provider before the callback is refused.
pub const LOGIN_TTL: i64 = 10 * 60;

/// `<issuer>/ui/upstream/<id>/callback`: what people register at the provider.
pub fn redirect_uri(issuer: &str, upstream: &str) -> String {
    format!("{issuer}/ui/upstream/{upstream}/callback")
}

/// Stores the pending redirect for the sign-in request `auth_request_id` of
/// the browser whose flow cookie digests to `browser_sha256`, and returns the
/// provider's authorization URL. A provider that cannot be reached is the
/// inner error, with its `login_failed` audit row written.
pub async fn start(
    deps: &Deps,
    u: &UpstreamConfig,
    auth_request_id: &str,
    browser_sha256: &str,
    ids: &RequestIds,
    now: i64,
) -> Result<Result<String, Failure>, Error> {
    let endpoints = match deps.upstream.endpoints(u).await {
        Ok(e) => e,
        Err(f) => {
            audit_failure(deps, ids, u, &f).await;
            return Ok(Err(f));
        }
    };
    let state = secret_token();
    let nonce = secret_token();
    let (verifier, challenge) = upstream::pkce_pair();
    rows::insert_upstream_login(
        &deps.db,
        rows::UpstreamLoginRow {
            state_sha256: sha256_hex(state.as_bytes()),
            upstream_id: u.id.clone(),
            auth_request_id: auth_request_id.to_owned(),
            browser_sha256: browser_sha256.to_owned(),
            nonce: nonce.clone(),
            code_verifier: verifier,
            created_at: now,
            expires_at: now + LOGIN_TTL,
        },
    )
    .await?;
    let issuer = deps.config.load().server.issuer.clone();
    Ok(Ok(upstream::authorization_url(u, &endpoints, &redirect_uri(&issuer, &u.id), &state, &nonce, &challenge)))
}

/// The query of a callback from the provider.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A finished sign-in: the session, and the sign-in request to go on with.
#[derive(Debug)]
pub struct Finished {
    pub signed_in: SignedIn,
    pub auth_request_id: String,
    pub identity: Identity,
}

/// Checks a callback and signs the person in. A storage failure is the
/// outer error; a refusal the inner one, with its `login_failed` audit row
/// written (reason `upstream_*`).
pub async fn finish(
    deps: &Deps,
    u: &UpstreamConfig,
    cb: &Callback,
    browser_sha256: &str,
    ids: &RequestIds,
    now: i64,
) -> Result<Result<Finished, Failure>, Error> {
    let login = match cb.state.as_deref() {
        Some(s) if !s.is_empty() && s.len() <= 512 => {
            rows::take_upstream_login(&deps.db, &sha256_hex(s.as_bytes()), now).await?
        }
        _ => None,
    };
    let result = match login {
        None => Err(Failure::State("unknown, expired or already used state".into())),
        Some(l) if l.upstream_id != u.id => {
            Err(Failure::State(format!("state was issued for upstream {:?}", l.upstream_id)))
        }
        Some(l) if !secure_eq(l.browser_sha256.as_bytes(), browser_sha256.as_bytes()) => {
            Err(Failure::State("the callback reached another browser than the one that started".into()))
        }
        Some(l) => verify(deps, u, cb, &l, now).await.map(|(id, tokens)| (id, tokens, l.auth_request_id)),
    };
    let (identity, tokens, auth_request_id) = match result {
        Ok(x) => x,
        Err(f) => {
            audit_failure(deps, ids, u, &f).await;
            return Ok(Err(f));
        }
    };
    let user_id = identity.user_id(&u.id);
    entries::upsert_upstream_user(
        &deps.db,
        &u.id,
        &user_id,
        &user_id,
        identity.email.clone(),
        identity.name.clone(),
        now,
    )
    .await?;
    if u.store_tokens {
        super::broker::store_grant(deps, &user_id, u, &tokens, ids, now).await?;
    }
    let session = secret_token();
    let ttl = deps.config.load().oauth.login_session_ttl.as_secs() as i64;
    rows::insert_session(&deps.db, sha256_hex(session.as_bytes()), user_id.clone(), now, now + ttl).await?;
    Ok(Ok(Finished { signed_in: SignedIn { user_id, session, ttl }, auth_request_id, identity }))
}

/// Everything after the `state` check: the provider's error, `iss`, the code
/// exchange, the ID token, userinfo, and who may sign in.
async fn verify(
    deps: &Deps,
    u: &UpstreamConfig,
    cb: &Callback,
    login: &rows::UpstreamLoginRow,
    now: i64,
) -> Result<(Identity, Tokens), Failure> {
    let endpoints = deps.upstream.endpoints(u).await?;
    // RFC 9207 §2.4: compare `iss` when sent, and require it when promised.
    match (&cb.iss, &endpoints.issuer) {
        (Some(iss), Some(want)) if iss != want => {
            return Err(Failure::IssuerMismatch(format!("iss {iss:?} is not {want:?}")));
        }
        // A plain OAuth 2 upstream has no issuer to compare with; its
        // endpoints are configured, so there is nothing to mix up.
        (None, Some(_)) if endpoints.iss_parameter_supported => {
            return Err(Failure::IssuerMismatch("no iss, though the provider promises it".into()));
        }
        _ => {}
    }
    if let Some(error) = &cb.error {
        return Err(Failure::Denied {
            error: error.chars().take(64).collect(),
            description: cb.error_description.as_ref().map(|d| d.chars().take(200).collect()),
        });
    }
    let Some(code) = cb.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return Err(Failure::Denied { error: "invalid_request".into(), description: Some("no code".into()) });
    };
    let issuer = deps.config.load().server.issuer.clone();
    let tokens =
        deps.upstream.exchange_code(u, &endpoints, code, &login.code_verifier, &redirect_uri(&issuer, &u.id)).await?;
    let mut claims = serde_json::Map::new();
    if u.is_oidc() {
        let Some(id_token) = &tokens.id_token else {
            return Err(Failure::IdToken("the token response has no id_token".into()));
        };
        claims = deps.upstream.verify_id_token(u, &endpoints, id_token, &login.nonce, now).await?;
    }
    // Many providers put scope claims (email, name, groups) only in userinfo
    // when an access token is issued (OIDC Core §5.4), so ask it whenever
    // the provider has one.
    if endpoints.userinfo_endpoint.is_some() {
        let info = deps.upstream.userinfo(&endpoints, &tokens.access_token).await?;
        // OIDC Core §5.3.2: userinfo's sub must be the ID token's.
        if let (Some(a), Some(b)) = (claims.get("sub"), info.get("sub"))
            && a != b
        {
            return Err(Failure::IdToken("userinfo sub differs from the ID token's".into()));
        }
        claims.extend(info);
    }
    Ok((upstream::identity(u, &claims)?, tokens))
}

/// The `login_failed` row of a failed sign-in through `u`, and its log line.
async fn audit_failure(deps: &Deps, ids: &RequestIds, u: &UpstreamConfig, f: &Failure) {
    tracing::warn!(upstream = %u.id, reason = f.reason(), detail = %f.detail(), "upstream sign-in failed");
    let _ = audit::record(
        &deps.db,
        deps.clock.now_ms(),
        AuditEvent {
            event_type: "login_failed",
            outcome: "failure",
            request_id: ids.request_id.clone(),
            trace_id: ids.trace_id.clone(),
            detail: serde_json::json!({
                "upstream": u.id,
                "reason": f.reason(),
                "detail": f.detail().chars().take(300).collect::<String>(),
            }),
            ..Default::default()
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::testing::{Fixture, T0};

    const PLAIN: &str = "upstreams:\n  - { id: gh, authorization_endpoint: 'https://gh.example/authorize', token_endpoint: 'https://gh.example/token', userinfo_endpoint: 'https://gh.example/user', client_id: c, client_secret: s, scopes: [read] }";

    fn state_of(url: &str) -> String {
        url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned()
    }

    async fn callback(fx: &Fixture, state: &str, browser: &str, now: i64) -> Failure {
        let u = fx.cfg.upstreams[0].clone();
        let cb = Callback { state: Some(state.to_owned()), code: Some("c".into()), ..Default::default() };
        finish(&fx.deps, &u, &cb, browser, &RequestIds::default(), now).await.unwrap().unwrap_err()
    }

    #[tokio::test]
    async fn a_state_is_single_use_bound_to_its_browser_and_expires() {
        let fx = Fixture::with("", PLAIN).await;
        let u = fx.cfg.upstreams[0].clone();
        let url = start(&fx.deps, &u, "ar_1", "browser-a", &RequestIds::default(), T0).await.unwrap().unwrap();
        assert!(url.starts_with("https://gh.example/authorize?response_type=code&client_id=c&redirect_uri="), "{url}");
        assert!(!url.contains("nonce="), "no nonce for plain OAuth 2");
        let state = state_of(&url);

        // From another browser: refused, and the state is spent.
        assert!(
            matches!(callback(&fx, &state, "browser-b", T0 + 1).await, Failure::State(d) if d.contains("another browser"))
        );
        assert!(
            matches!(callback(&fx, &state, "browser-a", T0 + 2).await, Failure::State(d) if d.contains("already used"))
        );
        assert!(matches!(callback(&fx, "made-up", "browser-a", T0 + 2).await, Failure::State(_)));

        let late =
            state_of(&start(&fx.deps, &u, "ar_2", "browser-a", &RequestIds::default(), T0).await.unwrap().unwrap());
        assert!(matches!(callback(&fx, &late, "browser-a", T0 + LOGIN_TTL + 1).await, Failure::State(_)));

        let rows = fx.audit("login_failed").await;
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| r.detail.contains("\"reason\":\"upstream_state_invalid\"")), "{rows:?}");
        assert!(!rows.iter().any(|r| r.detail.contains(&state)), "the state never reaches the audit log");
    }
}
