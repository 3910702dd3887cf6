//! The resources this AS serves, held in memory for discovery and for
//! every authorization and token request; refreshed from the database after each change
//! and periodically, so replicas sharing Postgres converge.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use authplane_core::config::ResourceConfig;

use crate::store::{Db, StoreError, entries as rows};

#[derive(Debug, Default)]
pub struct Snapshot {
    pub resources: Vec<ResourceConfig>,
    /// Union of every resource's scopes, sorted (RFC 8414 `scopes_supported`).
    pub scopes_supported: Vec<String>,
}

#[derive(Default)]
pub struct ResourceIndex {
    snapshot: ArcSwap<Snapshot>,
}

impl ResourceIndex {
    pub fn get(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub async fn refresh(&self, db: &Db) -> Result<(), StoreError> {
        let resources: Vec<ResourceConfig> = rows::list_resources(db).await?.into_iter().map(|r| r.spec).collect();
        let scopes: BTreeSet<&String> = resources.iter().flat_map(|r| r.scopes.iter()).collect();
        let scopes_supported = scopes.into_iter().cloned().collect();
        self.snapshot.store(Arc::new(Snapshot { resources, scopes_supported }));
        Ok(())
    }
}
