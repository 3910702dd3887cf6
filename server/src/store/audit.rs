//! The audit trail: one row per security-relevant event.

use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use serde::Serialize;

use super::StoreError;
use super::entities::audit_event;

/// What happened, to whom, and the request it belongs to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEvent {
    pub event_type: &'static str,
    pub outcome: &'static str,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub resource: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    /// Small JSON detail; never a secret.
    pub detail: serde_json::Value,
}

/// Inserts the row on `conn`, which may be a transaction so that the row
/// commits with the change it records.
pub async fn record<C: ConnectionTrait>(conn: &C, now_ms: i64, ev: AuditEvent) -> Result<(), StoreError> {
    audit_event::Entity::insert(active(now_ms, ev)).exec_without_returning(conn).await?;
    Ok(())
}

/// Filters of `GET /admin/audit`; times in Unix milliseconds.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub event_type: Option<String>,
    /// Return rows with an id greater than this (keyset pagination).
    pub after_id: Option<i64>,
    pub limit: u64,
}

/// Rows in the order they happened, at most `limit`.
pub async fn query<C: ConnectionTrait>(conn: &C, q: &Query) -> Result<Vec<audit_event::Model>, StoreError> {
    use audit_event::Column as C_;
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
    let mut s = audit_event::Entity::find();
    if let Some(v) = q.since_ms {
        s = s.filter(C_::OccurredAtMs.gte(v));
    }
    if let Some(v) = q.until_ms {
        s = s.filter(C_::OccurredAtMs.lt(v));
    }
    if let Some(v) = &q.user_id {
        s = s.filter(C_::UserId.eq(v.clone()));
    }
    if let Some(v) = &q.client_id {
        s = s.filter(C_::ClientId.eq(v.clone()));
    }
    if let Some(v) = &q.event_type {
        s = s.filter(C_::EventType.eq(v.clone()));
    }
    if let Some(v) = q.after_id {
        s = s.filter(C_::Id.gt(v));
    }
    Ok(s.order_by_asc(C_::Id).limit(q.limit).all(conn).await?)
}

/// Deletes rows older than `before_ms`; returns how many.
pub async fn purge<C: ConnectionTrait>(conn: &C, before_ms: i64) -> Result<u64, StoreError> {
    use sea_orm::{ColumnTrait, QueryFilter};
    Ok(audit_event::Entity::delete_many()
        .filter(audit_event::Column::OccurredAtMs.lt(before_ms))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Group commit for audit rows that are not part of a larger transaction
/// (client-credentials tokens, failures): callers hand their row to one
/// writer task and wait until the batch it joined has committed, so every
/// row is durable before the response while concurrent requests share one
/// INSERT and one commit instead of queueing for the database one by one.
#[derive(Clone)]
pub struct Sink {
    tx: tokio::sync::mpsc::Sender<Pending>,
}

/// A row, its time, and whom to tell when its batch committed.
type Pending = (i64, AuditEvent, tokio::sync::oneshot::Sender<Result<(), String>>);

const MAX_BATCH: usize = 256;

impl Sink {
    pub fn spawn(db: super::Db) -> Sink {
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<(i64, AuditEvent, tokio::sync::oneshot::Sender<Result<(), String>>)>(4096);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            // One waits for the first request, then takes what queued behind it.
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let rows: Vec<audit_event::ActiveModel> =
                    batch.iter().map(|(ms, ev, _)| active(*ms, ev.clone())).collect();
                let result = audit_event::Entity::insert_many(rows)
                    .exec_without_returning(&db)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                for (_, _, done) in batch.drain(..) {
                    let _ = done.send(result.clone());
                }
            }
        });
        Sink { tx }
    }

    /// Records `ev` and returns once it is committed.
    pub async fn record(&self, now_ms: i64, ev: AuditEvent) -> Result<(), StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Db(DbErr::Custom("audit writer stopped".into()));
        self.tx.send((now_ms, ev, done)).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?.map_err(|e| StoreError::Db(DbErr::Custom(e)))
    }
}

fn active(now_ms: i64, ev: AuditEvent) -> audit_event::ActiveModel {
    let detail = if ev.detail.is_null() { "{}".to_owned() } else { ev.detail.to_string() };
    audit_event::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        occurred_at_ms: Set(now_ms),
        event_type: Set(ev.event_type.to_owned()),
        outcome: Set(ev.outcome.to_owned()),
        user_id: Set(ev.user_id),
        client_id: Set(ev.client_id),
        resource: Set(ev.resource),
        request_id: Set(ev.request_id),
        trace_id: Set(ev.trace_id),
        detail: Set(detail),
    }
}
