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
