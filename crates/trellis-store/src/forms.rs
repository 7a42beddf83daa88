//! The form registry: definitions cached in memory, record tables created and described.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use parking_lot::RwLock;
use sea_orm::sea_query::{Alias, ColumnDef, ExprTrait, Table, TableCreateStatement};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, QueryOrder, Set, TransactionTrait};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trellis_meta::RecordValidator;
use trellis_meta::check::check_form;
use trellis_meta::form::{Field, FieldType, Form};
use trellis_query::{Catalog, Dialect, FieldInfo, ValueKind};

use crate::db::Db;
use crate::entity::{form as form_e, form_version};
use crate::error::StoreError;

/// Where a field's values are stored.
pub fn value_kind(ft: FieldType) -> ValueKind {
    match ft {
        FieldType::Integer => ValueKind::Integer,
        FieldType::Decimal | FieldType::Currency => ValueKind::Float,
        FieldType::Boolean => ValueKind::Boolean,
        FieldType::Date => ValueKind::Date,
        FieldType::Datetime => ValueKind::DateTime,
        FieldType::Multiselect => ValueKind::TextArray,
        FieldType::Subtable | FieldType::Attachment | FieldType::Json => ValueKind::Json,
        _ => ValueKind::Text,
    }
}

/// The kind of a field, formulas by their result type.
pub fn field_kind(f: &Field) -> ValueKind {
    value_kind(f.storage_type())
}

/// State of a column of a record table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnState {
    /// Holds a field of the current definition.
    Active,
    /// Its field was removed from the definition; data kept until a purge.
    Hidden,
    /// Left behind by a type change (the field moved to a new column); data kept.
    Retired,
}

/// One column of a record table and the field it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// SQL column name (immutable).
    pub column: String,
    /// Storage kind name.
    pub kind: String,
    /// Field name.
    pub field: String,
    /// State.
    pub state: ColumnState,
    /// The last definition of a hidden field, to restore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Field>,
}

/// Name of a value kind, as stored in the column list.
pub fn kind_name(k: ValueKind) -> &'static str {
    match k {
        ValueKind::Text => "text",
        ValueKind::Integer => "integer",
        ValueKind::Float => "float",
        ValueKind::Boolean => "boolean",
        ValueKind::Date => "date",
        ValueKind::DateTime => "datetime",
        ValueKind::TextArray => "text_array",
        ValueKind::Json => "json",
    }
}

/// Parse a stored kind name.
pub fn parse_kind(s: &str) -> Option<ValueKind> {
    Some(match s {
        "text" => ValueKind::Text,
        "integer" => ValueKind::Integer,
        "float" => ValueKind::Float,
        "boolean" => ValueKind::Boolean,
        "date" => ValueKind::Date,
        "datetime" => ValueKind::DateTime,
        "text_array" => ValueKind::TextArray,
        "json" => ValueKind::Json,
        _ => return None,
    })
}

/// The record table of a form.
pub fn table_name(form: &str) -> String {
    format!("rec_{form}")
}

/// The system columns and their kinds.
pub const SYSTEM: [(&str, ValueKind); 6] = [
    ("id", ValueKind::Text),
    ("version", ValueKind::Integer),
    ("created_at", ValueKind::DateTime),
    ("updated_at", ValueKind::DateTime),
    ("created_by", ValueKind::Text),
    ("owner", ValueKind::Text),
];

/// A form with everything needed to serve its records.
#[derive(Debug)]
pub struct FormEntry {
    /// The definition.
    pub form: Form,
    /// Published version.
    pub version: i64,
    /// Record table.
    pub table: String,
    /// Every column, active or not.
    pub columns: Vec<ColumnInfo>,
    /// Validates writes.
    pub validator: RecordValidator,
    /// Computes formula fields.
    pub formulas: crate::formulas::Formulas,
    /// Bundle that installed it.
    pub bundle: Option<String>,
    /// Position in the bundle.
    pub position: i64,
    by_field: HashMap<String, (String, ValueKind)>,
}

impl FormEntry {
    /// Build an entry from its parts; a formula that does not compile is refused.
    pub fn new(
        form: Form,
        version: i64,
        columns: Vec<ColumnInfo>,
        bundle: Option<String>,
        position: i64,
    ) -> Result<Self, StoreError> {
        let formulas = crate::formulas::Formulas::new(&form).map_err(StoreError::Definition)?;
        Self::with_formulas(form, version, columns, bundle, position, formulas)
    }

    /// An entry as stored: a formula saved before formulas were compiled that does not
    /// compile is left uncomputed (and logged) rather than keeping the server from starting.
    pub(crate) fn stored(
        form: Form,
        version: i64,
        columns: Vec<ColumnInfo>,
        bundle: Option<String>,
        position: i64,
    ) -> Result<Self, StoreError> {
        let formulas = crate::formulas::Formulas::new(&form).unwrap_or_else(|errs| {
            for e in &errs {
                tracing::warn!(form = %form.name, path = %e.path, error = %e.message, "a formula does not compile; it is not computed");
            }
            crate::formulas::Formulas::default()
        });
        Self::with_formulas(form, version, columns, bundle, position, formulas)
    }

    fn with_formulas(
        form: Form,
        version: i64,
        columns: Vec<ColumnInfo>,
        bundle: Option<String>,
        position: i64,
        formulas: crate::formulas::Formulas,
    ) -> Result<Self, StoreError> {
        let validator = RecordValidator::new(&form).map_err(|e| StoreError::Definition(vec![e]))?;
        let by_field = columns
            .iter()
            .filter(|c| c.state == ColumnState::Active)
            .map(|c| {
                (
                    c.field.clone(),
                    (
                        c.column.clone(),
                        parse_kind(&c.kind).unwrap_or(ValueKind::Text),
                    ),
                )
            })
            .collect();
        Ok(Self {
            table: table_name(&form.name),
            form,
            version,
            columns,
            validator,
            formulas,
            bundle,
            position,
            by_field,
        })
    }

    /// The column and kind of an active field or a system column.
    pub fn column(&self, field: &str) -> Option<(&str, ValueKind)> {
        if let Some((name, k)) = SYSTEM.iter().find(|(n, _)| *n == field) {
            return Some((name, *k));
        }
        self.by_field.get(field).map(|(c, k)| (c.as_str(), *k))
    }

    /// Forms this one points at through relation fields.
    pub fn relations(&self) -> impl Iterator<Item = (&Field, &str)> {
        self.form
            .fields
            .iter()
            .filter_map(|f| f.target.as_deref().map(|t| (f, t)))
    }
}

/// An immutable view of all forms, used as the filter catalog.
#[derive(Clone, Default)]
pub struct Snapshot(pub Arc<HashMap<String, Arc<FormEntry>>>);

impl Catalog for Snapshot {
    fn field(&self, form: &str, name: &str) -> Option<FieldInfo> {
        let e = self.0.get(form)?;
        let (column, kind) = e.column(name)?;
        let target = e.form.field(name).and_then(|f| f.target.clone());
        Some(FieldInfo {
            column: column.to_owned(),
            kind,
            target,
        })
    }

    fn table(&self, form: &str) -> Option<String> {
        self.0.get(form).map(|e| e.table.clone())
    }
}

impl Snapshot {
    /// The entry of `form`.
    pub fn get(&self, form: &str) -> Result<Arc<FormEntry>, StoreError> {
        self.0
            .get(form)
            .cloned()
            .ok_or_else(|| StoreError::UnknownForm(form.to_owned()))
    }

    /// Every form with a relation field pointing at `target`: (form, field).
    pub fn referrers(&self, target: &str) -> Vec<(Arc<FormEntry>, Field)> {
        let mut out = Vec::new();
        for e in self.0.values() {
            for f in &e.form.fields {
                if f.target.as_deref() == Some(target) {
                    out.push((e.clone(), f.clone()));
                }
            }
        }
        out.sort_by(|a, b| {
            (a.0.form.name.as_str(), a.1.name.as_str())
                .cmp(&(b.0.form.name.as_str(), b.1.name.as_str()))
        });
        out
    }

    /// Relations to `target` inside subtable lines: (form, subtable field, line field).
    pub fn line_referrers(&self, target: &str) -> Vec<(Arc<FormEntry>, Field, Field)> {
        let mut out = Vec::new();
        for e in self.0.values() {
            for f in e
                .form
                .fields
                .iter()
                .filter(|f| f.kind == FieldType::Subtable)
            {
                for nf in f
                    .fields
                    .iter()
                    .filter(|nf| nf.target.as_deref() == Some(target))
                {
                    out.push((e.clone(), f.clone(), nf.clone()));
                }
            }
        }
        out.sort_by(|a, b| {
            (a.0.form.name.as_str(), a.1.name.as_str(), a.2.name.as_str()).cmp(&(
                b.0.form.name.as_str(),
                b.1.name.as_str(),
                b.2.name.as_str(),
            ))
        });
        out
    }
}

/// All form definitions, cached; replaced whole on every change.
#[derive(Default)]
pub struct Registry {
    forms: RwLock<Snapshot>,
    /// Record writes hold it shared, definition changes exclusively, so no write in this
    /// process uses a definition that a committed change has replaced.
    pub change: tokio::sync::RwLock<()>,
}

impl Registry {
    /// Load every form from the database.
    pub async fn load(db: &Db) -> Result<Self, StoreError> {
        let r = Self::default();
        r.reload(db).await?;
        Ok(r)
    }

    /// Read all definitions again (after another process changed them).
    pub async fn reload(&self, db: &Db) -> Result<(), StoreError> {
        let rows = form_e::Entity::find().all(&db.reader).await?;
        let mut map = HashMap::new();
        for m in rows {
            let e = entry_from_model(m)?;
            map.insert(e.form.name.clone(), Arc::new(e));
        }
        *self.forms.write() = Snapshot(Arc::new(map));
        Ok(())
    }

    /// Reload when the stored definitions differ from the cached ones (another process
    /// or the command line changed them). Cheap: reads only names and versions.
    pub async fn refresh(&self, db: &Db) -> Result<bool, StoreError> {
        use sea_orm::QuerySelect;
        let stored: Vec<(String, i64)> = form_e::Entity::find()
            .select_only()
            .column(form_e::Column::Name)
            .column(form_e::Column::Version)
            .into_tuple()
            .all(&db.reader)
            .await?;
        let snap = self.snapshot();
        let same = stored.len() == snap.0.len()
            && stored
                .iter()
                .all(|(n, v)| snap.0.get(n).is_some_and(|e| e.version == *v));
        if !same {
            self.reload(db).await?;
        }
        Ok(!same)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.forms.read().clone()
    }

    /// The entry of `form`.
    pub fn get(&self, form: &str) -> Result<Arc<FormEntry>, StoreError> {
        self.snapshot().get(form)
    }

    /// Put (or replace) an entry.
    pub fn put(&self, e: FormEntry) {
        let mut w = self.forms.write();
        let mut map = (*w.0).clone();
        map.insert(e.form.name.clone(), Arc::new(e));
        *w = Snapshot(Arc::new(map));
    }

    /// Drop an entry.
    pub fn remove(&self, form: &str) {
        let mut w = self.forms.write();
        let mut map = (*w.0).clone();
        map.remove(form);
        *w = Snapshot(Arc::new(map));
    }

    /// Every form, in bundle order then by name.
    pub fn list(&self) -> Vec<Arc<FormEntry>> {
        let mut v: Vec<_> = self.snapshot().0.values().cloned().collect();
        v.sort_by(|a, b| {
            (&a.bundle, a.position, &a.form.name).cmp(&(&b.bundle, b.position, &b.form.name))
        });
        v
    }
}

pub(crate) fn entry_from_model(m: form_e::Model) -> Result<FormEntry, StoreError> {
    let form: Form = serde_json::from_value(m.definition)?;
    let columns: Vec<ColumnInfo> = serde_json::from_value(m.columns)?;
    FormEntry::stored(form, m.version, columns, m.bundle, m.position)
}

/// Quote an identifier that was already checked against `^[a-z][a-z0-9_]*$`.
pub fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A column definition for `kind`.
pub fn column_def(column: &str, kind: ValueKind, dialect: Dialect) -> ColumnDef {
    let mut c = ColumnDef::new(Alias::new(column));
    match kind {
        // Byte order on PostgreSQL too, so sorting and cursors agree with SQLite.
        ValueKind::Text if dialect == Dialect::Postgres => c.text().extra("COLLATE \"C\""),
        ValueKind::Text => c.text(),
        ValueKind::Integer => c.big_integer(),
        ValueKind::Float => c.double(),
        ValueKind::Boolean => c.boolean(),
        ValueKind::Date if dialect == Dialect::Postgres => c.date(),
        ValueKind::DateTime if dialect == Dialect::Postgres => c.timestamp_with_time_zone(),
        ValueKind::TextArray | ValueKind::Json if dialect == Dialect::Postgres => c.json_binary(),
        _ => c.text(),
    };
    c
}

pub(crate) fn index_name(prefix: &str, table: &str, column: &str) -> String {
    let n = format!("{prefix}_{table}__{column}");
    if n.len() <= 60 {
        return n;
    }
    use sha2::Digest;
    let h = hex::encode(&sha2::Sha256::digest(n.as_bytes())[..6]);
    format!(
        "{prefix}_{}_{h}",
        &n[..std::cmp::min(40, n.len())].trim_end_matches('_')
    )
}

/// DDL that creates the index a field asks for (unique, or plain with `id` appended so
/// keyset pages sorted by the field are served from the index).
pub fn index_sql(table: &str, column: &str, unique: bool, dialect: Dialect) -> String {
    if unique {
        return format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
            q(&index_name("uq", table, column)),
            q(table),
            q(column)
        );
    }
    // NULL sorts as the smallest value on both backends (SQLite's native order).
    let nulls = if dialect == Dialect::Postgres {
        " NULLS FIRST"
    } else {
        ""
    };
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} ({}{nulls}, \"id\")",
        q(&index_name("ix", table, column)),
        q(table),
        q(column)
    )
}

/// DDL that drops the index of a field.
pub fn drop_index_sql(table: &str, column: &str, unique: bool) -> String {
    format!(
        "DROP INDEX IF EXISTS {}",
        q(&index_name(if unique { "uq" } else { "ix" }, table, column))
    )
}

/// The twin of a plain index led by `owner`: a list limited to one owner (the `own`
/// scope of a role) filters and sorts from an index as fast as an unlimited one.
fn owner_index_sql(table: &str, column: &str, dialect: Dialect) -> String {
    let nulls = if dialect == Dialect::Postgres {
        " NULLS FIRST"
    } else {
        ""
    };
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} (\"owner\", {}{nulls}, \"id\")",
        q(&index_name("ox", table, column)),
        q(table),
        q(column)
    )
}

/// DDL for every index a field's column gets: the unique one, or the plain one and its
/// owner-led twin.
pub fn index_sqls(table: &str, column: &str, unique: bool, dialect: Dialect) -> Vec<String> {
    let mut v = vec![index_sql(table, column, unique, dialect)];
    if !unique {
        v.push(owner_index_sql(table, column, dialect));
    }
    v
}

/// DDL that drops every index of a field's column.
pub fn drop_index_sqls(table: &str, column: &str, unique: bool) -> Vec<String> {
    let mut v = vec![drop_index_sql(table, column, unique)];
    if !unique {
        v.push(format!(
            "DROP INDEX IF EXISTS {}",
            q(&index_name("ox", table, column))
        ));
    }
    v
}

/// Which indexes a field needs: (plain, unique).
pub fn wants_index(f: &Field) -> (bool, bool) {
    let plain = f.indexed || matches!(f.kind, FieldType::Relation | FieldType::User);
    (plain && !f.unique, f.unique)
}

fn create_table_stmt(
    table: &str,
    columns: &[ColumnInfo],
    dialect: Dialect,
) -> TableCreateStatement {
    let mut t = Table::create();
    t.table(Alias::new(table));
    t.col(
        column_def("id", ValueKind::Text, dialect)
            .not_null()
            .primary_key()
            .to_owned(),
    );
    t.col(ColumnDef::new("version").big_integer().not_null());
    let ts = column_def("created_at", ValueKind::DateTime, dialect)
        .not_null()
        .to_owned();
    t.col(ts);
    let ts = column_def("updated_at", ValueKind::DateTime, dialect)
        .not_null()
        .to_owned();
    t.col(ts);
    t.col(column_def("created_by", ValueKind::Text, dialect));
    t.col(column_def("owner", ValueKind::Text, dialect));
    for c in columns {
        t.col(column_def(
            &c.column,
            parse_kind(&c.kind).unwrap_or(ValueKind::Text),
            dialect,
        ));
    }
    t.to_owned()
}

/// Columns for a new form: one per field, named after it.
pub fn initial_columns(form: &Form) -> Vec<ColumnInfo> {
    form.fields
        .iter()
        .map(|f| ColumnInfo {
            column: f.name.clone(),
            kind: kind_name(field_kind(f)).to_owned(),
            field: f.name.clone(),
            state: ColumnState::Active,
            last: None,
        })
        .collect()
}

/// Create the record table of a new form and its indexes.
pub async fn create_table<C: ConnectionTrait>(
    c: &C,
    form: &Form,
    columns: &[ColumnInfo],
    dialect: Dialect,
) -> Result<(), StoreError> {
    let table = table_name(&form.name);
    c.execute(&create_table_stmt(&table, columns, dialect))
        .await?;
    // `id` order is creation order (UUIDv7); owner and created_at are what lists and
    // permission scopes filter on. Other sorts can ask for `indexed: true`.
    for col in ["owner", "created_at"] {
        c.execute_unprepared(&index_sql(&table, col, false, dialect))
            .await?;
    }
    for f in &form.fields {
        let (plain, unique) = wants_index(f);
        if plain || unique {
            for sql in index_sqls(&table, &f.name, unique, dialect) {
                c.execute_unprepared(&sql).await?;
            }
        }
    }
    Ok(())
}

/// Record a published version.
pub async fn save_version<C: ConnectionTrait>(
    c: &C,
    form: &Form,
    version: i64,
    plan: Option<Value>,
    actor: Option<&str>,
) -> Result<(), StoreError> {
    form_version::ActiveModel {
        form: Set(form.name.clone()),
        version: Set(version),
        definition: Set(serde_json::to_value(form)?),
        plan: Set(plan),
        created_by: Set(actor.map(str::to_owned)),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(c)
    .await?;
    Ok(())
}

/// Check a new form definition against the registry (relations may point at itself).
pub fn check_new(snapshot: &Snapshot, doc: &Value) -> Result<Form, StoreError> {
    let own = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    check_form(doc, &|n| n == own || snapshot.0.contains_key(n)).map_err(StoreError::Definition)
}

/// Insert a new form inside a transaction (the caller commits and updates the registry).
pub async fn insert_form<C: ConnectionTrait>(
    c: &C,
    dialect: Dialect,
    form: &Form,
    bundle: Option<&str>,
    position: i64,
    actor: Option<&str>,
) -> Result<FormEntry, StoreError> {
    let columns = initial_columns(form);
    create_table(c, form, &columns, dialect).await?;
    let now = Utc::now();
    form_e::ActiveModel {
        name: Set(form.name.clone()),
        definition: Set(serde_json::to_value(form)?),
        version: Set(1),
        table_name: Set(table_name(&form.name)),
        columns: Set(serde_json::to_value(&columns)?),
        bundle: Set(bundle.map(str::to_owned)),
        position: Set(position),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(c)
    .await?;
    save_version(c, form, 1, None, actor).await?;
    FormEntry::new(
        form.clone(),
        1,
        columns,
        bundle.map(str::to_owned),
        position,
    )
}

/// Create a form from its JSON definition.
pub async fn create_form(
    db: &Db,
    registry: &Registry,
    doc: &Value,
    actor: Option<&str>,
) -> Result<Arc<FormEntry>, StoreError> {
    let _changing = registry.change.write().await;
    let snapshot = registry.snapshot();
    let form = check_new(&snapshot, doc)?;
    if snapshot.0.contains_key(&form.name) {
        return Err(StoreError::Conflict {
            field: "name".into(),
            code: "form_exists",
            message: format!("a form named {:?} exists", form.name),
            rows: vec![],
        });
    }
    let txn = db.writer.begin().await?;
    let entry = insert_form(&txn, db.dialect, &form, None, 0, actor).await?;
    txn.commit().await?;
    registry.put(entry);
    registry.get(&form.name)
}

/// Every published version of a form, oldest first.
pub async fn versions(db: &Db, form: &str) -> Result<Vec<form_version::Model>, StoreError> {
    use sea_orm::{ColumnTrait, QueryFilter};
    Ok(form_version::Entity::find()
        .filter(form_version::Column::Form.eq(form))
        .order_by_asc(form_version::Column::Version)
        .all(&db.reader)
        .await?)
}

/// Delete a form: refused while records exist unless `purge`, and while other forms point at it.
pub async fn delete_form(
    db: &Db,
    registry: &Registry,
    name: &str,
    purge: bool,
) -> Result<(), StoreError> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let _changing = registry.change.write().await;
    let snapshot = registry.snapshot();
    let entry = snapshot.get(name)?;
    let refs: Vec<String> = snapshot
        .referrers(name)
        .into_iter()
        .filter(|(e, _)| e.form.name != name)
        .map(|(e, f)| format!("{}.{}", e.form.name, f.name))
        .chain(
            snapshot
                .line_referrers(name)
                .into_iter()
                .filter(|(e, _, _)| e.form.name != name)
                .map(|(e, f, nf)| format!("{}.{}.{}", e.form.name, f.name, nf.name)),
        )
        .collect();
    if !refs.is_empty() {
        return Err(StoreError::Conflict {
            field: "name".into(),
            code: "form_referenced",
            message: format!("other forms point at this one: {}", refs.join(", ")),
            rows: vec![],
        });
    }
    let count = crate::records::count_all(&db.writer, &entry.table).await?;
    if count > 0 && !purge {
        return Err(StoreError::Conflict {
            field: "name".into(),
            code: "form_not_empty",
            message: format!("the form holds {count} records; add ?purge=true to delete them too"),
            rows: vec![],
        });
    }
    let txn = db.writer.begin().await?;
    txn.execute_unprepared(&format!("DROP TABLE {}", q(&entry.table)))
        .await?;
    form_e::Entity::delete_by_id(name.to_owned())
        .exec(&txn)
        .await?;
    form_version::Entity::delete_many()
        .filter(form_version::Column::Form.eq(name))
        .exec(&txn)
        .await?;
    txn.execute(
        sea_orm::sea_query::Query::delete()
            .from_table(Alias::new(crate::migrate::SEQUENCES))
            .and_where(sea_orm::sea_query::Expr::col(Alias::new("form")).eq(name)),
    )
    .await?;
    txn.commit().await?;
    registry.remove(name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_index_names_are_shortened() {
        let t = format!("rec_{}", "a".repeat(60));
        let n = index_name("ix", &t, &"b".repeat(60));
        assert!(n.len() <= 60, "{n}");
        assert_ne!(n, index_name("ix", &t, &"c".repeat(60)));
    }
}
