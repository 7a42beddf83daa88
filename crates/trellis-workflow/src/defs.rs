//! The workflows in force, cached per process and reloaded on change; the versions runs
//! started on, kept as long as they are asked for.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use trellis_meta::workflow::Workflow;
use trellis_store::Store;
use trellis_store::workflows::{self, Stored};

use crate::error::{Result, WorkflowError};

/// The workflows by name, and the active ones by form (what each event looks up).
#[derive(Default)]
struct Current {
    by_name: HashMap<String, Arc<Stored>>,
    by_form: HashMap<String, Arc<[Arc<Stored>]>>,
}

/// The cache.
#[derive(Default)]
pub struct Defs {
    current: RwLock<Arc<Current>>,
    /// What the stored definitions looked like at the last reload.
    signature: RwLock<(i64, String)>,
    versions: RwLock<HashMap<(String, i64), Arc<Workflow>>>,
}

impl Defs {
    /// Reload from the database if the stored definitions changed since the last reload
    /// (one small query): another process may have saved a workflow that the events at hand
    /// must start. The forms of active workflows become the watched ones. Answers whether
    /// any workflow came, went or got a new version.
    pub async fn refresh(&self, store: &Store) -> Result<bool> {
        let sig = signature(store).await?;
        if *self.signature.read() == sig {
            return Ok(false);
        }
        let all = workflows::list(&store.db.reader).await?;
        *self.signature.write() = sig;
        let by_name: HashMap<String, Arc<Stored>> = all
            .into_iter()
            .map(|s| (s.workflow.name.clone(), Arc::new(s)))
            .collect();
        let mut by_form: HashMap<String, Vec<Arc<Stored>>> = HashMap::new();
        for s in by_name.values().filter(|s| s.workflow.active) {
            by_form
                .entry(s.workflow.form.clone())
                .or_default()
                .push(s.clone());
        }
        store.db.watch.set(by_form.keys().cloned().collect());
        let changed = {
            let cur = self.current.read();
            cur.by_name.len() != by_name.len()
                || by_name
                    .iter()
                    .any(|(k, v)| cur.by_name.get(k).is_none_or(|c| c.version != v.version))
        };
        *self.current.write() = Arc::new(Current {
            by_name,
            by_form: by_form.into_iter().map(|(k, v)| (k, v.into())).collect(),
        });
        Ok(changed)
    }

    /// The active workflows on a form.
    pub fn on_form(&self, form: &str) -> Arc<[Arc<Stored>]> {
        self.current
            .read()
            .by_form
            .get(form)
            .cloned()
            .unwrap_or_else(|| Arc::new([]))
    }

    /// Every workflow in force.
    pub fn all(&self) -> Vec<Arc<Stored>> {
        self.current.read().by_name.values().cloned().collect()
    }

    /// One workflow in force.
    pub fn get(&self, name: &str) -> Option<Arc<Stored>> {
        self.current.read().by_name.get(name).cloned()
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
