//! Scopes per MCP tool. An MCP server has one endpoint, so the scope a request
//! needs depends on the JSON-RPC body: a `tools/call` of a write tool needs
//! `tools/write`. The check must answer with HTTP 403 (what drives a client's
//! step-up authorization), so it runs in the middleware, before the MCP
//! library sees the request.

use std::collections::HashMap;

use serde::Deserialize;

/// POST bodies larger than this are refused (413) when tool scopes are
/// configured, since they must be read before the request goes on.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Which scope each tool needs.
#[derive(Debug, Clone, Default)]
pub struct ToolScopes {
    by_tool: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Body {
    One(Message),
    Batch(Vec<Message>),
}

// Duplicate members make serde's derive fail, so a body cannot name one tool
// to us and another to the MCP library.
#[derive(Deserialize)]
struct Message {
    method: Option<String>,
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    name: Option<serde_json::Value>,
}

/// The body could not be read as JSON-RPC; it is refused (400) rather than
/// passed on unchecked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NotJsonRpc;

impl ToolScopes {
    pub fn is_empty(&self) -> bool {
        self.by_tool.is_empty()
    }

    pub fn insert(&mut self, tool: impl Into<String>, scope: impl Into<String>) {
        self.by_tool.insert(tool.into(), scope.into());
    }

    /// The scopes the `tools/call` requests in `body` need.
    pub(crate) fn required<'s>(&'s self, body: &[u8]) -> Result<Vec<&'s str>, NotJsonRpc> {
        let parsed: Body = serde_json::from_slice(body).map_err(|_| NotJsonRpc)?;
        let messages = match parsed {
            Body::One(m) => vec![m],
            Body::Batch(v) => v,
        };
        let mut out: Vec<&str> = Vec::new();
        for m in messages {
            if m.method.as_deref() != Some("tools/call") {
                continue;
            }
            let name = m.params.as_ref().and_then(|p| p.name.as_ref()).and_then(|n| n.as_str()).ok_or(NotJsonRpc)?;
            if let Some(scope) = self.by_tool.get(name)
                && !out.contains(&scope.as_str())
            {
                out.push(scope);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes() -> ToolScopes {
        let mut s = ToolScopes::default();
        s.insert("add_note", "tools/write");
        s.insert("list_notes", "tools/read");
        s
    }

    #[test]
    fn finds_the_scope_of_a_tool_call() {
        let s = scopes();
        let call =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_note","arguments":{"text":"x"}}}"#;
        assert_eq!(s.required(call).unwrap(), vec!["tools/write"]);
        let list = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(s.required(list).unwrap().is_empty());
        let unknown = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"other"}}"#;
        assert!(s.required(unknown).unwrap().is_empty());
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_notes"}},
                        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add_note"}}]"#;
        assert_eq!(s.required(batch).unwrap(), vec!["tools/read", "tools/write"]);
        let response = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert!(s.required(response).unwrap().is_empty());
    }

    #[test]
    fn ambiguous_bodies_are_refused() {
        let s = scopes();
        assert_eq!(s.required(b"").unwrap_err(), NotJsonRpc);
        assert_eq!(s.required(b"{not json").unwrap_err(), NotJsonRpc);
        let dup_method = br#"{"method":"tools/list","method":"tools/call","params":{"name":"add_note"}}"#;
        assert_eq!(s.required(dup_method).unwrap_err(), NotJsonRpc);
        let dup_name = br#"{"method":"tools/call","params":{"name":"list_notes","name":"add_note"}}"#;
        assert_eq!(s.required(dup_name).unwrap_err(), NotJsonRpc);
        let no_name = br#"{"method":"tools/call","params":{}}"#;
        assert_eq!(s.required(no_name).unwrap_err(), NotJsonRpc);
    }
}
