//! Funnels: how many records reached each stage of an ordered select field. A record
//! reached a stage if its history (the audit log) or its current value ever held that
//! stage or a later one, so an opportunity lost in negotiation still counts for every
//! stage before. One statement: the highest stage per record, counted per stage.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, UnionType};
use serde_json::{Value, json};
use trellis_store::StoreError;
use trellis_store::db::Db;
use trellis_store::migrate::AUDIT;

use crate::{Column, Ctx, Output, and, col, fetch, invalid};

/// `CASE value WHEN stage1 THEN 1 … END`: the position of a stage, null for others.
fn position(value: Expr, stages: &[String]) -> Expr {
    let mut case = Expr::case(value.clone().eq(stages[0].as_str()), Expr::val(1i64));
    for (i, s) in stages.iter().enumerate().skip(1) {
        case = case.case(value.clone().eq(s.as_str()), Expr::val(i as i64 + 1));
    }
    case.finally(Expr::val(Option::<i64>::None)).into()
}

pub(crate) async fn run(ctx: &Ctx<'_>, db: &Db) -> Result<Output, StoreError> {
    let r = ctx.report;
    let form = r.form.as_str();
    let Some(settings) = &r.funnel else {
        return Err(invalid(
            "funnel",
            "required",
            "a funnel report needs funnel settings",
        ));
    };
    let entry = ctx.snap.get(form)?;
    let field = entry.form.field(&settings.field).ok_or_else(|| {
        invalid(
            "funnel.field",
            "unknown_field",
            format!("{form} has no field {}", settings.field),
        )
    })?;
    let stages: Vec<String> = if settings.stages.is_empty() {
        field.options.iter().map(|o| o.value.clone()).collect()
    } else {
        settings.stages.clone()
    };
    if stages.is_empty() {
        return Err(invalid(
            "funnel.stages",
            "required",
            "the field has no options",
        ));
    }
    let (base, scope) = ctx.base(form)?;
    let mut joins = crate::Joins::default();
    let current = ctx.resolve(&mut joins, form, &base, &settings.field, "funnel.field")?;
    let filter = ctx.where_filter(form, scope)?;
    // Every value the field held, from the audit: a create stores the value, an update
    // {"before", "after"}; each entry's JSON is parsed once. Entries that do not mention
    // the field are skipped unparsed.
    let name = settings.field.as_str();
    let is_create = col(AUDIT, "action").eq("create");
    let held = match ctx.dialect {
        trellis_query::Dialect::Sqlite => crate::cx(
            ctx.dialect,
            "(CASE WHEN $1 THEN json_extract($2, $3) ELSE json_extract($4, $5) END)",
            [
                is_create,
                col(AUDIT, "changes"),
                Expr::val(format!("$.{name}")),
                col(AUDIT, "changes"),
                Expr::val(format!("$.{name}.after")),
            ],
        ),
        trellis_query::Dialect::Postgres => crate::cx(
            ctx.dialect,
            "(CASE WHEN $1 THEN CAST($2 AS json) ->> $3 ELSE (CAST($4 AS json) -> $5) ->> 'after' END)",
            [
                is_create,
                col(AUDIT, "changes"),
                Expr::val(name),
                col(AUDIT, "changes"),
                Expr::val(name),
            ],
        ),
    };
    let mut history = Query::select();
    history
        .expr_as(col(AUDIT, "record_id"), Alias::new("rid"))
        .from(Alias::new(AUDIT))
        .and_where(col(AUDIT, "form").eq(form))
        .and_where(col(AUDIT, "action").is_in(["create", "update"]))
        .and_where(col(AUDIT, "changes").like(format!("%\"{name}\":%")));
    let now_pos = position(current.expr, &stages);
    // The highest stage of each record in the report's filter and the caller's scope (0:
    // none). Shaped per backend as the fastest hand-written query was: PostgreSQL hashes
    // each record joined to its history; SQLite groups the history per record first, in
    // the order of the audit's (form, record_id) index, and then joins it.
    let mut top = Query::select();
    match ctx.dialect {
        trellis_query::Dialect::Postgres => {
            history.expr_as(position(held, &stages), Alias::new("pos"));
            let mut now = Query::select();
            now.expr_as(col(&base, "id"), Alias::new("rid"))
                .expr_as(now_pos, Alias::new("pos"))
                .from(Alias::new(&base));
            history.union(UnionType::All, now);
            top.expr_as(
                Expr::cust("COALESCE(MAX(\"h\".\"pos\"), 0)"),
                Alias::new("top"),
            )
            .from(Alias::new(&base))
            .join_subquery(
                sea_orm::sea_query::JoinType::InnerJoin,
                history,
                Alias::new("h"),
                Expr::cust("\"h\".\"rid\"").equals((Alias::new(&base), Alias::new("id"))),
            )
            .add_group_by([col(&base, "id")]);
        }
        trellis_query::Dialect::Sqlite => {
            history
                .expr_as(
                    crate::cx(ctx.dialect, "MAX($1)", [position(held, &stages)]),
                    Alias::new("pos"),
                )
                .add_group_by([col(AUDIT, "record_id")]);
            top.expr_as(
                crate::cx(
                    ctx.dialect,
                    "MAX(COALESCE(\"h\".\"pos\", 0), COALESCE($1, 0))",
                    [now_pos],
                ),
                Alias::new("top"),
            )
            .from(Alias::new(&base))
            .join_subquery(
                sea_orm::sea_query::JoinType::LeftJoin,
                history,
                Alias::new("h"),
                Expr::cust("\"h\".\"rid\"").equals((Alias::new(&base), Alias::new("id"))),
            );
        }
    }
    crate::apply_joins(&mut top, &joins);
    top.cond_where(filter.to_condition(ctx.dialect));
    let mut s = Query::select();
    s.expr(Expr::cust("\"t\".\"top\""))
        .expr(Expr::cust("COUNT(*)"))
        .from_subquery(top, Alias::new("t"))
        .and_where(Expr::cust("\"t\".\"top\" > 0"))
        .add_group_by([Expr::cust("1")]);
    let rows = fetch(db, &s).await?;
    let mut at_top = vec![0i64; stages.len() + 1];
    for row in &rows {
        let pos: i64 = row.try_get_by_index(0)?;
        let n: i64 = row.try_get_by_index(1)?;
        if let Some(slot) = usize::try_from(pos).ok().and_then(|p| at_top.get_mut(p)) {
            *slot += n;
        }
    }
    // reached(k) = records whose highest stage is k or later.
    let mut reached = vec![0i64; stages.len()];
    let mut acc = 0;
    for k in (0..stages.len()).rev() {
        acc += at_top[k + 1];
        reached[k] = acc;
    }
    let ratio = |a: i64, b: i64| {
        if b == 0 {
            Value::Null
        } else {
            json!(a as f64 / b as f64)
        }
    };
    let label = |s: &str| {
        field
            .options
            .iter()
            .find(|o| o.value == s)
            .map(|o| o.label.clone())
            .unwrap_or_default()
    };
    let out_rows: Vec<Vec<Value>> = stages
        .iter()
        .enumerate()
        .map(|(k, s)| {
            vec![
                json!(s),
                json!(label(s).get("en").cloned().unwrap_or_else(|| s.clone())),
                json!(reached[k]),
                if k == 0 {
                    Value::Null
                } else {
                    ratio(reached[k], reached[k - 1])
                },
                ratio(reached[k], reached[0]),
            ]
        })
        .collect();
    let column = |name: &str, kind: &'static str| Column {
        name: name.to_owned(),
        kind,
        label: Default::default(),
        filter: None,
    };
    // "Reached at some time" has no filter in the record API; the drill of a stage lists
    // the records there now or at a later stage.
    let base_filter = ctx.drill_base();
    let drill = stages
        .iter()
        .enumerate()
        .map(|(k, _)| {
            let mut parts = base_filter.clone();
            parts.push(json!({ name: {"$in": stages[k..].to_vec()} }));
            and(parts)
        })
        .collect();
    Ok(Output {
        form: form.to_owned(),
        columns: vec![
            column(name, "text"),
            column("label", "text"),
            column("count", "integer"),
            column("conversion", "number"),
            column("overall", "number"),
        ],
        rows: out_rows,
        drill: Some(drill),
        truncated: false,
    })
}
