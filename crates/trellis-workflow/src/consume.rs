//! The outbox consumer: each committed record change starts the workflows it triggers,
//! (re)sets the timers of workflows that run a while after or before something, and wakes
//! runs waiting for the record to change. Events are claimed, handled and deleted in one
//! transaction, so each one is handled once even with several processes.

use std::sync::Arc;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde_json::{Map, Value, json};
use trellis_meta::workflow::{Trigger, parse_duration};
use trellis_query::value::parse_datetime;
use trellis_store::migrate::{EVENTS, RUNS};
use trellis_store::workflows::Stored;

use crate::error::Result;
use crate::run::{NewRun, holds, insert};
use crate::sql::{exec, iso, now_ms, skip_locked};
use crate::{Inner, MAX_DEPTH};

/// Most events handled in one transaction.
const BATCH: u64 = 256;

struct Event {
    id: i64,
    form: String,
    record_id: String,
    action: String,
    changes: Map<String, Value>,
    actor: Option<String>,
    depth: u32,
    at: i64,
}

/// Handle the events waiting in the outbox. Answers how many.
pub(crate) async fn events(inner: &Arc<Inner>) -> Result<usize> {
    let db = &inner.store.db;
    let txn = db.writer.begin().await?;
    if db.dialect == trellis_store::Dialect::Postgres && !lock_consumer(&txn).await? {
        txn.rollback().await?;
        return Ok(0);
    }
    let mut s = Query::select();
    s.columns(
        [
            "id",
            "form",
            "record_id",
            "action",
            "changes",
            "actor",
            "depth",
            "at",
        ]
        .map(Alias::new),
    )
    .from(Alias::new(EVENTS))
    .order_by(Alias::new("id"), Order::Asc)
    .limit(BATCH);
    skip_locked(&mut s, db.dialect);
    let rows = txn.query_all(&s).await?;
    if rows.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        events.push(Event {
            id: r.try_get_by_index(0)?,
            form: r.try_get_by_index(1)?,
            record_id: r.try_get_by_index(2)?,
            action: r.try_get_by_index(3)?,
            changes: serde_json::from_str(&r.try_get_by_index::<String>(4)?).unwrap_or_default(),
            actor: r.try_get_by_index(5)?,
            depth: u32::try_from(r.try_get_by_index::<i32>(6)?).unwrap_or(0),
            at: r.try_get_by_index(7)?,
        });
    }
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    // A workflow saved through another process a moment ago must see these events.
    inner.defs.refresh(&inner.store).await?;
    // All events in the transaction; should one fail, the batch is handled again with a
    // savepoint per event, and the one that cannot be handled is logged and dropped
    // rather than holding up every event after it.
    let mut failed = false;
    for ev in &events {
        if handle(inner, &txn, ev).await.is_err() {
            failed = true;
            break;
        }
    }
    let txn = if failed {
        txn.rollback().await?;
        let txn = db.writer.begin().await?;
        if db.dialect == trellis_store::Dialect::Postgres && !lock_consumer(&txn).await? {
            txn.rollback().await?;
            return Ok(0);
        }
        // Another process may have handled some of them in between: only those still here.
        let mut again = Query::select();
        again
            .column(Alias::new("id"))
            .from(Alias::new(EVENTS))
            .and_where(Expr::col(Alias::new("id")).is_in(ids.iter().copied()));
        skip_locked(&mut again, db.dialect);
        let still: std::collections::HashSet<i64> = txn
            .query_all(&again)
            .await?
            .iter()
            .map(|r| r.try_get_by_index::<i64>(0))
            .collect::<std::result::Result<_, _>>()?;
        for ev in events.iter().filter(|e| still.contains(&e.id)) {
            let sp = txn.begin().await?;
            match handle(inner, &sp, ev).await {
                Ok(()) => sp.commit().await?,
                // The database failing, or a form this process has not seen yet, is no
                // reason to drop the event: next round.
                Err(e)
                    if crate::run::transient(&e)
                        || crate::run::stale_form(&inner.store, &e).await =>
                {
                    return Err(e);
                }
                Err(e) => {
                    sp.rollback().await?;
                    tracing::error!(form = %ev.form, record = %ev.record_id, action = %ev.action,
                        error = %e, "a record event could not start its workflows");
                }
            }
        }
        txn
    } else {
        txn
    };
    let mut d = Query::delete();
    d.from_table(Alias::new(EVENTS))
        .and_where(Expr::col(Alias::new("id")).is_in(ids.iter().copied()));
    exec(&txn, &d).await?;
    txn.commit().await?;
    Ok(ids.len())
}

/// One consumer at a time across processes (PostgreSQL), so a record's events are handled
/// in order: a timer cancelled by a later event is not set again by an earlier one.
async fn lock_consumer(txn: &DatabaseTransaction) -> Result<bool> {
    Ok(txn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_try_advisory_xact_lock(hashtext('trellis.events'))",
        ))
        .await?
        .map(|r| r.try_get_by_index::<bool>(0))
        .transpose()?
        .unwrap_or(false))
}

/// The value a change gave a field: (before, after), if the event touched it.
fn change(ev: &Event, field: &str) -> Option<(Value, Value)> {
    let v = ev.changes.get(field)?;
    match ev.action.as_str() {
        "created" => Some((Value::Null, v.clone())),
        "updated" | "deleted" => Some((
            v.get("before").cloned().unwrap_or(Value::Null),
            v.get("after").cloned().unwrap_or(Value::Null),
        )),
        _ => None,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A date or datetime value in milliseconds (a date is its midnight, UTC).
fn date_ms(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    if let Some(dt) = parse_datetime(s) {
        return Some(dt.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

async fn handle(inner: &Arc<Inner>, txn: &DatabaseTransaction, ev: &Event) -> Result<()> {
    let now = now_ms();
    let workflows = inner.defs.on_form(&ev.form);
    // Runs waiting for this record to match a filter look again.
    let mut u = Query::update();
    u.table(Alias::new(RUNS))
        .value(Alias::new("wake_at"), now)
        .and_where(Expr::col(Alias::new("form")).eq(ev.form.as_str()))
        .and_where(Expr::col(Alias::new("record_id")).eq(ev.record_id.as_str()))
        .and_where(Expr::col(Alias::new("status")).eq("waiting"))
        .and_where(Expr::col(Alias::new("waiting_for")).eq("until"));
    // Always: a run of an earlier version, or of a workflow since deleted, may be waiting.
    exec(txn, &u).await?;
    if ev.action == "deleted" {
        cancel_timers(txn, None, &ev.form, &ev.record_id).await?;
    }
    let trigger = json!({
        "event": ev.action,
        "changes": ev.changes,
        "actor": ev.actor,
        "at": iso(ev.at),
    });
    let mut record: Option<Option<Map<String, Value>>> = None;
    let too_deep = ev.depth > MAX_DEPTH;
    for wf in workflows.iter() {
        let fire = match &wf.workflow.trigger {
            Trigger::Created => ev.action == "created",
            Trigger::Deleted => ev.action == "deleted",
            Trigger::Updated { fields } => {
                ev.action == "updated"
                    && (fields.is_empty() || fields.iter().any(|f| ev.changes.contains_key(f)))
            }
            Trigger::Saved { fields } => {
                ev.action == "created"
                    || (ev.action == "updated"
                        && (fields.is_empty() || fields.iter().any(|f| ev.changes.contains_key(f))))
            }
            Trigger::Changed { field, from, to } => match change(ev, field) {
                Some((b, a)) if b != a && ev.action != "deleted" => {
                    from.as_ref()
                        .is_none_or(|f| as_text(&b).as_ref() == Some(f))
                        && to.as_ref().is_none_or(|t| as_text(&a).as_ref() == Some(t))
                }
                _ => false,
            },
            Trigger::After { field, delay } => {
                let due = match parse_duration(delay, &wf.workflow.params) {
                    Ok(d) => now + i64::try_from(d.as_millis()).unwrap_or(0),
                    Err(e) => {
                        tracing::warn!(workflow = %wf.workflow.name, error = %e, "bad delay");
                        continue;
                    }
                };
                match field {
                    _ if too_deep => {
                        tracing::warn!(workflow = %wf.workflow.name, record = %ev.record_id,
                            "workflow retrigger depth cut off: no timer set");
                    }
                    None if ev.action == "created" => {
                        schedule(txn, wf, ev, &trigger, due).await?;
                    }
                    Some(f) if ev.action != "deleted" => {
                        if let Some((_, after)) = change(ev, f) {
                            cancel_timers(txn, Some(&wf.workflow.name), &ev.form, &ev.record_id)
                                .await?;
                            if !Value::is_null(&after) {
                                schedule(txn, wf, ev, &trigger, due).await?;
                            }
                        }
                    }
                    _ => {}
                }
                false
            }
            Trigger::Before { field, offset } => {
                if ev.action != "deleted"
                    && !too_deep
                    && let Some((_, after)) = change(ev, field)
                {
                    cancel_timers(txn, Some(&wf.workflow.name), &ev.form, &ev.record_id).await?;
                    let off = parse_duration(offset, &wf.workflow.params)
                        .map(|d| i64::try_from(d.as_millis()).unwrap_or(0));
                    if let (Some(at), Ok(off)) = (date_ms(&after), off)
                        && at > now
                    {
                        // Already inside the window: now rather than never.
                        schedule(txn, wf, ev, &trigger, std::cmp::max(at - off, now)).await?;
                    }
                }
                false
            }
            Trigger::Schedule { .. } | Trigger::Manual { .. } | Trigger::Webhook => false,
        };
        if !fire {
            continue;
        }
        if too_deep {
            insert(
                txn,
                NewRun {
                    wf,
                    record_id: Some(&ev.record_id),
                    depth: ev.depth,
                    trigger: trigger.clone(),
                    status: "cut_off",
                    wake_at: None,
                    waiting_for: None,
                    started: true,
                    error: Some(format!(
                        "not started: workflows set each other off more than {MAX_DEPTH} times in a row"
                    )),
                    dedupe: None,
                },
            )
            .await?;
            tracing::warn!(workflow = %wf.workflow.name, record = %ev.record_id, "workflow retrigger depth cut off");
            continue;
        }
        // The condition is looked at now, against the record as it is: a run is only
        // written for a record that qualifies.
        if wf.workflow.condition.is_some() || wf.workflow.condition_rule.is_some() {
            if record.is_none() {
                record = Some(current(inner, txn, ev).await?);
            }
            let Some(Some(rec)) = &record else { continue };
            let ok = match holds(
                &inner.store,
                txn,
                &ev.form,
                wf.workflow.condition.as_ref(),
                wf.workflow.condition_rule.as_deref(),
                rec,
            )
            .await
            {
                Ok(b) => b,
                Err(e) => {
                    // A broken condition shows as a failed run, not as silence.
                    insert(
                        txn,
                        NewRun {
                            wf,
                            record_id: Some(&ev.record_id),
                            depth: ev.depth,
                            trigger: trigger.clone(),
                            status: "failed",
                            wake_at: None,
                            waiting_for: None,
                            started: true,
                            error: Some(e.to_string()),
                            dedupe: None,
                        },
                    )
                    .await?;
                    continue;
                }
            };
            if !ok {
                continue;
            }
        }
        insert(
            txn,
            NewRun {
                wf,
                record_id: Some(&ev.record_id),
                depth: ev.depth,
                trigger: trigger.clone(),
                status: "ready",
                wake_at: Some(now),
                waiting_for: None,
                started: true,
                error: None,
                dedupe: None,
            },
        )
        .await?;
    }
    Ok(())
}

/// The record an event is about, as it is now (or as it was, if deleted).
async fn current(
    inner: &Inner,
    txn: &DatabaseTransaction,
    ev: &Event,
) -> Result<Option<Map<String, Value>>> {
    if ev.action == "deleted" {
        return Ok(Some(crate::run::as_deleted(&ev.record_id, &ev.changes)));
    }
    Ok(inner
        .store
        .read_record(txn, &ev.form, &ev.record_id)
        .await?)
}

/// A run that starts at `due`, its condition checked then.
async fn schedule(
    txn: &DatabaseTransaction,
    wf: &Stored,
    ev: &Event,
    trigger: &Value,
    due: i64,
) -> Result<()> {
    insert(
        txn,
        NewRun {
            wf,
            record_id: Some(&ev.record_id),
            depth: ev.depth,
            trigger: trigger.clone(),
            status: "waiting",
            wake_at: Some(due),
            waiting_for: Some("trigger"),
            started: false,
            error: None,
            dedupe: None,
        },
    )
    .await?;
    Ok(())
}

/// Cancel the timers not yet due of a record (of one workflow, or all).
async fn cancel_timers<C: ConnectionTrait>(
    c: &C,
    workflow: Option<&str>,
    form: &str,
    record: &str,
) -> Result<()> {
    let now = now_ms();
    let mut u = Query::update();
    u.table(Alias::new(RUNS))
        .value(Alias::new("status"), "cancelled")
        .value(Alias::new("wake_at"), None::<i64>)
        .value(Alias::new("updated_at"), now)
        .value(Alias::new("finished_at"), now)
        .and_where(Expr::col(Alias::new("form")).eq(form))
        .and_where(Expr::col(Alias::new("record_id")).eq(record))
        .and_where(Expr::col(Alias::new("status")).eq("waiting"))
        .and_where(Expr::col(Alias::new("waiting_for")).eq("trigger"));
    if let Some(w) = workflow {
        u.and_where(Expr::col(Alias::new("workflow")).eq(w));
    }
    exec(c, &u).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, changes: Value) -> Event {
        Event {
            id: 1,
            form: "lead".into(),
            record_id: "r".into(),
            action: action.into(),
            changes: serde_json::from_value(changes).unwrap_or_default(),
            actor: None,
            depth: 0,
            at: 0,
        }
    }

    #[test]
    fn a_create_changes_its_fields_from_nothing() {
        let e = ev("created", json!({"status": "new"}));
        assert_eq!(change(&e, "status"), Some((Value::Null, json!("new"))));
        assert_eq!(change(&e, "grade"), None);
        let u = ev(
            "updated",
            json!({"status": {"before": "new", "after": "lost"}}),
        );
        assert_eq!(change(&u, "status"), Some((json!("new"), json!("lost"))));
    }

    #[test]
    fn dates_and_datetimes_become_milliseconds() {
        assert_eq!(date_ms(&json!("1970-01-02")), Some(86_400_000));
        assert_eq!(date_ms(&json!("1970-01-01T00:00:01Z")), Some(1000));
        assert_eq!(date_ms(&json!("soon")), None);
        assert_eq!(date_ms(&json!(5)), None);
    }
}
