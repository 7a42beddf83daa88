//! Taking a run's steps: each step is one transaction that does the step's work, logs it
//! and moves the run on, so a crash repeats nothing and loses nothing (the transaction
//! rolls back and the step is taken again by whoever claims the run next).

use std::sync::Arc;

use futures_util::StreamExt;
use std::time::Instant;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult, TransactionTrait};
use serde_json::{Map, Value, json};
use trellis_access::Permissions;
use trellis_meta::workflow::{Step, StepKind, Workflow, parse_duration};
use trellis_query::Filter;
use trellis_rules::RuleError;
use trellis_store::facts::{Host, Turns};
use trellis_store::migrate::{APPROVALS, MESSAGES, NOTIFICATIONS, RUN_STEPS, RUNS, TASKS};
use trellis_store::workflows::Stored;
use trellis_store::{Actor, Store};

use crate::Inner;
use crate::error::{Result, WorkflowError};
use crate::people::{self, Resolved};
use crate::sql::{exec, for_update, iso, now_ms, skip_locked};
use crate::state::{self, Approval, State};
use crate::template;

/// Most runs claimed in one round (twice as many on PostgreSQL).
const CLAIM: u64 = 32;

/// Most runs driven at once on PostgreSQL (fewer with a small pool).
const PARALLEL: usize = 8;

/// A run as the interpreter needs it.
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    pub id: String,
    pub workflow: String,
    pub version: i64,
    pub form: String,
    pub record_id: Option<String>,
    pub depth: u32,
    pub trigger: Value,
    pub state: State,
}

/// A new run to insert.
pub(crate) struct NewRun<'a> {
    pub wf: &'a Stored,
    pub record_id: Option<&'a str>,
    pub depth: u32,
    pub trigger: Value,
    pub status: &'static str,
    pub wake_at: Option<i64>,
    pub waiting_for: Option<&'static str>,
    pub started: bool,
    pub error: Option<String>,
    pub dedupe: Option<String>,
}

/// Insert a run; with a `dedupe` key already taken, nothing is inserted. Answers the id,
/// or `None` when it was a duplicate.
pub(crate) async fn insert<C: ConnectionTrait>(c: &C, r: NewRun<'_>) -> Result<Option<String>> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let mut st = State::new();
    st.started = r.started;
    let finished = matches!(r.status, "failed" | "done" | "cut_off").then_some(now);
    let mut ins = Query::insert();
    ins.into_table(Alias::new(RUNS))
        .columns(
            [
                "id",
                "workflow",
                "version",
                "form",
                "record_id",
                "status",
                "depth",
                "trigger",
                "state",
                "waiting_for",
                "wake_at",
                "error",
                "dedupe",
                "started_at",
                "updated_at",
                "finished_at",
            ]
            .map(Alias::new),
        )
        .values([
            Expr::val(id.as_str()),
            Expr::val(r.wf.workflow.name.as_str()),
            Expr::val(r.wf.version),
            Expr::val(r.wf.workflow.form.as_str()),
            Expr::val(r.record_id),
            Expr::val(r.status),
            Expr::val(i32::try_from(r.depth).unwrap_or(i32::MAX)),
            Expr::val(r.trigger.to_string()),
            Expr::val(serde_json::to_string(&st)?),
            Expr::val(r.waiting_for),
            Expr::val(r.wake_at),
            Expr::val(r.error),
            Expr::val(r.dedupe),
            Expr::val(now),
            Expr::val(now),
            Expr::val(finished),
        ])
        .map_err(|e| WorkflowError::step(e.to_string()))?
        .on_conflict(
            OnConflict::column(Alias::new("dedupe"))
                .do_nothing()
                .to_owned(),
        );
    let n = exec(c, &ins).await?;
    Ok((n > 0).then_some(id))
}

/// Claim the runs that are due (and those whose claimant died) and take their steps.
pub(crate) async fn due(inner: &Arc<Inner>) -> Result<usize> {
    let db = &inner.store.db;
    let now = now_ms();
    let token = uuid::Uuid::new_v4().to_string();
    let txn = db.writer.begin().await?;
    // Two index range scans: runs due (only claimable runs have a wake-up time), and runs
    // whose claimant's lease ran out.
    let mut due = Query::select();
    due.column(Alias::new("id"))
        .from(Alias::new(RUNS))
        .and_where(Expr::col(Alias::new("wake_at")).lte(now))
        .and_where(Expr::col(Alias::new("status")).is_in(["ready", "waiting"]))
        .order_by(Alias::new("wake_at"), Order::Asc)
        .limit(claim_n(inner));
    skip_locked(&mut due, db.dialect);
    let mut stale = Query::select();
    stale
        .column(Alias::new("id"))
        .from(Alias::new(RUNS))
        .and_where(Expr::col(Alias::new("status")).eq("running"))
        .and_where(Expr::col(Alias::new("lease_until")).lt(now))
        .limit(claim_n(inner));
    skip_locked(&mut stale, db.dialect);
    let mut ids = Vec::new();
    for s in [due, stale] {
        for r in txn.query_all(&s).await? {
            ids.push(r.try_get_by_index::<String>(0)?);
        }
    }
    let mut u = Query::update();
    u.table(Alias::new(RUNS))
        .value(Alias::new("status"), "running")
        .value(Alias::new("wake_at"), None::<i64>)
        .value(Alias::new("claim"), token.as_str())
        .value(Alias::new("lease_until"), now + lease_ms(inner))
        .value(Alias::new("updated_at"), now)
        .and_where(Expr::col(Alias::new("id")).is_in(ids.iter().map(String::as_str)));
    exec(&txn, &u).await?;
    txn.commit().await?;
    let n = ids.len();
    // PostgreSQL commits runs side by side on its pool; SQLite's one writer takes them in turn.
    let parallel = match db.dialect {
        // A step can hold its transaction's connection and read on a second one; two are
        // left for the API.
        trellis_store::Dialect::Postgres => {
            usize::try_from(db.max_connections().saturating_sub(2) / 2)
                .unwrap_or(1)
                .clamp(1, PARALLEL)
        }
        trellis_store::Dialect::Sqlite => 1,
    };
    futures_util::stream::iter(ids)
        .for_each_concurrent(parallel, |id| {
            let token = token.as_str();
            async move {
                if let Err(e) = drive(inner, &id, token).await {
                    tracing::warn!(run = %id, error = %e, "a workflow run could not go on");
                }
            }
        })
        .await;
    Ok(n)
}

/// How many runs one round claims.
fn claim_n(inner: &Inner) -> u64 {
    match inner.store.db.dialect {
        trellis_store::Dialect::Postgres => CLAIM * 2,
        trellis_store::Dialect::Sqlite => CLAIM,
    }
}

/// Free every claim (SQLite at start-up: its one process is this one).
pub(crate) async fn unclaim_all(inner: &Inner) -> Result<()> {
    let now = now_ms();
    let mut u = Query::update();
    u.table(Alias::new(RUNS))
        .value(Alias::new("status"), "ready")
        .value(Alias::new("wake_at"), now)
        .value(Alias::new("claim"), None::<String>)
        .value(Alias::new("lease_until"), None::<i64>)
        .and_where(Expr::col(Alias::new("status")).eq("running"));
    exec(&inner.store.db.writer, &u).await?;
    let mut m = Query::update();
    m.table(Alias::new(MESSAGES))
        .value(Alias::new("status"), "pending")
        .value(Alias::new("claim"), None::<String>)
        .value(Alias::new("lease_until"), None::<i64>)
        .and_where(Expr::col(Alias::new("status")).eq("sending"));
    exec(&inner.store.db.writer, &m).await?;
    Ok(())
}

fn lease_ms(inner: &Inner) -> i64 {
    i64::try_from(inner.opts.lease.as_millis()).unwrap_or(120_000)
}

impl RunRow {
    /// A select of the columns [`RunRow::read`] reads, for one run.
    pub(crate) fn select(id: &str) -> SelectStatement {
        let mut s = Query::select();
        s.columns(
            [
                "workflow",
                "version",
                "form",
                "record_id",
                "depth",
                "trigger",
                "state",
            ]
            .map(Alias::new),
        )
        .from(Alias::new(RUNS))
        .and_where(Expr::col(Alias::new("id")).eq(id));
        s
    }

    /// A run from a row of [`RunRow::select`].
    pub(crate) fn read(id: &str, r: &QueryResult) -> Result<Self> {
        Ok(Self {
            id: id.to_owned(),
            workflow: r.try_get_by_index(0)?,
            version: r.try_get_by_index(1)?,
            form: r.try_get_by_index(2)?,
            record_id: r.try_get_by_index(3)?,
            depth: u32::try_from(r.try_get_by_index::<i32>(4)?).unwrap_or(0),
            trigger: serde_json::from_str(&r.try_get_by_index::<String>(5)?)?,
            state: serde_json::from_str(&r.try_get_by_index::<String>(6)?)?,
        })
    }
}

async fn load(
    txn: &DatabaseTransaction,
    inner: &Inner,
    id: &str,
    token: &str,
) -> Result<Option<RunRow>> {
    let mut s = RunRow::select(id);
    s.and_where(Expr::col(Alias::new("claim")).eq(token))
        .and_where(Expr::col(Alias::new("status")).eq("running"));
    for_update(&mut s, inner.store.db.dialect);
    match txn.query_one(&s).await? {
        Some(r) => RunRow::read(id, &r).map(Some),
        None => Ok(None),
    }
}

/// What a step did.
struct Took {
    /// The run's status after it: `running` to go on.
    status: &'static str,
    wake_at: Option<i64>,
    waiting_for: Option<&'static str>,
    /// The log entry: kind, outcome, detail.
    log: Option<(&'static str, &'static str, Value)>,
    recorded: Vec<RuleError>,
}

impl Took {
    fn next(kind: &'static str, detail: Value) -> Self {
        Self {
            status: "running",
            wake_at: None,
            waiting_for: None,
            log: Some((kind, "done", detail)),
            recorded: Vec::new(),
        }
    }

    fn park(
        kind: &'static str,
        waiting_for: &'static str,
        wake_at: Option<i64>,
        detail: Value,
    ) -> Self {
        Self {
            status: "waiting",
            wake_at,
            waiting_for: Some(waiting_for),
            log: Some((kind, "waiting", detail)),
            recorded: Vec::new(),
        }
    }

    fn end(status: &'static str, log: Option<(&'static str, &'static str, Value)>) -> Self {
        Self {
            status,
            wake_at: None,
            waiting_for: None,
            log,
            recorded: Vec::new(),
        }
    }
}

fn kind_name(k: &StepKind) -> &'static str {
    match k {
        StepKind::Set { .. } => "set",
        StepKind::Rule { .. } => "rule",
        StepKind::Assign { .. } => "assign",
        StepKind::Create { .. } => "create",
        StepKind::UpdateRelated { .. } => "update_related",
        StepKind::Task { .. } => "task",
        StepKind::Notify { .. } => "notify",
        StepKind::Email { .. } => "email",
        StepKind::Webhook { .. } => "webhook",
        StepKind::Approval { .. } => "approval",
        StepKind::Wait { .. } => "wait",
        StepKind::If { .. } => "if",
        StepKind::Stop => "stop",
    }
}

/// Most steps taken in one transaction, which commits them together with the run's new
/// position.
const STEPS_PER_TXN: usize = 16;

/// How long a run waits after the database failed under it.
const BACKOFF_MS: i64 = 5_000;

/// How often the database may fail under one run (every 5 s: ten minutes) before the run
/// fails.
const MAX_RELEASES: i32 = 120;

/// A database that failed rather than a step that cannot do its work: the run is taken
/// again later instead of failing.
pub(crate) fn transient(e: &WorkflowError) -> bool {
    matches!(
        e,
        WorkflowError::Db(_)
            | WorkflowError::Store(
                trellis_store::StoreError::Db(_) | trellis_store::StoreError::Unavailable(_)
            )
    )
}

/// Take the steps of a claimed run until it waits, ends or fails.
pub(crate) async fn drive(inner: &Arc<Inner>, id: &str, token: &str) -> Result<()> {
    let db = &inner.store.db;
    let mut careful = false;
    'txn: loop {
        // Taken before the transaction, as form changes take it before theirs.
        let writing = inner.store.registry.change.read().await;
        let txn = db.writer.begin().await?;
        let mut run = match load(&txn, inner, id, token).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                // Someone else holds it now (our lease ran out), or it was cancelled.
                txn.rollback().await?;
                return Ok(());
            }
            Err(e) if transient(&e) => {
                drop(txn);
                drop(writing);
                return release(inner, id, token, &e).await;
            }
            Err(e) => {
                drop(txn);
                drop(writing);
                return fail(inner, id, token, &e.to_string()).await;
            }
        };
        let wf = match inner
            .defs
            .version(&inner.store, &run.workflow, run.version)
            .await
        {
            Ok(w) => w,
            Err(e) => {
                drop(txn);
                drop(writing);
                if transient(&e) {
                    return release(inner, id, token, &e).await;
                }
                return fail(inner, id, token, &e.to_string()).await;
            }
        };
        let mut recorded = Vec::new();
        let mut taken = 0usize;
        let mut seen = None;
        let mut logs: Vec<Entry> = Vec::new();
        let status = loop {
            let t0 = Instant::now();
            let path = run.state.path();
            let step = state::at(&wf.steps, &run.state.pc);
            let step_id = step.and_then(|s| s.id.clone());
            let kind = step.map_or("end", |s| kind_name(&s.kind));
            let before = run.state.clone();
            // Optimistically the steps share the transaction; after a failure they are
            // taken again, each in a savepoint, so the failed one alone is undone.
            let sp = if careful {
                Some(txn.begin().await?)
            } else {
                None
            };
            match take(inner, sp.as_ref().unwrap_or(&txn), &wf, &mut run, &mut seen).await {
                Ok(took) => {
                    if let Some(sp) = sp {
                        sp.commit().await?;
                    }
                    let micros = i64::try_from(t0.elapsed().as_micros()).unwrap_or(i64::MAX);
                    if let Some((kind, outcome, detail)) = &took.log {
                        logs.push(Entry {
                            path: path.clone(),
                            step: step_id.clone(),
                            kind,
                            status: outcome,
                            micros,
                            detail: detail.clone(),
                            error: None,
                        });
                    }
                    recorded.extend(took.recorded.iter().cloned());
                    taken += 1;
                    if took.status != "running" || taken >= STEPS_PER_TXN {
                        log(&txn, id, &logs).await?;
                        save(&txn, inner, &run, token, &took, None).await?;
                        break took.status;
                    }
                }
                Err(e) if transient(&e) || stale_form(&inner.store, &e).await => {
                    drop(sp);
                    drop(txn);
                    drop(writing);
                    // Steps taken before this one in the transaction are taken again.
                    return release(inner, id, token, &e).await;
                }
                Err(_) if !careful => {
                    drop(sp);
                    txn.rollback().await?;
                    drop(writing);
                    careful = true;
                    continue 'txn;
                }
                Err(e) => {
                    // The failed step's work is undone; the steps before it stand.
                    if let Some(sp) = sp {
                        sp.rollback().await?;
                    }
                    run.state = before;
                    let msg = e.to_string();
                    logs.push(Entry {
                        path: path.clone(),
                        step: step_id.clone(),
                        kind,
                        status: "failed",
                        micros: 0,
                        detail: json!({}),
                        error: Some(msg.clone()),
                    });
                    log(&txn, id, &logs).await?;
                    let failed = Took::end("failed", None);
                    save(
                        &txn,
                        inner,
                        &run,
                        token,
                        &failed,
                        Some(&format!("{path}: {msg}")),
                    )
                    .await?;
                    break "failed";
                }
            }
        };
        txn.commit().await?;
        drop(writing);
        // Counted once committed: steps taken again after a rollback count once.
        for e in &logs {
            inner
                .metrics
                .steps
                .with_label_values(&[e.kind, e.status])
                .inc();
            inner
                .metrics
                .step_seconds
                .with_label_values(&[e.kind])
                .observe(e.micros as f64 / 1e6);
        }
        if !recorded.is_empty() {
            trellis_store::rules::record_failures(db, &run.form, &recorded).await;
        }
        if status != "running" {
            if status != "waiting" {
                inner
                    .metrics
                    .runs
                    .with_label_values(&[run.workflow.as_str(), status])
                    .inc();
            }
            return Ok(());
        }
        careful = false;
    }
}

/// Give a run back after the database failed under it, to be taken again shortly.
async fn release(inner: &Inner, id: &str, token: &str, e: &WorkflowError) -> Result<()> {
    tracing::warn!(run = %id, error = %e, "a workflow step met a database error; trying again shortly");
    let now = now_ms();
    let txn = inner.store.db.writer.begin().await?;
    let mut u = Query::update();
    u.table(Alias::new(RUNS))
        .value(Alias::new("status"), "ready")
        .value(Alias::new("wake_at"), now + BACKOFF_MS)
        .value(Alias::new("claim"), None::<String>)
        .value(Alias::new("lease_until"), None::<i64>)
        .value(Alias::new("updated_at"), now)
        .value(
            Alias::new("releases"),
            Expr::col(Alias::new("releases")).add(1),
        )
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .and_where(Expr::col(Alias::new("claim")).eq(token));
    exec(&txn, &u).await?;
    // A database that keeps failing under one run: the run fails, visibly, after a while.
    let mut f = Query::update();
    f.table(Alias::new(RUNS))
        .value(Alias::new("status"), "failed")
        .value(
            Alias::new("error"),
            format!("the database failed {MAX_RELEASES} times under this run; the last time: {e}"),
        )
        .value(Alias::new("wake_at"), None::<i64>)
        .value(Alias::new("finished_at"), now)
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .and_where(Expr::col(Alias::new("releases")).gte(MAX_RELEASES));
    exec(&txn, &f).await?;
    txn.commit().await?;
    Ok(())
}

/// One line of a run's log.
pub(crate) struct Entry {
    pub path: String,
    pub step: Option<String>,
    pub kind: &'static str,
    pub status: &'static str,
    pub micros: i64,
    pub detail: Value,
    pub error: Option<String>,
}

/// Write log lines of a run, in one statement.
pub(crate) async fn log<C: ConnectionTrait>(c: &C, run: &str, entries: &[Entry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let at = now_ms();
    let mut ins = Query::insert();
    ins.into_table(Alias::new(RUN_STEPS)).columns(
        [
            "run_id", "path", "step", "kind", "status", "at", "micros", "detail", "error",
        ]
        .map(Alias::new),
    );
    for e in entries {
        ins.values([
            Expr::val(run),
            Expr::val(e.path.as_str()),
            Expr::val(e.step.clone()),
            Expr::val(e.kind),
            Expr::val(e.status),
            Expr::val(at),
            Expr::val(e.micros),
            Expr::val(e.detail.to_string()),
            Expr::val(e.error.clone()),
        ])
        .map_err(|e| WorkflowError::step(e.to_string()))?;
    }
    exec(c, &ins).await?;
    Ok(())
}

async fn save(
    txn: &DatabaseTransaction,
    inner: &Inner,
    run: &RunRow,
    token: &str,
    t: &Took,
    error: Option<&str>,
) -> Result<()> {
    let now = now_ms();
    let going = t.status == "running";
    let over = !matches!(t.status, "running" | "waiting");
    let mut u = Query::update();
    u.table(Alias::new(RUNS))
        .value(Alias::new("status"), t.status)
        .value(Alias::new("state"), serde_json::to_string(&run.state)?)
        .value(Alias::new("wake_at"), t.wake_at)
        .value(Alias::new("waiting_for"), t.waiting_for)
        .value(Alias::new("claim"), going.then_some(token))
        .value(
            Alias::new("lease_until"),
            going.then_some(now + lease_ms(inner)),
        )
        .value(Alias::new("updated_at"), now)
        .value(Alias::new("finished_at"), over.then_some(now))
        .value(Alias::new("error"), error)
        .and_where(Expr::col(Alias::new("id")).eq(run.id.as_str()))
        .and_where(Expr::col(Alias::new("claim")).eq(token));
    exec(txn, &u).await?;
    Ok(())
}

/// Mark a run failed (when it cannot even be loaded: a missing version, corrupt state),
/// with the error in its log.
async fn fail(inner: &Inner, id: &str, token: &str, msg: &str) -> Result<()> {
    let txn = inner.store.db.writer.begin().await?;
    let entry = Entry {
        path: String::new(),
        step: None,
        kind: "load",
        status: "failed",
        micros: 0,
        detail: json!({}),
        error: Some(msg.to_owned()),
    };
    log(&txn, id, std::slice::from_ref(&entry)).await?;
    let now = now_ms();
    let mut u = Query::update();
    u.table(Alias::new(RUNS))
        .value(Alias::new("status"), "failed")
        .value(Alias::new("error"), msg)
        .value(Alias::new("claim"), None::<String>)
        .value(Alias::new("lease_until"), None::<i64>)
        .value(Alias::new("wake_at"), None::<i64>)
        .value(Alias::new("updated_at"), now)
        .value(Alias::new("finished_at"), now)
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .and_where(Expr::col(Alias::new("claim")).eq(token));
    exec(&txn, &u).await?;
    txn.commit().await?;
    Ok(())
}

/// The record a run works on: as it is now, or as it was when it was deleted.
async fn record_of(
    store: &Store,
    txn: &DatabaseTransaction,
    run: &RunRow,
) -> Result<Option<Map<String, Value>>> {
    let Some(rid) = &run.record_id else {
        return Ok(None);
    };
    if let Some(r) = store.read_record(txn, &run.form, rid).await? {
        return Ok(Some(r));
    }
    if run.trigger.get("event").and_then(Value::as_str) == Some("deleted")
        && let Some(Value::Object(ch)) = run.trigger.get("changes")
    {
        return Ok(Some(as_deleted(rid, ch)));
    }
    Ok(None)
}

/// A deleted record as it was: its id and the values its delete entry says it had.
pub(crate) fn as_deleted(id: &str, changes: &Map<String, Value>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    for (k, v) in changes {
        m.insert(k.clone(), v.get("before").cloned().unwrap_or(Value::Null));
    }
    m
}

/// What templates see.
fn context(wf: &Workflow, run: &RunRow, record: Option<&Map<String, Value>>) -> Value {
    json!({
        "record": record.cloned().unwrap_or_default(),
        "params": wf.params,
        "trigger": run.trigger,
        "vars": run.state.vars,
        "approval": run.state.vars.get("approval").cloned().unwrap_or(Value::Null),
        "run": {"id": run.id, "workflow": run.workflow},
        "now": iso(now_ms()),
    })
}

/// The records a record's relation fields point at, by field (`links.customer.email`).
async fn links(
    store: &Store,
    txn: &DatabaseTransaction,
    form: &str,
    rec: Option<&Map<String, Value>>,
) -> Result<Value> {
    let mut out = Map::new();
    let Some(rec) = rec else {
        return Ok(Value::Object(out));
    };
    let entry = store.registry.get(form)?;
    for f in &entry.form.fields {
        let (Some(target), Some(id)) = (
            f.target.as_deref(),
            rec.get(&f.name).and_then(Value::as_str),
        ) else {
            continue;
        };
        if let Some(r) = store.read_record(txn, target, id).await? {
            out.insert(f.name.clone(), Value::Object(r));
        }
    }
    Ok(Value::Object(out))
}

/// A rule by name. Another process may have saved it a moment ago: a miss reloads the
/// rules before it is an error.
async fn rule_entry(store: &Store, name: &str) -> Result<trellis_store::rules::RuleEntry> {
    if let Some(e) = store.rules.get(name) {
        return Ok(e);
    }
    store.rules.reload(&store.db).await?;
    store
        .rules
        .get(name)
        .ok_or_else(|| WorkflowError::step(format!("no rule named {name:?}")))
}

/// A form another process created a moment ago is not in this process's cache yet: after
/// a reload that finds it, the error is one to try again.
pub(crate) async fn stale_form(store: &Store, e: &WorkflowError) -> bool {
    let WorkflowError::Store(trellis_store::StoreError::UnknownForm(form)) = e else {
        return false;
    };
    match store.registry.refresh(&store.db).await {
        Ok(_) => store.registry.get(form).is_ok(),
        // The database failing is handled as such; this is not a stale cache.
        Err(_) => false,
    }
}

/// Does a record satisfy a filter and a condition rule (each when given)?
pub(crate) async fn holds<C: ConnectionTrait>(
    store: &Store,
    conn: &C,
    form: &str,
    filter: Option<&Value>,
    rule: Option<&str>,
    record: &Map<String, Value>,
) -> Result<bool> {
    if let Some(f) = filter {
        let snap = store.registry.snapshot();
        let parsed = Filter::parse(form, f, &snap, chrono::Utc::now())
            .map_err(|e| WorkflowError::step(format!("condition: {}", e.message)))?;
        if !parsed
            .matches(record)
            .map_err(|e| WorkflowError::step(format!("condition: {}", e.message)))?
        {
            return Ok(false);
        }
    }
    if let Some(name) = rule {
        let entry = rule_entry(store, name).await?;
        let snap = store.registry.snapshot();
        let fe = snap.get(&entry.rule.form)?;
        let mut host = Host::new(conn, store.db.dialect, &snap, &fe, Turns::Peek);
        let out = host
            .run(&entry.compiled, record, None)
            .await?
            .map_err(|e| WorkflowError::step(format!("condition rule: {e}")))?;
        return Ok(match out.value {
            Value::Bool(b) => b,
            Value::Null => false,
            other => {
                return Err(WorkflowError::step(format!(
                    "the condition rule {name:?} answered {other}, not true or false"
                )));
            }
        });
    }
    Ok(true)
}

fn need<'a>(rec: Option<&'a Map<String, Value>>, run: &RunRow) -> Result<&'a Map<String, Value>> {
    rec.ok_or_else(|| {
        WorkflowError::step(format!(
            "the {} record {} is gone",
            run.form,
            run.record_id.as_deref().unwrap_or("?")
        ))
    })
}

fn obj(v: Value, what: &str) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(WorkflowError::step(format!("{what} is not an object"))),
    }
}

/// Take the step at the run's position (checking the condition first, once).
async fn take(
    inner: &Arc<Inner>,
    txn: &DatabaseTransaction,
    wf: &Workflow,
    run: &mut RunRow,
    seen: &mut Option<Option<Map<String, Value>>>,
) -> Result<Took> {
    let store = &inner.store;
    // The record as the last step left it: read again only after a step that writes it.
    let rec = match seen.take() {
        Some(r) => r,
        None => record_of(store, txn, run).await?,
    };
    let writes = state::at(&wf.steps, &run.state.pc).is_some_and(|s| {
        matches!(
            s.kind,
            StepKind::Set { .. } | StepKind::Rule { .. } | StepKind::Assign { .. }
        )
    });
    if run.state.started && !writes {
        *seen = Some(rec.clone());
    }
    if !run.state.started {
        // A timer set before its workflow was switched off or deleted does nothing (after
        // a look at the stored definitions: this process's copy may be a moment old).
        let off = |inner: &Inner| {
            inner
                .defs
                .get(&run.workflow)
                .is_none_or(|w| !w.workflow.active)
        };
        if off(inner) {
            inner.defs.refresh(store).await?;
        }
        if off(inner) {
            return Ok(Took::end(
                "cancelled",
                Some((
                    "condition",
                    "skipped",
                    json!({"reason": "the workflow is not active"}),
                )),
            ));
        }
        run.state.started = true;
        if wf.condition.is_none() && wf.condition_rule.is_none() {
            return Ok(Took {
                log: None,
                ..Took::next("condition", json!({}))
            });
        }
        let r = need(rec.as_ref(), run)?;
        let ok = holds(
            store,
            txn,
            &wf.form,
            wf.condition.as_ref(),
            wf.condition_rule.as_deref(),
            r,
        )
        .await?;
        if !ok {
            return Ok(Took::end(
                "skipped",
                Some((
                    "condition",
                    "skipped",
                    json!({"reason": "the condition does not hold"}),
                )),
            ));
        }
        return Ok(Took::next("condition", json!({"holds": true})));
    }
    let Some(step) = state::at(&wf.steps, &run.state.pc) else {
        return Ok(Took::end("done", None));
    };
    let step: Step = step.clone();
    let path = run.state.path();
    // Only steps with templates need what templates see; related records only when the
    // step's templates look at them (a read per relation).
    let templated = matches!(
        step.kind,
        StepKind::Set { .. }
            | StepKind::Create { .. }
            | StepKind::UpdateRelated { .. }
            | StepKind::Task { .. }
            | StepKind::Notify { .. }
            | StepKind::Email { .. }
            | StepKind::Webhook { .. }
    );
    let mut ctx = if templated {
        context(wf, run, rec.as_ref())
    } else {
        Value::Null
    };
    if templated && serde_json::to_string(&step.kind).is_ok_and(|t| t.contains("links.")) {
        ctx["links"] = links(store, txn, &run.form, rec.as_ref()).await?;
    }
    let actor = Actor {
        user: None,
        depth: run.depth + 1,
    };
    let system = Permissions::system();
    let rid = run.record_id.clone().unwrap_or_default();
    let took = match &step.kind {
        StepKind::Set { values } => {
            need(rec.as_ref(), run)?;
            let vals = obj(
                template::value(
                    &format!("{path}.values"),
                    &Value::Object(values.clone()),
                    &ctx,
                )?,
                "values",
            )?;
            let (_, recorded) = store
                .update_with(txn, &run.form, &rid, vals.clone(), None, &actor, &system)
                .await
                .map_err(|e| step_err(e, String::new()))?;
            Took {
                recorded,
                ..Took::next("set", json!({"values": vals}))
            }
        }
        StepKind::Rule { rule } => {
            let r = need(rec.as_ref(), run)?;
            let entry = rule_entry(store, rule).await?;
            let snap = store.registry.snapshot();
            let fe = snap.get(&run.form)?;
            let mut host = Host::new(txn, store.db.dialect, &snap, &fe, Turns::Peek);
            let out = host
                .run(&entry.compiled, r, None)
                .await?
                .map_err(|e| WorkflowError::step(format!("rule {rule}: {e}")))?;
            let mut detail = json!({"rule": rule, "value": out.value});
            if let Some(field) = &entry.rule.field {
                let mut m = Map::new();
                m.insert(field.clone(), out.value.clone());
                let (_, recorded) = store
                    .update_with(txn, &run.form, &rid, m, None, &actor, &system)
                    .await
                    .map_err(|e| step_err(e, String::new()))?;
                detail["field"] = json!(field);
                Took {
                    recorded,
                    ..Took::next("rule", detail)
                }
            } else {
                Took::next("rule", detail)
            }
        }
        StepKind::Assign { rule } => {
            let r = need(rec.as_ref(), run)?;
            let entry = rule_entry(store, rule).await?;
            let snap = store.registry.snapshot();
            let fe = snap.get(&run.form)?;
            let field = entry.rule.field.clone().unwrap_or_else(|| "owner".into());
            let mut routed = r.clone();
            let creator = r
                .get("created_by")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let recorded = {
                let mut host = Host::new(txn, store.db.dialect, &snap, &fe, Turns::Take);
                trellis_store::rules::route(
                    &mut host,
                    std::slice::from_ref(&entry),
                    &mut routed,
                    creator.as_deref(),
                    "",
                )
                .await
                .map_err(|e| step_err(e, String::new()))?
            };
            let to = routed.get(&field).cloned().unwrap_or(Value::Null);
            if to != r.get(&field).cloned().unwrap_or(Value::Null) {
                let mut m = Map::new();
                m.insert(field.clone(), to.clone());
                store
                    .update_with(txn, &run.form, &rid, m, None, &actor, &system)
                    .await
                    .map_err(|e| step_err(e, String::new()))?;
            }
            Took {
                recorded,
                ..Took::next("assign", json!({"rule": rule, "field": field, "to": to}))
            }
        }
        StepKind::Create { form, values, link } => {
            let mut vals = obj(
                template::value(
                    &format!("{path}.values"),
                    &Value::Object(values.clone()),
                    &ctx,
                )?,
                "values",
            )?;
            if let Some(l) = link {
                vals.insert(l.clone(), json!(rid));
            }
            let (mut recs, recorded) = store
                .create_with(txn, form, vec![vals], &actor, false, &system)
                .await
                .map_err(|e| step_err(e, format!("creating a {form}: ")))?;
            let created = recs.pop().unwrap_or_default();
            let new_id = created.get("id").cloned().unwrap_or(Value::Null);
            let key = step.id.clone().unwrap_or_else(|| format!("created_{form}"));
            run.state.vars.insert(key, Value::Object(created));
            Took {
                recorded,
                ..Took::next("create", json!({"form": form, "id": new_id}))
            }
        }
        StepKind::UpdateRelated { form, via, values } => {
            let vals = obj(
                template::value(
                    &format!("{path}.values"),
                    &Value::Object(values.clone()),
                    &ctx,
                )?,
                "values",
            )?;
            let entry = store.registry.get(form)?;
            let (column, _) = entry
                .column(via)
                .ok_or_else(|| WorkflowError::step(format!("{form} has no field {via:?}")))?;
            let mut s = Query::select();
            s.column(Alias::new("id"))
                .from(Alias::new(&entry.table))
                .and_where(Expr::col(Alias::new(column)).eq(rid.as_str()))
                .limit(1001);
            let ids = txn
                .query_all(&s)
                .await?
                .iter()
                .map(|r| r.try_get_by_index::<String>(0))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if ids.len() > 1000 {
                return Err(WorkflowError::step(format!(
                    "more than 1000 {form} records point here; update them in smaller steps"
                )));
            }
            let mut recorded = Vec::new();
            for id in &ids {
                let (_, r) = store
                    .update_with(txn, form, id, vals.clone(), None, &actor, &system)
                    .await
                    .map_err(|e| step_err(e, format!("updating {form} {id}: ")))?;
                recorded.extend(r);
            }
            Took {
                recorded,
                ..Took::next(
                    "update_related",
                    json!({"form": form, "updated": ids.len()}),
                )
            }
        }
        StepKind::Task {
            title,
            description,
            assignee,
            due,
        } => {
            let r = rec.clone().unwrap_or_default();
            let who = people::resolve(txn, assignee, &r, &format!("{path}.assignee")).await?;
            let title = template::render(&format!("{path}.title"), title, &ctx)?;
            let description = description
                .as_deref()
                .map(|d| template::render(&format!("{path}.description"), d, &ctx))
                .transpose()?;
            let due_at = due
                .as_deref()
                .map(|d| parse_duration(d, &wf.params))
                .transpose()
                .map_err(|e| WorkflowError::step(format!("{path}.due: {e}")))?
                .map(|d| now_ms() + i64::try_from(d.as_millis()).unwrap_or(0));
            let ids = insert_tasks(
                txn,
                &who,
                &title,
                description.as_deref(),
                &run.form,
                run.record_id.as_deref(),
                &run.id,
                due_at,
            )
            .await?;
            Took::next(
                "task",
                json!({"tasks": ids, "title": title, "due_at": due_at.map(iso)}),
            )
        }
        StepKind::Notify { to, message } => {
            let r = rec.clone().unwrap_or_default();
            let who = people::resolve(txn, to, &r, &format!("{path}.to")).await?;
            let message = template::render(&format!("{path}.message"), message, &ctx)?;
            notify(
                txn,
                who.users(),
                &message,
                &run.form,
                run.record_id.as_deref(),
                Some(&run.id),
            )
            .await?;
            Took::next("notify", json!({"to": who.users(), "message": message}))
        }
        StepKind::Email { to, subject, body } => {
            let to = template::render(&format!("{path}.to"), to, &ctx)?;
            let addrs: Vec<String> = to
                .split([',', ';'])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            if addrs.is_empty() {
                return Err(WorkflowError::step(format!(
                    "{path}.to: no address to send to"
                )));
            }
            if let Some(bad) = addrs.iter().find(|a| !a.contains('@')) {
                return Err(WorkflowError::step(format!(
                    "{path}.to: {bad:?} is not an e-mail address"
                )));
            }
            let subject = template::render(&format!("{path}.subject"), subject, &ctx)?;
            let body = template::render(&format!("{path}.body"), body, &ctx)?;
            let id = queue(
                txn,
                "email",
                &run.id,
                &json!({"to": addrs, "subject": subject, "body": body}),
                5,
            )
            .await?;
            Took::next(
                "email",
                json!({"message": id, "to": addrs, "subject": subject}),
            )
        }
        StepKind::Webhook {
            url,
            secret,
            timeout,
            retries,
            body,
        } => {
            let url = template::render(&format!("{path}.url"), url, &ctx)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(WorkflowError::step(format!(
                    "{path}.url: {url:?} is not an http(s) URL"
                )));
            }
            let payload = match body {
                Some(b) => template::value(&format!("{path}.body"), b, &ctx)?,
                None => json!({
                    "workflow": run.workflow,
                    "run": run.id,
                    "event": run.trigger.get("event"),
                    "form": run.form,
                    "record": rec,
                }),
            };
            let timeout_ms = timeout
                .as_deref()
                .map(|t| parse_duration(t, &wf.params))
                .transpose()
                .map_err(|e| WorkflowError::step(format!("{path}.timeout: {e}")))?
                .map_or(10_000, |d| i64::try_from(d.as_millis()).unwrap_or(10_000));
            let secret = secret
                .as_deref()
                .map(|x| template::render(&format!("{path}.secret"), x, &ctx))
                .transpose()?;
            let attempts = i64::from(retries.unwrap_or(5)) + 1;
            let id = queue(
                txn,
                "webhook",
                &run.id,
                &json!({"url": url, "body": payload, "secret": secret, "timeout_ms": timeout_ms}),
                attempts,
            )
            .await?;
            Took::next("webhook", json!({"message": id, "url": url}))
        }
        StepKind::Approval { levels, .. } => {
            if let Some(ap) = run.state.approval.clone() {
                let Some(decision) = ap.decision else {
                    // Woken before a decision: keep waiting.
                    return Ok(Took {
                        log: None,
                        ..Took::park("approval", "approval", None, json!({}))
                    });
                };
                run.state.approval = None;
                let branch = if decision == "approve" {
                    "on_approve"
                } else {
                    "on_reject"
                };
                state::enter(&wf.steps, &mut run.state.pc, branch);
                let detail = run
                    .state
                    .vars
                    .get("approval")
                    .cloned()
                    .unwrap_or(Value::Null);
                return Ok(Took::next("approval", detail));
            }
            let r = need(rec.as_ref(), run)?;
            let mut apply = Vec::new();
            for (i, l) in levels.iter().enumerate() {
                if holds(store, txn, &run.form, l.when.as_ref(), None, r).await? {
                    apply.push(i);
                }
            }
            if apply.is_empty() {
                run.state.vars.insert(
                    "approval".into(),
                    json!({"decision": "approve", "auto": true, "comment": null}),
                );
                state::enter(&wf.steps, &mut run.state.pc, "on_approve");
                return Ok(Took::next(
                    "approval",
                    json!({"decision": "approve", "auto": true, "reason": "no level applies"}),
                ));
            }
            let request = open_request(txn, wf, &path, run, levels, &apply, 0, r).await?;
            run.state.approval = Some(Approval {
                levels: apply.clone(),
                at: 0,
                request: request.clone(),
                decision: None,
            });
            Took::park(
                "approval",
                "approval",
                None,
                json!({"request": request, "levels": apply}),
            )
        }
        StepKind::Wait {
            duration,
            until,
            timeout,
        } => {
            let now = now_ms();
            if let Some(u) = until {
                let r = need(rec.as_ref(), run)?;
                if holds(store, txn, &run.form, Some(u), None, r).await? {
                    run.state.wait_until = None;
                    state::advance(&wf.steps, &mut run.state.pc);
                    return Ok(Took::next("wait", json!({"until": "holds"})));
                }
                let deadline = match run.state.wait_until {
                    Some(d) => Some(d),
                    None => timeout
                        .as_deref()
                        .map(|t| parse_duration(t, &wf.params))
                        .transpose()
                        .map_err(|e| WorkflowError::step(format!("{path}.timeout: {e}")))?
                        .map(|d| now + i64::try_from(d.as_millis()).unwrap_or(0)),
                };
                if let Some(d) = deadline
                    && now >= d
                {
                    run.state.wait_until = None;
                    state::advance(&wf.steps, &mut run.state.pc);
                    return Ok(Took::next("wait", json!({"until": "timed out"})));
                }
                let first = run.state.wait_until.is_none();
                run.state.wait_until = deadline;
                let mut t = Took::park(
                    "wait",
                    "until",
                    deadline,
                    json!({"until": u, "timeout_at": deadline.map(iso)}),
                );
                if !first {
                    t.log = None;
                }
                return Ok(t);
            }
            let d = duration.as_deref().unwrap_or("0s");
            match run.state.wait_until {
                Some(at) if now >= at => {
                    // Moved on below, like every step that ends.
                    run.state.wait_until = None;
                    Took::next("wait", json!({"waited_until": iso(at)}))
                }
                Some(at) => Took {
                    log: None,
                    ..Took::park("wait", "timer", Some(at), json!({}))
                },
                None => {
                    let d = parse_duration(d, &wf.params)
                        .map_err(|e| WorkflowError::step(format!("{path}.duration: {e}")))?;
                    let at = now + i64::try_from(d.as_millis()).unwrap_or(0);
                    run.state.wait_until = Some(at);
                    Took::park("wait", "timer", Some(at), json!({"until": iso(at)}))
                }
            }
        }
        StepKind::If {
            condition, rule, ..
        } => {
            let r = need(rec.as_ref(), run)?;
            let yes = holds(
                store,
                txn,
                &run.form,
                condition.as_ref(),
                rule.as_deref(),
                r,
            )
            .await?;
            state::enter(
                &wf.steps,
                &mut run.state.pc,
                if yes { "then" } else { "else" },
            );
            return Ok(Took::next(
                "if",
                json!({"branch": if yes { "then" } else { "else" }}),
            ));
        }
        StepKind::Stop => {
            run.state.pc.clear();
            return Ok(Took::end("stopped", Some(("stop", "done", json!({})))));
        }
    };
    // Steps that do not move the position themselves go on to the next one.
    if took.status == "running" {
        state::advance(&wf.steps, &mut run.state.pc);
        if run.state.pc.is_empty() {
            return Ok(Took {
                status: "done",
                ..took
            });
        }
    }
    Ok(took)
}

/// A store error from a step's write: the database failing, or a form this process has
/// not loaded yet, stays what it is (the run is tried again); anything else is the step's
/// failure, as one line for the run log.
fn step_err(e: trellis_store::StoreError, prefix: String) -> WorkflowError {
    use trellis_store::StoreError as S;
    match e {
        S::Db(_) | S::Unavailable(_) | S::UnknownForm(_) => WorkflowError::Store(e),
        other => WorkflowError::step(format!("{prefix}{}", describe(&other))),
    }
}

/// A store error as one line for the run log.
fn describe(e: &trellis_store::StoreError) -> String {
    match e {
        trellis_store::StoreError::Validation(errs) => errs
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// Open the approval request of one level, and tell its approvers.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn open_request<C: ConnectionTrait>(
    c: &C,
    wf: &Workflow,
    path: &str,
    run: &RunRow,
    levels: &[trellis_meta::workflow::Level],
    apply: &[usize],
    at: usize,
    record: &Map<String, Value>,
) -> Result<String> {
    let li = apply.get(at).copied().unwrap_or(0);
    let level = levels
        .get(li)
        .ok_or_else(|| WorkflowError::step(format!("{path}: no level {li}")))?;
    let who = people::resolve(
        c,
        &level.approver,
        record,
        &format!("{path}.levels[{li}].approver"),
    )
    .await?;
    let id = uuid::Uuid::now_v7().to_string();
    let label = level
        .label
        .get("en")
        .or_else(|| level.label.values().next())
        .cloned()
        .unwrap_or_else(|| format!("level {}", at + 1));
    let mut ins = Query::insert();
    ins.into_table(Alias::new(APPROVALS))
        .columns(
            [
                "id",
                "run_id",
                "form",
                "record_id",
                "level",
                "levels",
                "label",
                "approvers",
                "status",
                "created_at",
            ]
            .map(Alias::new),
        )
        .values([
            Expr::val(id.as_str()),
            Expr::val(run.id.as_str()),
            Expr::val(run.form.as_str()),
            Expr::val(run.record_id.clone().unwrap_or_default()),
            Expr::val(i32::try_from(at + 1).unwrap_or(1)),
            Expr::val(i32::try_from(apply.len()).unwrap_or(1)),
            Expr::val(label.as_str()),
            Expr::val(serde_json::to_string(who.users())?),
            Expr::val("pending"),
            Expr::val(now_ms()),
        ])
        .map_err(|e| WorkflowError::step(e.to_string()))?;
    exec(c, &ins).await?;
    let name = wf
        .label
        .get("en")
        .or_else(|| wf.label.values().next())
        .cloned()
        .unwrap_or_else(|| wf.name.clone());
    notify(
        c,
        who.users(),
        &format!("Approval needed ({label}): {name}"),
        &run.form,
        run.record_id.as_deref(),
        Some(&run.id),
    )
    .await?;
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn insert_tasks<C: ConnectionTrait>(
    c: &C,
    who: &Resolved,
    title: &str,
    description: Option<&str>,
    form: &str,
    record: Option<&str>,
    run: &str,
    due_at: Option<i64>,
) -> Result<Vec<String>> {
    let rows: Vec<(Option<&str>, Option<&str>)> = match who {
        Resolved::Users(u) => u.iter().map(|x| (Some(x.as_str()), None)).collect(),
        Resolved::Role(r, _) => vec![(None, Some(r.as_str()))],
    };
    let mut ids = Vec::new();
    let mut ins = Query::insert();
    ins.into_table(Alias::new(TASKS)).columns(
        [
            "id",
            "title",
            "description",
            "assignee",
            "role",
            "form",
            "record_id",
            "run_id",
            "status",
            "due_at",
            "created_at",
        ]
        .map(Alias::new),
    );
    for (user, role) in rows {
        let id = uuid::Uuid::now_v7().to_string();
        ins.values([
            Expr::val(id.as_str()),
            Expr::val(title),
            Expr::val(description),
            Expr::val(user),
            Expr::val(role),
            Expr::val(form),
            Expr::val(record),
            Expr::val(run),
            Expr::val("open"),
            Expr::val(due_at),
            Expr::val(now_ms()),
        ])
        .map_err(|e| WorkflowError::step(e.to_string()))?;
        ids.push(id);
    }
    exec(c, &ins).await?;
    Ok(ids)
}

/// In-app notices to users.
pub(crate) async fn notify<C: ConnectionTrait>(
    c: &C,
    users: &[String],
    message: &str,
    form: &str,
    record: Option<&str>,
    run: Option<&str>,
) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let mut ins = Query::insert();
    ins.into_table(Alias::new(NOTIFICATIONS)).columns(
        [
            "user_id",
            "message",
            "form",
            "record_id",
            "run_id",
            "created_at",
        ]
        .map(Alias::new),
    );
    for u in users {
        ins.values([
            Expr::val(u.as_str()),
            Expr::val(message),
            Expr::val(form),
            Expr::val(record),
            Expr::val(run),
            Expr::val(now_ms()),
        ])
        .map_err(|e| WorkflowError::step(e.to_string()))?;
    }
    exec(c, &ins).await?;
    Ok(())
}

/// Queue an outgoing message; its id is the key the receiver sees.
async fn queue<C: ConnectionTrait>(
    c: &C,
    kind: &str,
    run: &str,
    payload: &Value,
    max_attempts: i64,
) -> Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let mut ins = Query::insert();
    ins.into_table(Alias::new(MESSAGES))
        .columns(
            [
                "id",
                "kind",
                "run_id",
                "payload",
                "status",
                "attempts",
                "max_attempts",
                "next_at",
                "created_at",
            ]
            .map(Alias::new),
        )
        .values([
            Expr::val(id.as_str()),
            Expr::val(kind),
            Expr::val(run),
            Expr::val(payload.to_string()),
            Expr::val("pending"),
            Expr::val(0i32),
            Expr::val(i32::try_from(max_attempts).unwrap_or(i32::MAX)),
            Expr::val(now),
            Expr::val(now),
        ])
        .map_err(|e| WorkflowError::step(e.to_string()))?;
    exec(c, &ins).await?;
    Ok(id)
}
