//! The token endpoint's and the authorize endpoint's form parser
//! (`application/x-www-form-urlencoded`, RFC 6749 §3.1/§3.2: no parameter
//! twice, `resource` may repeat).
//!
//! Properties: a parsed form re-encoded and parsed again gives the same
//! parameters (round trip); a refused form really repeats a parameter; the
//! authorize parameters taken from an accepted form are the form's values.
#![no_main]

use authplane_server::http::ui::parse_params;
use authplane_server::oauth::form::Form;

const NAMES: &[&str] = &[
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "refresh_token",
    "scope",
    "state",
    "response_type",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "prompt",
    "token",
    "token_type_hint",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(data).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let repeated = {
        let mut seen = std::collections::HashSet::new();
        pairs.iter().any(|(k, _)| k != "resource" && !seen.insert(k.as_str()))
    };
    let form = match Form::parse(data) {
        Ok(f) => f,
        Err(e) => {
            assert!(repeated, "refused a form with no repeated parameter: {}", e.description);
            assert!(parse_params(data).is_err(), "authorize accepted what the token endpoint refused");
            return;
        }
    };
    assert!(!repeated, "accepted a repeated parameter");
    let resources: Vec<&str> = pairs.iter().filter(|(k, _)| k == "resource").map(|(_, v)| v.as_str()).collect();
    assert_eq!(form.resource, resources);
    for (k, v) in pairs.iter().filter(|(k, _)| k != "resource") {
        // RFC 6749 §3.1: an empty value is the same as an absent parameter.
        assert_eq!(form.get(k), (!v.is_empty()).then_some(v.as_str()), "{k}");
    }

    // Round trip through the canonical encoding.
    let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter()).finish();
    let again = Form::parse(encoded.as_bytes()).expect("re-encoded form parses");
    assert_eq!(again.resource, form.resource);
    for n in NAMES {
        assert_eq!(again.get(n), form.get(n), "{n}");
    }

    let p = parse_params(data).expect("authorize parameters from an accepted form");
    assert_eq!(p.client_id.as_deref(), form.get("client_id"));
    assert_eq!(p.redirect_uri.as_deref(), form.get("redirect_uri"));
    assert_eq!(p.code_challenge.as_deref(), form.get("code_challenge"));
    assert_eq!(p.resource, form.resource);
});
