//! Periods: the SQL that puts a date or instant in its bucket (in a time zone), and the
//! bounds of a bucket for drill-down, filling and comparisons.
//!
//! PostgreSQL converts with `AT TIME ZONE`. SQLite has no time-zone database, so an
//! instant is shifted by its zone's offset, picked by a balanced tree of comparisons
//! against the zone's transitions (computed here once per zone from the IANA data).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use parking_lot::Mutex;
use sea_orm::sea_query::{Expr, ExprTrait};
use trellis_meta::report::Bucket;
use trellis_query::Dialect;

/// Transitions are computed for instants in these years; outside, the edge offset holds.
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2070;

/// A zone's offsets: (first instant, in Unix seconds, offset east of UTC in seconds).
type Spans = Arc<Vec<(i64, i32)>>;

fn offset_at(tz: Tz, secs: i64) -> i32 {
    DateTime::from_timestamp(secs, 0).map_or(0, |t| {
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    })
}

/// The offset spans of a zone between [`FIRST_YEAR`] and [`LAST_YEAR`], cached.
fn spans(tz: Tz) -> Spans {
    static CACHE: OnceLock<Mutex<HashMap<Tz, Spans>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(s) = cache.lock().get(&tz) {
        return s.clone();
    }
    let start = Utc
        .with_ymd_and_hms(FIRST_YEAR, 1, 1, 0, 0, 0)
        .single()
        .map_or(0, |t| t.timestamp());
    let end = Utc
        .with_ymd_and_hms(LAST_YEAR, 1, 1, 0, 0, 0)
        .single()
        .map_or(0, |t| t.timestamp());
    let mut out = vec![(i64::MIN, offset_at(tz, start))];
    let step = 6 * 3600;
    let mut t = start;
    while t < end {
        let (a, b) = (offset_at(tz, t), offset_at(tz, t + step));
        if a != b {
            // The first second with the new offset.
            let (mut lo, mut hi) = (t, t + step);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_at(tz, mid) == a {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push((hi, b));
        }
        t += step;
    }
    let s = Arc::new(out);
    cache.lock().insert(tz, s.clone());
    s
}

/// Parse a zone name checked when the report was saved (UTC when absent).
pub fn zone(tz: Option<&str>) -> Tz {
    tz.and_then(|z| z.parse().ok()).unwrap_or(Tz::UTC)
}

/// SQLite: the `strftime` modifier that shifts a stored instant to local time, e.g.
/// `'+480 minutes'`, chosen by comparing the instant with the zone's transitions.
fn sqlite_shift(col: &Expr, tz: Tz) -> Expr {
    let s = spans(tz);
    fn modifier(offset: i32) -> Expr {
        Expr::val(format!("{:+} seconds", offset))
    }
    fn tree(col: &Expr, s: &[(i64, i32)]) -> Expr {
        if s.len() == 1 {
            return modifier(s[0].1);
        }
        let mid = s.len() / 2;
        let bound = DateTime::from_timestamp(s[mid].0, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
            .unwrap_or_default();
        Expr::case(col.clone().lt(bound), tree(col, &s[..mid]))
            .finally(tree(col, &s[mid..]))
            .into()
    }
    tree(col, &s)
}

/// The bucket key of `col` as text: `2026-03-15` (day), `2026-03-09` (the Monday of a
/// week), `2026-03`, `2026-Q1`, `2026`. `datetime` columns are read in `tz`.
pub fn bucket_expr(col: Expr, datetime: bool, bucket: Bucket, tz: Tz, dialect: Dialect) -> Expr {
    match dialect {
        Dialect::Postgres => {
            let local = if datetime {
                crate::cx(dialect, "($1 AT TIME ZONE $2)", [col, Expr::val(tz.name())])
            } else {
                col
            };
            match bucket {
                Bucket::Day => crate::cx(dialect, "to_char($1, 'YYYY-MM-DD')", [local]),
                Bucket::Week => crate::cx(
                    dialect,
                    "to_char(date_trunc('week', $1), 'YYYY-MM-DD')",
                    [local],
                ),
                Bucket::Month => crate::cx(dialect, "to_char($1, 'YYYY-MM')", [local]),
                Bucket::Quarter => crate::cx(dialect, "to_char($1, 'YYYY-\"Q\"Q')", [local]),
                Bucket::Year => crate::cx(dialect, "to_char($1, 'YYYY')", [local]),
            }
        }
        Dialect::Sqlite => {
            let shift = if datetime && tz != Tz::UTC {
                sqlite_shift(&col, tz)
            } else {
                Expr::val("+0 seconds")
            };
            match bucket {
                Bucket::Day => crate::cx(dialect, "strftime('%Y-%m-%d', $1, $2)", [col, shift]),
                Bucket::Week => crate::cx(
                    dialect,
                    "strftime('%Y-%m-%d', $1, $2, 'weekday 0', '-6 days')",
                    [col, shift],
                ),
                Bucket::Month => crate::cx(dialect, "strftime('%Y-%m', $1, $2)", [col, shift]),
                Bucket::Quarter => crate::cx(
                    dialect,
                    "(strftime('%Y', $1, $2) || '-Q' || ((CAST(strftime('%m', $3, $4) AS INTEGER) + 2) / 3))",
                    [col.clone(), shift.clone(), col, shift],
                ),
                Bucket::Year => crate::cx(dialect, "strftime('%Y', $1, $2)", [col, shift]),
            }
        }
    }
}

/// The first day of the bucket `key` names.
pub fn key_start(bucket: Bucket, key: &str) -> Option<NaiveDate> {
    match bucket {
        Bucket::Day | Bucket::Week => NaiveDate::parse_from_str(key, "%Y-%m-%d").ok(),
        Bucket::Month => NaiveDate::parse_from_str(&format!("{key}-01"), "%Y-%m-%d").ok(),
        Bucket::Quarter => {
            let (y, q) = key.split_once("-Q")?;
            let q: u32 = q.parse().ok().filter(|q| (1..=4).contains(q))?;
            NaiveDate::from_ymd_opt(y.parse().ok()?, (q - 1) * 3 + 1, 1)
        }
        Bucket::Year => NaiveDate::from_ymd_opt(key.parse().ok()?, 1, 1),
    }
}

/// The first day of the bucket that holds `d`.
pub fn start_of(bucket: Bucket, d: NaiveDate) -> NaiveDate {
    let first = |m: u32| NaiveDate::from_ymd_opt(d.year(), m, 1).unwrap_or(d);
    match bucket {
        Bucket::Day => d,
        Bucket::Week => d
            .checked_sub_signed(Duration::days(i64::from(
                d.weekday().num_days_from_monday(),
            )))
            .unwrap_or(d),
        Bucket::Month => first(d.month()),
        Bucket::Quarter => first((d.month() - 1) / 3 * 3 + 1),
        Bucket::Year => first(1),
    }
}

/// `n` buckets after (or before, for negative `n`) the bucket starting at `start`; None
/// past the calendar's end.
pub fn shift(bucket: Bucket, start: NaiveDate, n: i32) -> Option<NaiveDate> {
    let months = |k: i32| {
        if k >= 0 {
            start.checked_add_months(chrono::Months::new(k.unsigned_abs()))
        } else {
            start.checked_sub_months(chrono::Months::new(k.unsigned_abs()))
        }
    };
    match bucket {
        Bucket::Day => start.checked_add_signed(Duration::days(i64::from(n))),
        Bucket::Week => start.checked_add_signed(Duration::weeks(i64::from(n))),
        Bucket::Month => months(n),
        Bucket::Quarter => months(3 * n),
        Bucket::Year => months(12 * n),
    }
}

/// The key of the bucket starting at `start`.
pub fn key_of(bucket: Bucket, start: NaiveDate) -> String {
    match bucket {
        Bucket::Day | Bucket::Week => start.format("%Y-%m-%d").to_string(),
        Bucket::Month => start.format("%Y-%m").to_string(),
        Bucket::Quarter => format!("{}-Q{}", start.year(), (start.month() - 1) / 3 + 1),
        Bucket::Year => start.format("%Y").to_string(),
    }
}

/// Local midnight of `d` in `tz` as a UTC instant (the first valid instant of the day
/// where a transition skips midnight).
pub fn midnight(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let naive: NaiveDateTime = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
        chrono::LocalResult::None => {
            // Midnight skipped: the day starts at the first existing minute.
            let mut t = naive;
            for _ in 0..180 {
                t += Duration::minutes(1);
                if let Some(x) = tz.from_local_datetime(&t).earliest() {
                    return x.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&naive)
        }
    }
}

/// The bounds `[from, to)` of a run of days as filter values: dates for a date field,
/// UTC instants of local midnights for a date-time field.
pub fn bounds(
    from: NaiveDate,
    to: NaiveDate,
    datetime: bool,
    tz: Tz,
) -> (serde_json::Value, serde_json::Value) {
    if datetime {
        let f =
            |d| serde_json::Value::String(trellis_query::value::format_datetime(&midnight(tz, d)));
        (f(from), f(to))
    } else {
        let f = |d: NaiveDate| serde_json::Value::String(d.format("%Y-%m-%d").to_string());
        (f(from), f(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_york_changes_offset_at_two_in_the_morning() {
        let s = spans(Tz::America__New_York);
        // 2026-03-08 07:00 UTC is 02:00 EST: from then on, EDT (-4 h).
        let t = Utc
            .with_ymd_and_hms(2026, 3, 8, 7, 0, 0)
            .single()
            .map(|t| t.timestamp());
        assert!(s.iter().any(|&(at, off)| Some(at) == t && off == -4 * 3600));
        let sh = spans(Tz::Asia__Shanghai);
        assert_eq!(sh.last().map(|s| s.1), Some(8 * 3600));
    }

    #[test]
    fn keys_and_starts_round_trip() {
        let d = NaiveDate::from_ymd_opt(2026, 8, 19).unwrap_or_default();
        for (b, key) in [
            (Bucket::Day, "2026-08-19"),
            (Bucket::Week, "2026-08-17"),
            (Bucket::Month, "2026-08"),
            (Bucket::Quarter, "2026-Q3"),
            (Bucket::Year, "2026"),
        ] {
            let s = start_of(b, d);
            assert_eq!(key_of(b, s), key);
            assert_eq!(key_start(b, key), Some(s));
        }
        let jan = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap_or_default();
        assert_eq!(
            shift(Bucket::Month, start_of(Bucket::Month, jan), -1),
            NaiveDate::from_ymd_opt(2025, 12, 1)
        );
        assert_eq!(shift(Bucket::Day, NaiveDate::MAX, 1), None);
    }

    #[test]
    fn midnight_in_shanghai_is_four_pm_utc_the_day_before() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap_or_default();
        assert_eq!(
            trellis_query::value::format_datetime(&midnight(Tz::Asia__Shanghai, d)),
            "2026-02-28T16:00:00.000000Z"
        );
    }
}
