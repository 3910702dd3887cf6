//! What a fetched document means for the object: pure functions from the
//! last fetch and the spec to a condition (`PRMVerified` on a
//! ProtectedResource, `IssuerReachable` on an AuthServer), and which
//! condition changes deserve an Event.

use authplane_core::ResourceUri;
use authplane_crds::Condition;

use super::{Doc, Fetched};

/// `True`, `False` or `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// A diagnostic condition without its timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    fn new(status: Status, reason: &'static str, message: impl Into<String>) -> Verdict {
        Verdict { status, reason, message: message.into() }
    }

    pub fn not_checked(message: impl Into<String>) -> Verdict {
        Verdict::new(Status::Unknown, NOT_CHECKED, message)
    }
}

/// The reason of an `Unknown` condition when no check is configured.
pub const NOT_CHECKED: &str = "NotChecked";
/// The reason of an `Unknown` condition while the first fetch of a URL runs.
pub const CHECKING: &str = "Checking";

/// RFC 9728 §3.1: where a client looks for the PRM of `resource`, in the
/// order MCP clients try: the well-known path inserted before the
/// resource's path, then the root form.
pub fn prm_urls(resource: &str) -> Vec<String> {
    let Ok(u) = url::Url::parse(resource) else { return Vec::new() };
    let origin = u.origin().ascii_serialization();
    let path = u.path().trim_end_matches('/');
    let mut out = Vec::new();
    if !path.is_empty() {
        out.push(format!("{origin}/.well-known/oauth-protected-resource{path}"));
    }
    out.push(format!("{origin}/.well-known/oauth-protected-resource"));
    out
}

/// RFC 8414 §3.1: the discovery URL of `issuer` on `base` (the Service
/// URL): the well-known path, then the issuer's own path, if any.
pub fn discovery_url(base: &str, issuer: &str) -> String {
    let path = url::Url::parse(issuer).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
    format!("{}/.well-known/oauth-authorization-server{path}", base.trim_end_matches('/'))
}

/// A value from a foreign document, safe and short enough for a message.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    format!("{out:?}")
}

fn clip_list(v: &[String]) -> String {
    let mut items: Vec<String> = v.iter().take(10).map(|s| clip(s)).collect();
    if v.len() > 10 {
        items.push(format!("… ({} more)", v.len() - 10));
    }
    format!("[{}]", items.join(", "))
}

/// The part of a verdict that only depends on whether a document arrived.
fn fetch_failure(
    f: &Fetched,
    what: &str,
    not_found: &'static str,
    unreachable: &'static str,
    invalid: &'static str,
) -> Result<(String, Doc), Verdict> {
    match f {
        Fetched::Doc { url, doc } => Ok((url.clone(), doc.clone())),
        Fetched::NotFound { url, status } => {
            Err(Verdict::new(Status::False, not_found, format!("GET {url} answered HTTP {status}: no {what} there")))
        }
        Fetched::Status { url, status } => Err(Verdict::new(
            Status::False,
            unreachable,
            format!(
                "GET {url} answered HTTP {status}{}",
                if (300..400).contains(status) { " (redirects are not followed)" } else { "" }
            ),
        )),
        Fetched::Unreachable { url, why } => {
            Err(Verdict::new(Status::False, unreachable, format!("GET {url} got no answer: {why}")))
        }
        Fetched::Invalid { url, why } => {
            Err(Verdict::new(Status::False, invalid, format!("GET {url} did not return a {what}: {why}")))
        }
    }
}

/// `PRMVerified` of a ProtectedResource whose PRM document was fetched:
/// `resource` must be the spec's (compared canonically, RFC 8707),
/// `authorization_servers` must list the AuthServer's issuer (string for
/// string, as clients compare it, RFC 8414 §3.3), and `scopes_supported` must
/// be the spec's scopes as a set.
pub fn prm(f: &Fetched, resource: &str, issuer: &str, scopes: &[String]) -> Verdict {
    let (url, doc) = match fetch_failure(f, "PRM document (RFC 9728)", "PRMNotFound", "PRMUnreachable", "PRMInvalid") {
        Ok(x) => x,
        Err(v) => return v,
    };
    let Some(got) = doc.resource.as_deref() else {
        return Verdict::new(
            Status::False,
            "PRMInvalid",
            format!("the PRM at {url} has no `resource` (RFC 9728 §2 requires it)"),
        );
    };
    let same = match (ResourceUri::parse(got), ResourceUri::parse(resource)) {
        (Ok(a), Ok(b)) => a == b,
        _ => got == resource,
    };
    if !same {
        return Verdict::new(
            Status::False,
            "ResourceMismatch",
            format!(
                "the PRM at {url} says resource {} but spec.resource is {resource:?}; clients refuse a PRM for another \
                 resource (RFC 9728 §3.3) or ask for tokens with the wrong audience: make the MCP server's resource \
                 (AUTHPLANE_RESOURCE in the SDK) and spec.resource the same URL",
                clip(got)
            ),
        );
    }
    let servers = doc.authorization_servers.clone().unwrap_or_default();
    if !servers.iter().any(|s| s == issuer) {
        let hint = if servers.iter().any(|s| s.trim_end_matches('/') == issuer.trim_end_matches('/')) {
            " (they differ only in a trailing slash, which clients do not forgive)"
        } else {
            ""
        };
        return Verdict::new(
            Status::False,
            "IssuerMismatch",
            format!(
                "the PRM at {url} lists authorization_servers {} without the AuthServer's issuer {issuer:?}{hint}; \
                 clients would ask another server for tokens: set the MCP server's issuer (AUTHPLANE_ISSUER in the \
                 SDK) to {issuer:?}",
                clip_list(&servers)
            ),
        );
    }
    let got_scopes = doc.scopes_supported.clone().unwrap_or_default();
    let missing: Vec<String> = scopes.iter().filter(|s| !got_scopes.contains(s)).cloned().collect();
    let extra: Vec<String> = got_scopes.iter().filter(|s| !scopes.contains(s)).cloned().collect();
    if doc.scopes_supported.is_none() || !missing.is_empty() || !extra.is_empty() {
        let mut parts = Vec::new();
        if doc.scopes_supported.is_none() {
            parts.push("it has no scopes_supported".to_owned());
        }
        if !missing.is_empty() && doc.scopes_supported.is_some() {
            parts.push(format!("it lacks {} (clients that read it will not ask for them)", clip_list(&missing)));
        }
        if !extra.is_empty() {
            parts.push(format!(
                "it offers {} that spec.scopes does not declare (the AuthServer refuses them)",
                clip_list(&extra)
            ));
        }
        return Verdict::new(
            Status::False,
            "ScopesMismatch",
            format!(
                "the PRM at {url} does not list spec.scopes {}: {}; make the MCP server's scopes and spec.scopes the same",
                clip_list(scopes),
                parts.join("; ")
            ),
        );
    }
    Verdict::new(
        Status::True,
        "Verified",
        format!(
            "the PRM at {url} names resource {}, authorization server {issuer:?} and scopes {}",
            clip(got),
            clip_list(&got_scopes)
        ),
    )
}

/// `IssuerReachable` of an AuthServer whose discovery document was fetched:
/// its `issuer` must be `spec.issuer` string for string (RFC 8414 §3.3).
pub fn discovery(f: &Fetched, issuer: &str) -> Verdict {
    let (url, doc) = match fetch_failure(
        f,
        "discovery document (RFC 8414)",
        "DiscoveryUnreachable",
        "DiscoveryUnreachable",
        "DiscoveryInvalid",
    ) {
        Ok(x) => x,
        Err(v) => return v,
    };
    match doc.issuer.as_deref() {
        None => {
            Verdict::new(Status::False, "DiscoveryInvalid", format!("the discovery document at {url} has no `issuer`"))
        }
        Some(got) if got == issuer => {
            Verdict::new(Status::True, "IssuerVerified", format!("discovery at {url} answers with issuer {issuer:?}"))
        }
        Some(got) => Verdict::new(
            Status::False,
            "IssuerMismatch",
            format!(
                "discovery at {url} says issuer {} but spec.issuer is {issuer:?}; clients refuse metadata whose \
                 issuer is not the one they asked (RFC 8414 §3.3): the server runs with another \
                 AUTHPLANE_SERVER_ISSUER or an old configuration",
                clip(got)
            ),
        ),
    }
}

/// The verdict to show while the first fetch of a URL runs: the condition
/// already in status when it describes this generation (after an operator
/// restart the result is usually the same, so nothing is written), else
/// `Unknown`/`Checking`.
pub fn pending(existing: &[Condition], type_: &str, generation: Option<i64>, urls: &[String]) -> Option<Condition> {
    existing
        .iter()
        .find(|c| c.type_ == type_)
        .filter(|c| c.reason != NOT_CHECKED && c.reason != CHECKING && c.observed_generation == generation)
        .filter(|c| urls.iter().any(|u| c.message.contains(u.as_str())))
        .cloned()
}

pub fn checking(urls: &[String]) -> Verdict {
    Verdict::new(Status::Unknown, CHECKING, format!("fetching {}", urls.join(", then ")))
}

/// The condition for `v`; `lastTransitionTime` moves only when the status does.
pub fn condition(existing: &[Condition], type_: &str, v: &Verdict, generation: Option<i64>, now: &str) -> Condition {
    let status = v.status.as_str();
    let last_transition_time = match existing.iter().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.to_owned(),
    };
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        last_transition_time,
        reason: v.reason.to_owned(),
        message: v.message.clone(),
        observed_generation: generation,
    }
}

/// The Event for a diagnostic condition going from `before` to `after`:
/// `(warning, reason)` when it turned True or False, or stayed False for
/// another reason; none for Unknown or no change. `ok_reason` names the
/// Normal Event (`PRMVerified`, `IssuerReachable`).
pub fn event(before: &[Condition], after: &Condition, ok_reason: &'static str) -> Option<(bool, String)> {
    let prev = before.iter().find(|c| c.type_ == after.type_);
    let same = prev.is_some_and(|p| p.status == after.status && (after.status != "False" || p.reason == after.reason));
    if same {
        return None;
    }
    match after.status.as_str() {
        "True" => Some((false, ok_reason.to_owned())),
        "False" => Some((true, after.reason.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "https://mcp.example.com/mcp";
    const ISS: &str = "https://auth.example.com";
    const URL: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

    fn scopes() -> Vec<String> {
        vec!["tools/read".into(), "tools/write".into()]
    }

    fn doc(resource: &str, servers: &[&str], scopes: Option<&[&str]>) -> Fetched {
        Fetched::Doc {
            url: URL.into(),
            doc: Doc {
                resource: Some(resource.into()),
                authorization_servers: Some(servers.iter().map(|s| (*s).to_owned()).collect()),
                scopes_supported: scopes.map(|s| s.iter().map(|x| (*x).to_owned()).collect()),
                issuer: None,
            },
        }
    }

    #[test]
    fn prm_urls_follow_rfc_9728() {
        assert_eq!(
            prm_urls("https://mcp.example.com/mcp/"),
            vec![
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp".to_owned(),
                "https://mcp.example.com/.well-known/oauth-protected-resource".to_owned()
            ]
        );
        assert_eq!(
            prm_urls("http://127.0.0.1:8080"),
            vec!["http://127.0.0.1:8080/.well-known/oauth-protected-resource"]
        );
        assert_eq!(
            discovery_url("http://as.ns.svc:9000", "https://auth.example.com"),
            "http://as.ns.svc:9000/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            discovery_url("http://as.ns.svc:9000/", "https://auth.example.com/tenant"),
            "http://as.ns.svc:9000/.well-known/oauth-authorization-server/tenant"
        );
    }

    #[test]
    fn prm_verdicts_name_each_fault() {
        let ok = prm(&doc(R, &[ISS], Some(&["tools/write", "tools/read"])), R, ISS, &scopes());
        assert_eq!((ok.status, ok.reason), (Status::True, "Verified"), "{}", ok.message);
        // Canonical comparison: case of the host and a trailing slash do not matter.
        let ok =
            prm(&doc("https://MCP.example.com/mcp/", &[ISS], Some(&["tools/read", "tools/write"])), R, ISS, &scopes());
        assert_eq!(ok.reason, "Verified", "{}", ok.message);

        let v =
            prm(&doc("https://mcp.example.com/other", &[ISS], Some(&["tools/read", "tools/write"])), R, ISS, &scopes());
        assert_eq!((v.status, v.reason), (Status::False, "ResourceMismatch"));
        assert!(v.message.contains("\"https://mcp.example.com/other\""), "{}", v.message);

        let v =
            prm(&doc(R, &["https://elsewhere.example.com"], Some(&["tools/read", "tools/write"])), R, ISS, &scopes());
        assert_eq!(v.reason, "IssuerMismatch");
        let v = prm(&doc(R, &["https://auth.example.com/"], Some(&["tools/read", "tools/write"])), R, ISS, &scopes());
        assert_eq!(v.reason, "IssuerMismatch");
        assert!(v.message.contains("trailing slash"), "{}", v.message);

        let v = prm(&doc(R, &[ISS], Some(&["tools/read"])), R, ISS, &scopes());
        assert_eq!(v.reason, "ScopesMismatch");
        assert!(v.message.contains("lacks [\"tools/write\"]"), "{}", v.message);
        let v = prm(&doc(R, &[ISS], Some(&["tools/read", "tools/write", "admin"])), R, ISS, &scopes());
        assert_eq!(v.reason, "ScopesMismatch");
        assert!(v.message.contains("offers [\"admin\"]"), "{}", v.message);
        let v = prm(&doc(R, &[ISS], None), R, ISS, &scopes());
        assert_eq!(v.reason, "ScopesMismatch");
        assert!(v.message.contains("no scopes_supported"), "{}", v.message);

        let nf = prm(&Fetched::NotFound { url: URL.into(), status: 404 }, R, ISS, &scopes());
        assert_eq!((nf.status, nf.reason), (Status::False, "PRMNotFound"));
        let un = prm(&Fetched::Unreachable { url: URL.into(), why: "connection refused" }, R, ISS, &scopes());
        assert_eq!((un.status, un.reason), (Status::False, "PRMUnreachable"));
        assert!(un.message.contains("connection refused"));
        let st = prm(&Fetched::Status { url: URL.into(), status: 302 }, R, ISS, &scopes());
        assert_eq!(st.reason, "PRMUnreachable");
        assert!(st.message.contains("redirects are not followed"));
        let bad = prm(&Fetched::Invalid { url: URL.into(), why: "not JSON".into() }, R, ISS, &scopes());
        assert_eq!(bad.reason, "PRMInvalid");
        let Fetched::Doc { url, mut doc } = doc(R, &[ISS], None) else { unreachable!() };
        doc.resource = None;
        assert_eq!(prm(&Fetched::Doc { url, doc }, R, ISS, &scopes()).reason, "PRMInvalid");
    }

    #[test]
    fn foreign_values_are_clipped_and_quoted() {
        let long = format!("https://x/{}\n", "a".repeat(5000));
        let v = prm(&doc(&long, &[ISS], None), R, ISS, &scopes());
        assert!(v.message.len() < 1000, "{}", v.message.len());
        assert!(!v.message.contains('\n'));
    }

    #[test]
    fn discovery_verdicts() {
        let f = |issuer: Option<&str>| Fetched::Doc {
            url: "http://as/.well-known/oauth-authorization-server".into(),
            doc: Doc { issuer: issuer.map(str::to_owned), ..Doc::default() },
        };
        assert_eq!(discovery(&f(Some(ISS)), ISS).reason, "IssuerVerified");
        assert_eq!(discovery(&f(Some(ISS)), ISS).status, Status::True);
        assert_eq!(discovery(&f(Some("https://other")), ISS).reason, "IssuerMismatch");
        assert_eq!(discovery(&f(None), ISS).reason, "DiscoveryInvalid");
        let un = discovery(&Fetched::Unreachable { url: "http://as".into(), why: "DNS lookup failed" }, ISS);
        assert_eq!((un.status, un.reason), (Status::False, "DiscoveryUnreachable"));
        let nf = discovery(&Fetched::NotFound { url: "http://as".into(), status: 404 }, ISS);
        assert_eq!((nf.status, nf.reason), (Status::False, "DiscoveryUnreachable"));
    }

    #[test]
    fn events_only_on_transitions() {
        let cond = |status: &str, reason: &str| Condition {
            type_: "PRMVerified".into(),
            status: status.into(),
            last_transition_time: "t".into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
        };
        let t = cond("True", "Verified");
        let f = cond("False", "ScopesMismatch");
        assert_eq!(event(&[], &t, "PRMVerified"), Some((false, "PRMVerified".into())));
        assert_eq!(event(std::slice::from_ref(&t), &t, "PRMVerified"), None);
        assert_eq!(event(std::slice::from_ref(&t), &f, "PRMVerified"), Some((true, "ScopesMismatch".into())));
        assert_eq!(event(std::slice::from_ref(&f), &f, "PRMVerified"), None);
        assert_eq!(
            event(std::slice::from_ref(&f), &cond("False", "PRMNotFound"), "PRMVerified"),
            Some((true, "PRMNotFound".into()))
        );
        assert_eq!(event(std::slice::from_ref(&f), &cond("Unknown", "NotChecked"), "PRMVerified"), None);
    }

    #[test]
    fn pending_keeps_a_verdict_of_the_same_generation_and_url() {
        let c = condition(
            &[],
            "PRMVerified",
            &prm(&doc(R, &[ISS], Some(&["tools/read", "tools/write"])), R, ISS, &scopes()),
            Some(3),
            "t",
        );
        let urls = vec![URL.to_owned()];
        assert!(pending(std::slice::from_ref(&c), "PRMVerified", Some(3), &urls).is_some());
        assert!(pending(std::slice::from_ref(&c), "PRMVerified", Some(4), &urls).is_none());
        assert!(pending(std::slice::from_ref(&c), "PRMVerified", Some(3), &["http://other/".to_owned()]).is_none());
        // Status unchanged: the transition time stays.
        let again = condition(std::slice::from_ref(&c), "PRMVerified", &checking(&urls), Some(3), "t2");
        assert_eq!(again.last_transition_time, "t2", "True → Unknown is a transition");
        let same = condition(
            std::slice::from_ref(&c),
            "PRMVerified",
            &prm(&doc(R, &[ISS], Some(&["tools/read", "tools/write"])), R, ISS, &scopes()),
            Some(3),
            "t3",
        );
        assert_eq!(same.last_transition_time, "t");
    }
}
