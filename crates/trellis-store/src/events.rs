//! The workflow outbox: a change to a record of a watched form is written here in the
//! transaction that makes it, so the workflow engine sees every committed change once and
//! never one that rolled back.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, Query};
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
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // Collected first: an iterator held across an await would not be Send.
    let rows: Vec<(&str, &str, &str, String)> = entries
        .iter()
        .filter(|(form, ..)| watch.watches(form))
        .filter_map(|(form, id, _, action, changes)| {
            event_action(action).map(|a| (*form, *id, a, changes.to_string()))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let at = now.timestamp_millis();
    let depth = i32::try_from(actor.depth).unwrap_or(i32::MAX);
    for chunk in rows.chunks(1000) {
        let mut ins = Query::insert();
        ins.into_table(Alias::new(EVENTS)).columns(
            [
                "form",
                "record_id",
                "action",
                "changes",
                "actor",
                "depth",
                "at",
            ]
            .map(Alias::new),
        );
        for (form, id, action, changes) in chunk {
            ins.values([
                Expr::val(*form),
                Expr::val(*id),
                Expr::val(*action),
                Expr::val(changes.as_str()),
                Expr::val(actor.user.clone()),
                Expr::val(depth),
                Expr::val(at),
            ])
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        }
        c.execute(&ins).await?;
    }
    Ok(())
}
