//! The workflows in force, cached per process and reloaded on change; the versions runs
//! started on, kept as long as they are asked for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use trellis_meta::workflow::Workflow;
use trellis_store::Store;
use trellis_store::workflows::{self, Stored};

use crate::error::{Result, WorkflowError};

/// The cache.
#[derive(Default)]
pub struct Defs {
    current: RwLock<Arc<HashMap<String, Stored>>>,
    /// What the stored definitions looked like at the last reload.
    signature: RwLock<(i64, String)>,
    versions: RwLock<HashMap<(String, i64), Arc<Workflow>>>,
}

impl Defs {
    /// Reload from the database; the forms of active workflows become the watched ones.
    /// Answers whether anything changed.
    pub async fn reload(&self, store: &Store) -> Result<bool> {
        let sig = signature(store).await?;
        let all = workflows::list(&store.db.reader).await?;
        *self.signature.write() = sig;
        let map: HashMap<String, Stored> = all
            .into_iter()
            .map(|s| (s.workflow.name.clone(), s))
            .collect();
        let forms: HashSet<String> = map
            .values()
            .filter(|s| s.workflow.active)
            .map(|s| s.workflow.form.clone())
            .collect();
        store.db.watch.set(forms);
        let changed = {
            let cur = self.current.read();
            cur.len() != map.len()
                || map
                    .iter()
                    .any(|(k, v)| cur.get(k).is_none_or(|c| c.version != v.version))
        };
        *self.current.write() = Arc::new(map);
        Ok(changed)
    }

    /// Reload if the stored definitions changed since the last reload (one small query):
    /// another process may have saved a workflow that the events at hand must start.
    pub async fn refresh(&self, store: &Store) -> Result<()> {
        let now = signature(store).await?;
        if *self.signature.read() != now {
            self.reload(store).await?;
        }
        Ok(())
    }

    /// The active workflows on a form.
    pub fn on_form(&self, form: &str) -> Vec<Stored> {
        self.current
            .read()
            .values()
            .filter(|s| s.workflow.active && s.workflow.form == form)
            .cloned()
            .collect()
    }

    /// Every workflow in force.
    pub fn all(&self) -> Vec<Stored> {
        self.current.read().values().cloned().collect()
    }

    /// One workflow in force.
    pub fn get(&self, name: &str) -> Option<Stored> {
        self.current.read().get(name).cloned()
    }

    /// A version of a workflow, as its runs need it.
    pub async fn version(&self, store: &Store, name: &str, version: i64) -> Result<Arc<Workflow>> {
        if let Some(w) = self.versions.read().get(&(name.to_owned(), version)) {
            return Ok(w.clone());
        }
        let w = workflows::load_version(&store.db.reader, name, version)
            .await?
            .ok_or_else(|| WorkflowError::NotFound(format!("workflow {name} version {version}")))?;
        let w = Arc::new(w);
        self.versions
            .write()
            .insert((name.to_owned(), version), w.clone());
        Ok(w)
    }
}

/// Count and latest change of the stored workflows (every save stamps `updated_at`; a
/// delete lowers the count).
async fn signature(store: &Store) -> Result<(i64, String)> {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Alias, Expr, Func, Query};
    let mut s = Query::select();
    s.expr(Func::count(Expr::col(Alias::new("name"))))
        .expr(Func::max(Expr::col(Alias::new("updated_at"))))
        .from(Alias::new(trellis_store::migrate::WORKFLOWS));
    let Some(r) = store.db.reader.query_one(&s).await? else {
        return Ok((0, String::new()));
    };
    Ok((
        r.try_get_by_index(0)?,
        r.try_get_by_index::<Option<String>>(1)?.unwrap_or_default(),
    ))
}
