//! The audit trail: one row per security-relevant event.

use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use serde::Serialize;

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
pub async fn record<C: ConnectionTrait>(conn: &C, now_ms: i64, ev: AuditEvent) -> Result<(), DbErr> {
    let detail = if ev.detail.is_null() { "{}".to_owned() } else { ev.detail.to_string() };
    audit_event::Entity::insert(audit_event::ActiveModel {
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
    })
    .exec_without_returning(conn)
    .await?;
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
pub async fn query<C: ConnectionTrait>(conn: &C, q: &Query) -> Result<Vec<audit_event::Model>, DbErr> {
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
    s.order_by_asc(C_::Id).limit(q.limit).all(conn).await
}

/// Deletes rows older than `before_ms`; returns how many.
pub async fn purge<C: ConnectionTrait>(conn: &C, before_ms: i64) -> Result<u64, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter};
    Ok(audit_event::Entity::delete_many()
        .filter(audit_event::Column::OccurredAtMs.lt(before_ms))
        .exec(conn)
        .await?
        .rows_affected)
}
