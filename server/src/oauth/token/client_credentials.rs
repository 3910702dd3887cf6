//! `grant_type=client_credentials` (RFC 6749 §4.4) for confidential clients:
//! the client is the subject. One write: the audit row.

use authplane_core::config::ClientConfig;

use super::{GrantResult, RequestIds, Subject, TokenResponse, finish};
use crate::oauth::Deps;
use crate::oauth::error::{Error, Kind};
use crate::oauth::form::Form;
use crate::oauth::scopes;

pub async fn exchange(
    deps: &Deps,
    client: &ClientConfig,
    form: &Form,
    jkt: Option<&str>,
    ids: &RequestIds,
    now: i64,
) -> GrantResult {
    if let Err(e) = eligible(client) {
        return GrantResult::failed(e);
    }
    let index = deps.resources.get();
    let resources = match scopes::select_resources(&form.resource, client, &index.resources) {
        Ok(r) => r,
        Err(e) => return GrantResult::failed(e),
    };
    GrantResult {
        resource: resources.first().map(|r| r.to_string()),
        user_id: None,
        result: issue(deps, client, form, &resources, &index.resources, jkt, ids, now).await,
    }
}

fn eligible(client: &ClientConfig) -> Result<(), Error> {
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
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn issue(
    deps: &Deps,
    client: &ClientConfig,
    form: &Form,
    resources: &[authplane_core::ResourceUri],
    known: &[authplane_core::config::ResourceConfig],
    jkt: Option<&str>,
    ids: &RequestIds,
    now: i64,
) -> Result<TokenResponse, Error> {
    let cfg = deps.config.load();
    let grant = scopes::select_scopes(form.get("scope"), resources, client, known, &cfg.oauth)?;
    let aud: Vec<String> = resources.iter().map(|r| r.to_string()).collect();
    let scope = grant.scope_string();
    let detail = serde_json::json!({"grant_type": "client_credentials", "scope": scope, "aud": aud, "dpop_jkt": jkt});
    let who =
        Subject { sub: &client.client_id, client_id: &client.client_id, aud: &aud, scope: &scope, family: None, jkt };
    finish(deps, None, who, "token_issued", detail, None, ids, now).await
}
