//! Migrations of the system tables: numbered steps, each applied once, in a transaction.

use sea_orm::sea_query::{ColumnDef, Expr, Index, Table};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, Schema, Set,
    TransactionTrait,
};

use crate::db::Db;
use crate::entity::migration;
use crate::error::StoreError;
use crate::migrate_v1::{bundle, form, form_version, team, team_member, token, user};

/// The audit log table (written with sea-query for multi-row inserts).
pub const AUDIT: &str = "trellis_audit";
/// Autonumber counters.
pub const SEQUENCES: &str = "trellis_sequences";

/// The migrations, in order. Never edit one that has shipped; add a new one. Each builds
/// its tables from a frozen copy of the entities (`migrate_v1`, `migrate_v2`), never from
/// `entity`, which moves on.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, "system tables"),
    (2, "uploaded files"),
    (3, "login failures"),
    (4, "roles, admin audit, public forms, narrower tokens"),
    (5, "rules"),
    (6, "routing turns, re-runs tied to a rule version"),
    (7, "workflow definitions and their versions"),
    (
        8,
        "workflow outbox, runs, steps, tasks, approvals, notifications, messages",
    ),
    (9, "report and dashboard definitions"),
    (10, "import jobs, duplicate-match keys"),
];

/// Rule definitions.
pub const RULES: &str = "trellis_rules";
/// Where a re-run of a rule over every record got to, so it can resume.
pub const RULE_RUNS: &str = "trellis_rule_runs";

/// Workflow definitions, current version.
pub const WORKFLOWS: &str = "trellis_workflows";
/// Every version of every workflow (a run keeps the version it started with).
pub const WORKFLOW_VERSIONS: &str = "trellis_workflow_versions";

/// Report definitions.
pub const REPORTS: &str = "trellis_reports";
/// Dashboard definitions.
pub const DASHBOARDS: &str = "trellis_dashboards";

/// Import jobs: their options, where they got to and what they did.
pub const IMPORTS: &str = "trellis_imports";
/// Each record's normalized key per duplicate rule of its form.
pub const MATCH_KEYS: &str = "trellis_match_keys";

/// Record changes waiting for the workflow engine (the transactional outbox).
pub const EVENTS: &str = "trellis_events";
/// Workflow runs: where each is, and when it wakes.
pub const RUNS: &str = "trellis_runs";
/// The log of every step a run took.
pub const RUN_STEPS: &str = "trellis_run_steps";
/// To-dos, from workflows or people.
pub const TASKS: &str = "trellis_tasks";
/// Approval requests, one per level.
pub const APPROVALS: &str = "trellis_approvals";
/// In-app notices.
pub const NOTIFICATIONS: &str = "trellis_notifications";
/// Outgoing e-mails and webhook calls, each sent once under its own key.
pub const MESSAGES: &str = "trellis_messages";

/// Whose turn it is next, per team, for round-robin routing.
pub const ROUTE_TURNS: &str = "trellis_route_turns";

/// Role definitions.
pub const ROLES: &str = "trellis_roles";
/// Which user holds which role.
pub const USER_ROLES: &str = "trellis_user_roles";
/// Logins, permission changes, tokens, ownership transfers.
pub const ADMIN_AUDIT: &str = "trellis_admin_audit";
/// Forms open to anonymous submission.
pub const PUBLIC_FORMS: &str = "trellis_public_forms";

/// Failed logins, for lockout (and, later, the admin audit).
pub const LOGIN_FAILURES: &str = "trellis_login_failures";

/// An auto-incremented `id` primary key.
fn serial_id() -> ColumnDef {
    ColumnDef::new("id")
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

/// The newest migration this binary knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

async fn apply(txn: &DatabaseTransaction, n: i64) -> Result<(), StoreError> {
    let backend = txn.get_database_backend();
    let dialect = if backend == sea_orm::DbBackend::Postgres {
        trellis_query::Dialect::Postgres
    } else {
        trellis_query::Dialect::Sqlite
    };
    let schema = Schema::new(backend);
    if n == 10 {
        txn.execute(
            Table::create()
                .table(IMPORTS)
                .col(ColumnDef::new("id").text().not_null().primary_key())
                .col(ColumnDef::new("form").text().not_null())
                .col(ColumnDef::new("status").text().not_null())
                .col(ColumnDef::new("options").text().not_null())
                .col(ColumnDef::new("file").text().not_null())
                .col(ColumnDef::new("file_name").text())
                .col(ColumnDef::new("progress").text().not_null())
                .col(ColumnDef::new("created_by").text())
                .col(ColumnDef::new("created_at").text().not_null())
                .col(ColumnDef::new("updated_at").text().not_null())
                .col(ColumnDef::new("finished_at").text()),
        )
        .await?;
        txn.execute(
            Table::create()
                .table(MATCH_KEYS)
                .col(ColumnDef::new("form").text().not_null())
                .col(ColumnDef::new("record_id").text().not_null())
                .col(ColumnDef::new("rule").text().not_null())
                .col(ColumnDef::new("key").text().not_null())
                .primary_key(Index::create().col("form").col("record_id").col("rule")),
        )
        .await?;
        txn.execute(
            Index::create()
                .name("trellis_match_keys_key")
                .table(MATCH_KEYS)
                .col("form")
                .col("rule")
                .col("key"),
        )
        .await?;
    }
    if n == 9 {
        for table in [REPORTS, DASHBOARDS] {
            txn.execute(
                Table::create()
                    .table(table)
                    .col(ColumnDef::new("name").text().not_null().primary_key())
                    .col(ColumnDef::new("form").text())
                    .col(ColumnDef::new("definition").text().not_null())
                    .col(ColumnDef::new("bundle").text())
                    .col(ColumnDef::new("updated_at").text().not_null()),
            )
            .await?;
        }
    }
    if n == 8 {
        workflow_tables(txn).await?;
    }
    if n == 7 {
        txn.execute(
            Table::create()
                .table(WORKFLOWS)
                .col(ColumnDef::new("name").text().not_null().primary_key())
                .col(ColumnDef::new("form").text().not_null())
                .col(ColumnDef::new("version").big_integer().not_null())
                .col(ColumnDef::new("definition").text().not_null())
                .col(ColumnDef::new("bundle").text())
                .col(ColumnDef::new("updated_at").text().not_null()),
        )
        .await?;
        txn.execute(
            Table::create()
                .table(WORKFLOW_VERSIONS)
                .col(ColumnDef::new("name").text().not_null())
                .col(ColumnDef::new("version").big_integer().not_null())
                .col(ColumnDef::new("definition").text().not_null())
                .col(ColumnDef::new("created_at").text().not_null())
                .primary_key(Index::create().col("name").col("version")),
        )
        .await?;
    }
    if n == 6 {
        txn.execute(
            Table::create()
                .table(ROUTE_TURNS)
                .col(ColumnDef::new("team").text().not_null().primary_key())
                .col(ColumnDef::new("turn").big_integer().not_null()),
        )
        .await?;
        // A checkpoint of another version of the rule is not resumed; failures and
        // rejections add up across resumes like the rest.
        for col in [
            ColumnDef::new("version")
                .text()
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new("rejected")
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new("failed")
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
        ] {
            txn.execute(Table::alter().table(RULE_RUNS).add_column(col))
                .await?;
        }
    }
    if n == 5 {
        txn.execute(
            Table::create()
                .table(RULE_RUNS)
                .col(ColumnDef::new("rule").text().not_null().primary_key())
                .col(ColumnDef::new("last_id").text())
                .col(ColumnDef::new("done").big_integer().not_null())
                .col(ColumnDef::new("changed").big_integer().not_null())
                .col(ColumnDef::new("updated_at").text().not_null()),
        )
        .await?;
        txn.execute(
            Table::create()
                .table(RULES)
                .col(ColumnDef::new("name").text().not_null().primary_key())
                .col(ColumnDef::new("form").text().not_null())
                .col(ColumnDef::new("definition").text().not_null())
                .col(ColumnDef::new("bundle").text())
                .col(ColumnDef::new("position").big_integer().not_null())
                .col(ColumnDef::new("updated_at").text().not_null()),
        )
        .await?;
    }
    if n == 4 {
        txn.execute(
            Table::create()
                .table(ROLES)
                .col(ColumnDef::new("name").text().not_null().primary_key())
                .col(ColumnDef::new("definition").text().not_null())
                .col(ColumnDef::new("bundle").text())
                .col(ColumnDef::new("position").big_integer().not_null())
                .col(ColumnDef::new("updated_at").text().not_null()),
        )
        .await?;
        txn.execute(
            Table::create()
                .table(USER_ROLES)
                .col(ColumnDef::new("user_id").text().not_null())
                .col(ColumnDef::new("role").text().not_null())
                .primary_key(Index::create().col("user_id").col("role")),
        )
        .await?;
        txn.execute(
            Index::create()
                .name("ix_user_roles_role")
                .table(USER_ROLES)
                .col("role"),
        )
        .await?;
        txn.execute(
            Table::create()
                .table(ADMIN_AUDIT)
                .col(serial_id())
                .col(ColumnDef::new("at").text().not_null())
                .col(ColumnDef::new("actor").text())
                .col(ColumnDef::new("action").text().not_null())
                .col(ColumnDef::new("target").text())
                .col(ColumnDef::new("ip").text())
                .col(ColumnDef::new("detail").text().not_null()),
        )
        .await?;
        for (name, col) in [
            ("ix_admin_audit_action", "action"),
            ("ix_admin_audit_actor", "actor"),
            ("ix_admin_audit_target", "target"),
        ] {
            txn.execute(
                Index::create()
                    .name(name)
                    .table(ADMIN_AUDIT)
                    .col(col)
                    .col("id"),
            )
            .await?;
        }
        txn.execute(
            Table::create()
                .table(PUBLIC_FORMS)
                .col(ColumnDef::new("form").text().not_null().primary_key())
                .col(ColumnDef::new("public_key").text().not_null().unique_key())
                .col(ColumnDef::new("settings").text().not_null())
                .col(ColumnDef::new("updated_at").text().not_null()),
        )
        .await?;
        txn.execute(
            Table::alter().table("trellis_tokens").add_column(
                ColumnDef::new("read_only")
                    .boolean()
                    .not_null()
                    .default(false),
            ),
        )
        .await?;
        txn.execute(
            Table::alter()
                .table("trellis_tokens")
                .add_column(ColumnDef::new("forms").text()),
        )
        .await?;
        // Forms made before: every plain index gets its owner-led twin.
        for m in form::Entity::find().all(txn).await? {
            let entry = crate::forms::FormEntry::stored(
                serde_json::from_value(m.definition)?,
                m.version,
                serde_json::from_value(m.columns)?,
                m.bundle,
                m.position,
            )?;
            for f in &entry.form.fields {
                let (plain, unique) = crate::forms::wants_index(f);
                if let (true, Some((column, _))) = (plain && !unique, entry.column(&f.name)) {
                    for sql in crate::forms::index_sqls(&entry.table, column, false, dialect) {
                        txn.execute_unprepared(&sql).await?;
                    }
                }
            }
        }
    }
    if n == 3 {
        txn.execute(
            Table::create()
                .table(LOGIN_FAILURES)
                .col(serial_id())
                .col(ColumnDef::new("email").text().not_null())
                .col(ColumnDef::new("ip").text().not_null())
                .col(ColumnDef::new("at").text().not_null()),
        )
        .await?;
        txn.execute(
            Index::create()
                .name("ix_login_failures_email")
                .table(LOGIN_FAILURES)
                .col("email")
                .col("at"),
        )
        .await?;
        txn.execute(
            Index::create()
                .name("ix_login_failures_ip")
                .table(LOGIN_FAILURES)
                .col("ip")
                .col("at"),
        )
        .await?;
    }
    if n == 2 {
        txn.execute(&schema.create_table_from_entity(crate::entity::file::Entity))
            .await?;
    }
    if n == 1 {
        txn.execute(&schema.create_table_from_entity(user::Entity))
            .await?;
        txn.execute(&schema.create_table_from_entity(token::Entity))
            .await?;
        for i in schema.create_index_from_entity(token::Entity) {
            txn.execute(&i).await?;
        }
        txn.execute(&schema.create_table_from_entity(team::Entity))
            .await?;
        txn.execute(&schema.create_table_from_entity(team_member::Entity))
            .await?;
        txn.execute(&schema.create_table_from_entity(form::Entity))
            .await?;
        txn.execute(&schema.create_table_from_entity(form_version::Entity))
            .await?;
        for i in schema.create_index_from_entity(form_version::Entity) {
            txn.execute(&i).await?;
        }
        txn.execute(&schema.create_table_from_entity(bundle::Entity))
            .await?;
        txn.execute(
            Table::create()
                .table(AUDIT)
                .col(serial_id())
                .col(ColumnDef::new("form").text().not_null())
                .col(ColumnDef::new("record_id").text().not_null())
                .col(ColumnDef::new("version").big_integer().not_null())
                .col(ColumnDef::new("action").text().not_null())
                .col(ColumnDef::new("actor").text())
                .col(ColumnDef::new("at").text().not_null())
                .col(ColumnDef::new("changes").text().not_null()),
        )
        .await?;
        txn.execute(
            Index::create()
                .name("ix_audit_record")
                .table(AUDIT)
                .col("form")
                .col("record_id")
                .col("id"),
        )
        .await?;
        txn.execute(
            Table::create()
                .table(SEQUENCES)
                .col(ColumnDef::new("form").text().not_null())
                .col(ColumnDef::new("field").text().not_null())
                .col(ColumnDef::new("scope").text().not_null())
                .col(ColumnDef::new("value").big_integer().not_null())
                .primary_key(Index::create().col("form").col("field").col("scope")),
        )
        .await?;
    }
    Ok(())
}

/// Migration 8. Times the engine compares are milliseconds since 1970, so that due work
/// is found with an index range on any backend.
async fn workflow_tables(txn: &DatabaseTransaction) -> Result<(), StoreError> {
    let ms = |name: &'static str| ColumnDef::new(name).big_integer().not_null().to_owned();
    let ms_null = |name: &'static str| ColumnDef::new(name).big_integer().to_owned();
    let text = |name: &'static str| ColumnDef::new(name).text().not_null().to_owned();
    let text_null = |name: &'static str| ColumnDef::new(name).text().to_owned();
    let int = |name: &'static str| {
        ColumnDef::new(name)
            .integer()
            .not_null()
            .default(0)
            .to_owned()
    };
    txn.execute(
        Table::create()
            .table(EVENTS)
            .col(serial_id())
            .col(text("form"))
            .col(text("record_id"))
            .col(text("action"))
            .col(text("changes"))
            .col(text_null("actor"))
            .col(int("depth"))
            .col(ms("at")),
    )
    .await?;
    txn.execute(
        Table::create()
            .table(RUNS)
            .col(ColumnDef::new("id").text().not_null().primary_key())
            .col(text("workflow"))
            .col(ColumnDef::new("version").big_integer().not_null())
            .col(text("form"))
            .col(text_null("record_id"))
            .col(text("status"))
            .col(int("depth"))
            .col(int("releases"))
            .col(text("trigger"))
            .col(text("state"))
            .col(text_null("waiting_for"))
            .col(ms_null("wake_at"))
            .col(text_null("claim"))
            .col(ms_null("lease_until"))
            .col(text_null("error"))
            .col(text_null("dedupe"))
            .col(ms("started_at"))
            .col(ms("updated_at"))
            .col(ms_null("finished_at")),
    )
    .await?;
    for (name, cols, unique) in [
        // Only runs that can be claimed have a wake-up time: done runs leave the index.
        ("ix_runs_wake", &["wake_at"][..], false),
        ("ix_runs_lease", &["status", "lease_until"][..], false),
        ("ix_runs_workflow", &["workflow", "started_at"][..], false),
        ("ix_runs_record", &["form", "record_id"][..], false),
        ("ux_runs_dedupe", &["dedupe"][..], true),
    ] {
        let mut i = Index::create();
        i.name(name).table(RUNS);
        for c in cols {
            i.col(*c);
        }
        if unique {
            i.unique();
        }
        txn.execute(&i).await?;
    }
    txn.execute(
        Table::create()
            .table(RUN_STEPS)
            .col(serial_id())
            .col(text("run_id"))
            .col(text("path"))
            .col(text_null("step"))
            .col(text("kind"))
            .col(text("status"))
            .col(ms("at"))
            .col(ColumnDef::new("micros").big_integer().not_null().default(0))
            .col(text("detail"))
            .col(text_null("error")),
    )
    .await?;
    txn.execute(
        Index::create()
            .name("ix_run_steps_run")
            .table(RUN_STEPS)
            .col("run_id")
            .col("id"),
    )
    .await?;
    txn.execute(
        Table::create()
            .table(TASKS)
            .col(ColumnDef::new("id").text().not_null().primary_key())
            .col(text("title"))
            .col(text_null("description"))
            .col(text_null("assignee"))
            .col(text_null("role"))
            .col(text_null("form"))
            .col(text_null("record_id"))
            .col(text_null("run_id"))
            .col(text("status"))
            .col(ms_null("due_at"))
            .col(ms("created_at"))
            .col(text_null("created_by"))
            .col(ms_null("completed_at"))
            .col(text_null("completed_by"))
            .col(text_null("comment")),
    )
    .await?;
    for (name, cols) in [
        ("ix_tasks_assignee", &["assignee", "status"][..]),
        ("ix_tasks_role", &["role", "status"][..]),
        ("ix_tasks_record", &["form", "record_id"][..]),
    ] {
        let mut i = Index::create();
        i.name(name).table(TASKS);
        for c in cols {
            i.col(*c);
        }
        txn.execute(&i).await?;
    }
    txn.execute(
        Table::create()
            .table(APPROVALS)
            .col(ColumnDef::new("id").text().not_null().primary_key())
            .col(text("run_id"))
            .col(text("form"))
            .col(text("record_id"))
            .col(int("level"))
            .col(int("levels"))
            .col(text("label"))
            .col(text("approvers"))
            .col(text("status"))
            .col(ms("created_at"))
            .col(text_null("decided_by"))
            .col(ms_null("decided_at"))
            .col(text_null("comment")),
    )
    .await?;
    txn.execute(
        Index::create()
            .name("ix_approvals_status")
            .table(APPROVALS)
            .col("status")
            .col("created_at"),
    )
    .await?;
    txn.execute(
        Table::create()
            .table(NOTIFICATIONS)
            .col(serial_id())
            .col(text("user_id"))
            .col(text("message"))
            .col(text_null("form"))
            .col(text_null("record_id"))
            .col(text_null("run_id"))
            .col(ms("created_at"))
            .col(ms_null("read_at")),
    )
    .await?;
    txn.execute(
        Index::create()
            .name("ix_notifications_user")
            .table(NOTIFICATIONS)
            .col("user_id")
            .col("read_at"),
    )
    .await?;
    txn.execute(
        Table::create()
            .table(MESSAGES)
            .col(ColumnDef::new("id").text().not_null().primary_key())
            .col(text("kind"))
            .col(text_null("run_id"))
            .col(text("payload"))
            .col(text("status"))
            .col(int("attempts"))
            .col(int("max_attempts"))
            .col(ms("next_at"))
            .col(text_null("claim"))
            .col(ms_null("lease_until"))
            .col(text_null("last_error"))
            .col(ms("created_at"))
            .col(ms_null("sent_at")),
    )
    .await?;
    for (name, cols) in [
        ("ix_messages_due", ["status", "next_at"]),
        ("ix_messages_lease", ["status", "lease_until"]),
    ] {
        txn.execute(
            Index::create()
                .name(name)
                .table(MESSAGES)
                .col(cols[0])
                .col(cols[1]),
        )
        .await?;
    }
    Ok(())
}

/// Apply every migration not yet applied.
pub async fn run(db: &Db) -> Result<(), StoreError> {
    let backend = db.writer.get_database_backend();
    let schema = Schema::new(backend);
    // One transaction for the whole run; on PostgreSQL an advisory lock makes processes
    // that start together take turns instead of racing.
    let txn = db.writer.begin().await?;
    if backend == sea_orm::DbBackend::Postgres {
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(7411020001)")
            .await?;
    }
    let mut create = schema.create_table_from_entity(migration::Entity);
    txn.execute(create.if_not_exists()).await?;
    let done: Vec<i64> = migration::Entity::find()
        .all(&txn)
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    for (n, name) in MIGRATIONS {
        if done.contains(n) {
            continue;
        }
        apply(&txn, *n).await?;
        migration::ActiveModel {
            version: Set(*n),
            name: Set((*name).to_owned()),
            applied_at: Set(chrono::Utc::now()),
        }
        .insert(&txn)
        .await?;
        tracing::info!(migration = n, name, "applied migration");
    }
    txn.commit().await?;
    Ok(())
}

/// The newest applied migration, for readiness checks.
pub async fn applied(db: &Db) -> Result<i64, StoreError> {
    let row = db
        .reader
        .query_one(
            sea_orm::sea_query::Query::select()
                .expr(sea_orm::sea_query::Func::max(Expr::col("version")))
                .from(migration::Entity),
        )
        .await?;
    Ok(row
        .and_then(|r| r.try_get_by_index::<Option<i64>>(0).ok().flatten())
        .unwrap_or(0))
}
