//! The DPoP replay store (RFC 9449 §11.1): one row per accepted proof, keyed
//! by SHA-256 of the proof key's thumbprint and its `jti`. The primary key
//! makes single use atomic across replicas: of two requests (or two
//! processes) inserting the same proof, exactly one affects a row.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, TransactionTrait, TryInsertResult,
};

use super::StoreError;
use super::entities::dpop_proof;

/// The row key: the thumbprint scopes a `jti` to one key, so one client's
/// `jti` can never block another's; hashing bounds the length.
pub fn proof_id(jkt: &str, jti: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(jkt.as_bytes());
    ctx.update(b"\0");
    ctx.update(jti.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

/// Group commit for the replay store: concurrent token requests hand their
/// proof to one writer task, which inserts a batch in one transaction (one
/// `INSERT … ON CONFLICT DO NOTHING` per proof, in arrival order, so the
/// second of two equal proofs in a batch is the replay) and answers each
/// caller after the commit. Same guarantee as one insert per request — the
/// answer is given only once the row is durable, and the unique key decides
/// between replicas — at one commit per batch instead of one per request
/// (the commit, an fsync on SQLite, is what costs).
#[derive(Clone)]
pub struct ReplayStore {
    tx: tokio::sync::mpsc::Sender<Pending>,
}

/// (row id, expires_at, whom to tell: fresh or seen before).
type Pending = (String, i64, tokio::sync::oneshot::Sender<Result<bool, String>>);

const MAX_BATCH: usize = 256;

impl ReplayStore {
    pub fn spawn(db: super::Db) -> ReplayStore {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(4096);
        tokio::spawn(async move {
            let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
            // One waits for the first request, then takes what queued behind it.
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let result = insert_batch(&db, &batch).await.map_err(|e| e.to_string());
                for (i, (_, _, done)) in batch.drain(..).enumerate() {
                    let _ = done.send(result.as_ref().map(|fresh| fresh[i]).map_err(Clone::clone));
                }
            }
        });
        ReplayStore { tx }
    }

    /// Records a proof as used until `expires_at`, durably; false when it
    /// already was (a replay).
    pub async fn remember(&self, jkt: &str, jti: &str, expires_at: i64) -> Result<bool, StoreError> {
        let stopped = || StoreError::Db(DbErr::Custom("DPoP replay writer stopped".into()));
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx.send((proof_id(jkt, jti), expires_at, done)).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?.map_err(|e| StoreError::Db(DbErr::Custom(e)))
    }
}

async fn insert_batch(db: &super::Db, batch: &[Pending]) -> Result<Vec<bool>, StoreError> {
    let txn = db.begin().await?;
    let mut fresh = Vec::with_capacity(batch.len());
    for (id, expires_at, _) in batch {
        let r =
            dpop_proof::Entity::insert(dpop_proof::ActiveModel { id: Set(id.clone()), expires_at: Set(*expires_at) })
                .on_conflict_do_nothing()
                .exec_without_returning(&txn)
                .await?;
        fresh.push(matches!(r, TryInsertResult::Inserted(n) if n > 0));
    }
    txn.commit().await?;
    Ok(fresh)
}

/// Deletes proofs that could no longer pass the `iat` window.
pub async fn purge<C: ConnectionTrait>(db: &C, now: i64) -> Result<u64, StoreError> {
    Ok(dpop_proof::Entity::delete_many().filter(dpop_proof::Column::ExpiresAt.lt(now)).exec(db).await?.rows_affected)
}
