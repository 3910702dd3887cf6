//! Redirect URIs: the registration rules (RFC 8252, RFC 9700 §2.1) and the
//! match of a requested URI against a registered one (RFC 9700 §4.1.3).
//!
//! Properties: an accepted URI is canonical (it is exactly what the WHATWG
//! parser serialises, bare origin aside) and parses again to itself; it has
//! no fragment, wildcard, user info or raw control/space/backslash; a URI
//! refused at registration never matches a registered one (except a loopback
//! URI spelled with `:80`, whose canonical form is registrable and matches);
//! a match is the same URI up to a loopback port.
#![no_main]

use authplane_core::redirect::{RedirectUri, is_loopback_http};

fn check_accepted(s: &str, r: &RedirectUri) {
    assert_eq!(r.as_str(), s);
    let url = url::Url::parse(s).expect("accepted URI parses");
    let canonical = url.as_str();
    assert!(
        canonical == s || (canonical.strip_suffix('/') == Some(s) && url.path() == "/"),
        "{s} is not canonical ({canonical})"
    );
    assert!(!s.contains(['#', '*', '\\']) && !s.chars().any(|c| c.is_control() || c.is_whitespace()));
    assert!(url.username().is_empty() && url.password().is_none());
    assert_eq!(RedirectUri::parse(s).as_ref().map(RedirectUri::as_str), Ok(s), "not a fixpoint");
    assert!(r.matches(s), "does not match itself");
    match url.scheme() {
        "http" => assert!(is_loopback_http(s)),
        "https" => assert!(url.host_str().is_some_and(|h| !h.is_empty())),
        "javascript" | "data" | "file" | "vbscript" => panic!("dangerous scheme accepted: {s}"),
        _ => {}
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Input: `registered \n requested`, or one URI checked on its own.
    let (a, b) = text.split_once('\n').unwrap_or((text, text));
    for s in [a, b] {
        if let Ok(r) = RedirectUri::parse(s) {
            check_accepted(s, &r);
        }
    }
    let Ok(registered) = RedirectUri::parse(a) else { return };
    if registered.matches(b) {
        // The one exception, on purpose (RFC 8252 §7.3, any loopback port):
        // a loopback URI with an explicit `:80`, refused at registration as
        // not canonical, matches; its canonical form (port dropped) is
        // registrable, and the block below checks that only the port
        // differs, so nothing outside the rule is reached. (The canonical
        // form need not match itself: for a bare origin such as
        // `http://localhost:8` it gains a `/` the registration lacks —
        // see core's `matching_is_exact_except_the_loopback_port`.)
        let canonical_ok = url::Url::parse(b).is_ok_and(|u| RedirectUri::parse(u.as_str()).is_ok());
        assert!(
            RedirectUri::parse(b).is_ok() || (b.contains(":80") && is_loopback_http(b) && canonical_ok),
            "refused URI {b:?} matches registered {a:?}"
        );
        if a != b {
            // Only a loopback port may differ.
            assert!(is_loopback_http(a) && is_loopback_http(b), "{a:?} matched {b:?}");
            let (ua, ub) = (url::Url::parse(a).unwrap(), url::Url::parse(b).unwrap());
            assert_eq!((ua.host_str(), ua.path(), ua.query()), (ub.host_str(), ub.path(), ub.query()));
        }
    }
});
