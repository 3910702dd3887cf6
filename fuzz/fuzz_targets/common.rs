//! Shared set-up for the token targets: a real key store with one ES256 key
//! (generated per run, so no input can know it) and a second, unrelated one.
#![allow(dead_code)]

use std::sync::OnceLock;

use authplane_server::keys::store::KeyStore;
use authplane_server::keys::{KeyManager, Timings};
use authplane_server::oauth::jwt::AccessClaims;

pub const ISSUER: &str = "https://as.example.com";
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
pub const NOW: i64 = 1_800_000_000;

pub struct Keys {
    pub ours: KeyManager,
    pub other: KeyManager,
}

fn open(name: &str) -> KeyManager {
    let dir = std::env::temp_dir().join(format!("authplane-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let timings = Timings { rotation_interval: 0, publish_ahead: 0, retire_after: 86_400 };
    let km = rt.block_on(KeyManager::open(KeyStore::File { dir: dir.clone() }, timings, NOW)).expect("key store");
    let _ = std::fs::remove_dir_all(&dir);
    km
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys { ours: open("ours"), other: open("other") })
}

/// Applies edits from `data` to `token`: pairs of (position, byte).
pub fn mutate(token: &str, data: &[u8]) -> String {
    let mut bytes = token.as_bytes().to_vec();
    for pair in data.chunks_exact(2) {
        if bytes.is_empty() {
            break;
        }
        let at = pair[0] as usize * bytes.len() / 256;
        match pair[1] {
            // Delete, insert or replace, so the length can change too.
            0 => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, b'.'),
            b => bytes[at] = b,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The access-token claims both JWT targets mint: a user token for
/// [`RESOURCE`], valid for an hour from [`NOW`].
pub fn access_claims() -> AccessClaims {
    AccessClaims {
        iss: ISSUER.into(),
        sub: "user-42".into(),
        aud: vec![RESOURCE.into()],
        client_id: "c1".into(),
        scope: "tools/read".into(),
        iat: NOW,
        exp: NOW + 3600,
        jti: "at_1".into(),
        cnf: None,
    }
}
