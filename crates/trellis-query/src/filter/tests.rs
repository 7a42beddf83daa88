use super::*;
use crate::testkit::catalog;
use chrono::TimeZone;
use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};
use serde_json::json;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 15, 13, 45, 30).unwrap()
}

fn parse(j: Json) -> Result<Filter, FilterError> {
    Filter::parse("deal", &j, &catalog(), now())
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

#[test]
fn explore() {
    for j in [
        json!({}),
        json!({"$not": {}}),
        json!({"title": {"$icontains": "a%b", "$startswith": "x*y", "$contains": "q"}}),
        json!({"status": {"$ne": "lost"}, "$or": [{"score": {"$gt": 1}}, {"score": null}]}),
        json!({"tags": {"$in": ["a", "b"]}}),
        json!({"tags": "a"}),
        json!({"customer.region.name": "EU"}),
        json!({"$not": {"customer.industry": "x"}}),
    ] {
        let f = parse(j).unwrap();
        println!("{:?}", sql(&f, Dialect::Sqlite));
        println!("{:?}", sql(&f, Dialect::Postgres));
    }
}
