//! Group commit for single creates: one writer task per process drains the creates waiting
//! at that moment and writes them in one transaction (one multi-row insert per form and
//! caller, one audit insert), so concurrent clients share a commit instead of queueing for
//! the one write connection. A create that fails is retried alone inside a savepoint, so it
//! fails alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::error::StoreError;
use crate::forms::Registry;
use crate::records::{Actor, insert_records};

/// Most creates written in one transaction.
const MAX_GROUP: usize = 256;

type Reply = oneshot::Sender<Result<Map<String, Value>, StoreError>>;

/// A validated create waiting for the writer.
pub(crate) struct Job {
    pub form: String,
    pub values: Map<String, Value>,
    pub actor: Actor,
    pub reply: Reply,
}

/// Handle of the writer task.
#[derive(Clone)]
pub struct GroupWriter {
    tx: mpsc::Sender<Job>,
}

impl GroupWriter {
    /// Start the writer task.
    pub fn start(
        db: std::sync::Arc<Db>,
        registry: std::sync::Arc<Registry>,
        stats: std::sync::Arc<crate::stats::Stats>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                // Each group in a task of its own: should one panic, its callers get 503
                // (their reply channels drop) and the writer goes on with the next group.
                let (d, r) = (db.clone(), registry.clone());
                match tokio::spawn(async move { write_group(&d, &r, jobs).await }).await {
                    Ok(written) => {
                        for (table, n) in written {
                            // Off the writer's path: creates keep flowing while it runs.
                            let (d, s) = (db.clone(), stats.clone());
                            tokio::spawn(async move {
                                if let Err(e) = s.note(&d, &table, n).await {
                                    tracing::warn!(error = %e, "analyzing a table failed");
                                }
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "a group of creates failed"),
                }
            }
        });
        Self { tx }
    }

    /// Queue a create and wait for its outcome.
    pub(crate) async fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.tx
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))
    }
}

fn fail_all(replies: Vec<Reply>, msg: &str) {
    for r in replies {
        let _ = r.send(Err(StoreError::Unavailable(msg.to_owned())));
    }
}

/// Write the jobs; returns the rows written per table.
async fn write_group(db: &Db, registry: &Registry, jobs: Vec<Job>) -> Vec<(String, u64)> {
    let _writing = registry.change.read().await;
    let snap = registry.snapshot();
    let now: DateTime<Utc> = crate::records::now_micros();
    // Group by form and caller, keeping arrival order inside each group.
    let mut groups: BTreeMap<(String, Option<String>), Vec<Job>> = BTreeMap::new();
    for j in jobs {
        groups
            .entry((j.form.clone(), j.actor.user.clone()))
            .or_default()
            .push(j);
    }
    let txn = match db.writer.begin().await {
        Ok(t) => t,
        Err(e) => {
            let msg = e.to_string();
            fail_all(
                groups.into_values().flatten().map(|j| j.reply).collect(),
                &msg,
            );
            return Vec::new();
        }
    };
    let mut done: Vec<(Reply, Map<String, Value>)> = Vec::new();
    let mut written: Vec<(String, u64)> = Vec::new();
    for ((form, _), group) in groups {
        let entry = match snap.get(&form) {
            Ok(e) => e,
            Err(_) => {
                for j in group {
                    let _ = j.reply.send(Err(StoreError::UnknownForm(form.clone())));
                }
                continue;
            }
        };
        let actor = group[0].actor.clone();
        let before = done.len();
        let values: Vec<Map<String, Value>> = group.iter().map(|j| j.values.clone()).collect();
        let together = match txn.begin().await {
            Ok(sp) => {
                match insert_records(&sp, db, &snap, &entry, values, &actor, now, false, true).await
                {
                    Ok(recs) => match sp.commit().await {
                        Ok(()) => Some(recs),
                        Err(_) => None,
                    },
                    Err(e) if group.len() == 1 => {
                        let _ = sp.rollback().await;
                        if let Some(j) = group.into_iter().next() {
                            let _ = j.reply.send(Err(e));
                        }
                        continue;
                    }
                    Err(_) => {
                        let _ = sp.rollback().await;
                        None
                    }
                }
            }
            Err(_) => None,
        };
        match together {
            Some(recs) => done.extend(group.into_iter().map(|j| j.reply).zip(recs)),
            None => {
                // Something in the group failed: write each alone so only it fails.
                for j in group {
                    let sp = match txn.begin().await {
                        Ok(sp) => sp,
                        Err(e) => {
                            let _ = j.reply.send(Err(e.into()));
                            continue;
                        }
                    };
                    match insert_records(
                        &sp,
                        db,
                        &snap,
                        &entry,
                        vec![j.values],
                        &j.actor,
                        now,
                        false,
                        true,
                    )
                    .await
                    {
                        Ok(mut recs) => match (sp.commit().await, recs.pop()) {
                            (Ok(()), Some(r)) => done.push((j.reply, r)),
                            (Err(e), _) => {
                                let _ = j.reply.send(Err(e.into()));
                            }
                            (Ok(()), None) => {
                                let _ = j
                                    .reply
                                    .send(Err(StoreError::Corrupt("no record created".into())));
                            }
                        },
                        Err(e) => {
                            let _ = sp.rollback().await;
                            let _ = j.reply.send(Err(e));
                        }
                    }
                }
            }
        }
        if done.len() > before {
            let n = (done.len() - before) as u64;
            written.push((entry.table.clone(), n));
            if !entry.form.duplicates.is_empty() {
                let keys = n.saturating_mul(entry.form.duplicates.len() as u64);
                written.push((crate::migrate::MATCH_KEYS.to_owned(), keys));
            }
        }
    }
    match txn.commit().await {
        Ok(()) => {
            db.watch.ring();
            for (reply, rec) in done {
                let _ = reply.send(Ok(rec));
            }
            written
        }
        Err(e) => {
            let msg = e.to_string();
            fail_all(done.into_iter().map(|(r, _)| r).collect(), &msg);
            Vec::new()
        }
    }
}
