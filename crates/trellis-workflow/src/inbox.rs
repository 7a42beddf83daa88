//! What people see and do: tasks, approvals, notices, and the record of runs and
//! messages, with the actions on them (complete, decide, read, retry, replay, start).

use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, QueryResult, TransactionTrait};
use serde_json::{Value, json};
use trellis_meta::workflow::{StepKind, Trigger};
use trellis_store::migrate::{APPROVALS, MESSAGES, NOTIFICATIONS, RUN_STEPS, RUNS, TASKS};

use crate::Engine;
use crate::error::{Result, WorkflowError};
use crate::run::{NewRun, RunRow, insert, open_request};
use crate::sql::{exec, for_update, iso, iso_opt, now_ms};
use crate::state::{self, State};

/// Who is asking: a user id, the roles they hold, and whether they administer.
#[derive(Debug, Clone)]
pub struct Who {
    /// User id.
    pub user: String,
    /// Role names.
    pub roles: Vec<String>,
    /// An administrator sees and may act on everything.
    pub admin: bool,
}

/// Most rows a list answers.
pub const MAX_LIMIT: u64 = 500;

fn text(r: &QueryResult, c: &str) -> Result<String> {
    Ok(r.try_get::<String>("", c)?)
}

fn text_opt(r: &QueryResult, c: &str) -> Result<Option<String>> {
    Ok(r.try_get::<Option<String>>("", c)?)
}

const TASK_COLS: [&str; 15] = [
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
    "created_by",
    "completed_at",
    "completed_by",
    "comment",
];

fn task_json(r: &QueryResult) -> Result<Value> {
    Ok(json!({
        "id": text(r, "id")?,
        "title": text(r, "title")?,
        "description": text_opt(r, "description")?,
        "assignee": text_opt(r, "assignee")?,
        "role": text_opt(r, "role")?,
        "form": text_opt(r, "form")?,
        "record_id": text_opt(r, "record_id")?,
        "run_id": text_opt(r, "run_id")?,
        "status": text(r, "status")?,
        "due_at": iso_opt(r, "due_at")?,
        "overdue": r.try_get::<Option<i64>>("", "due_at")?.is_some_and(|d| d < now_ms())
            && text(r, "status")? == "open",
        "created_at": iso(r.try_get::<i64>("", "created_at")?),
        "created_by": text_opt(r, "created_by")?,
        "completed_at": iso_opt(r, "completed_at")?,
        "completed_by": text_opt(r, "completed_by")?,
        "comment": text_opt(r, "comment")?,
    }))
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// `open`, `done`, or any.
    pub status: Option<String>,
    /// `me` (mine and my roles'), a user id, or anyone's (administrators only).
    pub assignee: Option<String>,
    /// Tasks about records of this form.
    pub form: Option<String>,
    /// Tasks about this record.
    pub record: Option<String>,
    /// Page size.
    pub limit: u64,
}

fn mine(who: &Who) -> Cond {
    let mut c = Cond::any().add(Expr::col(Alias::new("assignee")).eq(who.user.as_str()));
    if !who.roles.is_empty() {
        c = c.add(Expr::col(Alias::new("role")).is_in(who.roles.iter().map(String::as_str)));
    }
    c
}

impl Engine {
    /// Tasks, newest due first.
    pub async fn tasks(&self, who: &Who, q: &TaskQuery) -> Result<Vec<Value>> {
        let mut s = Query::select();
        s.columns(TASK_COLS.map(Alias::new)).from(Alias::new(TASKS));
        match q.assignee.as_deref() {
            None | Some("me") => {
                s.cond_where(mine(who));
            }
            Some("any") if who.admin => {}
            Some(u) if who.admin || u == who.user => {
                s.and_where(Expr::col(Alias::new("assignee")).eq(u));
            }
            Some(_) => {
                return Err(WorkflowError::Forbidden(
                    "only administrators see other people's tasks".into(),
                ));
            }
        }
        if let Some(st) = q.status.as_deref().filter(|s| *s != "any") {
            s.and_where(Expr::col(Alias::new("status")).eq(st));
        }
        if let Some(f) = &q.form {
            s.and_where(Expr::col(Alias::new("form")).eq(f.as_str()));
        }
        if let Some(r) = &q.record {
            s.and_where(Expr::col(Alias::new("record_id")).eq(r.as_str()));
        }
        s.order_by(Alias::new("created_at"), Order::Desc)
            .limit(q.limit.clamp(1, MAX_LIMIT));
        self.store()
            .db
            .reader
            .query_all(&s)
            .await?
            .iter()
            .map(task_json)
            .collect()
    }

    /// A to-do a person gives (to themselves or someone else).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_task(
        &self,
        who: &Who,
        title: &str,
        description: Option<&str>,
        assignee: Option<&str>,
        due_at: Option<i64>,
        form: Option<&str>,
        record: Option<&str>,
    ) -> Result<Value> {
        if title.trim().is_empty() {
            return Err(WorkflowError::Invalid {
                field: "title".into(),
                message: "a task needs a title".into(),
            });
        }
        let assignee = assignee.unwrap_or(&who.user);
        let found = trellis_store::auth::get_user(&self.store().db, assignee)
            .await
            .ok()
            .filter(|u| u.active);
        if found.is_none() {
            return Err(WorkflowError::Invalid {
                field: "assignee".into(),
                message: format!("no active user {assignee:?}"),
            });
        }
        let id = uuid::Uuid::now_v7().to_string();
        let mut ins = Query::insert();
        ins.into_table(Alias::new(TASKS))
            .columns(
                [
                    "id",
                    "title",
                    "description",
                    "assignee",
                    "form",
                    "record_id",
                    "status",
                    "due_at",
                    "created_at",
                    "created_by",
                ]
                .map(Alias::new),
            )
            .values([
                Expr::val(id.as_str()),
                Expr::val(title),
                Expr::val(description),
                Expr::val(assignee),
                Expr::val(form),
                Expr::val(record),
                Expr::val("open"),
                Expr::val(due_at),
                Expr::val(now_ms()),
                Expr::val(who.user.as_str()),
            ])
            .map_err(|e| WorkflowError::step(e.to_string()))?;
        exec(&self.store().db.writer, &ins).await?;
        self.task(&id).await
    }

    async fn task(&self, id: &str) -> Result<Value> {
        let mut s = Query::select();
        s.columns(TASK_COLS.map(Alias::new))
            .from(Alias::new(TASKS))
            .and_where(Expr::col(Alias::new("id")).eq(id));
        let r = self
            .store()
            .db
            .writer
            .query_one(&s)
            .await?
            .ok_or_else(|| WorkflowError::NotFound(format!("task {id}")))?;
        task_json(&r)
    }

    /// Finish a task: its assignee, a holder of its role, or an administrator.
    pub async fn complete_task(&self, who: &Who, id: &str, comment: Option<&str>) -> Result<Value> {
        let t = self.task(id).await?;
        let may = who.admin
            || t["assignee"].as_str() == Some(who.user.as_str())
            || t["role"]
                .as_str()
                .is_some_and(|r| who.roles.iter().any(|x| x == r));
        if !may {
            return Err(WorkflowError::Forbidden("this task is not yours".into()));
        }
        let mut u = Query::update();
        u.table(Alias::new(TASKS))
            .value(Alias::new("status"), "done")
            .value(Alias::new("completed_at"), now_ms())
            .value(Alias::new("completed_by"), who.user.as_str())
            .value(Alias::new("comment"), comment)
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .and_where(Expr::col(Alias::new("status")).eq("open"));
        if exec(&self.store().db.writer, &u).await? == 0 {
            return Err(WorkflowError::Conflict("the task is already done".into()));
        }
        self.task(id).await
    }

    /// Approval requests: `pending` ones waiting for the caller (all, for administrators),
    /// or decided ones the caller could decide.
    pub async fn approvals(
        &self,
        who: &Who,
        status: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Value>> {
        let mut s = approval_select();
        if let Some(st) = status.filter(|s| *s != "any") {
            s.and_where(Expr::col(Alias::new("status")).eq(st));
        }
        if !who.admin {
            // Approvers are kept as a JSON array of ids; ids are UUIDs, so a quoted
            // match cannot hit part of another id.
            s.and_where(Expr::col(Alias::new("approvers")).like(format!("%\"{}\"%", who.user)));
        }
        s.order_by(Alias::new("created_at"), Order::Desc)
            .limit(limit.clamp(1, MAX_LIMIT));
        self.store()
            .db
            .reader
            .query_all(&s)
            .await?
            .iter()
            .map(approval_json)
            .collect()
    }

    /// Approve or reject; the run goes on with the next level or the matching branch.
    pub async fn decide(
        &self,
        who: &Who,
        id: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<Value> {
        let inner = self.inner();
        let db = &inner.store.db;
        let txn = db.writer.begin().await?;
        let mut s = approval_select();
        s.and_where(Expr::col(Alias::new("id")).eq(id));
        for_update(&mut s, db.dialect);
        let row = txn
            .query_one(&s)
            .await?
            .ok_or_else(|| WorkflowError::NotFound(format!("approval {id}")))?;
        let current = approval_json(&row)?;
        if current["status"] != "pending" {
            return Err(WorkflowError::Conflict(format!(
                "the approval is already {}",
                current["status"].as_str().unwrap_or("decided")
            )));
        }
        let approvers: Vec<String> =
            serde_json::from_value(current["approvers"].clone()).unwrap_or_default();
        if !who.admin && !approvers.contains(&who.user) {
            return Err(WorkflowError::Forbidden(
                "you are not an approver of this request".into(),
            ));
        }
        if !approve && comment.is_none_or(|c| c.trim().is_empty()) {
            return Err(WorkflowError::Invalid {
                field: "comment".into(),
                message: "a rejection needs a comment saying why".into(),
            });
        }
        let now = now_ms();
        let decision = if approve { "approve" } else { "reject" };
        let mut u = Query::update();
        u.table(Alias::new(APPROVALS))
            .value(
                Alias::new("status"),
                if approve { "approved" } else { "rejected" },
            )
            .value(Alias::new("decided_by"), who.user.as_str())
            .value(Alias::new("decided_at"), now)
            .value(Alias::new("comment"), comment)
            .and_where(Expr::col(Alias::new("id")).eq(id));
        exec(&txn, &u).await?;
        let run_id = current["run_id"].as_str().unwrap_or_default().to_owned();
        let mut rs = RunRow::select(&run_id);
        rs.and_where(Expr::col(Alias::new("status")).eq("waiting"));
        for_update(&mut rs, db.dialect);
        let r = txn
            .query_one(&rs)
            .await?
            .ok_or_else(|| WorkflowError::Conflict("the run no longer waits for this".into()))?;
        let mut run = RunRow::read(&run_id, &r)?;
        let mut ap = run
            .state
            .approval
            .clone()
            .filter(|a| a.request == id)
            .ok_or_else(|| WorkflowError::Conflict("the run no longer waits for this".into()))?;
        let wf = inner
            .defs
            .version(&inner.store, &run.workflow, run.version)
            .await?;
        let mut wake = false;
        let mut broken: Option<String> = None;
        if approve && ap.at + 1 < ap.levels.len() {
            let path = run.state.path();
            let Some(StepKind::Approval { levels, .. }) =
                state::at(&wf.steps, &run.state.pc).map(|s| &s.kind)
            else {
                return Err(WorkflowError::Conflict(
                    "the run is not at an approval".into(),
                ));
            };
            let record = inner
                .store
                .read_record(
                    &txn,
                    &run.form,
                    run.record_id.as_deref().unwrap_or_default(),
                )
                .await?
                .unwrap_or_default();
            let sp = txn.begin().await?;
            match open_request(
                &sp,
                &wf,
                &path,
                &run,
                levels,
                &ap.levels,
                ap.at + 1,
                &record,
            )
            .await
            {
                Ok(next) => {
                    sp.commit().await?;
                    ap.request = next;
                    ap.at += 1;
                }
                Err(e) => {
                    // The decision stands; the run fails with the reason, and a retry asks
                    // for the approval again from its first level.
                    sp.rollback().await?;
                    broken = Some(format!("{path}: the next level cannot be asked: {e}"));
                }
            }
        } else {
            ap.decision = Some(decision.to_owned());
            run.state.vars.insert(
                "approval".into(),
                json!({"decision": decision, "comment": comment, "by": who.user,
                       "level": current["level"], "label": current["label"]}),
            );
            wake = true;
        }
        run.state.approval = if broken.is_some() { None } else { Some(ap) };
        let mut ur = Query::update();
        ur.table(Alias::new(RUNS))
            .value(Alias::new("state"), serde_json::to_string(&run.state)?)
            .value(Alias::new("updated_at"), now)
            .and_where(Expr::col(Alias::new("id")).eq(run_id.as_str()));
        if wake {
            ur.value(Alias::new("status"), "ready")
                .value(Alias::new("wake_at"), now);
        }
        if let Some(err) = &broken {
            tracing::warn!(run = %run_id, error = %err, "an approval's next level cannot be asked");
            ur.value(Alias::new("status"), "failed")
                .value(Alias::new("error"), err.as_str())
                .value(Alias::new("wake_at"), None::<i64>)
                .value(Alias::new("finished_at"), now);
        }
        exec(&txn, &ur).await?;
        txn.commit().await?;
        db.watch.ring();
        let mut out = current;
        out["status"] = json!(if approve { "approved" } else { "rejected" });
        out["decided_by"] = json!(who.user);
        out["comment"] = json!(comment);
        Ok(out)
    }

    /// The caller's notices, newest first, and how many are unread.
    pub async fn notifications(&self, who: &Who, unread: bool, limit: u64) -> Result<Value> {
        let db = &self.store().db;
        let mut s = Query::select();
        s.columns(
            [
                "id",
                "message",
                "form",
                "record_id",
                "run_id",
                "created_at",
                "read_at",
            ]
            .map(Alias::new),
        )
        .from(Alias::new(NOTIFICATIONS))
        .and_where(Expr::col(Alias::new("user_id")).eq(who.user.as_str()));
        if unread {
            s.and_where(Expr::col(Alias::new("read_at")).is_null());
        }
        s.order_by(Alias::new("id"), Order::Desc)
            .limit(limit.clamp(1, MAX_LIMIT));
        let data = db
            .reader
            .query_all(&s)
            .await?
            .iter()
            .map(|r| {
                Ok(json!({
                    "id": r.try_get::<i64>("", "id")?,
                    "message": text(r, "message")?,
                    "form": text_opt(r, "form")?,
                    "record_id": text_opt(r, "record_id")?,
                    "run_id": text_opt(r, "run_id")?,
                    "created_at": iso(r.try_get::<i64>("", "created_at")?),
                    "read_at": iso_opt(r, "read_at")?,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut c = Query::select();
        c.expr(Expr::col(Alias::new("id")).count())
            .from(Alias::new(NOTIFICATIONS))
            .and_where(Expr::col(Alias::new("user_id")).eq(who.user.as_str()))
            .and_where(Expr::col(Alias::new("read_at")).is_null());
        let unread_n = db
            .reader
            .query_one(&c)
            .await?
            .map(|r| r.try_get_by_index::<i64>(0))
            .transpose()?
            .unwrap_or(0);
        Ok(json!({"data": data, "unread": unread_n}))
    }

    /// Mark the caller's notices read (one, or all). Answers how many changed.
    pub async fn mark_read(&self, who: &Who, id: Option<i64>) -> Result<u64> {
        let mut u = Query::update();
        u.table(Alias::new(NOTIFICATIONS))
            .value(Alias::new("read_at"), now_ms())
            .and_where(Expr::col(Alias::new("user_id")).eq(who.user.as_str()))
            .and_where(Expr::col(Alias::new("read_at")).is_null());
        if let Some(id) = id {
            u.and_where(Expr::col(Alias::new("id")).eq(id));
        }
        Ok(exec(&self.store().db.writer, &u).await?)
    }

    /// Runs, newest first.
    pub async fn runs(
        &self,
        workflow: Option<&str>,
        status: Option<&str>,
        record: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Value>> {
        let mut s = run_select();
        if let Some(w) = workflow {
            s.and_where(Expr::col(Alias::new("workflow")).eq(w));
        }
        if let Some(st) = status {
            s.and_where(Expr::col(Alias::new("status")).eq(st));
        }
        if let Some(r) = record {
            s.and_where(Expr::col(Alias::new("record_id")).eq(r));
        }
        s.order_by(Alias::new("started_at"), Order::Desc)
            .order_by(Alias::new("id"), Order::Desc)
            .limit(limit.clamp(1, MAX_LIMIT));
        self.store()
            .db
            .reader
            .query_all(&s)
            .await?
            .iter()
            .map(run_json)
            .collect()
    }

    /// One run with every step it took.
    pub async fn run(&self, id: &str) -> Result<Value> {
        let db = &self.store().db;
        let mut s = run_select();
        s.and_where(Expr::col(Alias::new("id")).eq(id));
        let r = db
            .reader
            .query_one(&s)
            .await?
            .ok_or_else(|| WorkflowError::NotFound(format!("run {id}")))?;
        let mut out = run_json(&r)?;
        let mut st = Query::select();
        st.columns(
            [
                "path", "step", "kind", "status", "at", "micros", "detail", "error",
            ]
            .map(Alias::new),
        )
        .from(Alias::new(RUN_STEPS))
        .and_where(Expr::col(Alias::new("run_id")).eq(id))
        .order_by(Alias::new("id"), Order::Asc)
        .limit(10_000);
        let steps = db
            .reader
            .query_all(&st)
            .await?
            .iter()
            .map(|r| {
                Ok(json!({
                    "path": text(r, "path")?,
                    "id": text_opt(r, "step")?,
                    "kind": text(r, "kind")?,
                    "status": text(r, "status")?,
                    "at": iso(r.try_get::<i64>("", "at")?),
                    "micros": r.try_get::<i64>("", "micros")?,
                    "detail": serde_json::from_str::<Value>(&text(r, "detail")?).unwrap_or(Value::Null),
                    "error": text_opt(r, "error")?,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        out["steps"] = Value::Array(steps);
        Ok(out)
    }

    /// Take a failed run's failed step again.
    pub async fn retry(&self, id: &str) -> Result<Value> {
        let now = now_ms();
        let mut u = Query::update();
        u.table(Alias::new(RUNS))
            .value(Alias::new("status"), "ready")
            .value(Alias::new("wake_at"), now)
            .value(Alias::new("error"), None::<String>)
            .value(Alias::new("finished_at"), None::<i64>)
            .value(Alias::new("updated_at"), now)
            .value(Alias::new("releases"), 0i32)
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .and_where(Expr::col(Alias::new("status")).eq("failed"));
        if exec(&self.store().db.writer, &u).await? == 0 {
            self.run(id).await?;
            return Err(WorkflowError::Conflict(
                "only a failed run can be retried".into(),
            ));
        }
        self.store().db.watch.ring();
        self.run(id).await
    }

    /// Stop a run that has not ended; its open approvals are withdrawn.
    pub async fn cancel(&self, id: &str) -> Result<Value> {
        let db = &self.store().db;
        let txn = db.writer.begin().await?;
        let now = now_ms();
        let mut u = Query::update();
        u.table(Alias::new(RUNS))
            .value(Alias::new("status"), "cancelled")
            .value(Alias::new("wake_at"), None::<i64>)
            .value(Alias::new("claim"), None::<String>)
            .value(Alias::new("finished_at"), now)
            .value(Alias::new("updated_at"), now)
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .and_where(Expr::col(Alias::new("status")).is_in(["ready", "waiting", "running"]));
        if exec(&txn, &u).await? == 0 {
            drop(txn);
            self.run(id).await?;
            return Err(WorkflowError::Conflict("the run has already ended".into()));
        }
        let mut a = Query::update();
        a.table(Alias::new(APPROVALS))
            .value(Alias::new("status"), "withdrawn")
            .and_where(Expr::col(Alias::new("run_id")).eq(id))
            .and_where(Expr::col(Alias::new("status")).eq("pending"));
        exec(&txn, &a).await?;
        txn.commit().await?;
        self.run(id).await
    }

    /// Start a manual (or webhook-triggered) workflow on a record.
    pub async fn start_run(
        &self,
        workflow: &str,
        record: Option<&str>,
        payload: Option<Value>,
        by: Option<&str>,
    ) -> Result<Value> {
        let inner = self.inner();
        let wf = inner
            .defs
            .get(workflow)
            .ok_or_else(|| WorkflowError::NotFound(format!("workflow {workflow}")))?;
        let event = match &wf.workflow.trigger {
            Trigger::Manual { .. } => "manual",
            Trigger::Webhook => "webhook",
            _ => {
                return Err(WorkflowError::Conflict(format!(
                    "the workflow {workflow} is not started by hand or by a webhook"
                )));
            }
        };
        if !wf.workflow.active {
            return Err(WorkflowError::Conflict(format!(
                "the workflow {workflow} is not active"
            )));
        }
        if let Some(r) = record
            && inner
                .store
                .read_record(&inner.store.db.reader, &wf.workflow.form, r)
                .await?
                .is_none()
        {
            return Err(WorkflowError::NotFound(format!(
                "{} record {r}",
                wf.workflow.form
            )));
        }
        let id = insert(
            &inner.store.db.writer,
            NewRun {
                wf: &wf,
                record_id: record,
                depth: 0,
                trigger: json!({"event": event, "actor": by, "payload": payload, "at": iso(now_ms())}),
                status: "ready",
                wake_at: Some(now_ms()),
                waiting_for: None,
                started: false,
                error: None,
                dedupe: None,
            },
        )
        .await?
        .unwrap_or_default();
        inner.store.db.watch.ring();
        self.run(&id).await
    }

    /// Outgoing messages, newest first (`dead` ones are the dead letters).
    pub async fn messages(&self, status: Option<&str>, limit: u64) -> Result<Vec<Value>> {
        let mut s = Query::select();
        s.columns(
            [
                "id",
                "kind",
                "run_id",
                "payload",
                "status",
                "attempts",
                "max_attempts",
                "next_at",
                "last_error",
                "created_at",
                "sent_at",
            ]
            .map(Alias::new),
        )
        .from(Alias::new(MESSAGES));
        if let Some(st) = status {
            s.and_where(Expr::col(Alias::new("status")).eq(st));
        }
        s.order_by(Alias::new("created_at"), Order::Desc)
            .limit(limit.clamp(1, MAX_LIMIT));
        self.store()
            .db
            .reader
            .query_all(&s)
            .await?
            .iter()
            .map(|r| {
                let mut payload: Value =
                    serde_json::from_str(&text(r, "payload")?).unwrap_or(Value::Null);
                // The signing secret stays in the database.
                if let Some(m) = payload.as_object_mut()
                    && m.get("secret").is_some_and(|s| !s.is_null())
                {
                    m.insert("secret".into(), json!("***"));
                }
                Ok(json!({
                    "id": text(r, "id")?,
                    "kind": text(r, "kind")?,
                    "run_id": text_opt(r, "run_id")?,
                    "payload": payload,
                    "status": text(r, "status")?,
                    "attempts": r.try_get::<i32>("", "attempts")?,
                    "max_attempts": r.try_get::<i32>("", "max_attempts")?,
                    "next_at": iso(r.try_get::<i64>("", "next_at")?),
                    "last_error": text_opt(r, "last_error")?,
                    "created_at": iso(r.try_get::<i64>("", "created_at")?),
                    "sent_at": iso_opt(r, "sent_at")?,
                }))
            })
            .collect()
    }

    /// Send a dead letter again, with a fresh set of attempts and the same key.
    pub async fn replay(&self, id: &str) -> Result<()> {
        let mut u = Query::update();
        u.table(Alias::new(MESSAGES))
            .value(Alias::new("status"), "pending")
            .value(Alias::new("attempts"), 0i32)
            .value(Alias::new("next_at"), now_ms())
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .and_where(Expr::col(Alias::new("status")).eq("dead"));
        if exec(&self.store().db.writer, &u).await? == 0 {
            return Err(WorkflowError::Conflict(
                "only a dead letter can be replayed".into(),
            ));
        }
        self.store().db.watch.ring();
        Ok(())
    }
}

fn approval_select() -> SelectStatement {
    let mut s = Query::select();
    s.columns(
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
            "decided_by",
            "decided_at",
            "comment",
        ]
        .map(Alias::new),
    )
    .from(Alias::new(APPROVALS));
    s
}

fn approval_json(r: &QueryResult) -> Result<Value> {
    Ok(json!({
        "id": text(r, "id")?,
        "run_id": text(r, "run_id")?,
        "form": text(r, "form")?,
        "record_id": text(r, "record_id")?,
        "level": r.try_get::<i32>("", "level")?,
        "levels": r.try_get::<i32>("", "levels")?,
        "label": text(r, "label")?,
        "approvers": serde_json::from_str::<Value>(&text(r, "approvers")?).unwrap_or(Value::Null),
        "status": text(r, "status")?,
        "created_at": iso(r.try_get::<i64>("", "created_at")?),
        "decided_by": text_opt(r, "decided_by")?,
        "decided_at": iso_opt(r, "decided_at")?,
        "comment": text_opt(r, "comment")?,
    }))
}

fn run_select() -> SelectStatement {
    let mut s = Query::select();
    s.columns(
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
            "started_at",
            "updated_at",
            "finished_at",
        ]
        .map(Alias::new),
    )
    .from(Alias::new(RUNS));
    s
}

fn run_json(r: &QueryResult) -> Result<Value> {
    let state: State = serde_json::from_str(&text(r, "state")?).unwrap_or_default();
    Ok(json!({
        "id": text(r, "id")?,
        "workflow": text(r, "workflow")?,
        "version": r.try_get::<i64>("", "version")?,
        "form": text(r, "form")?,
        "record_id": text_opt(r, "record_id")?,
        "status": text(r, "status")?,
        "depth": r.try_get::<i32>("", "depth")?,
        "trigger": serde_json::from_str::<Value>(&text(r, "trigger")?).unwrap_or(Value::Null),
        "at": state.path(),
        "vars": state.vars,
        "waiting_for": text_opt(r, "waiting_for")?,
        "wake_at": iso_opt(r, "wake_at")?,
        "error": text_opt(r, "error")?,
        "started_at": iso(r.try_get::<i64>("", "started_at")?),
        "updated_at": iso(r.try_get::<i64>("", "updated_at")?),
        "finished_at": iso_opt(r, "finished_at")?,
    }))
}
