//! Command-line interface. Every setting is a flag, an environment variable and a key of
//! the optional TOML file (`--config`), in that order of precedence.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::Value;
use trellis_server::ServerConfig;
use trellis_store::{Actor, DbOptions, Store, auth, bundles};

const DEMO_BUNDLE: &str = include_str!(concat!(env!("OUT_DIR"), "/crm_bundle.json"));
const DEMO_SEED: &str = include_str!(concat!(env!("OUT_DIR"), "/crm_demo.json"));

/// Trellis: a self-hosted no-code platform.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about)]
struct Cli {
    /// A TOML file with settings (keys as the long flags, with underscores).
    #[arg(long, env = "TRELLIS_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Database: `sqlite:PATH` (default `./trellis.db`) or `postgres://…`.
    #[arg(
        long,
        env = "TRELLIS_DATABASE_URL",
        default_value = "sqlite:./trellis.db",
        global = true
    )]
    database_url: String,
    /// Log format: `text` or `json`.
    #[arg(
        long,
        env = "TRELLIS_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: String,
    /// Most database connections (read pool).
    #[arg(
        long,
        env = "TRELLIS_DB_MAX_CONNECTIONS",
        default_value_t = 8,
        global = true
    )]
    db_max_connections: u32,
    #[command(subcommand)]
    command: Command,
}

/// Settings of the workflow engine.
#[derive(Debug, Clone, clap::Args)]
struct WorkflowArgs {
    /// SMTP server for workflow e-mail (without one, e-mails wait in the outbox).
    #[arg(long, env = "TRELLIS_SMTP_HOST")]
    smtp_host: Option<String>,
    /// SMTP port.
    #[arg(long, env = "TRELLIS_SMTP_PORT", default_value_t = 25)]
    smtp_port: u16,
    /// Upgrade the SMTP connection with STARTTLS.
    #[arg(long, env = "TRELLIS_SMTP_STARTTLS", default_value_t = false)]
    smtp_starttls: bool,
    /// SMTP user name.
    #[arg(long, env = "TRELLIS_SMTP_USER")]
    smtp_user: Option<String>,
    /// SMTP password.
    #[arg(long, env = "TRELLIS_SMTP_PASSWORD", hide_env_values = true)]
    smtp_password: Option<String>,
    /// The sender of workflow e-mail.
    #[arg(
        long,
        env = "TRELLIS_SMTP_FROM",
        default_value = "Trellis <trellis@localhost>"
    )]
    smtp_from: String,
    /// How often the engine looks for due work when nothing wakes it, in milliseconds.
    #[arg(long, env = "TRELLIS_WORKFLOW_POLL_MS", default_value_t = 500)]
    workflow_poll_ms: u64,
    /// The first retry of a failed webhook waits this long (ms); each next one twice as long.
    #[arg(long, env = "TRELLIS_WEBHOOK_RETRY_BASE_MS", default_value_t = 1000)]
    webhook_retry_base_ms: u64,
    /// How long a process's claim on a run or message holds, in seconds.
    #[arg(long, env = "TRELLIS_WORKFLOW_LEASE_SECS", default_value_t = 60)]
    workflow_lease_secs: u64,
}

impl WorkflowArgs {
    fn options(&self) -> trellis_workflow::Options {
        trellis_workflow::Options {
            poll: std::time::Duration::from_millis(self.workflow_poll_ms.max(10)),
            lease: std::time::Duration::from_secs(self.workflow_lease_secs.max(5)),
            retry_base: std::time::Duration::from_millis(self.webhook_retry_base_ms),
            smtp: self.smtp_host.as_ref().map(|h| trellis_workflow::Smtp {
                host: h.clone(),
                port: self.smtp_port,
                starttls: self.smtp_starttls,
                user: self.smtp_user.clone(),
                password: self.smtp_password.clone(),
                from: self.smtp_from.clone(),
            }),
        }
    }
}

/// `trellis import`: the options of `POST /api/v1/data/{form}/import`, as flags.
#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// The form to import into.
    #[arg(required_unless_present = "resume")]
    form: Option<String>,
    /// The CSV or XLSX file.
    #[arg(required_unless_present = "resume")]
    file: Option<PathBuf>,
    /// Resume the interrupted import with this id instead.
    #[arg(long, conflicts_with_all = ["form", "file"])]
    resume: Option<String>,
    /// insert, update or upsert.
    #[arg(long)]
    mode: Option<String>,
    /// The field that finds existing records (update, upsert).
    #[arg(long)]
    key: Option<String>,
    /// JSON {"header": "field"} ("" leaves a column out), or @FILE holding it.
    #[arg(long)]
    mapping: Option<String>,
    /// JSON {"field": value} given to every row, or @FILE.
    #[arg(long)]
    constants: Option<String>,
    /// JSON {"relation field": "target field"}, or @FILE.
    #[arg(long)]
    relation_keys: Option<String>,
    /// abort (all or nothing, the default) or skip (bad rows go to the error file).
    #[arg(long)]
    on_error: Option<String>,
    /// rules (default), skip, update, merge, flag or ignore.
    #[arg(long)]
    duplicates: Option<String>,
    /// Only report what would happen.
    #[arg(long)]
    dry_run: bool,
    /// Empty cells clear the fields of updated records.
    #[arg(long)]
    clear_empty: bool,
    /// Time zone of dates without an offset (default UTC).
    #[arg(long)]
    tz: Option<String>,
    /// csv or xlsx (default: detected).
    #[arg(long)]
    format: Option<String>,
    /// utf-8, gbk, gb18030, utf-16le or utf-16be (default: detected).
    #[arg(long)]
    encoding: Option<String>,
    /// One character, or tab (default: detected).
    #[arg(long)]
    delimiter: Option<String>,
    /// The XLSX sheet (default: the first).
    #[arg(long)]
    sheet: Option<String>,
    /// Rows per transaction (default 1000).
    #[arg(long)]
    batch: Option<String>,
    /// Run as this user (e-mail): their permissions, their name in the audit.
    #[arg(long = "as")]
    as_user: Option<String>,
    /// Where import jobs keep their files (the server's files directory).
    #[arg(long, env = "TRELLIS_FILES_DIR", default_value = "./files")]
    files_dir: PathBuf,
    /// Copy the error file (the rejected rows) here when there is one.
    #[arg(long)]
    errors: Option<PathBuf>,
    /// No progress bar; print the finished job as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "TRELLIS_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        /// Install the demo CRM with users, teams and records on an empty database.
        #[arg(long, env = "TRELLIS_DEMO", default_value_t = false)]
        demo: bool,
        /// Largest request body in bytes.
        #[arg(long, env = "TRELLIS_MAX_BODY_BYTES", default_value_t = 8 << 20)]
        max_body_bytes: usize,
        /// Where uploaded files are kept.
        #[arg(long, env = "TRELLIS_FILES_DIR", default_value = "./files")]
        files_dir: PathBuf,
        /// Largest file upload in bytes.
        #[arg(long, env = "TRELLIS_MAX_UPLOAD_BYTES", default_value_t = 50 << 20)]
        max_upload_bytes: usize,
        /// Largest file to import in bytes (streamed to disk, never held in memory).
        #[arg(long, env = "TRELLIS_MAX_IMPORT_BYTES", default_value_t = 1 << 30)]
        max_import_bytes: u64,
        /// HTTP worker threads (0: one per core).
        #[arg(long, env = "TRELLIS_WORKERS", default_value_t = 0)]
        workers: usize,
        /// E-mail of the first administrator (created on an empty database).
        #[arg(long, env = "TRELLIS_ADMIN_EMAIL")]
        admin_email: Option<String>,
        /// Password of the first administrator; generated and printed once when absent.
        #[arg(long, env = "TRELLIS_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        #[command(flatten)]
        workflow: WorkflowArgs,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Import a CSV or XLSX file into a form (or resume an interrupted import), with a
    /// progress bar. Runs as the system unless --as names a user.
    Import(Box<ImportArgs>),
    /// Validate, install or export bundles.
    Bundle {
        #[command(subcommand)]
        action: BundleAction,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Work with rules.
    Rules {
        #[command(subcommand)]
        action: RuleAction,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Debug, Subcommand)]
enum BundleAction {
    /// Check a bundle (a JSON file, or a folder with bundle.json and forms/*.json).
    Validate { path: PathBuf },
    /// Install or upgrade a bundle.
    Install {
        path: PathBuf,
        /// Only print the plan.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print an installed bundle as installable JSON.
    Export {
        name: String,
        /// Write to a file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Create a user.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, env = "TRELLIS_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// A role to give the user (repeat for several).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RuleAction {
    /// Run a score, grade, formula or validation rule over every record of its form
    /// (resumes an interrupted run unless --restart).
    Run {
        /// The rule.
        name: String,
        /// Every record (the only choice today; says what is about to happen).
        #[arg(long)]
        all: bool,
        /// Start from the first record even if an earlier run stopped half-way.
        #[arg(long)]
        restart: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a long-lived API token for a user and print it once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        expires_in_days: Option<i64>,
        /// The token only reads.
        #[arg(long)]
        read_only: bool,
        /// The token reaches only this form (repeat for several).
        #[arg(long = "form")]
        forms: Vec<String>,
    },
}

/// Fill settings that were left at their default from the TOML file.
fn apply_toml(m: &ArgMatches, cli: &mut Cli) -> Result<()> {
    let Some(path) = &cli.config else {
        return Ok(());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let t: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let defaulted = |m: &ArgMatches, id: &str| {
        matches!(m.value_source(id), Some(ValueSource::DefaultValue) | None)
    };
    let s = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let i = |k: &str| t.get(k).and_then(|v| v.as_integer());
    if defaulted(m, "database_url")
        && let Some(v) = s("database_url")
    {
        cli.database_url = v;
    }
    if defaulted(m, "log_format")
        && let Some(v) = s("log_format")
    {
        cli.log_format = v;
    }
    if defaulted(m, "db_max_connections")
        && let Some(v) = i("db_max_connections")
    {
        cli.db_max_connections = u32::try_from(v).context("db_max_connections")?;
    }
    if let (
        Command::Serve {
            bind,
            demo,
            max_body_bytes,
            workers,
            admin_email,
            admin_password,
            files_dir,
            max_upload_bytes,
            max_import_bytes,
            workflow,
        },
        Some(("serve", sm)),
    ) = (&mut cli.command, m.subcommand())
    {
        if defaulted(sm, "files_dir")
            && let Some(v) = s("files_dir")
        {
            *files_dir = v.into();
        }
        if defaulted(sm, "max_import_bytes")
            && let Some(v) = i("max_import_bytes")
        {
            *max_import_bytes = u64::try_from(v).context("max_import_bytes")?;
        }
        if defaulted(sm, "max_upload_bytes")
            && let Some(v) = i("max_upload_bytes")
        {
            *max_upload_bytes = usize::try_from(v).context("max_upload_bytes")?;
        }
        if defaulted(sm, "bind")
            && let Some(v) = s("bind")
        {
            *bind = v;
        }
        if defaulted(sm, "demo")
            && let Some(v) = t.get("demo").and_then(|v| v.as_bool())
        {
            *demo = v;
        }
        if defaulted(sm, "max_body_bytes")
            && let Some(v) = i("max_body_bytes")
        {
            *max_body_bytes = usize::try_from(v).context("max_body_bytes")?;
        }
        if defaulted(sm, "workers")
            && let Some(v) = i("workers")
        {
            *workers = usize::try_from(v).context("workers")?;
        }
        if admin_email.is_none() {
            *admin_email = s("admin_email");
        }
        if admin_password.is_none() {
            *admin_password = s("admin_password");
        }
        for (key, slot) in [
            ("smtp_host", &mut workflow.smtp_host),
            ("smtp_user", &mut workflow.smtp_user),
            ("smtp_password", &mut workflow.smtp_password),
        ] {
            if slot.is_none() {
                *slot = s(key);
            }
        }
        if defaulted(sm, "smtp_from")
            && let Some(v) = s("smtp_from")
        {
            workflow.smtp_from = v;
        }
        if defaulted(sm, "smtp_starttls")
            && let Some(v) = t.get("smtp_starttls").and_then(|v| v.as_bool())
        {
            workflow.smtp_starttls = v;
        }
        if defaulted(sm, "smtp_port")
            && let Some(v) = i("smtp_port")
        {
            workflow.smtp_port = u16::try_from(v).context("smtp_port")?;
        }
        for (key, slot) in [
            ("workflow_poll_ms", &mut workflow.workflow_poll_ms),
            ("webhook_retry_base_ms", &mut workflow.webhook_retry_base_ms),
            ("workflow_lease_secs", &mut workflow.workflow_lease_secs),
        ] {
            if defaulted(sm, key)
                && let Some(v) = i(key)
            {
                *slot = u64::try_from(v).context(key)?;
            }
        }
    }
    Ok(())
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn,actix_server=warn")
    });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

/// Read a bundle from a JSON file or a folder (`bundle.json`, `forms/`, `roles/`, `rules/`,
/// `workflows/`, `reports/`, `dashboards/`).
pub fn read_bundle(path: &Path) -> Result<Value> {
    if path.is_file() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()));
    }
    let manifest = path.join("bundle.json");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let mut doc: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    for sub in [
        "forms",
        "roles",
        "rules",
        "workflows",
        "reports",
        "dashboards",
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path.join(sub))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut items = Vec::new();
        for f in files {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            items.push(
                serde_json::from_str::<Value>(&text)
                    .with_context(|| format!("parsing {}", f.display()))?,
            );
        }
        if sub == "forms" || !items.is_empty() {
            doc[sub] = Value::Array(items);
        }
    }
    Ok(doc)
}

async fn open(cli: &Cli) -> Result<Store> {
    Store::open(&DbOptions {
        url: cli.database_url.clone(),
        max_connections: cli.db_max_connections,
    })
    .await
    .with_context(|| format!("opening the database {}", cli.database_url))
}

fn print_errors(errs: &[trellis_meta::MetaError]) {
    for e in errs {
        eprintln!(
            "  {}: {} ({})",
            if e.path.is_empty() {
                "(document)"
            } else {
                &e.path
            },
            e.message,
            e.code
        );
    }
}

/// Install the demo CRM on a database without it. Its records are history, not news: the
/// process opened a database with no workflows, so they start none (no welcome e-mails to
/// demo leads); the workflow engine, started after, watches only what comes next.
async fn install_demo(store: &Store) -> Result<()> {
    if bundles::list(&store.db)
        .await?
        .iter()
        .any(|b| b.name == "crm")
    {
        return Ok(());
    }
    let doc: Value = serde_json::from_str(DEMO_BUNDLE).context("the embedded demo bundle")?;
    let admin = auth::list_users(&store.db)
        .await?
        .into_iter()
        .find(|u| u.is_admin)
        .map(|u| u.id);
    let actor = Actor::user(admin);
    bundles::install(
        &store.db,
        &store.registry,
        &store.roles,
        &store.rules,
        &doc,
        false,
        &actor,
    )
    .await
    .map_err(|e| anyhow::anyhow!("installing the demo bundle: {e:?}"))?;
    let seed: Value = serde_json::from_str(DEMO_SEED).context("the embedded demo data")?;
    let report = trellis_store::seed::load(store, &seed, &actor)
        .await
        .map_err(|e| anyhow::anyhow!("loading the demo data: {e:?}"))?;
    tracing::info!(
        users = report.users,
        teams = report.teams,
        "installed the demo CRM"
    );
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Serve {
            bind,
            demo,
            max_body_bytes,
            workers,
            admin_email,
            admin_password,
            files_dir,
            max_upload_bytes,
            max_import_bytes,
            workflow,
        } => {
            let store = open(&cli).await?;
            if let Some((email, generated)) =
                auth::bootstrap_admin(&store.db, admin_email.as_deref(), admin_password.as_deref())
                    .await?
            {
                match generated {
                    Some(pw) => println!(
                        "Created the administrator {email} with the password {pw} (shown once; change it)."
                    ),
                    None => println!("Created the administrator {email}."),
                }
            }
            if *demo {
                install_demo(&store).await?;
            }
            let engine = trellis_workflow::Engine::new(store.clone(), workflow.options()).await?;
            engine.start().await?;
            let state = trellis_server::state(
                store,
                engine,
                ServerConfig {
                    max_body_bytes: *max_body_bytes,
                    workers: *workers,
                    files_dir: files_dir.clone(),
                    max_upload_bytes: *max_upload_bytes,
                    max_import_bytes: *max_import_bytes,
                },
            )?;
            tokio::spawn(trellis_server::routes::imports::resume(state.clone()));
            trellis_server::run(state, bind, |addr| {
                println!("Trellis listening on http://{addr} (API docs at http://{addr}/docs/)");
                let _ = std::io::stdout().flush();
            })
            .await?;
        }
        Command::Import(args) => {
            let store = open(&cli).await?;
            return import(&store, args).await;
        }
        Command::Migrate => {
            let store = open(&cli).await?;
            println!(
                "database at migration {}",
                trellis_store::migrate::applied(&store.db).await?
            );
        }
        Command::Bundle { action } => match action {
            BundleAction::Validate { path } => {
                let doc = read_bundle(path)?;
                match bundles::check_alone(&doc) {
                    Ok(b) => println!(
                        "{} {}: {} forms, {} roles, {} rules, {} workflows, valid",
                        b.name,
                        b.version,
                        b.forms.len(),
                        b.roles.len(),
                        b.rules.len(),
                        b.workflows.len()
                    ),
                    Err(errs) => {
                        eprintln!("{} is invalid:", path.display());
                        print_errors(&errs);
                        bail!("{} problem(s)", errs.len());
                    }
                }
            }
            BundleAction::Install { path, dry_run } => {
                let doc = read_bundle(path)?;
                let store = open(&cli).await?;
                match bundles::install(
                    &store.db,
                    &store.registry,
                    &store.roles,
                    &store.rules,
                    &doc,
                    *dry_run,
                    &Actor::default(),
                )
                .await
                {
                    Ok(r) => println!("{}", serde_json::to_string_pretty(&r)?),
                    Err(trellis_store::StoreError::Definition(errs)) => {
                        eprintln!("{} is invalid:", path.display());
                        print_errors(&errs);
                        bail!("{} problem(s)", errs.len());
                    }
                    Err(e) => bail!("install failed: {e}"),
                }
            }
            BundleAction::Export { name, out } => {
                let store = open(&cli).await?;
                let b =
                    bundles::export(&store.db, &store.registry, &store.roles, &store.rules, name)
                        .await?;
                let text = serde_json::to_string_pretty(&b)? + "\n";
                match out {
                    Some(p) => std::fs::write(p, text)
                        .with_context(|| format!("writing {}", p.display()))?,
                    None => print!("{text}"),
                }
            }
        },
        Command::User {
            action:
                UserAction::Create {
                    email,
                    name,
                    password,
                    admin,
                    roles,
                },
        } => {
            let store = open(&cli).await?;
            let u = auth::create_user(
                &store.db,
                &auth::NewUser {
                    email: email.clone(),
                    name: name.clone().unwrap_or_else(|| email.clone()),
                    password: password.clone(),
                    is_admin: *admin,
                    roles: roles.clone(),
                    ..auth::NewUser::default()
                },
                trellis_store::admin_audit::By::default(),
            )
            .await?;
            println!("created user {} ({})", u.email, u.id);
        }
        Command::Rules {
            action: RuleAction::Run { name, all, restart },
        } => {
            if !*all {
                bail!("say --all: the rule runs over every record of its form");
            }
            let store = open(&cli).await?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} records, {per_sec}, {eta} left",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let b = bar.clone();
            let mut on = move |p: trellis_store::rerun::Progress| {
                b.set_length(p.total);
                b.set_position(p.done);
            };
            let done = store
                .rerun_rule(name, *restart, &mut on)
                .await
                .map_err(|e| anyhow::anyhow!("running {name}: {e:?}"))?;
            bar.finish_and_clear();
            store.finish_rerun(name).await?;
            println!("{}", serde_json::to_string(&done)?);
        }
        Command::Token {
            action:
                TokenAction::Create {
                    email,
                    name,
                    expires_in_days,
                    read_only,
                    forms,
                },
        } => {
            let store = open(&cli).await?;
            let u = auth::find_user_by_email(&store.db, email)
                .await?
                .with_context(|| format!("no user {email}"))?;
            let exp = expires_in_days.map(|d| chrono::Utc::now() + chrono::Duration::days(d));
            println!(
                "{}",
                auth::issue(
                    &store.db,
                    &u.id,
                    &auth::NewToken {
                        kind: "api",
                        name: name.clone(),
                        expires_at: exp,
                        read_only: *read_only,
                        forms: (!forms.is_empty()).then(|| forms.clone()),
                    },
                    trellis_store::admin_audit::By::default(),
                )
                .await?
                .0
            );
        }
    }
    Ok(())
}

/// Parse the command line and run it.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Err(e) = apply_toml(&matches, &mut cli) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    init_logging(&cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A JSON flag's value: the text, or the content of the file after `@`.
fn json_flag(v: &Option<String>) -> Result<Option<String>> {
    match v.as_deref() {
        Some(f) if f.starts_with('@') => Ok(Some(
            std::fs::read_to_string(&f[1..]).with_context(|| format!("reading {}", &f[1..]))?,
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// `trellis import`: register the job (or pick up an interrupted one), run it here with
/// a progress bar, and say what it did.
async fn import(store: &Store, a: &ImportArgs) -> Result<()> {
    use std::sync::Arc;
    use trellis_store::imports::{ImportOptions, Live};
    let (actor, perms) = match &a.as_user {
        None => (Actor::default(), trellis_access::Permissions::system()),
        Some(email) => {
            let u = auth::find_user_by_email(&store.db, email)
                .await?
                .with_context(|| format!("no user {email}"))?;
            let p = auth::principal_of(&store.db, &u.id)
                .await?
                .with_context(|| format!("{email} is disabled"))?;
            (
                Actor::user(Some(p.id.clone())),
                trellis_access::Permissions::new(p.subject(), store.roles.resolve(&p.roles)),
            )
        }
    };
    let dir = a.files_dir.join("imports");
    let id = match (&a.resume, &a.form, &a.file) {
        (Some(id), _, _) => id.clone(),
        (None, Some(form), Some(file)) => {
            let (mapping, constants, relation_keys) = (
                json_flag(&a.mapping)?,
                json_flag(&a.constants)?,
                json_flag(&a.relation_keys)?,
            );
            let flag = |b: bool| b.then(|| "true".to_owned());
            let pairs = [
                ("mapping", mapping),
                ("constants", constants),
                ("relation_keys", relation_keys),
                ("mode", a.mode.clone()),
                ("key", a.key.clone()),
                ("on_error", a.on_error.clone()),
                ("duplicates", a.duplicates.clone()),
                ("dry_run", flag(a.dry_run)),
                ("clear_empty", flag(a.clear_empty)),
                ("tz", a.tz.clone()),
                ("format", a.format.clone()),
                ("encoding", a.encoding.clone()),
                ("delimiter", a.delimiter.clone()),
                ("sheet", a.sheet.clone()),
                ("batch", a.batch.clone()),
            ];
            let opts = ImportOptions::from_pairs(
                pairs
                    .iter()
                    .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v))),
            )
            .map_err(|e| anyhow::anyhow!("{}", problems(&e)))?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            let job = store
                .create_import(&dir, form, file, true, name, opts, &actor, &perms, None)
                .await
                .map_err(|e| anyhow::anyhow!("{}", problems(&e)))?;
            if !a.json {
                for c in &job.columns {
                    match (&c.field, &c.note) {
                        (Some(f), _) => eprintln!("  {} → {f}", c.header),
                        (None, Some(n)) => eprintln!("  {} (left out: {n})", c.header),
                        (None, None) => eprintln!("  {} (left out)", c.header),
                    }
                }
            }
            job.id
        }
        _ => bail!("name the form and the file, or --resume an import"),
    };
    let live = Arc::new(Live::default());
    let run = {
        let (store, dir, id, live) = (store.clone(), dir.clone(), id.clone(), live.clone());
        tokio::spawn(async move { store.run_import(&dir, &id, &actor, &perms, live).await })
    };
    let bar = if a.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {percent}% {msg} ({elapsed}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    while !run.is_finished() {
        let p = live.progress.lock().clone();
        bar.set_length(p.total_bytes.max(1));
        bar.set_position(p.bytes);
        bar.set_message(format!("{} rows, {} errors", p.rows, p.rejected));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    bar.finish_and_clear();
    let job = run
        .await?
        .map_err(|e| anyhow::anyhow!("the import {id} stopped: {e}"))?;
    let errors = trellis_store::imports::error_path(&dir, &id);
    if let Some(to) = &a.errors
        && job.progress.rejected > 0
    {
        std::fs::copy(&errors, to).with_context(|| format!("writing {}", to.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        let p = &job.progress;
        println!(
            "import {}: {}{} — {} rows: {} created, {} updated, {} merged, {} flagged, {} skipped, {} rejected",
            job.id,
            job.status,
            if job.options.dry_run {
                " (dry run)"
            } else {
                ""
            },
            p.rows,
            p.created,
            p.updated,
            p.merged,
            p.flagged,
            p.skipped,
            p.rejected
        );
        for e in p.errors.iter().take(20) {
            println!(
                "  row {}{}: {}",
                e.row,
                e.column
                    .as_deref()
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default(),
                e.message
            );
        }
        if p.rejected > 0 {
            println!(
                "the rejected rows: {}",
                a.errors.as_ref().unwrap_or(&errors).display()
            );
        }
        if let Some(f) = &p.failure {
            println!("{f}");
        }
    }
    if job.status != "done" {
        bail!("the import ended {}", job.status);
    }
    Ok(())
}

/// A store error with each field problem on its own line.
fn problems(e: &trellis_store::StoreError) -> String {
    match e {
        trellis_store::StoreError::Validation(es) => es
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}
