//! Re-running a rule over every record of its form (a new scoring model): in id order, a
//! batch at a time, each change a normal update with its history; where it got to is kept,
//! so an interrupted run resumes.

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query};
use serde_json::Map;
use trellis_access::Permissions;
use trellis_meta::rule::RuleKind;
use trellis_query::value::format_datetime;

use crate::Store;
use crate::error::StoreError;
use crate::facts::{Host, Turns};
use crate::migrate::{RULE_RUNS, RULES};
use crate::records::Actor;

/// Records read per batch.
const BATCH: u64 = 500;

/// Progress of a re-run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Progress {
    /// Records looked at (since the run began, across resumes).
    pub done: u64,
    /// Records whose value changed.
    pub changed: u64,
    /// Records in the form.
    pub total: u64,
    /// Validation rules: records the rule would refuse today.
    pub rejected: u64,
    /// Records the rule failed on, or whose new value could not be stored (logged).
    pub failed: u64,
}

impl Store {
    /// Run a rule over every record of its form, resuming where an earlier run stopped
    /// unless `restart`. Score, grade and formula rules store their new value; validation
    /// rules count the records they would refuse. `progress` is told after each batch.
    pub async fn rerun_rule(
        &self,
        name: &str,
        restart: bool,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Progress, StoreError> {
        let entry = self
            .rules
            .get(name)
            .ok_or_else(|| StoreError::NotFound(format!("rule {name}")))?;
        let rule = entry.rule.clone();
        if !rule.active {
            return Err(StoreError::field(
                "rule",
                "inactive",
                "the rule is inactive; activate it first",
                "规则未启用",
            ));
        }
        if matches!(rule.kind, RuleKind::Route | RuleKind::Condition) {
            return Err(StoreError::field(
                "rule",
                "not_allowed",
                "only score, grade, formula and validation rules run over every record",
                "只有评分、分级、公式和校验规则可以对全部记录重新运行",
            ));
        }
        let snap = self.registry.snapshot();
        let form = snap.get(&rule.form)?;
        // A checkpoint of another version of the rule is not resumed: what it did is done,
        // but the records after it would be scored by a different script.
        let version = self.rule_version(name).await?;
        let (mut last, mut p) = match self.checkpoint(name).await? {
            Some((v, last, p)) if !restart && v == version => (last, p),
            _ => (None, Progress::default()),
        };
        p.total = crate::records::count_all(&self.db.reader, &form.table).await?;
        let system = Permissions::system();
        let actor = Actor::default();
        loop {
            let mut s = Query::select();
            s.column(Alias::new("id"))
                .from(Alias::new(&form.table))
                .order_by(Alias::new("id"), Order::Asc)
                .limit(BATCH);
            if let Some(l) = &last {
                s.and_where(Expr::col(Alias::new("id")).gt(l.as_str()));
            }
            let ids: Vec<String> = self
                .db
                .reader
                .query_all(&s)
                .await?
                .iter()
                .map(|r| r.try_get_by_index::<String>(0))
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                break;
            }
            for id in &ids {
                p.done += 1;
                let rec = match self.get(&rule.form, id, None, &system).await {
                    Ok(r) => r,
                    // Deleted meanwhile.
                    Err(StoreError::RecordNotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                // One record's failure is counted and logged; the run goes on.
                let mut host =
                    Host::new(&self.db.reader, self.db.dialect, &snap, &form, Turns::Peek);
                let outcome = match host.run(&entry.compiled, &rec, Some(&rec)).await? {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::warn!(rule = name, record = %id, error = %e, "the rule failed on a record");
                        p.failed += 1;
                        continue;
                    }
                };
                if rule.kind == RuleKind::Validate {
                    p.rejected += u64::from(!outcome.rejections.is_empty());
                } else if let Some(f) = &rule.field
                    && rec.get(f) != Some(&outcome.value)
                {
                    let mut patch = Map::new();
                    patch.insert(f.clone(), outcome.value);
                    match self
                        .update(&rule.form, id, patch, None, &actor, &system)
                        .await
                    {
                        Ok(after) => {
                            p.changed += u64::from(after.get("version") != rec.get("version"));
                        }
                        Err(
                            e @ (StoreError::Validation(_)
                            | StoreError::Unique { .. }
                            | StoreError::Stale { .. }),
                        ) => {
                            tracing::warn!(rule = name, record = %id, error = %e, "storing the rule's value failed");
                            p.failed += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            last = ids.last().cloned();
            self.save_checkpoint(name, &version, last.as_deref(), &p)
                .await?;
            progress(p);
        }
        Ok(p)
    }

    async fn checkpoint(
        &self,
        rule: &str,
    ) -> Result<Option<(String, Option<String>, Progress)>, StoreError> {
        let mut s = Query::select();
        s.columns(
            [
                "version", "last_id", "done", "changed", "rejected", "failed",
            ]
            .map(Alias::new),
        )
        .from(Alias::new(RULE_RUNS))
        .and_where(Expr::col(Alias::new("rule")).eq(rule));
        let Some(r) = self.db.reader.query_one(&s).await? else {
            return Ok(None);
        };
        let n = |i: usize| -> Result<u64, StoreError> {
            Ok(u64::try_from(r.try_get_by_index::<i64>(i)?).unwrap_or(0))
        };
        Ok(Some((
            r.try_get_by_index(0)?,
            r.try_get_by_index(1)?,
            Progress {
                done: n(2)?,
                changed: n(3)?,
                rejected: n(4)?,
                failed: n(5)?,
                total: 0,
            },
        )))
    }

    async fn save_checkpoint(
        &self,
        rule: &str,
        version: &str,
        last: Option<&str>,
        p: &Progress,
    ) -> Result<(), StoreError> {
        let n = |x: u64| Expr::val(i64::try_from(x).unwrap_or(i64::MAX));
        let cols = [
            "rule",
            "version",
            "last_id",
            "done",
            "changed",
            "rejected",
            "failed",
            "updated_at",
        ];
        let mut ins = Query::insert();
        ins.into_table(Alias::new(RULE_RUNS))
            .columns(cols.map(Alias::new))
            .values([
                Expr::val(rule),
                Expr::val(version),
                Expr::val(last.map(str::to_owned)),
                n(p.done),
                n(p.changed),
                n(p.rejected),
                n(p.failed),
                Expr::val(format_datetime(&chrono::Utc::now())),
            ])
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .on_conflict(
                OnConflict::column(Alias::new("rule"))
                    .update_columns(cols[1..].iter().map(|c| Alias::new(*c)))
                    .to_owned(),
            );
        self.db.writer.execute(&ins).await?;
        Ok(())
    }

    /// When the stored rule last changed: a checkpoint of another version is not resumed.
    async fn rule_version(&self, rule: &str) -> Result<String, StoreError> {
        let mut s = Query::select();
        s.column(Alias::new("updated_at"))
            .from(Alias::new(RULES))
            .and_where(Expr::col(Alias::new("name")).eq(rule));
        match self.db.reader.query_one(&s).await? {
            Some(r) => Ok(r.try_get_by_index(0)?),
            None => Err(StoreError::NotFound(format!("rule {rule}"))),
        }
    }

    /// Forget where a re-run got to (after it finished), so the next one starts over.
    pub async fn finish_rerun(&self, rule: &str) -> Result<(), StoreError> {
        let mut d = Query::delete();
        d.from_table(Alias::new(RULE_RUNS))
            .and_where(Expr::col(Alias::new("rule")).eq(rule));
        self.db.writer.execute(&d).await?;
        Ok(())
    }
}
