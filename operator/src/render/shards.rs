//! The registry (ProtectedResources and OAuthClients) split into a fixed
//! number of shard Secrets, so that no single write approaches the 1 MiB
//! limit of a Secret and adding one client rewrites one shard.
//!
//! An entry's shard is a hash of its object name, so it never moves while the
//! shard count stays the same. Each shard holds `registry-NN.yaml` (what the
//! server reads from `--registry-dir`) and `index.json` (object name → entry
//! hash, and what was left out for size), which the OAuthClient and
//! ProtectedResource controllers read to decide `Ready`: an object is Ready
//! only when the Secret the pods mount holds its current entry.
//!
//! A shard that would pass `max_bytes` takes entries oldest first and leaves
//! the rest out (`ConfigTooLarge` on their status); the names of those left
//! out are listed in the index on top of `max_bytes` (about 40 bytes each). A removal only ever
//! shrinks a shard, so deleting a client or resource always takes effect.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use authplane_core::ResourceUri;
use authplane_core::config::{ClientConfig, ResourceConfig};
use serde::{Deserialize, Serialize};

use super::config::Registry;
use super::sha256_hex;

/// Data key of a shard's registry fragment: `registry-NN.yaml`.
pub fn fragment_key(index: u32) -> String {
    format!("registry-{index:02}.yaml")
}

/// Data key of a shard's index.
pub const INDEX_KEY: &str = "index.json";

/// How the registry is split. Operator-wide (`--registry-shards`,
/// `--max-shard-bytes`): the shard count is part of the pod template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sharding {
    pub count: u32,
    pub max_bytes: usize,
}

impl Default for Sharding {
    fn default() -> Self {
        // 16 × 512 KiB: room for about 16,000 clients, each write at most
        // half the API server's limit.
        Sharding { count: 16, max_bytes: 512 * 1024 }
    }
}

/// The shard an object of `kind` named `name` lives in.
pub fn shard_of(name: &str, count: u32) -> u32 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % count.max(1)
}

/// A short hash of an entry as the server will read it.
pub fn entry_hash<T: Serialize>(entry: &T) -> String {
    serde_json::to_vec(entry).map(|b| sha256_hex(&b)[..16].to_owned()).unwrap_or_default()
}

/// What a shard holds, by object name; read back by the status controllers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIndex {
    #[serde(default)]
    pub resources: BTreeMap<String, String>,
    #[serde(default)]
    pub clients: BTreeMap<String, String>,
    /// Objects left out because the shard was full.
    #[serde(default, rename = "tooLarge")]
    pub too_large: BTreeSet<String>,
}

impl ShardIndex {
    /// Key in `too_large` for an object.
    pub fn too_large_key(kind: &str, name: &str) -> String {
        format!("{kind}/{name}")
    }
}

/// One rendered shard.
#[derive(Debug, Clone)]
pub struct Shard {
    pub index: u32,
    pub fragment: String,
    pub entries: ShardIndex,
}

impl Shard {
    pub fn index_json(&self) -> String {
        serde_json::to_string(&self.entries).unwrap_or_default()
    }
}

/// All shards of a registry, and what did not fit.
#[derive(Debug, Clone, Default)]
pub struct Shards {
    pub shards: Vec<Shard>,
    /// `(kind, name)` of every object left out for size.
    pub too_large: Vec<(&'static str, String)>,
    pub resources: usize,
    pub clients: usize,
}

fn item_yaml<T: Serialize>(entry: &T) -> String {
    // A one-element block sequence: "- key: value\n  key: value\n"; placed
    // under `resources:`/`clients:` at column 0 it is the same document.
    serde_saphyr::to_string(&[entry]).unwrap_or_default()
}

fn assemble(resources: &[String], clients: &[String]) -> String {
    let mut out = String::from("# Rendered by authplane-operator. Do not edit.\n");
    for (key, items) in [("resources", resources), ("clients", clients)] {
        if items.is_empty() {
            out.push_str(key);
            out.push_str(": []\n");
        } else {
            out.push_str(key);
            out.push_str(":\n");
            for i in items {
                out.push_str(i);
            }
        }
    }
    out
}

/// Splits `reg` into `s.count` shards. Entries keep the registry's order
/// (oldest first) inside a shard; resources are placed before clients, and a
/// client that names a resource left out is left out too (the server would
/// refuse the whole config otherwise).
pub fn split(reg: &Registry, s: Sharding) -> Shards {
    let count = s.count.max(1);
    struct Acc {
        resources: Vec<String>,
        clients: Vec<String>,
        bytes: usize,
        index: ShardIndex,
    }
    let mut acc: Vec<Acc> = (0..count)
        .map(|_| Acc { resources: Vec::new(), clients: Vec::new(), bytes: 128, index: ShardIndex::default() })
        .collect();
    let mut out = Shards::default();
    let mut dropped: HashSet<ResourceUri> = HashSet::new();
    // Room for the index entry of an object: name, hash, JSON punctuation.
    let index_cost = |name: &str| name.len() + 24;

    for (name, rc) in reg.resource_names.iter().zip(&reg.resources) {
        let a = &mut acc[shard_of(name, count) as usize];
        let item = item_yaml(rc);
        let cost = item.len() + index_cost(name);
        if a.bytes + cost > s.max_bytes {
            a.index.too_large.insert(ShardIndex::too_large_key("ProtectedResource", name));
            out.too_large.push(("ProtectedResource", name.clone()));
            dropped.insert(rc.resource.clone());
            continue;
        }
        a.bytes += cost;
        a.index.resources.insert(name.clone(), entry_hash(rc));
        a.resources.push(item);
        out.resources += 1;
    }
    for (name, cc) in reg.client_names.iter().zip(&reg.clients) {
        let a = &mut acc[shard_of(name, count) as usize];
        let item = item_yaml(cc);
        let cost = item.len() + index_cost(name);
        if a.bytes + cost > s.max_bytes || cc.allowed_resources.iter().any(|r| dropped.contains(r)) {
            a.index.too_large.insert(ShardIndex::too_large_key("OAuthClient", name));
            out.too_large.push(("OAuthClient", name.clone()));
            continue;
        }
        a.bytes += cost;
        a.index.clients.insert(name.clone(), entry_hash(cc));
        a.clients.push(item);
        out.clients += 1;
    }
    out.shards = acc
        .into_iter()
        .enumerate()
        .map(|(i, a)| Shard {
            index: u32::try_from(i).unwrap_or(0),
            fragment: assemble(&a.resources, &a.clients),
            entries: a.index,
        })
        .collect();
    out
}

/// The entries of a shard that the live Secret already holds unchanged: a
/// shard that cannot be written as desired falls back to this, which is never
/// larger than what the API server accepted before, so removals still land.
pub fn keep_only_live(reg: &Registry, s: Sharding, shard: u32, live: &ShardIndex) -> Shard {
    let count = s.count.max(1);
    let mut resources = Vec::new();
    let mut clients = Vec::new();
    let mut index = ShardIndex::default();
    for (name, rc) in reg.resource_names.iter().zip(&reg.resources) {
        let h = entry_hash(rc);
        if shard_of(name, count) == shard && live.resources.get(name) == Some(&h) {
            resources.push(item_yaml(rc));
            index.resources.insert(name.clone(), h);
        }
    }
    let kept: HashSet<&ResourceUri> = reg
        .resource_names
        .iter()
        .zip(&reg.resources)
        .filter(|(n, rc)| shard_of(n, count) != shard || index.resources.get(*n) == Some(&entry_hash(rc)))
        .map(|(_, rc)| &rc.resource)
        .collect();
    for (name, cc) in reg.client_names.iter().zip(&reg.clients) {
        let h = entry_hash(cc);
        if shard_of(name, count) == shard
            && live.clients.get(name) == Some(&h)
            && cc.allowed_resources.iter().all(|r| kept.contains(r))
        {
            clients.push(item_yaml(cc));
            index.clients.insert(name.clone(), h);
        }
    }
    Shard { index: shard, fragment: assemble(&resources, &clients), entries: index }
}

/// A registry fragment as the server reads it (`--registry-dir`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fragment {
    pub resources: Vec<ResourceConfig>,
    pub clients: Vec<ClientConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_assignment_is_stable_and_spread() {
        assert_eq!(shard_of("client-0001", 16), shard_of("client-0001", 16));
        let used: HashSet<u32> = (0..200).map(|i| shard_of(&format!("client-{i:04}"), 16)).collect();
        assert_eq!(used.len(), 16);
    }
}
