//! Scheduled workflows: a tokio-cron-scheduler job per workflow fires in its time zone and
//! starts a run for every record that meets the condition. Every process fires; the runs
//! carry a key of (workflow, firing second, record) that the database keeps unique, so
//! each record gets one run per firing however many processes there are.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use sea_orm::TransactionTrait;
use serde_json::json;
use tokio_cron_scheduler::{Job, JobScheduler};
use trellis_access::Permissions;
use trellis_meta::workflow::Trigger;
use trellis_store::ListQuery;

use crate::Inner;
use crate::error::{Result, WorkflowError};
use crate::run::{NewRun, holds, insert};
use crate::sql::{iso, now_ms};

/// Most records one firing starts runs for.
const MAX_RECORDS: usize = 100_000;

/// The scheduler and the job of each scheduled workflow.
#[derive(Default)]
pub(crate) struct Cron {
    sched: Option<JobScheduler>,
    jobs: HashMap<String, (uuid::Uuid, String)>,
}

fn sched_err(e: impl std::fmt::Display) -> WorkflowError {
    WorkflowError::Scheduler(e.to_string())
}

/// Make the jobs match the scheduled workflows in force; a job that cannot be set up is
/// logged and the others go on.
pub(crate) async fn sync(inner: &Arc<Inner>) {
    if let Err(e) = try_sync(inner).await {
        tracing::error!(error = %e, "scheduling workflows failed");
    }
}

async fn try_sync(inner: &Arc<Inner>) -> Result<()> {
    let mut cron = inner.cron.lock().await;
    let wanted: HashMap<String, (String, String)> = inner
        .defs
        .all()
        .into_iter()
        .filter(|s| s.workflow.active)
        .filter_map(|s| match &s.workflow.trigger {
            Trigger::Schedule { cron, timezone } => Some((
                s.workflow.name.clone(),
                (
                    cron.clone(),
                    timezone.clone().unwrap_or_else(|| "UTC".into()),
                ),
            )),
            _ => None,
        })
        .collect();
    if wanted.is_empty() && cron.sched.is_none() {
        return Ok(());
    }
    if cron.sched.is_none() {
        let s = JobScheduler::new().await.map_err(sched_err)?;
        s.start().await.map_err(sched_err)?;
        cron.sched = Some(s);
    }
    let Some(sched) = cron.sched.clone() else {
        return Ok(());
    };
    let stale: Vec<String> = cron
        .jobs
        .iter()
        .filter(|(name, (_, spec))| {
            wanted
                .get(*name)
                .is_none_or(|(c, tz)| format!("{c}@{tz}") != *spec)
        })
        .map(|(n, _)| n.clone())
        .collect();
    for name in stale {
        if let Some((id, _)) = cron.jobs.remove(&name) {
            sched.remove(&id).await.map_err(sched_err)?;
        }
    }
    for (name, (expr, tz)) in wanted {
        if cron.jobs.contains_key(&name) {
            continue;
        }
        let Ok(zone) = tz.parse::<chrono_tz::Tz>() else {
            tracing::error!(workflow = %name, timezone = %tz, "unknown time zone; not scheduled");
            continue;
        };
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let wf = name.clone();
        let job = Job::new_async_tz(expr.as_str(), zone, move |_id, _lock| {
            let weak = weak.clone();
            let wf = wf.clone();
            Box::pin(async move {
                if let Some(inner) = weak.upgrade()
                    && let Err(e) = fire(&inner, &wf).await
                {
                    tracing::warn!(workflow = %wf, error = %e, "a scheduled workflow failed to fire");
                }
            })
        });
        let job = match job {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(workflow = %name, cron = %expr, error = %e, "not scheduled");
                continue;
            }
        };
        let id = sched.add(job).await.map_err(sched_err)?;
        cron.jobs.insert(name, (id, format!("{expr}@{tz}")));
    }
    Ok(())
}

/// The scheduled second being fired: the latest occurrence of the schedule at or before
/// now (give or take half a second of clock difference between servers), so every
/// process that fires it names it alike.
fn tick(trigger: &Trigger) -> Option<i64> {
    let Trigger::Schedule { cron, timezone } = trigger else {
        return None;
    };
    let zone: chrono_tz::Tz = timezone.as_deref().unwrap_or("UTC").parse().ok()?;
    let parsed = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(cron)
        .ok()?;
    let at = (chrono::Utc::now() + chrono::Duration::milliseconds(500)).with_timezone(&zone);
    parsed
        .find_previous_occurrence(&at, true)
        .ok()
        .map(|t| t.timestamp())
}

/// One firing: a run for every record that meets the condition.
pub(crate) async fn fire(inner: &Arc<Inner>, name: &str) -> Result<usize> {
    let Some(wf) = inner.defs.get(name).filter(|s| s.workflow.active) else {
        return Ok(0);
    };
    let store = &inner.store;
    let second = tick(&wf.workflow.trigger).unwrap_or_else(|| now_ms() / 1000);
    let trigger = json!({"event": "schedule", "at": iso(second * 1000)});
    let system = Permissions::system();
    let mut cursor = None;
    let mut started = 0usize;
    let mut seen = 0usize;
    loop {
        let page = store
            .list(
                &wf.workflow.form,
                &ListQuery {
                    filter: wf.workflow.condition.clone(),
                    sort: None,
                    limit: 500,
                    cursor: cursor.take(),
                    ..ListQuery::default()
                },
                &system,
            )
            .await?;
        let txn = store.db.writer.begin().await?;
        for rec in &page.data {
            seen += 1;
            let Some(id) = rec.get("id").and_then(|v| v.as_str()) else {
                continue;
            };
            if wf.workflow.condition_rule.is_some()
                && !holds(
                    store,
                    &store.db.reader,
                    &wf.workflow.form,
                    None,
                    wf.workflow.condition_rule.as_deref(),
                    rec,
                )
                .await?
            {
                continue;
            }
            let got = insert(
                &txn,
                NewRun {
                    wf: &wf,
                    record_id: Some(id),
                    depth: 0,
                    trigger: trigger.clone(),
                    status: "ready",
                    wake_at: Some(now_ms()),
                    waiting_for: None,
                    started: true,
                    error: None,
                    dedupe: Some(format!("cron:{name}:{second}:{id}")),
                },
            )
            .await?;
            started += usize::from(got.is_some());
        }
        txn.commit().await?;
        match page.next_cursor {
            Some(c) if seen < MAX_RECORDS => cursor = Some(c),
            _ => break,
        }
    }
    if started > 0 {
        store.db.watch.ring();
    }
    Ok(started)
}
