use super::*;
use crate::testkit::catalog;
use chrono::{NaiveDate, TimeZone};
use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};
use serde_json::json;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 15, 13, 45, 30).unwrap()
}

fn parse(j: Json) -> Result<Filter, FilterError> {
    Filter::parse("deal", &j, &catalog(), now())
}

fn err(j: Json) -> (String, &'static str) {
    let e = parse(j).unwrap_err();
    (e.path, e.code)
}

fn sql(f: &Filter, dialect: Dialect) -> (String, Vec<Value>) {
    let mut q = Query::select();
    q.column(Alias::new("id"))
        .from(Alias::new("t_deal"))
        .cond_where(f.to_condition(dialect));
    let (sql, values) = match dialect {
        Dialect::Sqlite => q.build(SqliteQueryBuilder),
        Dialect::Postgres => q.build(PostgresQueryBuilder),
    };
    (sql, values.0)
}

fn where_clause(j: Json, dialect: Dialect) -> (String, Vec<Value>) {
    let (s, v) = sql(&parse(j).unwrap(), dialect);
    let w = s
        .split_once(" WHERE ")
        .map(|(_, w)| w.to_owned())
        .unwrap_or_default();
    (w, v)
}

fn s(v: &str) -> Value {
    Value::String(Some(v.to_owned()))
}

fn record(j: Json) -> Map<String, Json> {
    match j {
        Json::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn m(filter: Json, rec: Json) -> bool {
    parse(filter).unwrap().matches(&record(rec)).unwrap()
}

// ----- parse errors ---------------------------------------------------------------------

#[test]
fn unknown_field() {
    assert_eq!(
        err(json!({"$or": [{"title": "a"}, {"nope": 1}]})),
        ("$or[1].nope".into(), "unknown_field")
    );
    assert_eq!(
        err(json!({"customer.nope": 1})),
        ("customer.nope".into(), "unknown_field")
    );
    let e = Filter::parse("ghost", &json!({}), &catalog(), now()).unwrap_err();
    assert_eq!(e.code, "unknown_form");
}

#[test]
fn unknown_operator() {
    assert_eq!(
        err(json!({"score": {"$gt": 1, "$foo": 1}})),
        ("score.$foo".into(), "unknown_operator")
    );
    assert_eq!(
        err(json!({"$and": [{"$xor": []}]})),
        ("$and[0].$xor".into(), "unknown_operator")
    );
    assert_eq!(
        err(json!({"title": {"plain": "x"}})),
        ("title.plain".into(), "unknown_operator")
    );
}

#[test]
fn wrong_value_types() {
    let e = parse(json!({"$or": [{"title": "a"}, {"score": {"$gte": "high"}}]})).unwrap_err();
    assert_eq!(e.path, "$or[1].score.$gte");
    assert_eq!(e.code, "invalid_value");
    assert!(e.message.contains("expected an integer"), "{}", e.message);
    assert_eq!(e.to_string(), "$or[1].score.$gte: expected an integer");
    assert_eq!(
        err(json!({"score": "12"})),
        ("score".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"score": 1.5})),
        ("score".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"active": "yes"})),
        ("active".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"closes_on": "15/05/2024"})),
        ("closes_on".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"closed_at": "$yesterday"})),
        ("closed_at".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"closed_at": "$now-3x"})),
        ("closed_at".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"score": [1, 2]})),
        ("score".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"score": {"$in": [1, null]}})),
        ("score.$in[1]".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"score": {"$in": [1, "2"]}})),
        ("score.$in[1]".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"score": {"$in": 1}})),
        ("score.$in".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"score": {"$in": []}})),
        ("score.$in".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"score": {"$gt": null}})),
        ("score.$gt".into(), "invalid_value")
    );
    assert_eq!(
        err(json!({"score": {"$null": 1}})),
        ("score.$null".into(), "invalid_value")
    );
    assert_eq!(err(json!({"score": {}})), ("score".into(), "invalid_value"));
    assert_eq!(err(json!({"$or": []})), ("$or".into(), "invalid_value"));
    assert_eq!(err(json!({"$or": {}})), ("$or".into(), "invalid_value"));
    assert_eq!(err(json!({"tags": 1})), ("tags".into(), "invalid_value"));
}

#[test]
fn operators_that_do_not_fit_the_kind() {
    for (f, path) in [
        (json!({"active": {"$gt": true}}), "active.$gt"),
        (json!({"tags": {"$lt": "a"}}), "tags.$lt"),
        (json!({"meta": {"$gte": 1}}), "meta.$gte"),
        (json!({"meta": {"$in": [1]}}), "meta.$in"),
        (json!({"score": {"$contains": "1"}}), "score.$contains"),
        (json!({"tags": {"$icontains": "a"}}), "tags.$icontains"),
        (json!({"tags": {"$startswith": "a"}}), "tags.$startswith"),
    ] {
        let (p, code) = err(f.clone());
        assert_eq!((p.as_str(), code), (path, "unsupported_operator"), "{f}");
    }
    // A plain object on a JSON field reads as operators, and `a` is not one.
    assert_eq!(
        err(json!({"meta": {"a": 1}})),
        ("meta.a".into(), "unknown_operator")
    );
    // Only $null works on JSON fields.
    assert!(parse(json!({"meta": {"$null": false}})).is_ok());
    assert!(parse(json!({"meta": null})).is_ok());
}

#[test]
fn depth_limit() {
    let nest = |levels: usize| {
        let mut j = json!({"score": 1});
        for _ in 1..levels {
            j = json!({ "$not": j });
        }
        j
    };
    assert!(parse(nest(MAX_DEPTH)).is_ok());
    let (path, code) = err(nest(MAX_DEPTH + 1));
    assert_eq!(code, "too_deep");
    assert_eq!(path, ["$not"; MAX_DEPTH].join("."));

    let mut j = json!({"score": 1});
    for _ in 0..MAX_DEPTH {
        j = json!({ "$and": [j] });
    }
    let (path, code) = err(j);
    assert_eq!(code, "too_deep");
    assert!(path.starts_with("$and[0].$and[0]"), "{path}");
}

#[test]
fn in_list_limit() {
    let values: Vec<i64> = (0..1000).collect();
    assert!(parse(json!({"score": {"$in": values}})).is_ok());
    let values: Vec<i64> = (0..1001).collect();
    assert_eq!(
        err(json!({"score": {"$nin": values}})),
        ("score.$nin".into(), "invalid_value")
    );
}

#[test]
fn condition_and_length_limits() {
    let many: Vec<Json> = (0..MAX_CONDITIONS).map(|i| json!({"score": i})).collect();
    assert!(parse(json!({ "$or": many })).is_ok());
    let many: Vec<Json> = (0..=MAX_CONDITIONS).map(|i| json!({"score": i})).collect();
    assert_eq!(
        err(json!({ "$or": many })),
        (
            format!("$or[{MAX_CONDITIONS}].score"),
            "too_many_conditions"
        )
    );
    let long = "é".repeat(MAX_STRING_CHARS);
    assert!(parse(json!({ "title": long })).is_ok());
    let long = "a".repeat(MAX_STRING_CHARS + 1);
    assert_eq!(err(json!({ "title": long })), ("title".into(), "too_long"));
    assert_eq!(
        err(json!({"tags": {"$in": ["a", long]}})),
        ("tags.$in[1]".into(), "too_long")
    );
}

#[test]
fn not_an_object() {
    assert_eq!(err(json!([1])), (String::new(), "not_an_object"));
    assert_eq!(err(json!("x")), (String::new(), "not_an_object"));
    assert_eq!(
        err(json!({"$and": [{}, 3]})),
        ("$and[1]".into(), "not_an_object")
    );
    assert_eq!(err(json!({"$not": null})), ("$not".into(), "not_an_object"));
}

#[test]
fn relation_paths_are_checked() {
    assert!(parse(json!({"customer.region.country.name": "FR"})).is_ok());
    assert_eq!(
        err(json!({"customer.region.country.union.name": "EU"})),
        ("customer.region.country.union.name".into(), "invalid_path")
    );
    assert_eq!(
        err(json!({"title.x": 1})),
        ("title.x".into(), "invalid_path")
    );
    assert_eq!(
        err(json!({"customer.employees": "many"})),
        ("customer.employees".into(), "invalid_value")
    );
}

// ----- SQL ------------------------------------------------------------------------------

#[test]
fn values_are_bound_never_spliced() {
    let evil = "x'; DROP TABLE t; --";
    let filters = [
        json!({"title": evil}),
        json!({"title": {"$ne": evil}}),
        json!({"title": {"$contains": evil}}),
        json!({"title": {"$icontains": evil}}),
        json!({"title": {"$startswith": evil}}),
        json!({"title": {"$in": [evil, "b"]}}),
        json!({"tags": evil}),
        json!({"tags": {"$nin": [evil]}}),
        json!({"customer.industry": evil}),
    ];
    for f in filters {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let (text, values) = sql(&parse(f.clone()).unwrap(), dialect);
            assert!(!text.contains("DROP"), "{dialect:?} {f}: {text}");
            let bound = format!("{values:?}");
            assert!(bound.contains("DROP TABLE"), "{dialect:?} {f}: {bound}");
        }
    }
}

#[test]
fn empty_filter_matches_everything() {
    let (w, v) = where_clause(json!({}), Dialect::Sqlite);
    assert_eq!(w, "TRUE");
    assert!(v.is_empty());
    let (w, _) = where_clause(json!({"$not": {}}), Dialect::Postgres);
    assert_eq!(w, "FALSE");
}

#[test]
fn comparisons_sql() {
    let (w, v) = where_clause(
        json!({"score": {"$gte": 1, "$lt": 9}, "status": "won", "closes_on": null}),
        Dialect::Postgres,
    );
    assert_eq!(
        w,
        r#""t_deal"."c_score" >= $1 AND "t_deal"."c_score" < $2 AND "t_deal"."c_status" = $3 AND "t_deal"."c_closes_on" IS NULL"#
    );
    assert_eq!(
        v,
        vec![Value::BigInt(Some(1)), Value::BigInt(Some(9)), s("won")]
    );
}

#[test]
fn negations_include_nulls() {
    let (w, v) = where_clause(json!({"status": {"$ne": "lost"}}), Dialect::Sqlite);
    assert_eq!(
        w,
        r#"(NOT "t_deal"."c_status" = ?) OR "t_deal"."c_status" IS NULL"#
    );
    assert_eq!(v, vec![s("lost")]);
    let (w, _) = where_clause(json!({"score": {"$nin": [1, 2]}}), Dialect::Postgres);
    assert_eq!(
        w,
        r#"(NOT "t_deal"."c_score" IN ($1, $2)) OR "t_deal"."c_score" IS NULL"#
    );
    let (w, _) = where_clause(json!({"status": {"$ne": null}}), Dialect::Sqlite);
    assert_eq!(w, r#""t_deal"."c_status" IS NOT NULL"#);
    let (w, _) = where_clause(json!({"score": {"$null": false}}), Dialect::Sqlite);
    assert_eq!(w, r#""t_deal"."c_score" IS NOT NULL"#);
    // $not pushes down: NOT (a AND b) = (NOT a) OR (NOT b), each NULL-inclusive.
    let (w, _) = where_clause(
        json!({"$not": {"score": {"$gt": 5}, "status": null}}),
        Dialect::Sqlite,
    );
    assert_eq!(
        w,
        r#"(NOT "t_deal"."c_score" > ?) OR "t_deal"."c_score" IS NULL OR "t_deal"."c_status" IS NOT NULL"#
    );
}

#[test]
fn or_inside_and_is_parenthesized() {
    let (w, _) = where_clause(
        json!({"score": 1, "$or": [{"status": "a"}, {"status": "b"}], "tags": {"$in": ["x", "y"]}}),
        Dialect::Postgres,
    );
    assert_eq!(
        w,
        r#""t_deal"."c_score" = $1 AND ("t_deal"."c_status" = $2 OR "t_deal"."c_status" = $3) AND ("t_deal"."c_tags" @> CAST($4 AS jsonb) OR "t_deal"."c_tags" @> CAST($5 AS jsonb))"#
    );
}

#[test]
fn text_operators_sql() {
    let f = json!({"title": {"$contains": "50%", "$icontains": "a_b\\", "$startswith": "Q*?[x"}});
    let (w, v) = where_clause(f.clone(), Dialect::Sqlite);
    assert_eq!(
        w,
        r#"instr("t_deal"."c_title", ?) > ? AND LOWER("t_deal"."c_title") LIKE LOWER(?) ESCAPE '\' AND ("t_deal"."c_title" GLOB ?)"#
    );
    assert_eq!(
        v,
        vec![
            s("50%"),
            Value::Int(Some(0)),
            s("%a\\_b\\\\%"),
            s("Q[*][?][[]x*")
        ]
    );
    let (w, v) = where_clause(f, Dialect::Postgres);
    assert_eq!(
        w,
        r#"strpos("t_deal"."c_title", $1) > $2 AND LOWER("t_deal"."c_title") LIKE LOWER($3) ESCAPE E'\\' AND "t_deal"."c_title" LIKE $4 ESCAPE E'\\'"#
    );
    assert_eq!(v[3], s("Q*?[x%"));
}

#[test]
fn text_array_sql() {
    let (w, v) = where_clause(json!({"tags": "x"}), Dialect::Sqlite);
    assert_eq!(
        w,
        r#"EXISTS(SELECT 1 FROM json_each("t_deal"."c_tags") AS "je" WHERE "je"."value" = ?)"#
    );
    assert_eq!(v, vec![s("x")]);
    let (w, v) = where_clause(json!({"tags": {"$contains": "x"}}), Dialect::Postgres);
    assert_eq!(w, r#""t_deal"."c_tags" @> CAST($1 AS jsonb)"#);
    assert_eq!(v, vec![Value::Json(Some(Box::new(json!(["x"]))))]);
    let (w, _) = where_clause(json!({"tags": {"$in": ["x", "y"]}}), Dialect::Sqlite);
    assert!(w.ends_with(r#"WHERE "je"."value" IN (?, ?))"#), "{w}");
    let (w, _) = where_clause(json!({"tags": {"$ne": "x"}}), Dialect::Sqlite);
    assert!(
        w.starts_with("(NOT EXISTS(") && w.ends_with(r#"OR "t_deal"."c_tags" IS NULL"#),
        "{w}"
    );
}

#[test]
fn relation_path_sql() {
    let (w, v) = where_clause(
        json!({"customer.industry": "manufacturing"}),
        Dialect::Sqlite,
    );
    assert_eq!(
        w,
        r#""t_deal"."c_customer" IN (SELECT "t_customer"."id" FROM "t_customer" WHERE "t_customer"."c_industry" = ?)"#
    );
    assert_eq!(v, vec![s("manufacturing")]);
    let (w, _) = where_clause(
        json!({"customer.region.name": {"$ne": "EU"}}),
        Dialect::Postgres,
    );
    assert_eq!(
        w,
        r#""t_deal"."c_customer" IN (SELECT "t_customer"."id" FROM "t_customer" WHERE "t_customer"."c_region" IN (SELECT "t_region"."id" FROM "t_region" WHERE (NOT "t_region"."c_name" = $1) OR "t_region"."c_name" IS NULL))"#
    );
    // Self-relations still qualify the inner column with the subquery's (nearest) table.
    let (w, _) = where_clause(json!({"parent.customer.id": "c1"}), Dialect::Sqlite);
    assert!(
        w.contains(
            r#"IN (SELECT "t_customer"."id" FROM "t_customer" WHERE "t_customer"."id" = ?)"#
        ),
        "{w}"
    );
}

#[test]
fn typed_values_per_dialect() {
    let f = json!({"closes_on": "2024-01-02", "closed_at": {"$lt": "2024-01-02T03:04:05+01:00"}, "active": true, "amount": {"$gt": 2}});
    let (_, v) = where_clause(f.clone(), Dialect::Postgres);
    assert_eq!(
        v,
        vec![
            Value::ChronoDate(NaiveDate::from_ymd_opt(2024, 1, 2)),
            Value::ChronoDateTimeUtc(Some(Utc.with_ymd_and_hms(2024, 1, 2, 2, 4, 5).unwrap())),
            Value::Bool(Some(true)),
            Value::Double(Some(2.0)),
        ]
    );
    let (_, v) = where_clause(f, Dialect::Sqlite);
    assert_eq!(v[0], s("2024-01-02"));
    assert_eq!(v[1], s("2024-01-02T02:04:05.000000Z"));
}

#[test]
fn relative_dates_resolve_against_now() {
    let at = |f: Json| {
        let (_, v) = where_clause(f, Dialect::Postgres);
        v
    };
    let dt = |d, h, mi, s| {
        Value::ChronoDateTimeUtc(Some(Utc.with_ymd_and_hms(2024, 5, d, h, mi, s).unwrap()))
    };
    assert_eq!(at(json!({"closed_at": "$now"})), vec![dt(15, 13, 45, 30)]);
    assert_eq!(
        at(json!({"closed_at": {"$gte": "$now-3d"}})),
        vec![dt(12, 13, 45, 30)]
    );
    assert_eq!(
        at(json!({"closed_at": {"$lt": "$now+2h"}})),
        vec![dt(15, 15, 45, 30)]
    );
    assert_eq!(
        at(json!({"closed_at": {"$lt": "$now-30m"}})),
        vec![dt(15, 13, 15, 30)]
    );
    assert_eq!(
        at(json!({"closed_at": {"$gte": "$today"}})),
        vec![dt(15, 0, 0, 0)]
    );
    assert_eq!(
        at(json!({"closed_at": {"$gte": "$today-7d"}})),
        vec![dt(8, 0, 0, 0)]
    );
    assert_eq!(
        at(json!({"closed_at": {"$in": ["$today+1w"]}})),
        vec![dt(22, 0, 0, 0)]
    );
    assert_eq!(
        at(json!({"closes_on": {"$gte": "$now-1d"}})),
        vec![Value::ChronoDate(NaiveDate::from_ymd_opt(2024, 5, 14))]
    );
    let (_, v) = where_clause(json!({"closed_at": {"$gte": "$today-7d"}}), Dialect::Sqlite);
    assert_eq!(v, vec![s("2024-05-08T00:00:00.000000Z")]);
    // On text fields a `$now` string is just text.
    assert_eq!(at(json!({"title": "$now"})), vec![s("$now")]);
    for bad in [
        "$now-", "$now-d", "$now3d", "$now-3", "$now-3y", "$now--3d", "$now-+3d",
    ] {
        assert!(relative_date(bad, now()).is_none(), "{bad}");
    }
    assert!(relative_date("$now-99999999999999999w", now()).is_none());
}

// ----- in memory ------------------------------------------------------------------------

#[test]
fn matches_equality_and_nulls() {
    let rec = json!({"title": "Acme", "score": 5, "status": null, "amount": 2.5});
    assert!(m(json!({}), rec.clone()));
    assert!(!m(json!({"$not": {}}), rec.clone()));
    assert!(m(json!({"title": "Acme"}), rec.clone()));
    assert!(!m(json!({"title": "acme"}), rec.clone()));
    assert!(m(json!({"score": 5.0}), rec.clone()));
    assert!(m(json!({"amount": {"$eq": 2.5}}), rec.clone()));
    assert!(m(json!({"status": null}), rec.clone()));
    // A missing key reads as null.
    assert!(m(json!({"closes_on": null}), rec.clone()));
    assert!(m(json!({"status": {"$null": true}}), rec.clone()));
    assert!(!m(json!({"status": {"$null": false}}), rec.clone()));
    assert!(m(json!({"title": {"$null": false}}), rec.clone()));
    assert!(!m(json!({"status": "won"}), rec.clone()));
    assert!(m(json!({"status": {"$ne": "won"}}), rec.clone()));
    assert!(m(json!({"status": {"$nin": ["won"]}}), rec.clone()));
    assert!(!m(json!({"status": {"$ne": null}}), rec.clone()));
    assert!(!m(json!({"title": {"$ne": "Acme"}}), rec.clone()));
    assert!(m(json!({"title": {"$ne": "Other"}}), rec.clone()));
    assert!(m(json!({"$not": {"status": "won"}}), rec.clone()));
    assert!(!m(json!({"$not": {"status": null}}), rec.clone()));
    // Positive tests never match a null field, whatever the operator.
    for op in [
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$contains",
        "$icontains",
        "$startswith",
    ] {
        assert!(!m(json!({"status": {op: ""}}), rec.clone()), "{op}");
        assert!(
            m(json!({"$not": {"status": {op: ""}}}), rec.clone()),
            "{op}"
        );
    }
}

#[test]
fn matches_order_operators() {
    let rec = json!({"score": 5, "amount": 2.5, "title": "beta", "closes_on": "2024-05-10", "closed_at": "2024-05-15T12:00:00Z"});
    let cases = [
        (json!({"score": {"$gt": 4}}), true),
        (json!({"score": {"$gt": 5}}), false),
        (json!({"score": {"$gte": 5}}), true),
        (json!({"score": {"$lt": 5}}), false),
        (json!({"score": {"$lte": 5}}), true),
        (json!({"score": {"$gt": 4, "$lt": 6}}), true),
        (json!({"amount": {"$lt": 10}}), true),
        (json!({"amount": {"$gt": 2.49}}), true),
        (json!({"title": {"$gt": "alpha"}}), true),
        (json!({"title": {"$lt": "alpha"}}), false),
        (json!({"closes_on": {"$gte": "2024-05-10"}}), true),
        (json!({"closes_on": {"$gt": "2024-05-10"}}), false),
        (json!({"closes_on": {"$lt": "$today"}}), true),
        (json!({"closes_on": {"$gte": "$today-7d"}}), true),
        // Parsed instants compare as times, not text: 12:00Z is 13:00+01:00.
        (json!({"closed_at": "2024-05-15T13:00:00+01:00"}), true),
        (json!({"closed_at": {"$lt": "$now"}}), true),
        (json!({"closed_at": {"$gt": "$now-1h"}}), false),
        (json!({"closed_at": {"$gt": "$now-2h"}}), true),
    ];
    for (f, want) in cases {
        assert_eq!(m(f.clone(), rec.clone()), want, "{f}");
    }
}

#[test]
fn matches_in_and_text() {
    let rec = json!({"score": 3, "title": "Big Deal 50%", "active": true});
    assert!(m(json!({"score": {"$in": [1, 3]}}), rec.clone()));
    assert!(!m(json!({"score": {"$in": [1, 2]}}), rec.clone()));
    assert!(m(json!({"score": {"$nin": [1, 2]}}), rec.clone()));
    assert!(!m(json!({"score": {"$nin": [3]}}), rec.clone()));
    assert!(m(json!({"active": {"$in": [true]}}), rec.clone()));
    assert!(m(json!({"active": {"$ne": false}}), rec.clone()));
    assert!(m(json!({"title": {"$contains": "Deal"}}), rec.clone()));
    assert!(!m(json!({"title": {"$contains": "deal"}}), rec.clone()));
    assert!(m(json!({"title": {"$contains": "50%"}}), rec.clone()));
    assert!(!m(json!({"title": {"$contains": "5_%"}}), rec.clone()));
    assert!(m(json!({"title": {"$icontains": "big deal"}}), rec.clone()));
    assert!(!m(
        json!({"title": {"$icontains": "big_deal"}}),
        rec.clone()
    ));
    assert!(m(json!({"title": {"$startswith": "Big"}}), rec.clone()));
    assert!(!m(json!({"title": {"$startswith": "big"}}), rec.clone()));
    assert!(!m(json!({"title": {"$startswith": "Deal"}}), rec.clone()));
}

#[test]
fn matches_text_arrays() {
    let rec = json!({"tags": ["red", "blue"]});
    assert!(m(json!({"tags": "red"}), rec.clone()));
    assert!(!m(json!({"tags": "green"}), rec.clone()));
    assert!(m(json!({"tags": {"$contains": "blue"}}), rec.clone()));
    assert!(m(json!({"tags": {"$in": ["green", "blue"]}}), rec.clone()));
    assert!(!m(json!({"tags": {"$in": ["green"]}}), rec.clone()));
    assert!(m(json!({"tags": {"$nin": ["green"]}}), rec.clone()));
    assert!(m(json!({"tags": {"$ne": "green"}}), rec.clone()));
    assert!(!m(json!({"tags": {"$ne": "red"}}), rec.clone()));
    // SQLite hands arrays back as JSON text.
    assert!(m(json!({"tags": "red"}), json!({"tags": "[\"red\"]"})));
    assert!(!m(json!({"tags": "red"}), json!({"tags": null})));
    assert!(m(json!({"tags": {"$nin": ["red"]}}), json!({"tags": null})));
}

#[test]
fn matches_logic() {
    let rec = json!({"score": 5, "status": "won"});
    assert!(m(
        json!({"$and": [{"score": 5}, {"status": "won"}]}),
        rec.clone()
    ));
    assert!(!m(
        json!({"$and": [{"score": 5}, {"status": "lost"}]}),
        rec.clone()
    ));
    assert!(m(
        json!({"$or": [{"score": 1}, {"status": "won"}]}),
        rec.clone()
    ));
    assert!(!m(
        json!({"$or": [{"score": 1}, {"status": "lost"}]}),
        rec.clone()
    ));
    assert!(m(
        json!({"$not": {"$or": [{"score": 1}, {"status": "lost"}]}}),
        rec.clone()
    ));
    assert!(!m(json!({"$not": {"$not": {"score": 1}}}), rec.clone()));
    assert!(m(
        json!({"score": 5, "$not": {"status": "lost"}}),
        rec.clone()
    ));
    let both = parse(json!({"score": 5}))
        .unwrap()
        .and(parse(json!({"status": "lost"})).unwrap());
    assert!(!both.matches(&record(rec.clone())).unwrap());
    assert!(
        Filter::all()
            .and(parse(json!({"score": 5})).unwrap())
            .matches(&record(rec))
            .unwrap()
    );
}

#[test]
fn matches_errors() {
    let e = parse(json!({"$or": [{"score": 1}, {"customer.industry": "x"}]}))
        .unwrap()
        .matches(&record(json!({"score": 1})))
        .unwrap_err();
    assert_eq!(e.code, "unsupported_in_memory");
    assert_eq!(e.path, "customer");
    let e = parse(json!({"score": 1}))
        .unwrap()
        .matches(&record(json!({"score": "one"})))
        .unwrap_err();
    assert_eq!((e.path.as_str(), e.code), ("score", "invalid_record_value"));
}

#[test]
fn and_combines_in_sql() {
    let f = parse(json!({"score": 1}))
        .unwrap()
        .and(parse(json!({"$or": [{"owner": "u1"}, {"owner": "u2"}]})).unwrap());
    let (text, _) = sql(&f, Dialect::Sqlite);
    assert!(
        text.ends_with(
            r#"WHERE "t_deal"."c_score" = ? AND ("t_deal"."owner" = ? OR "t_deal"."owner" = ?)"#
        ),
        "{text}"
    );
}

/// The test catalog, where the rows of customers a relation path may see are scoped.
struct Scoped;

impl Catalog for Scoped {
    fn field(&self, form: &str, name: &str) -> Option<crate::FieldInfo> {
        catalog().field(form, name)
    }

    fn table(&self, form: &str) -> Option<String> {
        catalog().table(form)
    }

    fn row_scope(&self, form: &str) -> Option<Filter> {
        (form == "customer")
            .then(|| Filter::parse("customer", &json!({"owner": "u1"}), &catalog(), now()).ok())
            .flatten()
    }
}

#[test]
fn relation_paths_see_only_the_scoped_rows() {
    let f = Filter::parse("deal", &json!({"customer.industry": "it"}), &Scoped, now()).unwrap();
    let (text, v) = sql(&f, Dialect::Sqlite);
    let w = text
        .split_once(" WHERE ")
        .map(|(_, w)| w.to_owned())
        .unwrap();
    assert_eq!(
        w,
        r#""t_deal"."c_customer" IN (SELECT "t_customer"."id" FROM "t_customer" WHERE "t_customer"."c_industry" = ? AND "t_customer"."owner" = ?)"#
    );
    assert_eq!(v, vec![s("it"), s("u1")]);
}

#[test]
fn nothing_matches_nothing() {
    let (text, v) = sql(&Filter::nothing("t_deal"), Dialect::Postgres);
    assert!(text.ends_with(r#"WHERE "t_deal"."id" IS NULL"#), "{text}");
    assert!(v.is_empty());
}

#[test]
fn trusted_filters_take_long_id_lists() {
    let ids: Vec<String> = (0..1500).map(|i| format!("u{i}")).collect();
    let doc = json!({"owner": {"$in": ids}});
    assert!(Filter::parse("deal", &doc, &catalog(), now()).is_err());
    assert!(Filter::parse_trusted("deal", &doc, &catalog(), now(), 5000).is_ok());
}
