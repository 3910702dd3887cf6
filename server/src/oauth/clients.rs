//! Finding the client behind a `client_id`: a registered one (config, admin,
//! DCR), or a Client ID Metadata Document when the id is an https URL.

use authplane_core::config::ClientConfig;

use super::cimd;
use super::error::{Error, Kind};
use crate::app::AppState;
use crate::store::registry as rows;

/// A client as the protocol sees it.
#[derive(Debug, Clone)]
pub struct Client {
    pub spec: ClientConfig,
    /// Shown on the consent page.
    pub display_name: String,
    pub from_metadata_document: bool,
}

pub async fn find(state: &AppState, client_id: &str, now: i64) -> Result<Option<Client>, Error> {
    if let Some(c) = rows::get_client(&state.db, client_id).await? {
        let display_name = c.spec.client_name.clone().unwrap_or_else(|| c.spec.client_id.clone());
        return Ok(Some(Client { spec: c.spec, display_name, from_metadata_document: false }));
    }
    let cfg = state.config.load();
    let url_id =
        client_id.starts_with("https://") || (cfg.oauth.cimd_allow_loopback && client_id.starts_with("http://"));
    if cfg.oauth.client_id_metadata_documents && url_id {
        let doc = state
            .cimd
            .resolve(client_id, &cfg.oauth, now)
            .await
            .map_err(|e| Error::new(Kind::InvalidClient, format!("client metadata document {client_id}: {e}")))?;
        return Ok(Some(doc));
    }
    Ok(None)
}

/// The client or `invalid_client`.
pub async fn require(state: &AppState, client_id: &str, now: i64) -> Result<Client, Error> {
    find(state, client_id, now)
        .await?
        .ok_or_else(|| Error::new(Kind::InvalidClient, format!("unknown client {client_id}")))
}

pub(crate) fn from_document(doc: cimd::Document) -> Client {
    let display_name = doc.client_name.clone().unwrap_or_else(|| doc.client_id.clone());
    Client { spec: doc.into_client_config(), display_name, from_metadata_document: true }
}
