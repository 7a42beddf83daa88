use super::*;
use crate::testkit::catalog;
use sea_orm::sea_query::{PostgresQueryBuilder, Query, SqliteQueryBuilder};
use serde_json::json;
use std::cmp::Ordering;

fn sort(s: &str) -> Sort {
    Sort::parse("deal", s, &catalog()).unwrap()
}

fn rec(j: Json) -> Map<String, Json> {
    match j {
        Json::Object(m) => m,
        _ => panic!("not an object"),
    }
}

#[test]
fn encode_decode_round_trip() {
    let c = Cursor {
        values: vec![json!(5), Json::Null, json!("a/b+c?")],
        id: "01J-xyz".into(),
    };
    let s = c.encode();
    assert!(
        !s.contains('=') && !s.contains('+') && !s.contains('/'),
        "{s}"
    );
    assert_eq!(Cursor::decode(&s).unwrap(), c);
    for bad in ["***", "e30", "bm90IGpzb24", &"A".repeat(70_000)] {
        let e = Cursor::decode(bad).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.code),
            ("cursor", "invalid_cursor"),
            "{bad}"
        );
    }
}

#[test]
fn from_record_takes_sort_values_and_id() {
    let s = sort("-score,title");
    let c = from_record(&s, &rec(json!({"id": "r1", "score": 3, "amount": 9})));
    assert_eq!(c.values, vec![json!(3), Json::Null]);
    assert_eq!(c.id, "r1");
}

#[test]
fn after_rejects_mismatched_cursors() {
    let s = sort("score,title");
    let short = Cursor {
        values: vec![json!(1)],
        id: "r1".into(),
    };
    let e = after(&s, &short, "t_deal", Dialect::Sqlite).unwrap_err();
    assert_eq!((e.path.as_str(), e.code), ("cursor", "invalid_cursor"));
    let wrong = Cursor {
        values: vec![json!("x"), json!("a")],
        id: "r1".into(),
    };
    assert_eq!(
        after(&s, &wrong, "t_deal", Dialect::Postgres)
            .unwrap_err()
            .code,
        "invalid_cursor"
    );
}

fn render(cond: Condition, dialect: Dialect) -> (String, Vec<Value>) {
    let mut q = Query::select();
    q.column(Alias::new("id"))
        .from(Alias::new("t_deal"))
        .cond_where(cond);
    let (sql, values) = match dialect {
        Dialect::Sqlite => q.build(SqliteQueryBuilder),
        Dialect::Postgres => q.build(PostgresQueryBuilder),
    };
    let w = sql.split_once(" WHERE ").unwrap().1.to_owned();
    (w, values.0)
}

#[test]
fn after_sql_shape() {
    let s = sort("score,-closed_at");
    let c = Cursor {
        values: vec![json!(7), json!("2024-01-02T03:04:05Z")],
        id: "r9".into(),
    };
    let (w, v) = render(
        after(&s, &c, "t_deal", Dialect::Sqlite).unwrap(),
        Dialect::Sqlite,
    );
    assert_eq!(
        w,
        r#""t_deal"."c_score" > ? OR ("t_deal"."c_score" = ? AND ("t_deal"."c_closed_at" < ? OR "t_deal"."c_closed_at" IS NULL)) OR ("t_deal"."c_score" = ? AND "t_deal"."c_closed_at" = ? AND "t_deal"."id" < ?)"#
    );
    let when = Value::String(Some("2024-01-02T03:04:05.000000Z".into()));
    assert_eq!(
        v,
        vec![
            Value::BigInt(Some(7)),
            Value::BigInt(Some(7)),
            when.clone(),
            Value::BigInt(Some(7)),
            when,
            Value::String(Some("r9".into())),
        ]
    );
    let (_, v) = render(
        after(&s, &c, "t_deal", Dialect::Postgres).unwrap(),
        Dialect::Postgres,
    );
    assert!(matches!(v[2], Value::ChronoDateTimeUtc(Some(_))), "{v:?}");

    // A NULL cursor value: every value is after it ascending; nothing is after it descending.
    let c = Cursor {
        values: vec![Json::Null, Json::Null],
        id: "r9".into(),
    };
    let (w, _) = render(
        after(&s, &c, "t_deal", Dialect::Postgres).unwrap(),
        Dialect::Postgres,
    );
    assert_eq!(
        w,
        r#""t_deal"."c_score" IS NOT NULL OR ("t_deal"."c_score" IS NULL AND "t_deal"."c_closed_at" IS NULL AND "t_deal"."id" < $1)"#
    );
    let (w, _) = render(
        after(&Sort::default(), &c_id("r1"), "t", Dialect::Sqlite).unwrap(),
        Dialect::Sqlite,
    );
    assert_eq!(w, r#""t"."id" > ?"#);
}

fn c_id(id: &str) -> Cursor {
    Cursor {
        values: Vec::new(),
        id: id.into(),
    }
}

/// The documented order, written independently of `after`: keys with NULL smallest, then id.
fn cmp_rows(s: &Sort, a: &Map<String, Json>, b: &Map<String, Json>) -> Ordering {
    for k in &s.keys {
        let va = value::parse(k.kind, a.get(&k.field).unwrap_or(&Json::Null)).unwrap();
        let vb = value::parse(k.kind, b.get(&k.field).unwrap_or(&Json::Null)).unwrap();
        let ord = match (&va, &vb) {
            (Scalar::Null, Scalar::Null) => Ordering::Equal,
            (Scalar::Null, _) => Ordering::Less,
            (_, Scalar::Null) => Ordering::Greater,
            _ => va.compare(&vb).unwrap(),
        };
        let ord = if k.descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    let ord = a["id"].as_str().cmp(&b["id"].as_str());
    if s.id_descending() {
        ord.reverse()
    } else {
        ord
    }
}

/// Evaluates the terms the way SQL does: any comparison with NULL is not true.
fn holds(s: &Sort, terms: &[Vec<Test>], row: &Map<String, Json>) -> bool {
    let get = |i: usize| {
        let k = &s.keys[i];
        value::parse(k.kind, row.get(&k.field).unwrap_or(&Json::Null)).unwrap()
    };
    let id = row["id"].as_str().unwrap();
    terms.iter().any(|term| {
        term.iter().all(|t| match t {
            Test::Eq(i, v) => get(*i).compare(v) == Some(Ordering::Equal),
            Test::IsNull(i) => get(*i) == Scalar::Null,
            Test::NotNull(i) => get(*i) != Scalar::Null,
            Test::Gt(i, v) => get(*i).compare(v) == Some(Ordering::Greater),
            Test::LtOrNull(i, v) => {
                let g = get(*i);
                g == Scalar::Null || g.compare(v) == Some(Ordering::Less)
            }
            Test::IdGt(c) => id > c.as_str(),
            Test::IdLt(c) => id < c.as_str(),
        })
    })
}

#[test]
fn after_selects_exactly_the_tail() {
    let scores = [Json::Null, json!(1), json!(2)];
    let titles = [Json::Null, json!("a"), json!("b")];
    let dates = [Json::Null, json!("2024-01-01"), json!("2024-06-30")];
    let mut rows = Vec::new();
    let mut n = 0;
    for sc in &scores {
        for ti in &titles {
            for d in &dates {
                n += 1;
                rows.push(rec(json!({
                    "id": format!("r{:02}", (n * 7) % 41),
                    "score": sc, "title": ti, "closes_on": d,
                })));
            }
        }
    }
    let ids: std::collections::HashSet<_> = rows.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids.len(), rows.len(), "ids must be unique");

    // Pin the comparator itself to the documented order, so a wrong one cannot pass.
    let score_of = |s: &Sort| {
        let mut sorted = rows.clone();
        sorted.sort_by(|a, b| cmp_rows(s, a, b));
        sorted
            .iter()
            .map(|r| r["score"].clone())
            .collect::<Vec<_>>()
    };
    let asc = score_of(&sort("score"));
    assert!(asc[..9].iter().all(Json::is_null), "{asc:?}");
    assert_eq!((asc[9].clone(), asc[26].clone()), (json!(1), json!(2)));
    let desc = score_of(&sort("-score"));
    assert_eq!((desc[0].clone(), desc[17].clone()), (json!(2), json!(1)));
    assert!(desc[18..].iter().all(Json::is_null), "{desc:?}");

    for spec in [
        "",
        "score",
        "-score",
        "score,-title",
        "-score,title",
        "-title,-score",
        "title,score,-closes_on",
        "-closes_on,-score,title",
    ] {
        let s = sort(spec);
        let mut sorted = rows.clone();
        sorted.sort_by(|a, b| cmp_rows(&s, a, b));
        for (i, row) in sorted.iter().enumerate() {
            let c = from_record(&s, row);
            // Survive the trip through the URL.
            let c = Cursor::decode(&c.encode()).unwrap();
            let terms = after_terms(&s, &c).unwrap();
            let got: Vec<&Json> = sorted
                .iter()
                .filter(|r| holds(&s, &terms, r))
                .map(|r| &r["id"])
                .collect();
            let want: Vec<&Json> = sorted[i + 1..].iter().map(|r| &r["id"]).collect();
            assert_eq!(got, want, "sort {spec:?}, cursor at {i}: {row:?}");
            // The SQL is built from these same terms.
            assert!(after(&s, &c, "t_deal", Dialect::Sqlite).is_ok());
        }
    }
}
