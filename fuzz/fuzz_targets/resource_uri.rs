//! Resource URIs (RFC 8707): what a resource is registered as, what a
//! client's `resource` parameter and a token's `aud` are compared with.
//!
//! Properties: the canonical form is a fixpoint (it parses to itself), is
//! always the same resource as its input, and `is_same_resource` agrees with
//! comparing canonical forms.
#![no_main]

use authplane_core::ResourceUri;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (a, b) = text.split_once('\n').unwrap_or((text, text));
    let Ok(ra) = ResourceUri::parse(a) else {
        return;
    };
    let canonical = ra.as_str();
    let again = ResourceUri::parse(canonical).expect("the canonical form parses");
    assert_eq!(again.as_str(), canonical, "canonical form of {a:?} is not a fixpoint");
    assert!(ra.is_same_resource(a), "{a:?} is not the same resource as itself");
    assert!(ra.is_same_resource(canonical));
    assert!(
        !canonical.contains('#') && !canonical.contains('@')
            || url::Url::parse(canonical).is_ok_and(|u| u.username().is_empty())
    );
    assert!(canonical.starts_with("https://") || canonical.starts_with("http://"));
    let same = ra.is_same_resource(b);
    let by_canonical = ResourceUri::parse(b).is_ok_and(|rb| rb == ra);
    assert_eq!(same, by_canonical, "{a:?} vs {b:?}");
});
