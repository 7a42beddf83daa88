//! Planner statistics: ANALYZE a record table each time the rows this process has written
//! to it since start-up double (500, 1,000, 2,000, …), so the query planner picks the right
//! index after a bulk load (PostgreSQL's autovacuum would get there too, but only a minute
//! later; SQLite never would). After a restart the count starts again, which costs a few
//! cheap early ANALYZEs; the periodic `PRAGMA optimize` covers tables that grow otherwise.
//! The duplicate-key table grows with the forms that have duplicate rules and is counted
//! the same way: on PostgreSQL a key lookup planned on stale statistics scanned every key
//! of a rule (0.5 s per batch of an import at 50,000 leads).

use std::collections::HashMap;

use parking_lot::Mutex;
use sea_orm::ConnectionTrait;

use crate::db::Db;
use crate::error::StoreError;
use crate::forms::q;
use trellis_meta::Form;
use trellis_query::Dialect;

/// Rows written per table since its last ANALYZE, and its size then.
#[derive(Default)]
pub struct Stats {
    tables: Mutex<HashMap<String, (u64, u64)>>,
}

/// Fewest new rows worth an ANALYZE.
const MIN_ROWS: u64 = 500;

impl Stats {
    /// Forget a table that was dropped: one made again under its name starts counting
    /// from nothing, so its first bulk load is analyzed as it grows.
    pub fn forget(&self, table: &str) {
        self.tables.lock().remove(table);
    }

    /// Count `n` inserted rows of `table`; analyze it when it has doubled.
    pub async fn note(&self, db: &Db, table: &str, n: u64) -> Result<(), StoreError> {
        self.note_on(&db.writer, db.dialect, table, n).await
    }

    /// Count `n` records written to a form (and their duplicate keys, which grow as fast).
    pub async fn note_form<C: ConnectionTrait>(
        &self,
        c: &C,
        dialect: Dialect,
        form: &Form,
        n: u64,
    ) -> Result<(), StoreError> {
        self.note_on(c, dialect, &crate::forms::table_name(&form.name), n)
            .await?;
        if !form.duplicates.is_empty() {
            let keys = n.saturating_mul(form.duplicates.len() as u64);
            self.note_on(c, dialect, crate::migrate::MATCH_KEYS, keys)
                .await?;
        }
        Ok(())
    }

    /// Like `note`, on `c`: inside a transaction that has not committed yet, ANALYZE
    /// counts its own rows on both backends.
    pub async fn note_on<C: ConnectionTrait>(
        &self,
        c: &C,
        dialect: Dialect,
        table: &str,
        n: u64,
    ) -> Result<(), StoreError> {
        let due = {
            let mut t = self.tables.lock();
            let e = t.entry(table.to_owned()).or_insert((0, 0));
            e.0 += n;
            if e.0 >= MIN_ROWS && e.0 >= e.1 {
                e.1 += e.0;
                e.0 = 0;
                true
            } else {
                false
            }
        };
        if due {
            c.execute_unprepared(&format!("ANALYZE {}", q(table)))
                .await?;
            if dialect == Dialect::Sqlite {
                // Every SQLite connection keeps the statistics it read when it loaded the
                // schema, and its prepared statements keep their plans: the readers would go
                // on planning without the new ones. A schema change makes each connection
                // reload the schema with the statistics and re-prepare its statements.
                c.execute_unprepared("CREATE VIEW IF NOT EXISTS trellis_stats_epoch AS SELECT 1")
                    .await?;
                c.execute_unprepared("DROP VIEW IF EXISTS trellis_stats_epoch")
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_schedule() {
        let s = Stats::default();
        let mut analyzed = Vec::new();
        let mut total = 0;
        for _ in 0..200 {
            total += 500;
            let mut t = s.tables.lock();
            let e = t.entry("t".into()).or_insert((0, 0));
            e.0 += 500;
            if e.0 >= MIN_ROWS && e.0 >= e.1 {
                e.1 += e.0;
                e.0 = 0;
                analyzed.push(total);
            }
        }
        assert_eq!(
            analyzed,
            vec![500, 1000, 2000, 4000, 8000, 16000, 32000, 64000]
        );
    }
}
