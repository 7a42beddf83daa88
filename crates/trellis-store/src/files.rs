//! Uploaded files: bytes on disk under the files directory, metadata in `trellis_files`.
//! Attachment fields hold references that are checked against both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use trellis_meta::FieldError;
use trellis_meta::form::{Field, FieldType};

use crate::db::Db;
use crate::entity::file;
use crate::error::StoreError;

/// What the API shows of a file.
#[derive(Debug, Clone, Serialize)]
pub struct FileMeta {
    /// Id to put in an attachment field.
    pub id: String,
    /// File name.
    pub name: String,
    /// Bytes.
    pub size: i64,
    /// MIME type.
    pub content_type: String,
    /// Who uploaded it.
    #[serde(skip)]
    pub uploaded_by: Option<String>,
}

impl From<file::Model> for FileMeta {
    fn from(m: file::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            size: m.size,
            content_type: m.content_type,
            uploaded_by: m.created_by,
        }
    }
}

fn path_of(dir: &Path, id: &str) -> PathBuf {
    dir.join(id.get(..8).unwrap_or("x")).join(id)
}

/// Keep a file name printable and free of path separators.
fn clean_name(name: &str) -> String {
    let n: String = name
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '/' | '\\'))
        .collect();
    let n = n.trim().trim_start_matches('.').to_owned();
    if n.is_empty() {
        "file".to_owned()
    } else {
        n.chars().take(255).collect()
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Corrupt(format!("file storage: {e}"))
}

/// Store an upload: written to a temporary file, renamed into place, then recorded.
pub async fn save(
    db: &Db,
    dir: &Path,
    name: &str,
    content_type: &str,
    bytes: &[u8],
    actor: Option<&str>,
) -> Result<FileMeta, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    let path = path_of(dir, &id);
    let parent = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.to_path_buf());
    tokio::fs::create_dir_all(&parent).await.map_err(io)?;
    let tmp = parent.join(format!(".{id}.part"));
    tokio::fs::write(&tmp, bytes).await.map_err(io)?;
    tokio::fs::rename(&tmp, &path).await.map_err(io)?;
    let m = file::ActiveModel {
        id: Set(id),
        name: Set(clean_name(name)),
        size: Set(i64::try_from(bytes.len()).unwrap_or(i64::MAX)),
        content_type: Set(content_type.chars().take(255).collect()),
        sha256: Set(hex::encode(Sha256::digest(bytes))),
        created_by: Set(actor.map(str::to_owned)),
        created_at: Set(Utc::now()),
    };
    match m.insert(&db.writer).await {
        Ok(m) => Ok(m.into()),
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            Err(e.into())
        }
    }
}

/// A file's metadata and where its bytes are.
pub async fn open(db: &Db, dir: &Path, id: &str) -> Result<(FileMeta, PathBuf), StoreError> {
    let m = file::Entity::find_by_id(id.to_owned())
        .one(&db.reader)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("file {id}")))?;
    let path = path_of(dir, &m.id);
    Ok((m.into(), path))
}

/// Does a file match a field's `accept` list (`image/png`, `image/*`, `.pdf`)?
pub fn accepts(accept: &[String], name: &str, content_type: &str) -> bool {
    if accept.is_empty() {
        return true;
    }
    let lname = name.to_lowercase();
    let ct = content_type.to_lowercase();
    accept.iter().any(|a| {
        let a = a.trim().to_lowercase();
        if let Some(ext) = a.strip_prefix('.') {
            lname.ends_with(&format!(".{ext}"))
        } else if let Some(prefix) = a.strip_suffix("/*") {
            ct.starts_with(&format!("{prefix}/"))
        } else {
            ct == a
        }
    })
}

/// Check the attachment values of `records` against the uploaded files and each field's
/// limits, and replace what the client sent with the stored metadata.
pub async fn resolve<C: ConnectionTrait>(
    c: &C,
    fields: &[Field],
    records: &mut [Map<String, Value>],
    prefix: &(dyn Fn(usize) -> String + Sync),
) -> Result<(), StoreError> {
    let att: Vec<&Field> = fields
        .iter()
        .filter(|f| f.kind == FieldType::Attachment)
        .collect();
    if att.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    for r in records.iter() {
        for f in &att {
            match r.get(&f.name) {
                Some(Value::Object(o)) => {
                    ids.extend(o.get("id").and_then(Value::as_str).map(str::to_owned))
                }
                Some(Value::Array(a)) => ids.extend(
                    a.iter()
                        .filter_map(|o| o.get("id").and_then(Value::as_str).map(str::to_owned)),
                ),
                _ => {}
            }
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let found: HashMap<String, file::Model> = file::Entity::find()
        .filter(file::Column::Id.is_in(ids))
        .all(c)
        .await?
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect();
    let mut errors = Vec::new();
    for (i, r) in records.iter_mut().enumerate() {
        for f in &att {
            let Some(v) = r.get_mut(&f.name) else {
                continue;
            };
            let items: Vec<&mut Value> = match v {
                Value::Array(a) => a.iter_mut().collect(),
                Value::Object(_) => vec![v],
                _ => continue,
            };
            for item in items {
                let id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let field = format!("{}{}", prefix(i), f.name);
                let Some(m) = found.get(&id) else {
                    errors.push(FieldError::new(
                        field,
                        "not_found",
                        format!("no uploaded file with id {id:?}"),
                        format!("找不到文件 {id:?}"),
                    ));
                    continue;
                };
                if let Some(max) = f
                    .max_size
                    .filter(|max| u64::try_from(m.size).unwrap_or(u64::MAX) > *max)
                {
                    errors.push(FieldError::new(
                        field,
                        "max_size",
                        format!("the file is larger than {max} bytes"),
                        format!("文件超过 {max} 字节"),
                    ));
                    continue;
                }
                if !accepts(&f.accept, &m.name, &m.content_type) {
                    errors.push(FieldError::new(
                        field,
                        "file_type",
                        format!(
                            "{} files are not accepted here; accepted: {}",
                            m.content_type,
                            f.accept.join(", ")
                        ),
                        format!("不接受此类型的文件；允许：{}", f.accept.join(", ")),
                    ));
                    continue;
                }
                *item = json!({"id": m.id, "name": m.name, "size": m.size, "content_type": m.content_type});
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Validation(errors))
    }
}

impl crate::Store {
    /// May the caller download a file? Its uploader and administrators may; anyone else
    /// only when an attachment field they can see, on a record they can read, holds it.
    pub async fn may_download(
        &self,
        perms: &trellis_access::Permissions,
        id: &str,
        uploaded_by: Option<&str>,
    ) -> Result<bool, StoreError> {
        use sea_orm::sea_query::{Alias, Expr, Query};
        use trellis_meta::role::Action;
        if perms.may_inspect() || uploaded_by.is_some_and(|u| u == perms.user()) {
            return Ok(true);
        }
        let snap = self.registry.snapshot();
        let dialect = self.db.dialect;
        for entry in snap.0.values() {
            let form = entry.form.name.as_str();
            let Ok(scope) = crate::access::rows(perms, &snap, form, Action::Read) else {
                continue;
            };
            for f in entry
                .form
                .fields
                .iter()
                .filter(|f| f.kind == FieldType::Attachment)
                .filter(|f| crate::access::visible(perms, form, &f.name))
            {
                let Some((column, _)) = entry.column(&f.name) else {
                    continue;
                };
                let (t, c) = (crate::forms::q(&entry.table), crate::forms::q(column));
                // One file ({"id": …}) or several ([{"id": …}, …]).
                let holds = match dialect {
                    trellis_query::Dialect::Postgres => Expr::cust_with_values(
                        format!("({t}.{c} @> $1 OR {t}.{c} @> $2)"),
                        [
                            sea_orm::Value::Json(Some(Box::new(json!({ "id": id })))),
                            sea_orm::Value::Json(Some(Box::new(json!([{ "id": id }])))),
                        ],
                    ),
                    trellis_query::Dialect::Sqlite => Expr::cust_with_values(
                        format!(
                            "(json_extract({t}.{c}, '$.id') = ? OR EXISTS (SELECT 1 FROM json_each(\
                             CASE WHEN json_type({t}.{c}) = 'array' THEN {t}.{c} ELSE '[]' END) AS je \
                             WHERE json_extract(je.value, '$.id') = ?))"
                        ),
                        [sea_orm::Value::from(id), sea_orm::Value::from(id)],
                    ),
                };
                let mut s = Query::select();
                s.expr(Expr::col((Alias::new(&entry.table), Alias::new("id"))))
                    .from(Alias::new(&entry.table))
                    .and_where(holds)
                    .limit(1);
                if let Some(flt) = &scope {
                    s.cond_where(flt.to_condition(dialect));
                }
                if self.db.reader.query_one(&s).await?.is_some() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists() {
        let a = vec![".pdf".to_owned(), "image/*".to_owned()];
        assert!(accepts(&a, "Scan.PDF", "application/octet-stream"));
        assert!(accepts(&a, "x.bin", "image/png"));
        assert!(!accepts(&a, "x.exe", "application/x-msdownload"));
        assert!(accepts(&[], "x.exe", "application/x-msdownload"));
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("../../etc/passwd"), "etcpasswd");
        assert_eq!(clean_name("  "), "file");
        assert_eq!(clean_name("合同.pdf"), "合同.pdf");
    }
}
