//! The operator's rendering of AuthServer, ProtectedResource and OAuthClient
//! specs (what anyone who may edit those objects controls) into the
//! server's config file.
//!
//! Properties: a spec the renderer accepts gives a file the server's own
//! loader accepts (the operator never writes a config the server refuses);
//! every accepted client only names accepted resources; verdicts cover
//! every object exactly once.
#![no_main]

use std::collections::HashSet;

use authplane_crds::authserver::AuthServerSpec;
use authplane_crds::oauthclient::OAuthClientSpec;
use authplane_crds::protectedresource::ProtectedResourceSpec;
use authplane_operator::render::config::{ClientIn, ResourceIn, registry, render, to_yaml};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    spec: AuthServerSpec,
    #[serde(default)]
    resources: Vec<ProtectedResourceSpec>,
    #[serde(default)]
    clients: Vec<OAuthClientSpec>,
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else { return };
    if input.resources.len() > 8 || input.clients.len() > 8 {
        return;
    }
    let rnames: Vec<String> = (0..input.resources.len()).map(|i| format!("r{i}")).collect();
    let cnames: Vec<String> = (0..input.clients.len()).map(|i| format!("c{i}")).collect();
    let resources: Vec<ResourceIn<'_>> =
        input.resources.iter().zip(&rnames).map(|(spec, name)| ResourceIn { name, created: None, spec }).collect();
    let clients: Vec<ClientIn<'_>> = input
        .clients
        .iter()
        .zip(&cnames)
        .map(|(spec, name)| ClientIn {
            name,
            namespace: "ns",
            created: None,
            spec,
            digest: Some("ab".repeat(32)),
            holds_id: false,
            awaits_adoption: false,
        })
        .collect();
    let mut reg = registry(&resources, &clients);
    assert_eq!(reg.resource_verdicts.len(), rnames.len());
    assert_eq!(reg.client_verdicts.len(), cnames.len());
    assert_eq!(reg.resources.len(), reg.resource_names.len());
    assert_eq!(reg.clients.len(), reg.client_names.len());
    let known: HashSet<_> = reg.resources.iter().map(|r| r.resource.clone()).collect();
    for c in &reg.clients {
        assert!(c.allowed_resources.iter().all(|r| known.contains(r)), "client names a refused resource");
    }

    let Ok(rendered) = render(&input.spec, &mut reg) else { return };
    let yaml = to_yaml("ns", "as", &input.spec, &rendered.config).expect("an accepted spec renders");
    let mut env = Vec::new();
    if input.spec.database.postgres.is_some() {
        env.push(("AUTHPLANE_DATABASE_URL".to_owned(), "postgres://u:p@db:5432/authplane".to_owned()));
    }
    if input.spec.oauth.initial_access_token_secret_ref.is_some() {
        env.push(("AUTHPLANE_OAUTH_INITIAL_ACCESS_TOKEN".to_owned(), "x".repeat(32)));
    }
    let loaded = authplane_core::config::Config::load(Some(("config.yaml", &yaml)), env);
    assert!(loaded.is_ok(), "the server refuses what the operator renders: {:?}\n{yaml}", loaded.err());
});
