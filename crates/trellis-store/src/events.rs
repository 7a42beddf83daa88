//! The workflow outbox: a change to a record of a watched form is written here in the
//! transaction that makes it, so the workflow engine sees every committed change once and
//! never one that rolled back.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde_json::Value;

use crate::db::Watch;
use crate::error::StoreError;
use crate::migrate::EVENTS;
use crate::records::Actor;

/// The event name of an audit action, if workflows care about it.
fn event_action(action: &str) -> Option<&'static str> {
    match action {
        "create" => Some("created"),
        "update" => Some("updated"),
        "delete" => Some("deleted"),
        _ => None,
    }
}

/// Write the outbox rows of these audit entries (form, record id, version, action,
/// changes) that concern watched forms.
pub(crate) async fn emit<C: ConnectionTrait>(
    c: &C,
    watch: &Watch,
    entries: &[(&str, &str, i64, &str, Value)],
    texts: &[String],
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // Collected first: an iterator held across an await would not be Send.
    let rows: Vec<(&str, &str, &str, &str)> = entries
        .iter()
        .zip(texts)
        .filter(|((form, ..), _)| watch.watches(form))
        .filter_map(|((form, id, _, action, _), text)| {
            event_action(action).map(|a| (*form, *id, a, text.as_str()))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let at = now.timestamp_millis();
    let depth = i32::try_from(actor.depth).unwrap_or(i32::MAX);
    let backend = c.get_database_backend();
    let columns = [
        "form",
        "record_id",
        "action",
        "changes",
        "actor",
        "depth",
        "at",
    ];
    for chunk in crate::bulk::runs(&rows, 1000) {
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * columns.len());
        for (form, id, action, changes) in chunk {
            values.extend([
                (*form).into(),
                (*id).into(),
                (*action).into(),
                (*changes).into(),
                actor.user.clone().into(),
                depth.into(),
                at.into(),
            ]);
        }
        c.execute_raw(crate::bulk::insert_statement(
            backend, EVENTS, &columns, values,
        ))
        .await?;
    }
    Ok(())
}
