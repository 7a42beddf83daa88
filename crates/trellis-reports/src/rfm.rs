//! RFM: each customer with orders gets a recency, frequency and monetary score from 1 to
//! 5 (its quintile: `ceil(5 × share of customers at or below it)`, so ties share a score),
//! then the first segment whose ranges it falls in. One statement with window functions.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, NullOrdering, Order, Query};
use serde_json::{Value, json};
use trellis_meta::report::{RfmOutput, Segment};
use trellis_query::ValueKind;
use trellis_query::value::{format_datetime, to_sql};
use trellis_store::StoreError;
use trellis_store::db::Db;

use crate::{Column, Ctx, Joins, Output, and, col, double, fetch, invalid};

fn q(name: &str) -> String {
    format!("\"{name}\"")
}

/// The SQL condition of a segment over the score columns.
fn segment_case(segments: &[Segment]) -> Expr {
    let range = |c: &str, r: Option<[u8; 2]>| -> Option<Expr> {
        r.map(|[lo, hi]| Expr::cust(q(c)).between(i64::from(lo), i64::from(hi)))
    };
    let mut case: Option<sea_orm::sea_query::CaseStatement> = None;
    for s in segments {
        let mut cond = sea_orm::sea_query::Condition::all();
        for e in [range("r", s.r), range("f", s.f), range("m", s.m)]
            .into_iter()
            .flatten()
        {
            cond = cond.add(e);
        }
        let then = Expr::val(s.name.as_str());
        case = Some(match case {
            None => Expr::case(cond, then),
            Some(c) => c.case(cond, then),
        });
    }
    match case {
        Some(c) => c.finally(Expr::val(Option::<String>::None)).into(),
        None => Expr::val(Option::<String>::None),
    }
}

pub(crate) async fn run(ctx: &Ctx<'_>, db: &Db) -> Result<Output, StoreError> {
    let r = ctx.report;
    let Some(x) = &r.rfm else {
        return Err(invalid(
            "rfm",
            "required",
            "an RFM report needs rfm settings",
        ));
    };
    let form = r.form.as_str();
    let (customers, cscope) = ctx.base(form)?;
    let cfilter = ctx.where_filter(form, cscope)?;
    let (orders, oscope) = ctx.base(&x.orders)?;
    let mut ofilter = ctx.definition_filter(&x.orders, x.filter.as_ref(), "rfm.filter")?;
    if let Some(s) = oscope {
        ofilter = ofilter.and(s);
    }
    let mut joins = Joins::default();
    let link = ctx.resolve(&mut joins, &x.orders, &orders, &x.link, "rfm.link")?;
    let date = ctx.resolve(&mut joins, &x.orders, &orders, &x.date, "rfm.date")?;
    let amount = ctx.resolve(&mut joins, &x.orders, &orders, &x.amount, "rfm.amount")?;
    if !joins.list.is_empty() {
        return Err(invalid(
            "rfm",
            "not_supported",
            "RFM reads fields of the order itself",
        ));
    }
    let as_of: DateTime<Utc> = match &x.as_of {
        None => ctx.now,
        Some(v) => {
            let day = ctx.day(Some(v), chrono_tz::Tz::UTC, "rfm.as_of")?;
            crate::time::midnight(chrono_tz::Tz::UTC, day)
        }
    };
    let as_of_value = match date.kind {
        ValueKind::Date => to_sql(
            ValueKind::Date,
            &json!(as_of.date_naive().to_string()),
            ctx.dialect,
        ),
        _ => to_sql(
            ValueKind::DateTime,
            &json!(format_datetime(&as_of)),
            ctx.dialect,
        ),
    }
    .map_err(|e| invalid("rfm.as_of", "invalid_date", e.to_string()))?;
    // Per customer: last order, orders, amount.
    let mut o = Query::select();
    o.expr_as(link.expr.clone(), Alias::new("cid"))
        .expr_as(
            crate::cx(ctx.dialect, "MAX($1)", [date.expr.clone()]),
            Alias::new("last_at"),
        )
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("freq"))
        .expr_as(
            double(crate::cx(
                ctx.dialect,
                "COALESCE(SUM($1), 0)",
                [amount.expr.clone()],
            )),
            Alias::new("money"),
        )
        .from(Alias::new(&orders))
        .cond_where(ofilter.to_condition(ctx.dialect))
        .and_where(link.expr.clone().is_not_null())
        // An order without a date has no recency; one after `as_of` has not happened yet.
        .and_where(date.expr.clone().is_not_null())
        .and_where(date.expr.clone().lt(Expr::val(as_of_value.clone())))
        .add_group_by([link.expr]);
    // Joined to the customers the caller may read and the report selects; ranks.
    let le = |c: &str| Expr::cust(format!("COUNT(*) OVER (ORDER BY \"o\".{})", q(c)));
    let mut s = Query::select();
    s.expr_as(Expr::cust("\"o\".\"cid\""), Alias::new("cid"))
        .expr_as(Expr::cust("\"o\".\"last_at\""), Alias::new("last_at"))
        .expr_as(Expr::cust("\"o\".\"freq\""), Alias::new("freq"))
        .expr_as(Expr::cust("\"o\".\"money\""), Alias::new("money"))
        .expr_as(le("last_at"), Alias::new("rle"))
        .expr_as(le("freq"), Alias::new("fle"))
        .expr_as(le("money"), Alias::new("mle"))
        .expr_as(Expr::cust("COUNT(*) OVER ()"), Alias::new("n"))
        .from_subquery(o, Alias::new("o"))
        .inner_join(
            Alias::new(&customers),
            col(&customers, "id").eq(Expr::cust("\"o\".\"cid\"")),
        )
        .cond_where(cfilter.to_condition(ctx.dialect));
    // Scores: ceil(5 × rank / n) in integers, exact.
    let score = |c: &str| Expr::cust(format!("((5 * {c} + \"n\" - 1) / \"n\")", c = q(c)));
    let recency = match (ctx.dialect, date.kind) {
        // Whole days for a date field, as on PostgreSQL.
        (trellis_query::Dialect::Sqlite, ValueKind::Date) => crate::cx(
            ctx.dialect,
            "(julianday($1) - julianday(\"last_at\"))",
            [Expr::val(as_of.date_naive().to_string())],
        ),
        (trellis_query::Dialect::Sqlite, _) => crate::cx(
            ctx.dialect,
            "(julianday($1) - julianday(\"last_at\"))",
            [Expr::val(format_datetime(&as_of))],
        ),
        (trellis_query::Dialect::Postgres, ValueKind::Date) => crate::cx(
            ctx.dialect,
            "CAST(($1 - \"last_at\") AS DOUBLE PRECISION)",
            [Expr::val(as_of.date_naive())],
        ),
        (trellis_query::Dialect::Postgres, _) => crate::cx(
            ctx.dialect,
            "(EXTRACT(EPOCH FROM ($1 - \"last_at\")) / 86400.0)",
            [Expr::val(
                to_sql(
                    ValueKind::DateTime,
                    &json!(format_datetime(&as_of)),
                    ctx.dialect,
                )
                .map_err(|e| invalid("rfm.as_of", "invalid_date", e.to_string()))?,
            )],
        ),
    };
    let mut sc = Query::select();
    sc.expr_as(Expr::cust("\"cid\""), Alias::new("cid"))
        .expr_as(Expr::cust("\"last_at\""), Alias::new("last_at"))
        .expr_as(Expr::cust("\"freq\""), Alias::new("freq"))
        .expr_as(Expr::cust("\"money\""), Alias::new("money"))
        .expr_as(double(recency), Alias::new("recency"))
        .expr_as(score("rle"), Alias::new("r"))
        .expr_as(score("fle"), Alias::new("f"))
        .expr_as(score("mle"), Alias::new("m"))
        .from_subquery(s, Alias::new("s"));
    let segments = x.segments();
    let mut seg = Query::select();
    seg.column(Alias::new("cid"))
        .column(Alias::new("last_at"))
        .column(Alias::new("freq"))
        .column(Alias::new("money"))
        .column(Alias::new("recency"))
        .column(Alias::new("r"))
        .column(Alias::new("f"))
        .column(Alias::new("m"))
        .expr_as(segment_case(&segments), Alias::new("segment"))
        .from_subquery(sc, Alias::new("sc"));
    let column = |name: &str, kind: &'static str| Column {
        name: name.to_owned(),
        kind,
        label: Default::default(),
        filter: None,
    };
    match x.output {
        RfmOutput::Segments => {
            let mut s = Query::select();
            s.column(Alias::new("segment"))
                .expr(Expr::cust("COUNT(*)"))
                .expr(double(Expr::cust("AVG(\"recency\")")))
                .expr(double(Expr::cust("AVG(\"freq\")")))
                .expr(double(Expr::cust("AVG(\"money\")")))
                .expr(double(Expr::cust("SUM(\"money\")")))
                .from_subquery(seg, Alias::new("g"))
                .add_group_by([Expr::cust("1")]);
            let rows = fetch(db, &s).await?;
            let mut found: Vec<(Option<String>, Vec<Value>)> = Vec::new();
            for row in &rows {
                let name: Option<String> = row.try_get_by_index(0)?;
                let mut vals = vec![json!(row.try_get_by_index::<i64>(1)?)];
                for i in 2..6 {
                    vals.push(json!(row.try_get_by_index::<Option<f64>>(i)?));
                }
                found.push((name, vals));
            }
            // Every segment shows, in its order; customers no segment takes come last.
            let mut out = Vec::new();
            let mut names: Vec<Option<String>> =
                segments.iter().map(|s| Some(s.name.clone())).collect();
            if found.iter().any(|(n, _)| n.is_none()) {
                names.push(None);
            }
            for n in names {
                let label = segments
                    .iter()
                    .find(|s| Some(&s.name) == n.as_ref())
                    .and_then(|s| s.label.get("en").cloned());
                let vals = found
                    .iter()
                    .find(|(m, _)| *m == n)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| {
                        vec![json!(0), Value::Null, Value::Null, Value::Null, json!(0.0)]
                    });
                let mut row = vec![json!(n), json!(label.or_else(|| n.clone()))];
                row.extend(vals);
                out.push(row);
            }
            let drill = out.iter().map(|_| Value::Null).collect();
            Ok(Output {
                form: form.to_owned(),
                columns: vec![
                    column("segment", "text"),
                    column("label", "text"),
                    column("customers", "integer"),
                    column("recency_days", "number"),
                    column("frequency", "number"),
                    column("monetary", "number"),
                    column("monetary_total", "number"),
                ],
                rows: out,
                drill: Some(drill),
                truncated: false,
            })
        }
        RfmOutput::Customers => {
            let cap = r.limit.unwrap_or(trellis_meta::report::MAX_GROUPS);
            seg.order_by_expr_with_nulls(Expr::cust("\"money\""), Order::Desc, NullOrdering::Last)
                .order_by_expr_with_nulls(Expr::cust("\"cid\""), Order::Asc, NullOrdering::Last)
                .limit(cap + 1);
            let rows = fetch(db, &seg).await?;
            let truncated = rows.len() as u64 > cap;
            if truncated && r.limit.is_none() {
                return Err(invalid(
                    "rfm.output",
                    "too_many_groups",
                    format!("more than {cap} customers; set a limit or filter them"),
                ));
            }
            let mut out = Vec::new();
            for row in rows.iter().take(usize::try_from(cap).unwrap_or(usize::MAX)) {
                out.push(vec![
                    json!(row.try_get_by_index::<String>(0)?),
                    trellis_store::row::decode(row, 1, date.kind, ctx.dialect)?,
                    json!(row.try_get_by_index::<i64>(2)?),
                    json!(row.try_get_by_index::<f64>(3)?),
                    json!(row.try_get_by_index::<Option<f64>>(4)?),
                    json!(row.try_get_by_index::<i64>(5)?),
                    json!(row.try_get_by_index::<i64>(6)?),
                    json!(row.try_get_by_index::<i64>(7)?),
                    json!(row.try_get_by_index::<Option<String>>(8)?),
                ]);
            }
            let base_filter = ctx.drill_base();
            let drill = out
                .iter()
                .map(|row| {
                    let mut parts = base_filter.clone();
                    parts.push(json!({"id": row[0]}));
                    and(parts)
                })
                .collect();
            Ok(Output {
                form: form.to_owned(),
                columns: vec![
                    column("id", "text"),
                    column("last_order", crate::kind_name(date.kind)),
                    column("frequency", "integer"),
                    column("monetary", "number"),
                    column("recency_days", "number"),
                    column("r", "integer"),
                    column("f", "integer"),
                    column("m", "integer"),
                    column("segment", "text"),
                ],
                rows: out,
                drill: Some(drill),
                truncated,
            })
        }
    }
}
