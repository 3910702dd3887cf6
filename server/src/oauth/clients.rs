//! Finding the client behind a `client_id`: a registered one (config, admin,
//! DCR), or a Client ID Metadata Document when the id is an https URL.

use authplane_core::config::ClientConfig;

use super::cimd;
use super::error::{Error, Kind};
use crate::oauth::Deps;
use crate::store::entries as rows;

/// A client as the protocol sees it.
#[derive(Debug, Clone)]
pub struct Client {
    pub spec: ClientConfig,
    /// Shown on the consent page.
    pub display_name: String,
    pub from_metadata_document: bool,
}

/// Registered clients recently read from the database. Entries live a few
/// seconds; this instance drops them at once when it changes a client, other
/// replicas see the change within [`CACHE_TTL`]. Unknown ids are not cached,
/// so a client registered on another replica is usable immediately.
#[derive(Default)]
pub struct Cache {
    entries: std::sync::RwLock<std::collections::HashMap<String, (i64, Client)>>,
}

pub const CACHE_TTL: i64 = 5;

impl Cache {
    fn get(&self, id: &str, now: i64) -> Option<Client> {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).filter(|(exp, _)| *exp > now).map(|(_, c)| c.clone())
    }

    fn put(&self, c: &Client, now: i64) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (exp, _)| *exp > now);
        }
        map.insert(c.spec.client_id.clone(), (now + CACHE_TTL, c.clone()));
    }

    pub fn invalidate(&self, id: &str) {
        self.entries.write().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    pub fn clear(&self) {
        self.entries.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

pub async fn find(deps: &Deps, client_id: &str, now: i64) -> Result<Option<Client>, Error> {
    find_from(deps, client_id, now, None).await
}

/// [`find`] for a request from `addr`: a metadata-document fetch it causes
/// counts against that address's `limits.cimd_fetches_per_minute`.
pub async fn find_from(
    deps: &Deps,
    client_id: &str,
    now: i64,
    addr: Option<std::net::IpAddr>,
) -> Result<Option<Client>, Error> {
    if let Some(c) = deps.clients.get(client_id, now) {
        return Ok(Some(c));
    }
    if let Some(c) = rows::get_client(&deps.db, client_id).await? {
        let display_name = c.spec.client_name.clone().unwrap_or_else(|| c.spec.client_id.clone());
        let client = Client { spec: c.spec, display_name, from_metadata_document: false };
        deps.clients.put(&client, now);
        return Ok(Some(client));
    }
    let cfg = deps.config.load();
    let url_id =
        client_id.starts_with("https://") || (cfg.oauth.cimd_allow_loopback && client_id.starts_with("http://"));
    if cfg.oauth.client_id_metadata_documents && url_id {
        let per_minute = cfg.limits.cimd_fetches_per_minute;
        let doc = deps
            .cimd
            .resolve(client_id, &cfg.oauth, cfg.limits.cimd_failure_cache.as_secs() as i64, now, || {
                deps.cimd_rate.check(addr, per_minute)
            })
            .await
            .map_err(|e| match e {
                cimd::ResolveError::RateLimited(secs) => {
                    Error::new(Kind::RateLimited, "too many client metadata document fetches from this address")
                        .retry_after(secs)
                }
                cimd::ResolveError::Unusable(why) => Error::new(Kind::InvalidClient, why),
            })?;
        return Ok(Some(from_document(doc)));
    }
    Ok(None)
}

fn from_document(doc: cimd::Document) -> Client {
    let display_name = doc.client_name.clone().unwrap_or_else(|| doc.client_id.clone());
    Client { spec: doc.into_client_config(), display_name, from_metadata_document: true }
}
