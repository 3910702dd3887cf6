//! Dynamic client registration (RFC 7591): the JSON request body into a
//! client, what is stored and what is answered.
//!
//! Properties: an accepted registration has only registrable redirect URIs,
//! grant types within what the policy allows, a secret exactly when the
//! method is confidential; the stored client round-trips through its JSON
//! form; re-registering with the answer (RFC 7591 §3.2.1 echoes the
//! metadata) gives the same client (accepted input is canonical).
#![no_main]

use authplane_core::config::{ClientConfig, GrantType};
use authplane_core::redirect::RedirectUri;
use authplane_server::oauth::register::{Request, validate};

const OPEN: &[GrantType] = &[GrantType::AuthorizationCode, GrantType::RefreshToken];
const TOKEN: &[GrantType] = &[GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::ClientCredentials];

fn secret() -> Option<(String, String)> {
    Some(("s".repeat(43), "ab".repeat(32)))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&policy, body)) = data.split_first() else { return };
    let allowed = if policy % 2 == 0 { OPEN } else { TOKEN };
    let Ok(req) = serde_json::from_slice::<Request>(body) else { return };
    let Ok((client, extras, response, secret_out)) = validate(req, allowed, "dcr_x".into(), secret) else { return };

    for r in &client.redirect_uris {
        assert_eq!(RedirectUri::parse(r.as_str()).as_ref(), Ok(r), "stored an unregistrable redirect URI");
    }
    assert!(client.grant_types.iter().all(|g| allowed.contains(g)), "{:?}", client.grant_types);
    let confidential = client.token_endpoint_auth_method.is_confidential();
    assert_eq!(secret_out.is_some(), confidential);
    assert_eq!(client.client_secret_sha256.is_some(), confidential);
    assert!(authplane_core::config::validate_client("client", &client, |_| true).is_ok());
    assert!(extras.application_type == "web" || extras.application_type == "native");

    let stored = serde_json::to_string(&client).expect("client serialises");
    let back: ClientConfig = serde_json::from_str(&stored).expect("stored client reads back");
    assert_eq!(serde_json::to_string(&back).expect("again"), stored, "stored form is not stable");

    let answer = serde_json::to_vec(&response).expect("response serialises");
    let again: Request = serde_json::from_slice(&answer).expect("the answer is a registration request");
    let (c2, e2, r2, _) = validate(again, allowed, "dcr_x".into(), secret).expect("re-registering the answer");
    assert_eq!(serde_json::to_string(&c2).expect("c2"), stored, "re-registration differs");
    assert_eq!(e2.application_type, extras.application_type);
    assert_eq!(serde_json::to_vec(&r2).expect("r2"), answer, "answer is not a fixpoint");
});
