//! Import jobs. A spreadsheet is read row by row on its own thread; each row is converted
//! by the form's field types, matched against existing records (by a key) and against the
//! form's duplicate rules, and goes through the same validation, formulas, rules and
//! permissions as a create or an update. Rows are written in batches: with `on_error =
//! skip` each batch commits with the job's checkpoint, so a killed import resumes after
//! its last whole batch; all-or-nothing imports and dry runs are one transaction, so an
//! interruption leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trellis_access::Permissions;
use trellis_import::cell;
use trellis_import::mapping::{self, MatchedBy};
use trellis_import::source::{Encoding, Format, ReadError, ReadOptions, Row, Sheet, SourceInfo};
use trellis_meta::dedupe::OnImport;
use trellis_meta::form::{Field, FieldType};
use trellis_meta::role::Action;
use trellis_meta::{FieldError, SYSTEM_COLUMNS};
use trellis_query::Dialect;
use trellis_query::value::{format_datetime, to_sql};

use crate::Store;
use crate::error::StoreError;
use crate::facts::{Host, Turns};
use crate::forms::{FormEntry, Snapshot};
use crate::migrate::IMPORTS;
use crate::records::{Actor, NewRecord, insert_records, new_record, now_micros, read_one};
use crate::rules::RuleEntry;

/// Rows per batch unless the import says otherwise.
pub const DEFAULT_BATCH: usize = 1000;
/// How many row errors a job keeps in its progress (all are in the files).
const KEPT_ERRORS: usize = 100;

/// How rows meet the records already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// Every row is a new record (a row whose key exists is skipped).
    #[default]
    Insert,
    /// Rows update the record with the same key; others are skipped.
    Update,
    /// Update where the key exists, create where it does not.
    Upsert,
}

/// What a bad row does to the import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Nothing is imported unless every row is good.
    #[default]
    Abort,
    /// Good rows are imported; bad ones go to the error file.
    Skip,
}

/// What a new row that a duplicate rule matches does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Duplicates {
    /// As each rule's `on_import` says.
    #[default]
    Rules,
    /// Leave the row out.
    Skip,
    /// The existing record takes the row's non-empty values.
    Update,
    /// The existing record's empty fields are filled from the row.
    Merge,
    /// Create the row and report the match.
    Flag,
    /// Do not look for duplicates.
    Ignore,
}

/// What an import is asked to do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportOptions {
    /// Header → field name ("" leaves the column out). Columns not named are mapped as
    /// suggested from field names and labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mapping: BTreeMap<String, String>,
    /// Field → value given to every row (a row's own value wins).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub constants: Map<String, Value>,
    /// Insert, update or upsert.
    pub mode: ImportMode,
    /// The field that finds the existing record in update and upsert (`id` or a field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Relation field → the target's field its cells name (default: the target's title
    /// field; a record id always works).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub relation_keys: BTreeMap<String, String>,
    /// All or nothing, or skip bad rows.
    pub on_error: OnError,
    /// Duplicate handling for new rows.
    pub duplicates: Duplicates,
    /// Only report what would happen.
    pub dry_run: bool,
    /// Empty cells clear the field of an updated record (default: they leave it).
    pub clear_empty: bool,
    /// Time zone of dates and times without an offset (default UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// `csv` or `xlsx` (default: from the file's content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// CSV encoding: `utf-8`, `gbk`, `gb18030`, `utf-16le`, `utf-16be` (default: detected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// CSV delimiter, one character (default: detected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// XLSX sheet name (default: the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// Rows per batch (1 to 10,000; default 1,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
}

impl ImportOptions {
    /// Options from flat text pairs (query parameters, command-line flags): `mapping`,
    /// `constants` and `relation_keys` hold JSON; `dry_run` and `clear_empty` booleans;
    /// `batch` a number; the rest text.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, StoreError> {
        let mut o = Map::new();
        for (name, text) in pairs {
            let bad = |what: &str| {
                StoreError::field(
                    name,
                    "invalid",
                    format!("{name} must be {what}"),
                    format!("{name} 的格式不对：应为 {what}"),
                )
            };
            let v = match name {
                "mapping" | "constants" | "relation_keys" => {
                    if text.trim().is_empty() {
                        continue;
                    }
                    serde_json::from_str::<Value>(text).map_err(|_| bad("a JSON object"))?
                }
                "dry_run" | "clear_empty" => match text {
                    "true" | "1" | "" => Value::Bool(true),
                    "false" | "0" => Value::Bool(false),
                    _ => return Err(bad("true or false")),
                },
                "batch" => Value::from(text.parse::<u64>().map_err(|_| bad("a number"))?),
                "mode" | "on_error" | "duplicates" => {
                    let allowed: &[&str] = match name {
                        "mode" => &["insert", "update", "upsert"],
                        "on_error" => &["abort", "skip"],
                        _ => &["rules", "skip", "update", "merge", "flag", "ignore"],
                    };
                    if !allowed.contains(&text) {
                        return Err(bad(&format!("one of {}", allowed.join(", "))));
                    }
                    Value::String(text.to_owned())
                }
                _ => Value::String(text.to_owned()),
            };
            o.insert(name.to_owned(), v);
        }
        serde_json::from_value(Value::Object(o)).map_err(|e| {
            let msg = e.to_string();
            let field = [
                "mapping",
                "constants",
                "relation_keys",
                "on_error",
                "duplicates",
                "mode",
            ]
            .into_iter()
            .find(|f| msg.contains(f))
            .unwrap_or("options");
            StoreError::field(field, "invalid", msg, "导入选项无效")
        })
    }
}

/// One column of the file and the field it fills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMap {
    /// Position, from 0.
    pub column: usize,
    /// The header text.
    pub header: String,
    /// The field it fills, if any.
    pub field: Option<String>,
    /// How the field was chosen: `given`, `name`, `label` or `synonym`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why a column is left out, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A problem with one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowError {
    /// Row number as a spreadsheet shows it.
    pub row: u64,
    /// The header of the column at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The field at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Stable code (`required`, `number`, `date`, `not_found`, `duplicate`, …).
    pub code: String,
    /// What is wrong.
    pub message: String,
}

/// What happened to one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowOutcome {
    /// Row number as a spreadsheet shows it.
    pub row: u64,
    /// `create`, `update`, `merge`, `flag` (created, but matches a record), `skip` or
    /// `reject`.
    pub action: String,
    /// The record created or changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The record a duplicate rule or the key matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    /// The duplicate rule that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why a row was skipped or rejected.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<RowError>,
}

/// Where a job is: counts, bytes and the first errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// Data rows read.
    pub rows: u64,
    /// Rows that made a new record.
    pub created: u64,
    /// Rows that updated a record found by the key or a duplicate rule.
    pub updated: u64,
    /// Rows merged into a duplicate (its empty fields filled).
    pub merged: u64,
    /// Rows created although a duplicate rule matched them.
    pub flagged: u64,
    /// Rows left out (duplicates, existing keys, no record to update).
    pub skipped: u64,
    /// Rows refused for errors.
    pub rejected: u64,
    /// Bytes of the file read (CSV).
    pub bytes: u64,
    /// Size of the file.
    pub total_bytes: u64,
    /// The last row (line) whose batch is done.
    pub line: u64,
    /// The first errors (all are in the error file).
    pub errors: Vec<RowError>,
    /// Why the job stopped, if it failed as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Length of the error file at the checkpoint.
    pub error_file_bytes: u64,
    /// Length of the row report at the checkpoint.
    pub report_bytes: u64,
}

/// An import job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ImportJob {
    /// Job id.
    pub id: String,
    /// The form imported into.
    pub form: String,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    /// The uploaded file's name.
    pub file_name: Option<String>,
    /// What was asked.
    pub options: ImportOptions,
    /// What the file turned out to be: format, encoding, delimiter, sheets, headers.
    pub source: Value,
    /// Columns and the fields they fill.
    pub columns: Vec<ColumnMap>,
    /// Counts and first errors.
    pub progress: Progress,
    /// Who started it.
    pub created_by: Option<String>,
    /// When it was started.
    pub created_at: String,
    /// Last checkpoint.
    pub updated_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// The id of the token it was started with: a resumed job keeps what the token
    /// narrowed (its forms), and a revoked token's job is not resumed.
    #[serde(skip)]
    pub token: Option<String>,
}

impl ImportJob {
    /// The file is CSV, whose cells may carry an export's formula escape (XLSX cells are
    /// text as they are).
    fn read_csv(&self) -> bool {
        self.source.get("format").and_then(Value::as_str) != Some("xlsx")
    }
}

/// Stored with the job besides its options.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Setup {
    options: ImportOptions,
    source: Value,
    columns: Vec<ColumnMap>,
    /// The API token the job was started with (see [`ImportJob::token`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// A running job's progress, readable while it runs, and its cancel switch.
#[derive(Debug, Default)]
pub struct Live {
    /// The latest progress.
    pub progress: parking_lot::Mutex<Progress>,
    /// Set to stop at the next batch.
    pub cancel: AtomicBool,
}

/// Jobs running in this process.
pub type Running = parking_lot::Mutex<HashMap<String, Arc<Live>>>;

/// SQLite's writer page cache while imports run (KiB): bounded, whatever the file's size.
const IMPORT_CACHE_KIB: u32 = 256 * 1024;

/// The folder of one job's files.
pub fn job_dir(dir: &Path, id: &str) -> PathBuf {
    dir.join(id)
}

/// The uploaded file of a job.
pub fn source_path(dir: &Path, id: &str) -> PathBuf {
    job_dir(dir, id).join("source")
}

/// The bad rows as CSV, with a column saying what is wrong.
pub fn error_path(dir: &Path, id: &str) -> PathBuf {
    job_dir(dir, id).join("errors.csv")
}

/// One JSON line per row: what happened to it.
pub fn report_path(dir: &Path, id: &str) -> PathBuf {
    job_dir(dir, id).join("rows.jsonl")
}

/// The reader options an import asks for.
fn read_options(o: &ImportOptions) -> Result<ReadOptions, StoreError> {
    let mut r = ReadOptions::default();
    if let Some(f) = &o.format {
        r.format = Some(match f.to_lowercase().as_str() {
            "csv" | "txt" | "tsv" => Format::Csv,
            "xlsx" => Format::Xlsx,
            other => {
                return Err(StoreError::field(
                    "format",
                    "unknown_format",
                    format!("unknown format {other:?}: use csv or xlsx"),
                    format!("未知格式 {other:?}：请用 csv 或 xlsx"),
                ));
            }
        });
    }
    if let Some(e) = &o.encoding {
        r.encoding = Some(e.parse::<Encoding>().map_err(|_| {
            StoreError::field(
                "encoding",
                "unknown_encoding",
                format!("unknown encoding {e:?}: use utf-8, gbk, gb18030, utf-16le or utf-16be"),
                format!("未知编码 {e:?}"),
            )
        })?);
    }
    if let Some(d) = &o.delimiter {
        let d = if d == "\\t" || d.eq_ignore_ascii_case("tab") {
            "\t"
        } else {
            d.as_str()
        };
        match d.as_bytes() {
            [b] if b.is_ascii() && *b != b'"' && *b != b'\n' && *b != b'\r' => {
                r.delimiter = Some(*b)
            }
            _ => {
                return Err(StoreError::field(
                    "delimiter",
                    "bad_delimiter",
                    "the delimiter must be one ASCII character (or \"tab\")",
                    "分隔符必须是一个 ASCII 字符（或 \"tab\"）",
                ));
            }
        }
    }
    r.sheet = o.sheet.clone();
    Ok(r)
}

/// A file problem as a field error on `file`.
pub fn read_error(e: &ReadError) -> StoreError {
    StoreError::field("file", e.code(), e.to_string(), e.message_zh())
}

fn tz_of(o: &ImportOptions) -> Result<chrono_tz::Tz, StoreError> {
    match &o.tz {
        None => Ok(chrono_tz::UTC),
        Some(t) => t.parse().map_err(|_| {
            StoreError::field(
                "tz",
                "unknown_time_zone",
                format!("unknown time zone {t:?}"),
                format!("未知时区 {t:?}"),
            )
        }),
    }
}

/// The columns of `info` mapped to fields of `entry`: what the import gives, then what is
/// suggested for the rest.
fn plan_columns(
    entry: &FormEntry,
    info: &SourceInfo,
    o: &ImportOptions,
    perms: &Permissions,
) -> Result<Vec<ColumnMap>, StoreError> {
    let form = &entry.form;
    for (h, f) in &o.mapping {
        if !info.headers.iter().any(|x| x == h) {
            return Err(StoreError::field(
                format!("mapping.{h}"),
                "unknown_column",
                format!("the file has no column {h:?}"),
                format!("文件中没有列 {h:?}"),
            ));
        }
        if !f.is_empty() && f != "owner" && f != "id" && form.field(f).is_none() {
            return Err(StoreError::field(
                format!("mapping.{h}"),
                "unknown_field",
                format!("the form {} has no field {f:?}", form.name),
                format!("表单 {} 没有字段 {f:?}", form.name),
            ));
        }
    }
    let suggested = mapping::suggest(&info.headers, form);
    let mut used: Vec<String> = o
        .mapping
        .values()
        .filter(|f| !f.is_empty())
        .cloned()
        .collect();
    let mut out = Vec::with_capacity(info.headers.len());
    for (i, h) in info.headers.iter().enumerate() {
        let (field, by) = match o.mapping.get(h) {
            Some(f) if f.is_empty() => (None, Some("given".to_owned())),
            Some(f) => (Some(f.clone()), Some("given".to_owned())),
            None => match suggested.iter().find(|s| s.column == i) {
                Some(s) => match &s.field {
                    Some(f) if !used.contains(f) => {
                        used.push(f.clone());
                        let by = match s.by {
                            Some(MatchedBy::Name) => "name",
                            Some(MatchedBy::Label) => "label",
                            Some(MatchedBy::Synonym) => "synonym",
                            None => "name",
                        };
                        (Some(f.clone()), Some(by.to_owned()))
                    }
                    _ => (None, None),
                },
                None => (None, None),
            },
        };
        let mut note = None;
        let field = match field {
            None => {
                if by.is_none() {
                    note = Some("no field matches this column; it is left out".to_owned());
                }
                None
            }
            Some(f) if f == "id" => {
                if o.key.as_deref() == Some("id") {
                    Some(f)
                } else {
                    note = Some("record ids are only read as the key of an update".to_owned());
                    None
                }
            }
            Some(f) => match form.field(&f) {
                Some(fd) if fd.is_read_only() => {
                    note = Some(format!(
                        "{f} is computed by the system; the column is left out"
                    ));
                    None
                }
                Some(fd) if fd.kind == FieldType::Attachment => {
                    note = Some(format!("{f} holds files, which a spreadsheet cannot carry"));
                    None
                }
                _ if crate::access::check_fields(perms, &form.name, std::iter::once(&f), "")
                    .is_err() =>
                {
                    note = Some(format!("you may not set {f}; the column is left out"));
                    None
                }
                _ => Some(f),
            },
        };
        out.push(ColumnMap {
            column: i,
            header: h.clone(),
            field,
            by,
            note,
        });
    }
    Ok(out)
}

fn check_options(
    snap: &Snapshot,
    entry: &FormEntry,
    o: &ImportOptions,
    perms: &Permissions,
) -> Result<(), StoreError> {
    let form = &entry.form;
    if let Some(b) = o.batch
        && !(1..=10_000).contains(&b)
    {
        return Err(StoreError::field(
            "batch",
            "out_of_range",
            "batch must be between 1 and 10000",
            "batch 必须在 1 到 10000 之间",
        ));
    }
    match (&o.key, o.mode) {
        (None, ImportMode::Update | ImportMode::Upsert) => {
            return Err(StoreError::field(
                "key",
                "required",
                "update and upsert need a key: the field that finds the record",
                "更新和更新插入需要指定匹配字段 key",
            ));
        }
        (Some(k), _) if k != "id" => match form.field(k) {
            Some(f)
                if f.kind.is_textual()
                    || matches!(f.kind, FieldType::Integer | FieldType::Date) => {}
            _ => {
                return Err(StoreError::field(
                    "key",
                    "bad_key",
                    format!("{k:?} cannot find records: name a text, number or date field, or id"),
                    format!("{k:?} 不能用作匹配字段"),
                ));
            }
        },
        _ => {}
    }
    for (f, v) in &o.constants {
        if form.field(f).is_none() && f != "owner" {
            return Err(StoreError::field(
                format!("constants.{f}"),
                "unknown_field",
                format!("the form {} has no field {f:?}", form.name),
                format!("表单 {} 没有字段 {f:?}", form.name),
            ));
        }
        if v.is_null() {
            return Err(StoreError::field(
                format!("constants.{f}"),
                "required",
                "a constant needs a value",
                "常量需要一个值",
            ));
        }
    }
    for (f, k) in &o.relation_keys {
        let target = form
            .field(f)
            .filter(|fd| fd.kind == FieldType::Relation)
            .and_then(|fd| fd.target.as_deref());
        let Some(t) = target else {
            return Err(StoreError::field(
                format!("relation_keys.{f}"),
                "not_a_relation",
                format!("{f:?} is not a relation field"),
                format!("{f:?} 不是关联字段"),
            ));
        };
        let ok = k == "id"
            || snap.get(t).is_ok_and(|te| {
                te.form.field(k).is_some_and(|tf| {
                    tf.kind.is_textual() || matches!(tf.kind, FieldType::Integer | FieldType::Date)
                })
            });
        if !ok || !crate::access::visible(perms, t, k) {
            return Err(StoreError::field(
                format!("relation_keys.{f}"),
                "unknown_field",
                format!("{t} has no text, number or date field {k:?} to find records by"),
                format!("{t} 没有可用于匹配的字段 {k:?}"),
            ));
        }
    }
    Ok(())
}

/// A job's row in the table.
fn job_from_row(row: &sea_orm::QueryResult) -> Result<ImportJob, StoreError> {
    let setup: Setup = serde_json::from_str(&row.try_get::<String>("", "options")?)
        .map_err(|e| StoreError::Corrupt(format!("import options: {e}")))?;
    let progress: Progress = serde_json::from_str(&row.try_get::<String>("", "progress")?)
        .map_err(|e| StoreError::Corrupt(format!("import progress: {e}")))?;
    Ok(ImportJob {
        id: row.try_get("", "id")?,
        form: row.try_get("", "form")?,
        status: row.try_get("", "status")?,
        file_name: row.try_get("", "file_name")?,
        options: setup.options,
        source: setup.source,
        columns: setup.columns,
        token: setup.token,
        progress,
        created_by: row.try_get("", "created_by")?,
        created_at: row.try_get("", "created_at")?,
        updated_at: row.try_get("", "updated_at")?,
        finished_at: row.try_get("", "finished_at")?,
    })
}

const JOB_COLUMNS: [&str; 11] = [
    "id",
    "form",
    "status",
    "options",
    "file",
    "file_name",
    "progress",
    "created_by",
    "created_at",
    "updated_at",
    "finished_at",
];

fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Register an import of the file at `upload` (moved into the job's folder under
    /// `dir`): the file is opened, its columns mapped and the options checked, so a bad
    /// file or option is refused here rather than in the job.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_import(
        &self,
        dir: &Path,
        form: &str,
        upload: &Path,
        keep_upload: bool,
        file_name: Option<String>,
        options: ImportOptions,
        actor: &Actor,
        perms: &Permissions,
        token: Option<&str>,
    ) -> Result<ImportJob, StoreError> {
        let snap = self.registry.snapshot();
        let entry = snap.get(form)?;
        crate::access::check_may_import(perms, form, options.mode)?;
        check_options(&snap, &entry, &options, perms)?;
        tz_of(&options)?;
        let ro = read_options(&options)?;
        let path = upload.to_owned();
        let info =
            tokio::task::spawn_blocking(move || Sheet::open(&path, &ro).map(|s| s.info().clone()))
                .await
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
                .map_err(|e| read_error(&e))?;
        let columns = plan_columns(&entry, &info, &options, perms)?;
        if let Some(k) = &options.key
            && !columns
                .iter()
                .any(|c| c.field.as_deref() == Some(k.as_str()))
        {
            return Err(StoreError::field(
                "key",
                "unmapped_key",
                format!("no column fills the key field {k:?}"),
                format!("没有列对应匹配字段 {k:?}"),
            ));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let jd = job_dir(dir, &id);
        std::fs::create_dir_all(&jd)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", jd.display())))?;
        let src = source_path(dir, &id);
        if keep_upload || std::fs::rename(upload, &src).is_err() {
            std::fs::copy(upload, &src)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", src.display())))?;
        }
        let total = std::fs::metadata(&src).map(|m| m.len()).unwrap_or(0);
        let progress = Progress {
            total_bytes: total,
            ..Progress::default()
        };
        let setup = Setup {
            options,
            source: serde_json::to_value(&info).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            columns,
            token: token.filter(|t| !t.is_empty()).map(str::to_owned),
        };
        let now = format_datetime(&now_micros());
        let mut ins = Query::insert();
        ins.into_table(Alias::new(IMPORTS))
            .columns(JOB_COLUMNS.map(Alias::new))
            .values([
                Expr::val(id.as_str()),
                Expr::val(form),
                Expr::val("queued"),
                Expr::val(to_json(&setup)?),
                Expr::val(src.to_string_lossy().into_owned()),
                Expr::val(file_name),
                Expr::val(to_json(&progress)?),
                Expr::val(actor.user.clone()),
                Expr::val(now.as_str()),
                Expr::val(now.as_str()),
                Expr::val(Option::<String>::None),
            ])
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if let Err(e) = self.db.writer.execute(&ins).await {
            // No job, no files.
            let _ = std::fs::remove_dir_all(&jd);
            return Err(e.into());
        }
        self.import_job(&id, None).await
    }

    /// One job, with live progress when it runs here; `by` limits it to that user's jobs.
    pub async fn import_job(&self, id: &str, by: Option<&str>) -> Result<ImportJob, StoreError> {
        let mut s = Query::select();
        s.columns(JOB_COLUMNS.map(Alias::new))
            .from(Alias::new(IMPORTS))
            .and_where(Expr::col(Alias::new("id")).eq(id));
        if let Some(u) = by {
            s.and_where(Expr::col(Alias::new("created_by")).eq(u));
        }
        let row = self
            .db
            .reader
            .query_one(&s)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("import {id}")))?;
        let mut job = job_from_row(&row)?;
        if job.status == "running"
            && let Some(l) = self.imports.lock().get(id)
        {
            job.progress = l.progress.lock().clone();
        }
        Ok(job)
    }

    /// Jobs, newest first; `by` limits them to that user's.
    pub async fn import_jobs(
        &self,
        by: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ImportJob>, StoreError> {
        let mut s = Query::select();
        s.columns(JOB_COLUMNS.map(Alias::new))
            .from(Alias::new(IMPORTS))
            .order_by(Alias::new("id"), Order::Desc)
            .limit(limit);
        if let Some(u) = by {
            s.and_where(Expr::col(Alias::new("created_by")).eq(u));
        }
        let mut out = Vec::new();
        for row in self.db.reader.query_all(&s).await? {
            out.push(job_from_row(&row)?);
        }
        Ok(out)
    }

    /// Jobs a previous process left running (to resume), oldest first.
    pub async fn interrupted_imports(&self) -> Result<Vec<ImportJob>, StoreError> {
        let mut s = Query::select();
        s.columns(JOB_COLUMNS.map(Alias::new))
            .from(Alias::new(IMPORTS))
            .and_where(Expr::col(Alias::new("status")).is_in(["running", "queued"]))
            .order_by(Alias::new("id"), Order::Asc);
        let running: Vec<String> = self.imports.lock().keys().cloned().collect();
        let mut out = Vec::new();
        for row in self.db.reader.query_all(&s).await? {
            let j = job_from_row(&row)?;
            if !running.contains(&j.id) {
                out.push(j);
            }
        }
        Ok(out)
    }

    /// End an interrupted job as failed, saying why it will not be resumed.
    pub async fn fail_import(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let mut p = self.import_job(id, None).await?.progress;
        p.failure = Some(reason.to_owned());
        self.save_job(&self.db.writer, id, "failed", &p, true).await
    }

    /// Ask a running job to stop after its current batch.
    pub fn cancel_import(&self, id: &str) -> bool {
        match self.imports.lock().get(id) {
            Some(l) => {
                l.cancel.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Forget a finished job and its files.
    pub async fn delete_import(
        &self,
        dir: &Path,
        id: &str,
        by: Option<&str>,
    ) -> Result<(), StoreError> {
        let job = self.import_job(id, by).await?;
        if job.status == "running" || job.status == "queued" {
            return Err(StoreError::Conflict {
                field: "status".into(),
                code: "import_running",
                message: "the import is running: cancel it first".into(),
                rows: vec![],
            });
        }
        let mut d = Query::delete();
        d.from_table(Alias::new(IMPORTS))
            .and_where(Expr::col(Alias::new("id")).eq(id));
        self.db.writer.execute(&d).await?;
        let _ = std::fs::remove_dir_all(job_dir(dir, id));
        Ok(())
    }

    async fn save_job(
        &self,
        c: &impl ConnectionTrait,
        id: &str,
        status: &str,
        p: &Progress,
        finished: bool,
    ) -> Result<(), StoreError> {
        let now = format_datetime(&now_micros());
        let mut u = Query::update();
        u.table(Alias::new(IMPORTS))
            .value(Alias::new("status"), status)
            .value(Alias::new("progress"), to_json(p)?)
            .value(Alias::new("updated_at"), now.as_str())
            .and_where(Expr::col(Alias::new("id")).eq(id));
        if finished {
            u.value(Alias::new("finished_at"), now.as_str());
        }
        c.execute(&u).await?;
        Ok(())
    }

    /// Run (or resume) a job to its end. `live` is updated after every batch; its cancel
    /// switch stops the job at the next batch.
    pub async fn run_import(
        &self,
        dir: &Path,
        id: &str,
        actor: &Actor,
        perms: &Permissions,
        live: Arc<Live>,
    ) -> Result<ImportJob, StoreError> {
        let job = self.import_job(id, None).await?;
        if !matches!(job.status.as_str(), "queued" | "running") {
            return Ok(job);
        }
        let first = {
            let mut running = self.imports.lock();
            running.insert(id.to_owned(), live.clone());
            running.len() == 1
        };
        if first {
            self.writer_cache(IMPORT_CACHE_KIB).await;
        }
        let out = self.run_job(dir, job, actor, perms, &live).await;
        let last = {
            let mut running = self.imports.lock();
            running.remove(id);
            running.is_empty()
        };
        if last {
            self.writer_cache(crate::db::WRITER_CACHE_KIB).await;
        }
        match out {
            Ok(()) => self.import_job(id, None).await,
            Err(e) => {
                let mut p = live.progress.lock().clone();
                p.failure = Some(e.to_string());
                self.save_job(&self.db.writer, id, "failed", &p, true)
                    .await?;
                Err(e)
            }
        }
    }

    /// Size SQLite's writer page cache (KiB). An import inserts into every index of its
    /// form at random places; with the usual cache, most of those pages are read back
    /// from the OS for each batch once the indexes outgrow it.
    async fn writer_cache(&self, kib: u32) {
        if self.db.dialect != trellis_query::Dialect::Sqlite {
            return;
        }
        let sql = format!("PRAGMA cache_size = -{kib}");
        if let Err(e) = self.db.writer.execute_unprepared(&sql).await {
            tracing::warn!(error = %e, "sizing the writer's page cache failed");
        }
    }

    async fn run_job(
        &self,
        dir: &Path,
        job: ImportJob,
        actor: &Actor,
        perms: &Permissions,
        live: &Live,
    ) -> Result<(), StoreError> {
        let id = job.id.clone();
        let o = job.options.clone();
        let one_txn = o.dry_run || o.on_error == OnError::Abort;
        // A resumed all-or-nothing job starts over (its transaction never committed).
        let mut p = if one_txn {
            Progress {
                total_bytes: job.progress.total_bytes,
                ..Progress::default()
            }
        } else {
            job.progress.clone()
        };
        p.failure = None;
        *live.progress.lock() = p.clone();
        let mut files = JobFiles::open(dir, &id, &job, &p)?;
        self.save_job(&self.db.writer, &id, "running", &p, false)
            .await?;
        let batch = o.batch.unwrap_or(DEFAULT_BATCH);
        let ro = read_options(&o)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(Vec<Row>, u64), ReadError>>(2);
        let path = source_path(dir, &id);
        let skip_to = p.line;
        std::thread::spawn(move || read_rows(&path, &ro, skip_to, batch, &tx));
        let writing = self.registry.change.read().await;
        let snap = self.registry.snapshot();
        let entry = snap.get(&job.form)?;
        let importer = Importer::new(self, &snap, entry.clone(), &job, actor, perms).await?;
        let whole = if one_txn {
            Some(self.db.writer.begin().await?)
        } else {
            None
        };
        // The next batch is converted and checked while this one is written: the CPU work
        // then overlaps the database's. Not when a column relates the form to itself (a row
        // may name a record an earlier, unwritten batch creates).
        let ahead = importer.may_prepare_ahead();
        let mut cancelled = false;
        let mut current = importer.fetch(&mut rx, ahead).await?;
        while let Some(b) = current {
            if live.cancel.load(Ordering::SeqCst) {
                cancelled = true;
                break;
            }
            let (written, fetched) = tokio::join!(
                self.write_batch(&importer, whole.as_ref(), b, &mut p, &mut files, live),
                importer.fetch(&mut rx, ahead),
            );
            written?;
            current = fetched?;
        }
        drop(rx);
        let status = if cancelled { "cancelled" } else { "done" };
        if let Some(t) = whole {
            if !cancelled && !o.dry_run && p.rejected == 0 {
                t.commit().await?;
                self.db.watch.ring();
            } else {
                t.rollback().await?;
                if !o.dry_run && !cancelled && p.rejected > 0 {
                    p.failure = Some(format!(
                        "{} row(s) have errors: nothing was imported (the import is all or nothing)",
                        p.rejected
                    ));
                }
            }
        }
        drop(writing);
        files.flush(&mut p)?;
        let status = if p.failure.is_some() {
            "failed"
        } else {
            status
        };
        self.save_job(&self.db.writer, &id, status, &p, true)
            .await?;
        *live.progress.lock() = p;
        // Rule failures of rows that were written (not of a dry run or a rollback).
        if status == "done" && !o.dry_run {
            let kept = std::mem::take(&mut *importer.recorded.lock());
            for (form, recorded) in kept {
                crate::rules::record_failures(&self.db, &form, &recorded).await;
            }
        }
        Ok(())
    }

    /// Write one batch: in a savepoint of the whole import's transaction, or in a
    /// transaction of its own that commits with the job's checkpoint.
    async fn write_batch(
        &self,
        importer: &Importer<'_>,
        whole: Option<&DatabaseTransaction>,
        b: Batch,
        p: &mut Progress,
        files: &mut JobFiles,
        live: &Live,
    ) -> Result<(), StoreError> {
        let id = importer.job.as_str();
        let form = &importer.entry.form;
        let last = b.rows.last().map_or(p.line, |r| r.line);
        // A batch of its own commits with the checkpoint; in the whole import's
        // transaction it is a savepoint.
        let (outcomes, own) = match whole {
            Some(t) => {
                let sp = t.begin().await?;
                let out = importer.write(&sp, b.rows, b.pending, files).await?;
                sp.commit().await?;
                self.stats
                    .note_form(t, self.db.dialect, form, created(&out))
                    .await?;
                (out, None)
            }
            None => {
                let t = self.db.writer.begin().await?;
                let out = importer.write(&t, b.rows, b.pending, files).await?;
                (out, Some(t))
            }
        };
        count(p, &outcomes);
        p.bytes = b.bytes;
        p.line = last;
        files.flush(p)?;
        if let Some(t) = own {
            self.save_job(&t, id, "running", p, false).await?;
            t.commit().await?;
            self.db.watch.ring();
            // Key and relation lookups of the next batches plan on fresh statistics.
            self.stats
                .note_form(&self.db.writer, self.db.dialect, form, created(&outcomes))
                .await?;
            let kept = std::mem::take(&mut *importer.recorded.lock());
            for (form, recorded) in kept {
                crate::rules::record_failures(&self.db, &form, &recorded).await;
            }
        }
        *live.progress.lock() = p.clone();
        Ok(())
    }

    /// Row outcomes of a job from `from` (0-based), at most `limit`.
    pub fn import_rows(
        dir: &Path,
        id: &str,
        from: u64,
        limit: u64,
    ) -> Result<Vec<RowOutcome>, StoreError> {
        use std::io::BufRead;
        let f = match std::fs::File::open(report_path(dir, id)) {
            Ok(f) => f,
            Err(_) => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for line in std::io::BufReader::new(f)
            .lines()
            .skip(usize::try_from(from).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(0))
        {
            let line = line.map_err(|e| StoreError::Unavailable(e.to_string()))?;
            out.push(serde_json::from_str(&line).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }
}

/// Records a batch created (a flagged row is created too).
fn created(outcomes: &[RowOutcome]) -> u64 {
    outcomes
        .iter()
        .filter(|o| o.id.is_some() && matches!(o.action.as_str(), "create" | "flag"))
        .count() as u64
}

fn count(p: &mut Progress, outcomes: &[RowOutcome]) {
    for o in outcomes {
        p.rows += 1;
        match o.action.as_str() {
            "create" => p.created += 1,
            "update" => p.updated += 1,
            "merge" => p.merged += 1,
            "flag" => p.flagged += 1,
            "skip" => p.skipped += 1,
            _ => p.rejected += 1,
        }
        if o.action == "reject" {
            for e in &o.errors {
                if p.errors.len() < KEPT_ERRORS {
                    p.errors.push(e.clone());
                }
            }
        }
    }
}

/// Read the file on this thread, in batches, after line `skip_to`.
fn read_rows(
    path: &Path,
    ro: &ReadOptions,
    skip_to: u64,
    batch: usize,
    tx: &tokio::sync::mpsc::Sender<Result<(Vec<Row>, u64), ReadError>>,
) {
    let mut sheet = match Sheet::open(path, ro) {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    let mut rows = Vec::with_capacity(batch);
    loop {
        match sheet.next_row() {
            Ok(Some(r)) => {
                if r.line <= skip_to {
                    continue;
                }
                rows.push(r);
                if rows.len() == batch {
                    let full = std::mem::replace(&mut rows, Vec::with_capacity(batch));
                    if tx.blocking_send(Ok((full, sheet.progress()))).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
    if !rows.is_empty() {
        let _ = tx.blocking_send(Ok((rows, sheet.progress())));
    }
}

/// The error file and the row report, appended per batch and cut back to the checkpoint
/// when a job resumes.
struct JobFiles {
    errors: csv::Writer<BufWriter<std::fs::File>>,
    report: BufWriter<std::fs::File>,
    headers: Vec<String>,
    /// The source is CSV (whose cells may carry an export's escape).
    csv: bool,
}

impl JobFiles {
    fn open(dir: &Path, id: &str, job: &ImportJob, p: &Progress) -> Result<Self, StoreError> {
        let io = |e: std::io::Error| StoreError::Unavailable(format!("import files: {e}"));
        let cut = |path: PathBuf, len: u64| -> Result<std::fs::File, StoreError> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(io)?;
            f.set_len(len).map_err(io)?;
            f.seek(std::io::SeekFrom::End(0)).map_err(io)?;
            Ok(f)
        };
        let headers: Vec<String> = job.columns.iter().map(|c| c.header.clone()).collect();
        let fresh = p.error_file_bytes == 0;
        let ef = cut(error_path(dir, id), p.error_file_bytes)?;
        let rf = cut(report_path(dir, id), p.report_bytes)?;
        let mut w = BufWriter::new(ef);
        if fresh {
            // A byte-order mark, so spreadsheet programs read the file as UTF-8.
            w.write_all(b"\xEF\xBB\xBF").map_err(io)?;
        }
        let mut errors = csv::WriterBuilder::new().flexible(true).from_writer(w);
        if fresh {
            let mut h: Vec<String> = vec!["row".into()];
            h.extend(headers.iter().map(|x| trellis_import::cell::defuse(x)));
            h.push("errors".into());
            errors
                .write_record(&h)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        Ok(Self {
            errors,
            report: BufWriter::new(rf),
            headers,
            csv: job.read_csv(),
        })
    }

    fn bad_row(&mut self, row: &Row, errors: &[RowError]) -> Result<(), StoreError> {
        let mut rec: Vec<String> = vec![row.line.to_string()];
        // Escaped once: a CSV cell that came escaped is unescaped first, so fixing the
        // file and importing it again gives back the value.
        rec.extend(
            row.cells
                .iter()
                .map(|c| cell::defuse(if self.csv { cell::undefuse(c) } else { c })),
        );
        while rec.len() < self.headers.len() + 1 {
            rec.push(String::new());
        }
        let why: Vec<String> = errors
            .iter()
            .map(|e| match &e.column {
                Some(c) => format!("{c}: {}", e.message),
                None => e.message.clone(),
            })
            .collect();
        rec.push(cell::defuse(&why.join("; ")));
        self.errors
            .write_record(&rec)
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    fn outcome(&mut self, o: &RowOutcome) -> Result<(), StoreError> {
        serde_json::to_writer(&mut self.report, o)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.report
            .write_all(b"\n")
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Write out what is buffered and note the lengths in the checkpoint.
    fn flush(&mut self, p: &mut Progress) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::Unavailable(format!("import files: {e}"));
        self.errors.flush().map_err(io)?;
        self.report.flush().map_err(io)?;
        let ef = self.errors.get_ref().get_ref();
        let rf = self.report.get_ref();
        ef.sync_data().map_err(io)?;
        rf.sync_data().map_err(io)?;
        p.error_file_bytes = ef.metadata().map_err(io)?.len();
        p.report_bytes = rf.metadata().map_err(io)?.len();
        Ok(())
    }
}

/// The record a row updates: one found by its key, or the one an earlier row of the
/// same batch makes.
#[derive(Debug, Clone)]
enum Target {
    Id(String),
    Row(usize),
}

/// A row on its way in.
struct Pending {
    line: u64,
    /// Converted values, before defaults and rules (what an update writes).
    input: Map<String, Value>,
    /// The record to create, when validation passed.
    ready: Option<Map<String, Value>>,
    /// What checking the row as a create answered (done ahead; used if it creates).
    made: Option<Result<NewRecord, StoreError>>,
    errors: Vec<RowError>,
}

/// Rows read from the file, with what converting and checking them answered when that
/// was done ahead of the write.
struct Batch {
    rows: Vec<Row>,
    bytes: u64,
    pending: Option<Vec<Pending>>,
}

/// The per-job state: the plan of columns, lookups and the form's rules.
struct Importer<'a> {
    store: &'a Store,
    /// The job's id.
    job: String,
    snap: &'a Snapshot,
    entry: Arc<FormEntry>,
    options: ImportOptions,
    columns: Vec<(usize, String, Field)>,
    headers: Vec<String>,
    owner_column: Option<usize>,
    key_column: Option<usize>,
    /// CSV cells may carry an export's formula escape; XLSX cells are text as they are.
    csv: bool,
    tz: chrono_tz::Tz,
    users: HashMap<String, String>,
    actor: &'a Actor,
    perms: &'a Permissions,
    rules: Arc<[RuleEntry]>,
    /// Rule failures of written rows, recorded once their batch commits.
    recorded: parking_lot::Mutex<Vec<(String, Vec<trellis_rules::RuleError>)>>,
    now: DateTime<Utc>,
}

impl<'a> Importer<'a> {
    async fn new(
        store: &'a Store,
        snap: &'a Snapshot,
        entry: Arc<FormEntry>,
        job: &ImportJob,
        actor: &'a Actor,
        perms: &'a Permissions,
    ) -> Result<Importer<'a>, StoreError> {
        let form = &entry.form;
        let mut columns = Vec::new();
        let mut owner_column = None;
        let mut key_column = None;
        for c in &job.columns {
            match c.field.as_deref() {
                Some("owner") => owner_column = Some(c.column),
                Some("id") => key_column = Some(c.column),
                Some(f) => {
                    if let Some(fd) = form.field(f) {
                        columns.push((c.column, c.header.clone(), fd.clone()));
                    }
                }
                None => {}
            }
        }
        if let Some(k) = job.options.key.as_deref().filter(|k| *k != "id") {
            key_column = columns.iter().find(|c| c.2.name == k).map(|c| c.0);
        }
        let needs_users = owner_column.is_some()
            || columns.iter().any(|c| c.2.kind == FieldType::User)
            || job.options.constants.contains_key("owner");
        let mut users = HashMap::new();
        if needs_users {
            for u in crate::auth::list_users(&store.db).await? {
                users.insert(u.email.to_lowercase(), u.id.clone());
                users.entry(u.name.to_lowercase()).or_insert(u.id.clone());
                users.insert(u.id.to_lowercase(), u.id);
            }
        }
        Ok(Self {
            store,
            job: job.id.clone(),
            snap,
            options: job.options.clone(),
            headers: job.columns.iter().map(|c| c.header.clone()).collect(),
            columns,
            owner_column,
            key_column,
            csv: job.read_csv(),
            tz: tz_of(&job.options)?,
            users,
            actor,
            perms,
            rules: store.rules.for_form(&entry.form.name),
            recorded: parking_lot::Mutex::default(),
            now: now_micros(),
            entry,
        })
    }

    /// Rule failures kept to record once their rows are committed (a bounded number: each
    /// is one entry in the admin audit).
    fn keep_failures(&self, form: String, recorded: Vec<trellis_rules::RuleError>) {
        let mut kept = self.recorded.lock();
        if kept.len() < KEPT_ERRORS * 10 {
            kept.push((form, recorded));
        }
    }

    /// A key cell as looked up: trimmed, an escaped formula restored.
    fn key_text(&self, s: &str) -> String {
        if self.csv { cell::undefuse(s) } else { s }
            .trim()
            .to_owned()
    }

    fn header_of(&self, field: &str) -> Option<String> {
        let top = field.split(['.', '[']).next().unwrap_or(field);
        self.columns
            .iter()
            .find(|c| c.2.name == top)
            .map(|c| c.1.clone())
            .or_else(|| {
                (top == "owner")
                    .then(|| self.owner_column.and_then(|i| self.headers.get(i).cloned()))
                    .flatten()
            })
    }

    fn field_error(&self, line: u64, e: &FieldError) -> RowError {
        RowError {
            row: line,
            column: self.header_of(&e.field),
            field: (!e.field.is_empty()).then(|| e.field.clone()),
            code: e.code.to_owned(),
            message: e.message.clone(),
        }
    }

    /// May batches be prepared while the one before is written? Not when a column relates
    /// the form to itself: a row may name a record that an unwritten row creates.
    fn may_prepare_ahead(&self) -> bool {
        !self.columns.iter().any(|(_, _, f)| {
            f.kind == FieldType::Relation && f.target.as_deref() == Some(&self.entry.form.name)
        })
    }

    /// The next batch from the reader (None at the end), prepared when `ahead`.
    async fn fetch(
        &self,
        rx: &mut tokio::sync::mpsc::Receiver<Result<(Vec<Row>, u64), ReadError>>,
        ahead: bool,
    ) -> Result<Option<Batch>, StoreError> {
        let Some(msg) = rx.recv().await else {
            return Ok(None);
        };
        let (rows, bytes) = msg.map_err(|e| read_error(&e))?;
        let pending = if ahead {
            Some(self.prepare(&self.store.db.reader, &rows).await?)
        } else {
            None
        };
        Ok(Some(Batch {
            rows,
            bytes,
            pending,
        }))
    }

    /// Convert rows, resolve their relations on `c`, and check each as a create would
    /// (validation, formulas, rules). A row that turns out to update a record drops the
    /// answer. Rules read committed data, so when this runs ahead they do not see the
    /// batch being written beside it (nor, as ever, the other rows of this batch).
    async fn prepare<C: ConnectionTrait>(
        &self,
        c: &C,
        rows: &[Row],
    ) -> Result<Vec<Pending>, StoreError> {
        let mut pending: Vec<Pending> = rows.iter().map(|r| self.convert(r)).collect();
        self.resolve_relations(c, &mut pending).await?;
        if self.options.mode == ImportMode::Update {
            return Ok(pending);
        }
        for (n, p) in pending.iter_mut().enumerate() {
            if !p.errors.is_empty() {
                continue;
            }
            let mut host = Host::new(
                &self.store.db.reader,
                self.store.db.dialect,
                self.snap,
                &self.entry,
                Turns::Peek,
            );
            let mut input = p.input.clone();
            // Nulls from empty cells would only fight defaults.
            input.retain(|_, v| !Value::is_null(v));
            p.made = Some(
                new_record(
                    &mut host,
                    self.snap,
                    &self.entry,
                    &self.rules,
                    input,
                    self.perms,
                    self.now,
                    "",
                )
                .await,
            );
            // Let the write running beside this go on (both share one thread).
            if n % 8 == 7 {
                tokio::task::yield_now().await;
            }
        }
        Ok(pending)
    }

    /// Cells to field values, with a problem per cell that does not convert.
    fn convert(&self, row: &Row) -> Pending {
        let mut input = Map::new();
        let mut errors = Vec::new();
        let err = |col: Option<&str>, field: Option<&str>, code: &str, msg: String| RowError {
            row: row.line,
            column: col.map(str::to_owned),
            field: field.map(str::to_owned),
            code: code.to_owned(),
            message: msg,
        };
        if row.malformed {
            errors.push(err(
                None,
                None,
                "encoding",
                "the row is not valid in the file's encoding: is the encoding right?".into(),
            ));
        }
        if row.cells.len() > self.headers.len()
            && row.cells[self.headers.len()..]
                .iter()
                .any(|c| !c.trim().is_empty())
        {
            errors.push(err(
                None,
                None,
                "ragged",
                format!(
                    "the row has {} cells but the header has {} columns",
                    row.cells.len(),
                    self.headers.len()
                ),
            ));
        }
        for (f, v) in &self.options.constants {
            input.insert(f.clone(), v.clone());
        }
        for (i, header, field) in &self.columns {
            let raw = row.cells.get(*i).map(String::as_str).unwrap_or("");
            let text = if self.csv { cell::undefuse(raw) } else { raw };
            match cell::to_value(field, text, self.tz) {
                Ok(Some(v)) => {
                    let v = if field.kind == FieldType::User {
                        match self.users.get(&text.trim().to_lowercase()) {
                            Some(id) => Value::String(id.clone()),
                            None => {
                                errors.push(err(
                                    Some(header),
                                    Some(&field.name),
                                    "not_found",
                                    format!("no user with the e-mail or name {:?}", text.trim()),
                                ));
                                continue;
                            }
                        }
                    } else {
                        v
                    };
                    input.insert(field.name.clone(), v);
                }
                Ok(None) => {
                    if !input.contains_key(&field.name) || self.options.clear_empty {
                        input.insert(field.name.clone(), Value::Null);
                    }
                }
                Err(e) => errors.push(err(Some(header), Some(&field.name), e.code, e.message)),
            }
        }
        if let Some(i) = self.owner_column {
            let text = row.cells.get(i).map(|s| s.trim()).unwrap_or("");
            if !text.is_empty() {
                match self.users.get(&text.to_lowercase()) {
                    Some(id) => {
                        input.insert("owner".into(), Value::String(id.clone()));
                    }
                    None => errors.push(err(
                        self.headers.get(i).map(String::as_str),
                        Some("owner"),
                        "not_found",
                        format!("no user with the e-mail or name {text:?}"),
                    )),
                }
            }
        }
        if let Some(Value::String(o)) = input.get("owner").cloned()
            && let Some(id) = self.users.get(&o.to_lowercase())
        {
            input.insert("owner".into(), Value::String(id.clone()));
        }
        Pending {
            line: row.line,
            input,
            ready: None,
            made: None,
            errors,
        }
    }

    /// Relation cells name a target record by a key; look every name of the batch up at
    /// once and put the ids in.
    async fn resolve_relations<C: ConnectionTrait>(
        &self,
        c: &C,
        rows: &mut [Pending],
    ) -> Result<(), StoreError> {
        for (_, header, field) in self
            .columns
            .iter()
            .filter(|c| c.2.kind == FieldType::Relation)
        {
            let Some(target) = field.target.as_deref() else {
                continue;
            };
            let te = self.snap.get(target)?;
            let key = self
                .options
                .relation_keys
                .get(&field.name)
                .cloned()
                .or_else(|| te.form.title_field.clone())
                .unwrap_or_else(|| "id".into());
            let mut names: Vec<String> = rows
                .iter()
                .filter_map(|r| r.input.get(&field.name).and_then(Value::as_str))
                .map(str::to_owned)
                .collect();
            names.sort_unstable();
            names.dedup();
            if names.is_empty() {
                continue;
            }
            // Only records the caller may read: a name must not confirm what is hidden.
            let scope = match crate::access::rows(self.perms, self.snap, target, Action::Read) {
                Ok(s) => s,
                Err(StoreError::Forbidden { .. }) => {
                    Some(trellis_query::Filter::nothing(&te.table))
                }
                Err(e) => return Err(e),
            };
            let found = lookup(
                c,
                self.store.db.dialect,
                &te,
                &key,
                &names,
                scope.as_ref(),
                self.tz,
            )
            .await?;
            for r in rows.iter_mut() {
                let Some(name) = r
                    .input
                    .get(&field.name)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                else {
                    continue;
                };
                match found.get(&name).map(Vec::as_slice) {
                    Some([id]) => {
                        r.input
                            .insert(field.name.clone(), Value::String(id.clone()));
                    }
                    Some(ids) if ids.len() > 1 => {
                        r.errors.push(RowError {
                            row: r.line,
                            column: Some(header.clone()),
                            field: Some(field.name.clone()),
                            code: "ambiguous".into(),
                            message: format!(
                                "{} {target} records have the {key} {name:?}",
                                ids.len()
                            ),
                        });
                    }
                    _ => {
                        r.errors.push(RowError {
                            row: r.line,
                            column: Some(header.clone()),
                            field: Some(field.name.clone()),
                            code: "not_found".into(),
                            message: format!("no {target} record has the {key} {name:?}"),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Write one batch in `txn` (preparing it first unless that was done ahead); answers
    /// each row's outcome (also written to the files).
    async fn write(
        &self,
        txn: &DatabaseTransaction,
        rows: Vec<Row>,
        pending: Option<Vec<Pending>>,
        files: &mut JobFiles,
    ) -> Result<Vec<RowOutcome>, StoreError> {
        let mut pending = match pending {
            Some(p) => p,
            None => self.prepare(txn, &rows).await?,
        };
        // Existing records by key.
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        if let (Some(k), Some(col)) = (self.options.key.clone(), self.key_column) {
            let names: Vec<String> = rows
                .iter()
                .filter_map(|r| r.cells.get(col))
                .map(|s| self.key_text(s))
                .filter(|s| !s.is_empty())
                .collect();
            // Records the caller may read (and, to update them, change).
            let form = self.entry.form.name.as_str();
            let read = crate::access::rows(self.perms, self.snap, form, Action::Read)?;
            let scope = if self.options.mode == ImportMode::Insert {
                read
            } else {
                crate::records::both(
                    crate::access::rows(self.perms, self.snap, form, Action::Update)?,
                    read,
                )
            };
            by_key = lookup(
                txn,
                self.store.db.dialect,
                &self.entry,
                &k,
                &names,
                scope.as_ref(),
                self.tz,
            )
            .await?;
        }
        let mut outcomes: Vec<RowOutcome> = pending
            .iter()
            .map(|p| RowOutcome {
                row: p.line,
                action: String::new(),
                id: None,
                matched: None,
                rule: None,
                errors: Vec::new(),
            })
            .collect();
        // Decide each row: update an existing record, or create (validated now).
        let mut targets: Vec<Option<Target>> = vec![None; pending.len()];
        // Keys of earlier rows of this batch: such a row's record is not written yet.
        let mut seen: HashMap<String, usize> = HashMap::new();
        let lines: Vec<u64> = pending.iter().map(|p| p.line).collect();
        for (i, p) in pending.iter_mut().enumerate() {
            if !p.errors.is_empty() {
                continue;
            }
            let key = self
                .key_column
                .and_then(|c| rows[i].cells.get(c))
                .map(|s| self.key_text(s))
                .unwrap_or_default();
            // Two spellings of one value are one key (`A@x.com`, `a@x.com`).
            let same = {
                let def = self
                    .options
                    .key
                    .as_deref()
                    .and_then(|k| self.entry.form.field(k));
                key_value(def, &key, self.tz)
                    .map(|v| key_string(&v))
                    .unwrap_or_else(|| key.clone())
            };
            if !key.is_empty() {
                if let Some(&j) = seen.get(&same) {
                    if self.options.mode == ImportMode::Insert {
                        outcomes[i].action = "skip".into();
                        outcomes[i].matched = Some(format!("row {}", lines[j]));
                        outcomes[i].errors.push(RowError {
                            row: p.line,
                            column: self.key_column.and_then(|c| self.headers.get(c).cloned()),
                            field: self.options.key.clone(),
                            code: "exists".into(),
                            message: format!(
                                "row {} has the same key (the import only inserts)",
                                lines[j]
                            ),
                        });
                    } else {
                        targets[i] = Some(Target::Row(j));
                    }
                    continue;
                }
                if self.key_column.is_some() {
                    seen.insert(same, i);
                }
            }
            let existing = by_key.get(&key).cloned().unwrap_or_default();
            if existing.len() > 1 {
                p.errors.push(RowError {
                    row: p.line,
                    column: self.key_column.and_then(|c| self.headers.get(c).cloned()),
                    field: self.options.key.clone(),
                    code: "ambiguous".into(),
                    message: format!("{} records have this key", existing.len()),
                });
                continue;
            }
            match (self.options.mode, existing.first()) {
                (ImportMode::Insert, Some(id)) => {
                    outcomes[i].action = "skip".into();
                    outcomes[i].matched = Some(id.clone());
                    outcomes[i].errors.push(RowError {
                        row: p.line,
                        column: self.key_column.and_then(|c| self.headers.get(c).cloned()),
                        field: self.options.key.clone(),
                        code: "exists".into(),
                        message: "a record with this key exists (the import only inserts)".into(),
                    });
                }
                (ImportMode::Update | ImportMode::Upsert, Some(id)) => {
                    targets[i] = Some(Target::Id(id.clone()));
                }
                (ImportMode::Update, None) => {
                    outcomes[i].action = "skip".into();
                    outcomes[i].errors.push(RowError {
                        row: p.line,
                        column: self.key_column.and_then(|c| self.headers.get(c).cloned()),
                        field: self.options.key.clone(),
                        code: "no_match".into(),
                        message: if key.is_empty() {
                            "the key is empty".into()
                        } else {
                            format!("no record has the key {key:?}")
                        },
                    });
                }
                (_, None) => match p.made.take() {
                    Some(Ok(NewRecord::Ready(v, recorded))) => {
                        if !recorded.is_empty() {
                            self.keep_failures(self.entry.form.name.clone(), recorded);
                        }
                        p.ready = Some(v);
                    }
                    Some(Ok(NewRecord::Invalid(es)) | Err(StoreError::Validation(es))) => {
                        p.errors
                            .extend(es.iter().map(|e| self.field_error(p.line, e)));
                    }
                    Some(Err(e)) => p.errors.extend(self.write_errors(p.line, e)?),
                    None => {
                        return Err(StoreError::Corrupt(format!(
                            "row {} was not checked before its write",
                            p.line
                        )));
                    }
                },
            }
        }
        // Duplicate rules decide what each new row becomes, in file order; creates are
        // written in runs so a later row can merge into an earlier one.
        let rules = if self.options.duplicates == Duplicates::Ignore {
            Vec::new()
        } else {
            self.entry.form.duplicates.clone()
        };
        let mut keys_of: Vec<Vec<(usize, String)>> = vec![Vec::new(); pending.len()];
        let mut found: Vec<HashMap<String, Vec<String>>> = Vec::with_capacity(rules.len());
        for (ri, rule) in rules.iter().enumerate() {
            let mut ks = Vec::new();
            for (i, p) in pending.iter().enumerate() {
                if let Some(v) = &p.ready
                    && let Some(k) = rule.key(&self.entry.form, v)
                {
                    keys_of[i].push((ri, k.clone()));
                    ks.push(k);
                }
            }
            let refs: Vec<&str> = ks.iter().map(String::as_str).collect();
            let mut hits =
                crate::dedupe::find(txn, &self.entry.form.name, &rule.name, &refs).await?;
            // Only records the caller may read: a match must not reveal the others.
            if !self.perms.may_inspect() {
                let all: Vec<String> = hits.values().flatten().cloned().collect();
                let ok = self
                    .store
                    .readable_on(txn, &self.entry.form.name, all, self.perms)
                    .await?;
                for ids in hits.values_mut() {
                    ids.retain(|id| ok.contains(id));
                }
                hits.retain(|_, ids| !ids.is_empty());
            }
            found.push(hits);
        }
        // Keys of rows created earlier in this batch: (rule, key) → index of that row.
        let mut in_batch: HashMap<(usize, String), usize> = HashMap::new();
        let mut run: Vec<usize> = Vec::new();
        for i in 0..pending.len() {
            if !pending[i].errors.is_empty() {
                outcomes[i].action = "reject".into();
                outcomes[i].errors = pending[i].errors.clone();
                continue;
            }
            if let Some(t) = targets[i].clone() {
                self.flush(txn, &mut pending, &mut outcomes, &mut run)
                    .await?;
                let id = match t {
                    Target::Id(id) => Some(id),
                    Target::Row(j) => outcomes[j].id.clone(),
                };
                let Some(id) = id else {
                    // The earlier row with this key made no record.
                    outcomes[i].action = "reject".into();
                    outcomes[i].errors.push(RowError {
                        row: pending[i].line,
                        column: self.key_column.and_then(|c| self.headers.get(c).cloned()),
                        field: self.options.key.clone(),
                        code: "no_match".into(),
                        message: "an earlier row with this key was not imported".into(),
                    });
                    continue;
                };
                let patch = update_patch(&pending[i].input, self.options.clear_empty);
                self.update(txn, &id, patch, &mut pending[i], &mut outcomes[i], "update")
                    .await?;
                continue;
            }
            if pending[i].ready.is_none() {
                continue;
            }
            // The first rule that matches decides.
            let mut decided = false;
            for (ri, k) in keys_of[i].clone() {
                let rule = &rules[ri];
                let earlier = in_batch.get(&(ri, k.clone())).copied();
                let existing = found[ri].get(&k).and_then(|v| v.first().cloned());
                if earlier.is_none() && existing.is_none() {
                    continue;
                }
                let policy = match self.options.duplicates {
                    Duplicates::Skip => OnImport::Skip,
                    Duplicates::Update => OnImport::Update,
                    Duplicates::Merge => OnImport::Merge,
                    Duplicates::Flag => OnImport::Flag,
                    Duplicates::Rules | Duplicates::Ignore => rule.on_import,
                };
                outcomes[i].rule = Some(rule.name.clone());
                match policy {
                    OnImport::Skip => {
                        outcomes[i].action = "skip".into();
                        outcomes[i].matched = match earlier {
                            Some(j) => outcomes[j]
                                .id
                                .clone()
                                .or(Some(format!("row {}", pending[j].line))),
                            None => existing,
                        };
                        outcomes[i].errors.push(RowError {
                            row: pending[i].line,
                            column: rule.fields.first().and_then(|f| self.header_of(&f.field)),
                            field: rule.fields.first().map(|f| f.field.clone()),
                            code: "duplicate".into(),
                            message: format!("a duplicate by the rule {:?}", rule.name),
                        });
                    }
                    OnImport::Flag => {
                        outcomes[i].action = "flag".into();
                        outcomes[i].matched = match earlier {
                            Some(j) => outcomes[j]
                                .id
                                .clone()
                                .or(Some(format!("row {}", pending[j].line))),
                            None => existing,
                        };
                        run.push(i);
                        for (rj, kj) in &keys_of[i] {
                            in_batch.entry((*rj, kj.clone())).or_insert(i);
                        }
                    }
                    OnImport::Update | OnImport::Merge => {
                        let target = match earlier {
                            Some(j) => {
                                self.flush(txn, &mut pending, &mut outcomes, &mut run)
                                    .await?;
                                outcomes[j].id.clone()
                            }
                            None => existing,
                        };
                        let Some(target) = target else {
                            // The earlier row failed at the write: this one stands alone.
                            continue;
                        };
                        let patch = if policy == OnImport::Merge {
                            let current =
                                read_one(txn, self.store.db.dialect, &self.entry, &target)
                                    .await?
                                    .unwrap_or_default();
                            merge_patch(&pending[i].input, &current)
                        } else {
                            update_patch(&pending[i].input, false)
                        };
                        let action = if policy == OnImport::Merge {
                            "merge"
                        } else {
                            "update"
                        };
                        outcomes[i].matched = Some(target.clone());
                        self.update(
                            txn,
                            &target,
                            patch,
                            &mut pending[i],
                            &mut outcomes[i],
                            action,
                        )
                        .await?;
                    }
                }
                decided = true;
                break;
            }
            if !decided {
                outcomes[i].action = "create".into();
                run.push(i);
                for (rj, kj) in &keys_of[i] {
                    in_batch.entry((*rj, kj.clone())).or_insert(i);
                }
            }
        }
        self.flush(txn, &mut pending, &mut outcomes, &mut run)
            .await?;
        for (o, r) in outcomes.iter().zip(&rows) {
            if o.action == "reject" {
                files.bad_row(r, &o.errors)?;
            }
            files.outcome(o)?;
        }
        Ok(outcomes)
    }

    /// Update one record from a row (in a savepoint); a refusal rejects the row.
    async fn update(
        &self,
        txn: &DatabaseTransaction,
        id: &str,
        patch: Map<String, Value>,
        p: &mut Pending,
        out: &mut RowOutcome,
        action: &str,
    ) -> Result<(), StoreError> {
        let form = self.entry.form.name.clone();
        match self
            .store
            .update_with(txn, &form, id, patch, None, self.actor, self.perms)
            .await
        {
            Ok((_, recorded)) => {
                if !recorded.is_empty() {
                    self.keep_failures(form, recorded);
                }
                out.action = action.into();
                out.id = Some(id.to_owned());
            }
            Err(e) => {
                out.action = "reject".into();
                out.matched = Some(id.to_owned());
                out.errors = self.write_errors(p.line, e)?;
            }
        }
        Ok(())
    }

    /// A write's refusal as row errors; anything else stops the job.
    fn write_errors(&self, line: u64, e: StoreError) -> Result<Vec<RowError>, StoreError> {
        match e {
            StoreError::Validation(es) => {
                Ok(es.iter().map(|e| self.field_error(line, e)).collect())
            }
            StoreError::RecordNotFound { .. } => Ok(vec![RowError {
                row: line,
                column: None,
                field: None,
                code: "not_found".into(),
                message: "the record to change is gone, or you may not change it".into(),
            }]),
            StoreError::Unique { field } => Ok(vec![RowError {
                row: line,
                column: self.header_of(&field),
                field: Some(field),
                code: "unique".into(),
                message: "the value is already used by another record".into(),
            }]),
            StoreError::Forbidden {
                field,
                code,
                message,
            }
            | StoreError::Conflict {
                field,
                code,
                message,
                ..
            } => Ok(vec![RowError {
                row: line,
                column: self.header_of(&field),
                field: (!field.is_empty()).then_some(field),
                code: code.into(),
                message,
            }]),
            other => Err(other),
        }
    }

    /// Create the rows waiting in `run`, in one statement when they all go in, else one
    /// by one in savepoints so that only the refused rows are rejected.
    async fn flush(
        &self,
        txn: &DatabaseTransaction,
        pending: &mut [Pending],
        outcomes: &mut [RowOutcome],
        run: &mut Vec<usize>,
    ) -> Result<(), StoreError> {
        if run.is_empty() {
            return Ok(());
        }
        let idx = std::mem::take(run);
        let values: Vec<Map<String, Value>> = idx
            .iter()
            .filter_map(|&i| pending[i].ready.clone())
            .collect();
        let sp = txn.begin().await?;
        match self.insert(&sp, values).await {
            Ok(records) => {
                sp.commit().await?;
                for (&i, r) in idx.iter().zip(records) {
                    outcomes[i].id = r.get("id").and_then(Value::as_str).map(str::to_owned);
                }
                return Ok(());
            }
            Err(e) if idx.len() == 1 => {
                sp.rollback().await?;
                let i = idx[0];
                outcomes[i].action = "reject".into();
                outcomes[i].errors = self.write_errors(pending[i].line, e)?;
                return Ok(());
            }
            Err(
                StoreError::Validation(_)
                | StoreError::Unique { .. }
                | StoreError::Conflict { .. }
                | StoreError::Forbidden { .. },
            ) => {
                sp.rollback().await?;
            }
            Err(e) => return Err(e),
        }
        for i in idx {
            let Some(v) = pending[i].ready.clone() else {
                continue;
            };
            let sp = txn.begin().await?;
            match self.insert(&sp, vec![v]).await {
                Ok(mut r) => {
                    sp.commit().await?;
                    outcomes[i].id = r
                        .pop()
                        .and_then(|r| r.get("id").and_then(Value::as_str).map(str::to_owned));
                }
                Err(e) => {
                    sp.rollback().await?;
                    outcomes[i].action = "reject".into();
                    outcomes[i].errors = self.write_errors(pending[i].line, e)?;
                }
            }
        }
        Ok(())
    }

    async fn insert(
        &self,
        txn: &DatabaseTransaction,
        mut values: Vec<Map<String, Value>>,
    ) -> Result<Vec<Map<String, Value>>, StoreError> {
        self.store
            .check_references(
                self.snap,
                &self.entry,
                &values,
                None,
                self.perms,
                values.len() > 1,
            )
            .await?;
        if crate::rules::routes(&self.rules) {
            let mut host = Host::new(
                txn,
                self.store.db.dialect,
                self.snap,
                &self.entry,
                Turns::Take,
            );
            let mut failures = Vec::new();
            for v in values.iter_mut() {
                let recorded =
                    crate::rules::route(&mut host, &self.rules, v, self.actor.user.as_deref(), "")
                        .await?;
                if !recorded.is_empty() {
                    failures.push(recorded);
                }
                let gates = self.entry.form.stage_errors(None, v);
                if !gates.is_empty() {
                    return Err(StoreError::Validation(gates));
                }
            }
            drop(host);
            for f in failures {
                self.keep_failures(self.entry.form.name.clone(), f);
            }
        }
        insert_records(
            txn,
            &self.store.db,
            self.snap,
            &self.entry,
            values,
            self.actor,
            self.now,
            false,
            false,
        )
        .await
    }
}

/// What an update writes: the row's values, without empty cells unless they clear.
fn update_patch(input: &Map<String, Value>, clear_empty: bool) -> Map<String, Value> {
    input
        .iter()
        .filter(|(_, v)| clear_empty || !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What a merge writes: the row's values for the fields the record has empty.
fn merge_patch(input: &Map<String, Value>, current: &Map<String, Value>) -> Map<String, Value> {
    input
        .iter()
        .filter(|(k, v)| {
            !v.is_null()
                && !SYSTEM_COLUMNS.contains(&k.as_str())
                && current
                    .get(*k)
                    .is_none_or(|c| c.is_null() || c.as_str() == Some(""))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A cell as the stored value it names, for finding records by it: converted by the
/// field's type and normalized as a write would be (`2024/3/5` finds `2024-03-05`,
/// `Alice@Example.com` finds `alice@example.com`, `007` finds 7). None: it names nothing.
fn key_value(field: Option<&Field>, text: &str, tz: chrono_tz::Tz) -> Option<Value> {
    let Some(f) = field else {
        // `id`.
        return Some(Value::String(text.trim().to_owned()));
    };
    if f.kind == FieldType::Autonumber {
        return Some(Value::String(text.trim().to_owned()));
    }
    let mut v = cell::to_value(f, text, tz).ok()??;
    trellis_meta::record::normalize_value(f, &mut v);
    (!Value::is_null(&v)).then_some(v)
}

/// A value as text, to compare a looked-up value with the one asked for.
fn key_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Records of `entry` whose `field` holds the value each of `names` names (see
/// [`key_value`]): name → ids, oldest first. A name that is itself a record's id finds
/// that record too. Only records within `scope`.
#[allow(clippy::too_many_arguments)]
async fn lookup<C: ConnectionTrait>(
    c: &C,
    dialect: Dialect,
    entry: &FormEntry,
    field: &str,
    names: &[String],
    scope: Option<&trellis_query::Filter>,
    tz: chrono_tz::Tz,
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let (column, kind, def) = if field == "id" {
        ("id".to_owned(), trellis_query::ValueKind::Text, None)
    } else {
        match (entry.column(field), entry.form.field(field)) {
            (Some((c, k)), Some(f)) => (c.to_owned(), k, Some(f)),
            _ => return Ok(out),
        }
    };
    // Stored value (as text) → the names that ask for it.
    let mut wanted: HashMap<String, Vec<&String>> = HashMap::new();
    let mut values = Vec::new();
    for n in names {
        let Some(v) = key_value(def, n, tz) else {
            continue;
        };
        let k = key_string(&v);
        if !wanted.contains_key(&k) {
            // A value of the wrong type for the column finds nothing.
            if let Ok(sv) = to_sql(kind, &v, dialect) {
                values.push(sv);
            }
        }
        wanted.entry(k).or_default().push(n);
    }
    let t = Alias::new(&entry.table);
    for chunk in values.chunks(500) {
        let mut s = Query::select();
        s.expr(Expr::col((t.clone(), Alias::new("id"))))
            .expr(Expr::col((t.clone(), Alias::new(&column))))
            .from(t.clone())
            .and_where(Expr::col((t.clone(), Alias::new(&column))).is_in(chunk.to_vec()))
            .order_by((t.clone(), Alias::new("id")), Order::Asc);
        if let Some(f) = scope {
            s.cond_where(f.to_condition(dialect));
        }
        for row in c.query_all(&s).await? {
            let id: String = row.try_get_by_index(0)?;
            let stored = key_string(&crate::row::decode(&row, 1, kind, dialect)?);
            for n in wanted.get(&stored).into_iter().flatten() {
                out.entry((*n).clone()).or_default().push(id.clone());
            }
        }
    }
    if field != "id" {
        let ids: Vec<String> = names
            .iter()
            .filter(|n| !out.contains_key(*n))
            .cloned()
            .collect();
        if !ids.is_empty() {
            for (k, v) in Box::pin(lookup(c, dialect, entry, "id", &ids, scope, tz)).await? {
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_fills_only_empty_fields() {
        let input: Map<String, Value> =
            serde_json::from_value(json!({"a": "row", "b": "row", "c": null})).unwrap_or_default();
        let current: Map<String, Value> =
            serde_json::from_value(json!({"a": "kept", "b": null, "c": "kept"}))
                .unwrap_or_default();
        let p = merge_patch(&input, &current);
        assert_eq!(Value::Object(p), json!({"b": "row"}));
    }

    #[test]
    fn update_keeps_fields_of_empty_cells_unless_asked() {
        let input: Map<String, Value> =
            serde_json::from_value(json!({"a": "x", "b": null})).unwrap_or_default();
        assert_eq!(
            Value::Object(update_patch(&input, false)),
            json!({"a": "x"})
        );
        assert_eq!(
            Value::Object(update_patch(&input, true)),
            json!({"a": "x", "b": null})
        );
    }
}
