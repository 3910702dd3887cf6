//! `grant_type=client_credentials` (RFC 6749 §4.4) for confidential clients:
//! the client is the subject. One write: the audit row.

use authplane_core::config::ClientConfig;

use super::{Outcome, RequestIds, Subject, TokenResponse, issue_access};
use crate::oauth::Deps;
use crate::oauth::error::{Error, Kind};
use crate::oauth::form::Form;
use crate::oauth::scopes;
use crate::store::audit::AuditEvent;

pub async fn exchange(
    deps: &Deps,
    client: &ClientConfig,
    form: &Form,
    jkt: Option<&str>,
    ids: &RequestIds,
    now: i64,
    outcome: &mut Outcome,
) -> Result<TokenResponse, Error> {
    if !client.token_endpoint_auth_method.is_confidential() {
        return Err(Error::new(Kind::UnauthorizedClient, "client_credentials needs a confidential client"));
    }
    // No implicit access: a machine token (no user, no consent) is only for
    // resources an administrator listed for this client.
    if client.allowed_resources.is_empty() {
        return Err(Error::new(
            Kind::UnauthorizedClient,
            "client_credentials needs allowed_resources: list the resources this client may get tokens for",
        ));
    }
    let registry = deps.registry.get();
    let resources = scopes::select_resources(&form.resource, client, &registry.resources)?;
    outcome.resource = resources.first().map(|r| r.to_string());
    let cfg = deps.config.load();
    let grant = scopes::select_scopes(form.get("scope"), &resources, client, &registry.resources, &cfg.oauth)?;
    let aud: Vec<String> = resources.iter().map(|r| r.to_string()).collect();
    let scope = grant.scope_string();
    let (access_token, expires_in) = issue_access(
        deps,
        &deps.db,
        Subject { sub: &client.client_id, client_id: &client.client_id, aud: &aud, scope: &scope, family: None, jkt },
        now,
    )
    .await?;
    deps
        .audit
        .record(
            deps.clock.now_ms(),
            AuditEvent {
                event_type: "token_issued",
                outcome: "success",
                client_id: Some(client.client_id.clone()),
                resource: aud.first().cloned(),
                request_id: ids.request_id.clone(),
                trace_id: ids.trace_id.clone(),
                detail: serde_json::json!({"grant_type": "client_credentials", "scope": scope, "aud": aud, "dpop_jkt": jkt}),
                ..Default::default()
            },
        )
        .await?;
    Ok(TokenResponse { access_token, token_type: super::token_type(jkt), expires_in, scope, refresh_token: None })
}
