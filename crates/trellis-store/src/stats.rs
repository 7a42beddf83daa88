//! Planner statistics: ANALYZE a record table each time the rows this process has written
//! to it since start-up double (500, 1,000, 2,000, …), so the query planner picks the right
//! index after a bulk load (PostgreSQL's autovacuum would get there too, but only a minute
//! later; SQLite never would). After a restart the count starts again, which costs a few
//! cheap early ANALYZEs; the periodic `PRAGMA optimize` covers tables that grow otherwise.

use std::collections::HashMap;

use parking_lot::Mutex;
use sea_orm::ConnectionTrait;

use crate::db::Db;
use crate::error::StoreError;
use crate::forms::q;

/// Rows written per table since its last ANALYZE, and its size then.
#[derive(Default)]
pub struct Stats {
    tables: Mutex<HashMap<String, (u64, u64)>>,
}

/// Fewest new rows worth an ANALYZE.
const MIN_ROWS: u64 = 500;

impl Stats {
    /// Count `n` inserted rows of `table`; analyze it when it has doubled.
    pub async fn note(&self, db: &Db, table: &str, n: u64) -> Result<(), StoreError> {
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
            db.writer
                .execute_unprepared(&format!("ANALYZE {}", q(table)))
                .await?;
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
