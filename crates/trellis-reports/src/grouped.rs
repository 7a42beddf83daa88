//! Grouped reports: dimensions and measures in one `GROUP BY` statement, then (bounded by
//! the group limit) pivots, filled periods and period comparisons.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, NullOrdering, Order, Query};
use serde_json::{Value, json};
use trellis_meta::report::{Against, Arith, Bucket, Dimension, MAX_GROUPS, Measure, MeasureFn};
use trellis_query::ValueKind;
use trellis_query::value::to_sql;
use trellis_store::StoreError;
use trellis_store::db::Db;

use crate::time::{self, bounds};
use crate::{Column, Ctx, Joins, Output, and, apply_joins, double, fetch, invalid, kind_name};

/// Most distinct values a pivot spreads over columns.
const MAX_PIVOT_COLUMNS: usize = 200;

/// How a dimension's value is made and read back.
enum DimKind {
    Plain,
    Bucket(Bucket, chrono_tz::Tz, bool),
    /// Edges, and whether the field holds whole numbers.
    Bins(Vec<f64>, bool),
    Width(f64, bool),
}

struct Dim<'a> {
    def: &'a Dimension,
    expr: Expr,
    /// How SQL returns it.
    sql_kind: ValueKind,
    kind: DimKind,
}

impl Dim<'_> {
    fn out_kind(&self) -> &'static str {
        match self.kind {
            DimKind::Bucket(..) | DimKind::Bins(..) => "text",
            _ => kind_name(self.sql_kind),
        }
    }

    /// The value shown for what SQL returned.
    fn shown(&self, v: Value) -> Value {
        match (&self.kind, v.as_i64()) {
            (DimKind::Bins(edges, _), Some(i)) => Value::String(bin_label(edges, i)),
            _ => v,
        }
    }

    /// The filter that selects this dimension's value `v` (as shown).
    fn condition(&self, v: &Value) -> Value {
        let path = self.def.field.as_str();
        if v.is_null() {
            // Through relations, null is also what a missing link or a related record the
            // caller may not read gives (LEFT JOIN): "not (a value there)" is exactly that.
            if !path.contains('.') {
                return json!({ path: null });
            }
            return json!({"$not": { path: {"$null": false} }});
        }
        match &self.kind {
            DimKind::Plain => json!({ path: v }),
            DimKind::Bucket(b, tz, datetime) => {
                match v.as_str().and_then(|k| time::key_start(*b, k)) {
                    Some(start) => {
                        let end = time::shift(*b, start, 1).unwrap_or(start);
                        let (lo, hi) = bounds(start, end, *datetime, *tz);
                        json!({ path: {"$gte": lo, "$lt": hi} })
                    }
                    None => json!({ path: v }),
                }
            }
            DimKind::Bins(edges, int) => {
                let i = bin_index(edges, v.as_str().unwrap_or_default());
                let mut ops = serde_json::Map::new();
                if i > 0 {
                    ops.insert("$gte".into(), bound(edges[i - 1], *int));
                }
                if i < edges.len() {
                    ops.insert("$lt".into(), bound(edges[i], *int));
                }
                json!({ path: ops })
            }
            DimKind::Width(w, int) => {
                let lo = v.as_f64().unwrap_or_default();
                json!({ path: {"$gte": bound(lo, *int), "$lt": bound(lo + w, *int)} })
            }
        }
    }
}

/// A bin edge as a filter value: on a whole-number field `x >= 0.5` is `x >= 1` and
/// `x < 10.5` is `x < 11`, and the record API takes only whole numbers there.
fn bound(x: f64, int: bool) -> Value {
    if int {
        json!(x.ceil() as i64)
    } else {
        json!(x)
    }
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        x.to_string()
    }
}

/// `< 0`, `0–1000`, `≥ 10000`: bin `i` of `edges`.
fn bin_label(edges: &[f64], i: i64) -> String {
    let i = usize::try_from(i).unwrap_or(0);
    match (i.checked_sub(1).and_then(|j| edges.get(j)), edges.get(i)) {
        (None, Some(hi)) => format!("< {}", num(*hi)),
        (Some(lo), Some(hi)) => format!("{}–{}", num(*lo), num(*hi)),
        (Some(lo), None) => format!("≥ {}", num(*lo)),
        (None, None) => String::new(),
    }
}

fn bin_index(edges: &[f64], label: &str) -> usize {
    (0..=edges.len())
        .find(|&i| bin_label(edges, i as i64) == label)
        .unwrap_or(0)
}

/// One measure, compiled for one period.
struct Compiled {
    expr: Expr,
    kind: ValueKind,
}

/// A measure's label for an earlier period: `Revenue (previous period)`, `销售额（上期）`.
fn period_label(label: &trellis_meta::form::Label, suffix: &str) -> trellis_meta::form::Label {
    let (en, zh) = match suffix {
        "_previous" => (" (previous period)", "（上期）"),
        "_last_year" => (" (a year earlier)", "（去年同期）"),
        _ => return label.clone(),
    };
    label
        .iter()
        .map(|(lang, text)| {
            let add = if lang.starts_with("zh") { zh } else { en };
            (lang.clone(), format!("{text}{add}"))
        })
        .collect()
}

/// What a measure shows when its group has no records (a filled period, an empty pivot
/// cell): counts and sums are 0, the rest nothing.
fn empty_value(m: &Measure, kind: ValueKind) -> Value {
    match (m.func, kind) {
        (MeasureFn::Count | MeasureFn::CountDistinct, _) => json!(0),
        (MeasureFn::Sum, ValueKind::Integer) => json!(0),
        (MeasureFn::Sum, _) => json!(0.0),
        _ => Value::Null,
    }
}

struct Builder<'c, 'a> {
    ctx: &'c Ctx<'a>,
    joins: Joins,
    base: String,
}

impl Builder<'_, '_> {
    fn form(&self) -> &str {
        &self.ctx.report.form
    }

    fn measure_condition(&self, i: usize, m: &Measure) -> Result<Option<Condition>, StoreError> {
        let Some(f) = &m.filter else { return Ok(None) };
        let filter =
            self.ctx
                .definition_filter(self.form(), Some(f), &format!("measures[{i}].filter"))?;
        Ok(Some(filter.to_condition(self.ctx.dialect)))
    }

    /// Every measure for one period (`period`: the condition placing a record in it).
    fn measures(&mut self, period: Option<&Condition>) -> Result<Vec<Compiled>, StoreError> {
        let ctx = self.ctx;
        let mut out: Vec<Compiled> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (i, m) in ctx.report.measures.iter().enumerate() {
            let at = format!("measures[{i}]");
            let c = if m.func == MeasureFn::Expr {
                let src = m.expr.as_deref().unwrap_or_default();
                let a = Arith::parse(src)
                    .map_err(|e| invalid(format!("{at}.expr"), "invalid_expr", e))?;
                Compiled {
                    expr: arith(ctx.dialect, &a, &out, &by_name, &at)?,
                    kind: ValueKind::Float,
                }
            } else {
                let cond = match (self.measure_condition(i, m)?, period) {
                    (Some(a), Some(b)) => Some(Condition::all().add(a).add(b.clone())),
                    (Some(a), None) => Some(a),
                    (None, Some(b)) => Some(b.clone()),
                    (None, None) => None,
                };
                self.aggregate(m, cond, &at)?
            };
            by_name.insert(m.column(), out.len());
            out.push(c);
        }
        Ok(out)
    }

    fn aggregate(
        &mut self,
        m: &Measure,
        cond: Option<Condition>,
        at: &str,
    ) -> Result<Compiled, StoreError> {
        let (form, base) = (self.form().to_owned(), self.base.clone());
        let d = self.ctx.dialect;
        let field = match &m.field {
            Some(f) => {
                Some(
                    self.ctx
                        .resolve(&mut self.joins, &form, &base, f, &format!("{at}.field"))?,
                )
            }
            None => None,
        };
        let weight = match &m.weight {
            Some(w) => {
                Some(
                    self.ctx
                        .resolve(&mut self.joins, &form, &base, w, &format!("{at}.weight"))?,
                )
            }
            None => None,
        };
        let only = |e: Expr| -> Expr {
            match &cond {
                Some(c) => Expr::case(c.clone(), e).into(),
                None => e,
            }
        };
        let mut value = field.as_ref().map(|f| f.expr.clone());
        let mut duration = false;
        if let (Some(since), Some(v)) = (&m.since, value.clone()) {
            let from =
                self.ctx
                    .resolve(&mut self.joins, &form, &base, since, &format!("{at}.since"))?;
            let unit = m.unit.unwrap_or_default().seconds();
            value = Some(match d {
                trellis_query::Dialect::Sqlite => crate::cx(
                    d,
                    "((julianday($1) - julianday($2)) * $3)",
                    [v, from.expr, Expr::val(86_400.0 / f64::from(unit))],
                ),
                trellis_query::Dialect::Postgres => crate::cx(
                    d,
                    "(EXTRACT(EPOCH FROM (CAST($1 AS timestamptz) - CAST($2 AS timestamptz))) / $3)",
                    [v, from.expr, Expr::val(f64::from(unit))],
                ),
            });
            duration = true;
        }
        let (expr, kind) = match m.func {
            MeasureFn::Count => match value {
                Some(v) => (crate::cx(d, "COUNT($1)", [only(v)]), ValueKind::Integer),
                None => match &cond {
                    Some(c) => (
                        crate::cx(d, "COUNT($1)", [Expr::case(c.clone(), Expr::val(1)).into()]),
                        ValueKind::Integer,
                    ),
                    None => (Expr::cust("COUNT(*)"), ValueKind::Integer),
                },
            },
            MeasureFn::CountDistinct => {
                let v = value.unwrap_or_else(|| Expr::val(1));
                (
                    crate::cx(d, "COUNT(DISTINCT $1)", [only(v)]),
                    ValueKind::Integer,
                )
            }
            MeasureFn::Sum => {
                let v = value.unwrap_or_else(|| Expr::val(0));
                let integer = field.as_ref().is_some_and(|f| f.kind == ValueKind::Integer)
                    && !duration
                    && weight.is_none()
                    && m.scale.is_none();
                let v = match &weight {
                    Some(w) => v.mul(w.expr.clone()),
                    None => v,
                };
                let sum = crate::cx(d, "COALESCE(SUM($1), 0)", [only(v)]);
                if integer {
                    (
                        crate::cx(d, "CAST($1 AS BIGINT)", [sum]),
                        ValueKind::Integer,
                    )
                } else {
                    (double(sum), ValueKind::Float)
                }
            }
            MeasureFn::Avg => {
                let v = value.unwrap_or_else(|| Expr::val(0));
                match &weight {
                    Some(w) => {
                        // Σ value × weight / Σ weight over the records that have a value.
                        let num = crate::cx(d, "SUM($1)", [only(v.clone().mul(w.expr.clone()))]);
                        let has = Expr::case(v.is_not_null(), w.expr.clone());
                        let den = crate::cx(d, "SUM($1)", [only(has.into())]);
                        (
                            crate::cx(d, "$1 / NULLIF($2, 0)", [double(num), double(den)]),
                            ValueKind::Float,
                        )
                    }
                    None => (double(crate::cx(d, "AVG($1)", [only(v)])), ValueKind::Float),
                }
            }
            MeasureFn::Min | MeasureFn::Max => {
                let f = if duration {
                    ValueKind::Float
                } else {
                    field.as_ref().map_or(ValueKind::Text, |f| f.kind)
                };
                let v = value.unwrap_or_else(|| Expr::val(0));
                let sql = if m.func == MeasureFn::Min {
                    "MIN($1)"
                } else {
                    "MAX($1)"
                };
                let e = crate::cx(d, sql, [only(v)]);
                (if duration { double(e) } else { e }, f)
            }
            MeasureFn::Expr => (Expr::val(Option::<f64>::None), ValueKind::Float),
        };
        Ok(match m.scale {
            Some(s) => Compiled {
                expr: double(expr).mul(s),
                kind: ValueKind::Float,
            },
            None => Compiled { expr, kind },
        })
    }
}

/// Arithmetic of earlier measures as SQL; division by zero gives null.
fn arith(
    d: trellis_query::Dialect,
    a: &Arith,
    done: &[Compiled],
    by_name: &HashMap<String, usize>,
    at: &str,
) -> Result<Expr, StoreError> {
    Ok(match a {
        Arith::Num(n) => Expr::val(*n),
        Arith::Ref(r) => {
            let i = by_name.get(r).ok_or_else(|| {
                invalid(
                    format!("{at}.expr"),
                    "unknown_measure",
                    format!("no earlier measure is named {r:?}"),
                )
            })?;
            double(done[*i].expr.clone())
        }
        Arith::Neg(x) => Expr::val(0.0).sub(arith(d, x, done, by_name, at)?),
        Arith::Bin(op, x, y) => {
            let (l, r) = (
                arith(d, x, done, by_name, at)?,
                arith(d, y, done, by_name, at)?,
            );
            match op {
                '+' => l.add(r),
                '-' => l.sub(r),
                '*' => l.mul(r),
                _ => crate::cx(d, "($1 / NULLIF($2, 0))", [l, r]),
            }
        }
    })
}

/// Compare two cells: nulls last, numbers by value, text by bytes.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or_default()
            .partial_cmp(&y.as_f64().unwrap_or_default())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Order two cells, nulls last whether ascending or descending.
fn nulls_last(x: &Value, y: &Value, desc: bool) -> Ordering {
    match (x.is_null(), y.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => cmp_values(y, x),
        _ => cmp_values(x, y),
    }
}

/// Sort rows by (column index, descending) keys, nulls last either way; `key` gives the
/// value a cell sorts by (a bin's position rather than its label).
fn sort_rows(
    rows: &mut [Vec<Value>],
    keys: &[(usize, bool)],
    key: &dyn Fn(usize, &Value) -> Value,
) {
    rows.sort_by(|a, b| {
        for &(i, desc) in keys {
            let o = nulls_last(&key(i, &a[i]), &key(i, &b[i]), desc);
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
}

pub(crate) async fn run(ctx: &Ctx<'_>, db: &Db) -> Result<Output, StoreError> {
    let r = ctx.report;
    let form = r.form.as_str();
    let (base, scope) = ctx.base(form)?;
    let filter = ctx.where_filter(form, scope)?;
    let mut b = Builder {
        ctx,
        joins: Joins::default(),
        base: base.clone(),
    };
    // Dimensions.
    let mut dims: Vec<Dim<'_>> = Vec::new();
    for (i, d) in r.dimensions.iter().enumerate() {
        let at = format!("dimensions[{i}].field");
        let f = ctx.resolve(&mut b.joins, form, &base, &d.field, &at)?;
        let datetime = f.kind == ValueKind::DateTime;
        let (expr, sql_kind, kind) = if let Some(bucket) = d.bucket {
            if !matches!(f.kind, ValueKind::Date | ValueKind::DateTime) {
                return Err(invalid(
                    format!("dimensions[{i}].bucket"),
                    "not_a_date",
                    format!("{} is not a date", d.field),
                ));
            }
            let tz = time::zone(d.tz.as_deref());
            (
                time::bucket_expr(f.expr, datetime, bucket, tz, ctx.dialect),
                ValueKind::Text,
                DimKind::Bucket(bucket, tz, datetime),
            )
        } else if let Some(edges) = &d.bins {
            let mut case = Expr::case(f.expr.clone().is_null(), Expr::val(Option::<i64>::None));
            for (k, e) in edges.iter().enumerate() {
                case = case.case(f.expr.clone().lt(*e), Expr::val(k as i64));
            }
            let case = case.finally(Expr::val(edges.len() as i64));
            let int = f.kind == ValueKind::Integer;
            (
                case.into(),
                ValueKind::Integer,
                DimKind::Bins(edges.clone(), int),
            )
        } else if let Some(w) = d.bin_width {
            let int = f.kind == ValueKind::Integer;
            let e = match ctx.dialect {
                trellis_query::Dialect::Postgres => crate::cx(
                    ctx.dialect,
                    "(FLOOR($1 / $2) * $3)",
                    [f.expr, Expr::val(w), Expr::val(w)],
                ),
                // SQLite has no FLOOR everywhere: truncate, then step down for negatives.
                trellis_query::Dialect::Sqlite => crate::cx(
                    ctx.dialect,
                    "((CAST($1 / $2 AS INTEGER) - ($3 < 0 AND CAST($4 / $5 AS INTEGER) <> $6 / $7)) * $8)",
                    [
                        double(f.expr.clone()),
                        Expr::val(w),
                        f.expr.clone(),
                        double(f.expr.clone()),
                        Expr::val(w),
                        double(f.expr),
                        Expr::val(w),
                        Expr::val(w),
                    ],
                ),
            };
            (double(e), ValueKind::Float, DimKind::Width(w, int))
        } else {
            (f.expr, f.kind, DimKind::Plain)
        };
        dims.push(Dim {
            def: d,
            expr,
            sql_kind,
            kind,
        });
    }
    // Measures, once or per compared period.
    let mut where_cond = filter.to_condition(ctx.dialect);
    let mut periods: Vec<(String, Option<Value>)> = vec![(String::new(), None)];
    let measure_sets: Vec<Vec<Compiled>> = match &r.compare {
        None => vec![b.measures(None)?],
        Some(cmp) => {
            let f = ctx.resolve(&mut b.joins, form, &base, &cmp.field, "compare.field")?;
            let datetime = f.kind == ValueKind::DateTime;
            let tz = time::zone(cmp.tz.as_deref());
            let day = ctx.day(cmp.at.as_ref(), tz, "compare.at")?;
            let cur = time::start_of(cmp.period, day);
            let out_of_range = || {
                invalid(
                    "compare.at",
                    "invalid_date",
                    "the period is outside the calendar",
                )
            };
            let next = |d| time::shift(cmp.period, d, 1).ok_or_else(out_of_range);
            let mut spans = vec![(String::new(), cur)];
            for w in &cmp.with {
                spans.push(match w {
                    Against::Previous => (
                        "_previous".to_owned(),
                        time::shift(cmp.period, cur, -1).ok_or_else(out_of_range)?,
                    ),
                    Against::LastYear => (
                        "_last_year".to_owned(),
                        time::start_of(
                            cmp.period,
                            cur.checked_sub_months(chrono::Months::new(12))
                                .unwrap_or(cur),
                        ),
                    ),
                });
            }
            let bind = |v: &Value| {
                to_sql(f.kind, v, ctx.dialect)
                    .map_err(|e| invalid("compare.field", "invalid_date", e.to_string()))
            };
            let mut sets = Vec::new();
            let mut earliest = cur;
            periods.clear();
            for (suffix, start) in &spans {
                earliest = Ord::min(earliest, *start);
                let (lo, hi) = bounds(*start, next(*start)?, datetime, tz);
                let c = Condition::all()
                    .add(f.expr.clone().gte(Expr::val(bind(&lo)?)))
                    .add(f.expr.clone().lt(Expr::val(bind(&hi)?)));
                sets.push(b.measures(Some(&c))?);
                periods.push((
                    suffix.clone(),
                    Some(json!({ cmp.field.as_str(): {"$gte": lo, "$lt": hi} })),
                ));
            }
            // Only the compared periods are read.
            let (lo, _) = bounds(earliest, earliest, datetime, tz);
            let (_, hi) = bounds(cur, next(cur)?, datetime, tz);
            where_cond = Condition::all()
                .add(where_cond)
                .add(f.expr.clone().gte(Expr::val(bind(&lo)?)))
                .add(f.expr.lt(Expr::val(bind(&hi)?)));
            sets
        }
    };
    // The statement.
    let mut s = Query::select();
    s.from(Alias::new(&base));
    apply_joins(&mut s, &b.joins);
    s.cond_where(where_cond);
    for (i, d) in dims.iter().enumerate() {
        s.expr_as(d.expr.clone(), Alias::new(format!("d{i}")));
    }
    let nm = r.measures.len();
    // SELECT order: per measure, each period.
    for (i, _) in r.measures.iter().enumerate() {
        for (p, set) in measure_sets.iter().enumerate() {
            s.expr_as(set[i].expr.clone(), Alias::new(format!("m{i}_{p}")));
        }
    }
    // Grouped by position: the same expression written twice would bind its values twice,
    // and PostgreSQL would not see the two as one.
    for i in 0..dims.len() {
        s.add_group_by([Expr::cust(format!("{}", i + 1))]);
    }
    if let Some(h) = &r.having {
        let by_name: HashMap<String, &Compiled> = r
            .measures
            .iter()
            .map(Measure::column)
            .zip(measure_sets[0].iter())
            .collect();
        s.cond_having(having(h, &by_name, "having")?);
    }
    let np = measure_sets.len();
    let position = |name: &str| -> Option<usize> {
        if let Some(i) = r.dimensions.iter().position(|d| d.column() == name) {
            return Some(i);
        }
        r.measures
            .iter()
            .position(|m| m.column() == name)
            .map(|i| dims.len() + i * np)
    };
    let pivot = r
        .pivot
        .as_ref()
        .and_then(|p| r.dimensions.iter().position(|d| d.column() == p));
    let mut keys: Vec<(usize, bool)> = Vec::new();
    for k in r.sort.as_ref().map(|s| s.items()).unwrap_or_default() {
        let (name, desc) = match k.strip_prefix('-') {
            Some(n) => (n, true),
            None => (k, false),
        };
        if let Some(p) = position(name)
            && !(pivot.is_some() && p >= dims.len())
            && Some(p) != pivot
        {
            keys.push((p, desc));
        }
    }
    for i in 0..dims.len() {
        if !keys.iter().any(|k| k.0 == i) && Some(i) != pivot {
            keys.push((i, false));
        }
    }
    if let Some(p) = pivot {
        keys.push((p, false));
    }
    // On PostgreSQL the groups are made in a subquery the planner may not merge (OFFSET):
    // a LIMIT on the grouping query itself makes it sort a million rows to stream groups
    // in order (3.4x slower at 1M orders) instead of hashing them and sorting the few.
    let mut s = match ctx.dialect {
        trellis_query::Dialect::Postgres => {
            s.offset(0);
            let mut outer = Query::select();
            outer
                .column(sea_orm::sea_query::Asterisk)
                .from_subquery(s, Alias::new("g"));
            outer
        }
        trellis_query::Dialect::Sqlite => s,
    };
    for &(i, desc) in &keys {
        s.order_by_expr_with_nulls(
            Expr::cust(format!("{}", i + 1)),
            if desc { Order::Desc } else { Order::Asc },
            NullOrdering::Last,
        );
    }
    let cap = Ord::min(r.limit.unwrap_or(MAX_GROUPS), MAX_GROUPS);
    s.limit(cap + 1);
    let fetched = fetch(db, &s).await?;
    let mut truncated = false;
    if fetched.len() as u64 > cap {
        if r.limit.is_none() {
            return Err(invalid(
                "dimensions",
                "too_many_groups",
                format!(
                    "the report has more than {MAX_GROUPS} groups; narrow it with a filter or set a limit"
                ),
            ));
        }
        truncated = true;
    }
    let mut rows: Vec<Vec<Value>> = Vec::with_capacity(fetched.len());
    for row in fetched
        .iter()
        .take(usize::try_from(cap).unwrap_or(usize::MAX))
    {
        let mut out = Vec::with_capacity(dims.len() + nm * np);
        for (i, d) in dims.iter().enumerate() {
            let v = trellis_store::row::decode(row, i, d.sql_kind, ctx.dialect)?;
            out.push(d.shown(v));
        }
        for i in 0..nm {
            for (p, set) in measure_sets.iter().enumerate() {
                let idx = dims.len() + i * np + p;
                out.push(trellis_store::row::decode(
                    row,
                    idx,
                    set[i].kind,
                    ctx.dialect,
                )?);
            }
        }
        rows.push(out);
    }
    // Columns.
    let measure_filter = |i: usize| -> Option<Value> {
        r.measures[i]
            .filter
            .as_ref()
            .and_then(|f| trellis_meta::report::bind_params(f, &ctx.params))
    };
    let mut columns: Vec<Column> = dims
        .iter()
        .map(|d| Column {
            name: d.def.column().to_owned(),
            kind: d.out_kind(),
            label: d.def.label.clone(),
            filter: None,
        })
        .collect();
    for (i, m) in r.measures.iter().enumerate() {
        for (p, (suffix, period)) in periods.iter().enumerate() {
            let f: Vec<Value> = [measure_filter(i), period.clone()]
                .into_iter()
                .flatten()
                .collect();
            columns.push(Column {
                name: format!("{}{suffix}", m.column()),
                kind: kind_name(measure_sets[p][i].kind),
                label: period_label(&m.label, suffix),
                filter: (!f.is_empty()).then(|| and(f)),
            });
        }
    }
    // Comparisons: the change against each earlier period, as a fraction.
    if np > 1 {
        let mut cols = Vec::new();
        for (i, m) in r.measures.iter().enumerate() {
            let at = dims.len() + i * np;
            cols.push(columns[at].clone());
            for (p, (suffix, _)) in periods.iter().enumerate().skip(1) {
                cols.push(columns[at + p].clone());
                cols.push(Column {
                    name: format!("{}{suffix}_change", m.column()),
                    kind: "number",
                    label: Default::default(),
                    filter: None,
                });
            }
        }
        columns.truncate(dims.len());
        columns.extend(cols);
        for row in &mut rows {
            let mut out: Vec<Value> = row[..dims.len()].to_vec();
            for i in 0..nm {
                let at = dims.len() + i * np;
                let cur = row[at].clone();
                out.push(cur.clone());
                for p in 1..np {
                    let prev = row[at + p].clone();
                    let change = match (cur.as_f64(), prev.as_f64()) {
                        (Some(c), Some(v)) if v != 0.0 => json!((c - v) / v),
                        _ => Value::Null,
                    };
                    out.push(prev);
                    out.push(change);
                }
            }
            *row = out;
        }
    }
    // Bins sort by position, not by label.
    let sort_key = |i: usize, v: &Value| -> Value {
        match (dims.get(i).map(|d| &d.kind), v.as_str()) {
            (Some(DimKind::Bins(edges, _)), Some(label)) => json!(bin_index(edges, label)),
            _ => v.clone(),
        }
    };
    // Empty periods.
    if r.fill
        && let Some(bi) = dims
            .iter()
            .position(|d| matches!(d.kind, DimKind::Bucket(..)))
        && let DimKind::Bucket(bucket, _, _) = dims[bi].kind
    {
        let starts: BTreeSet<chrono::NaiveDate> = rows
            .iter()
            .filter_map(|row| row[bi].as_str().and_then(|k| time::key_start(bucket, k)))
            .collect();
        if let (Some(first), Some(last)) = (starts.first().copied(), starts.last().copied()) {
            let mut all = Vec::new();
            let mut d = first;
            while d <= last {
                all.push(time::key_of(bucket, d));
                if all.len() as u64 > MAX_GROUPS {
                    return Err(invalid(
                        "fill",
                        "too_many_groups",
                        "filling would add more than the group limit",
                    ));
                }
                match time::shift(bucket, d, 1) {
                    Some(n) => d = n,
                    None => break,
                }
            }
            let others = |row: &Vec<Value>| -> Vec<Value> {
                (0..dims.len())
                    .filter(|&i| i != bi)
                    .map(|i| row[i].clone())
                    .collect()
            };
            let mut combos: Vec<Vec<Value>> = Vec::new();
            let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
            let mut have: std::collections::HashSet<String> = std::collections::HashSet::new();
            for row in &rows {
                let o = others(row);
                have.insert(format!("{}|{}", Value::Array(o.clone()), row[bi]));
                if seen.insert(Value::Array(o.clone()).to_string()) {
                    combos.push(o);
                }
            }
            let empties: Vec<Value> = (0..nm)
                .flat_map(|i| {
                    let m = &r.measures[i];
                    let v = empty_value(m, measure_sets[0][i].kind);
                    std::iter::repeat_n(v, np)
                })
                .collect();
            for combo in &combos {
                for k in &all {
                    if have.contains(&format!("{}|{}", Value::Array(combo.clone()), json!(k))) {
                        continue;
                    }
                    let mut row: Vec<Value> = Vec::with_capacity(columns.len());
                    let mut it = combo.iter();
                    for i in 0..dims.len() {
                        row.push(if i == bi {
                            json!(k)
                        } else {
                            it.next().cloned().unwrap_or(Value::Null)
                        });
                    }
                    row.extend(empties.iter().cloned());
                    rows.push(row);
                    if rows.len() as u64 > MAX_GROUPS {
                        return Err(invalid(
                            "fill",
                            "too_many_groups",
                            "filling would add more than the group limit",
                        ));
                    }
                }
            }
            sort_rows(&mut rows, &keys, &sort_key);
        }
    }
    let base_filter = ctx.drill_base();
    let drill_of = |row: &[Value], skip: Option<usize>| -> Value {
        let mut parts = base_filter.clone();
        for (i, d) in dims.iter().enumerate() {
            if Some(i) != skip {
                parts.push(d.condition(&row[i]));
            }
        }
        and(parts)
    };
    // Pivot: one dimension's values become columns.
    if let Some(p) = pivot {
        let mut values: Vec<Value> = Vec::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for row in &rows {
            if seen.insert(row[p].to_string()) {
                values.push(row[p].clone());
                if values.len() > MAX_PIVOT_COLUMNS {
                    break;
                }
            }
        }
        values.sort_by(|a, b| nulls_last(&sort_key(p, a), &sort_key(p, b), false));
        if values.len() > MAX_PIVOT_COLUMNS {
            return Err(invalid(
                "pivot",
                "too_many_columns",
                format!(
                    "{} has more than {MAX_PIVOT_COLUMNS} values to spread over columns",
                    dims[p].def.column()
                ),
            ));
        }
        let index_of: HashMap<String, usize> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (v.to_string(), i))
            .collect();
        let row_dims: Vec<usize> = (0..dims.len()).filter(|&i| i != p).collect();
        let mut cols: Vec<Column> = row_dims.iter().map(|&i| columns[i].clone()).collect();
        for v in &values {
            let shown = match v {
                Value::String(s) => s.clone(),
                Value::Null => "null".to_owned(),
                x => x.to_string(),
            };
            for (i, m) in r.measures.iter().enumerate() {
                let f: Vec<Value> = [Some(dims[p].condition(v)), measure_filter(i)]
                    .into_iter()
                    .flatten()
                    .collect();
                cols.push(Column {
                    name: if nm == 1 {
                        shown.clone()
                    } else {
                        format!("{shown}.{}", m.column())
                    },
                    kind: kind_name(measure_sets[0][i].kind),
                    // Named by the pivot value: the measure's label would head every column alike.
                    label: Default::default(),
                    filter: Some(and(f)),
                });
            }
        }
        let mut out: Vec<Vec<Value>> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut drill = Vec::new();
        for row in &rows {
            let key: Vec<Value> = row_dims.iter().map(|&i| row[i].clone()).collect();
            let k = Value::Array(key.clone()).to_string();
            let at = *index.entry(k).or_insert_with(|| {
                let mut cells = key.clone();
                for _ in &values {
                    for (i, m) in r.measures.iter().enumerate() {
                        cells.push(empty_value(m, measure_sets[0][i].kind));
                    }
                }
                out.push(cells);
                drill.push(drill_of(row, Some(p)));
                out.len() - 1
            });
            let vi = index_of.get(&row[p].to_string()).copied().unwrap_or(0);
            for i in 0..nm {
                out[at][row_dims.len() + vi * nm + i] = row[dims.len() + i].clone();
            }
        }
        return Ok(Output {
            form: form.to_owned(),
            columns: cols,
            rows: out,
            drill: Some(drill),
            truncated,
        });
    }
    let drill = rows.iter().map(|row| drill_of(row, None)).collect();
    Ok(Output {
        form: form.to_owned(),
        columns,
        rows,
        drill: Some(drill),
        truncated,
    })
}

/// A filter on measures as a HAVING condition.
fn having(
    v: &Value,
    by_name: &HashMap<String, &Compiled>,
    at: &str,
) -> Result<Condition, StoreError> {
    let Value::Object(m) = v else {
        return Err(invalid(at, "invalid", "a having filter is an object"));
    };
    let mut all = Condition::all();
    for (k, x) in m {
        let here = format!("{at}.{k}");
        match k.as_str() {
            "$and" | "$or" => {
                let mut c = if k == "$and" {
                    Condition::all()
                } else {
                    Condition::any()
                };
                for (i, y) in x.as_array().into_iter().flatten().enumerate() {
                    c = c.add(having(y, by_name, &format!("{here}[{i}]"))?);
                }
                all = all.add(c);
            }
            "$not" => all = all.add(having(x, by_name, &here)?.not()),
            name => {
                let e = by_name.get(name).map(|c| c.expr.clone()).ok_or_else(|| {
                    invalid(
                        &here,
                        "unknown_measure",
                        format!("{name:?} is not a measure"),
                    )
                })?;
                let ops: Vec<(String, Value)> = match x {
                    Value::Object(o) => o.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
                    other => vec![("$eq".to_owned(), other.clone())],
                };
                for (op, val) in ops {
                    if Value::is_null(&val) {
                        all = all.add(if op == "$ne" {
                            e.clone().is_not_null()
                        } else {
                            e.clone().is_null()
                        });
                        continue;
                    }
                    let n = val.as_f64().ok_or_else(|| {
                        invalid(
                            format!("{here}.{op}"),
                            "not_numeric",
                            "a measure is compared with a number",
                        )
                    })?;
                    let e = double(e.clone());
                    all = all.add(match op.as_str() {
                        "$eq" => e.eq(n),
                        "$ne" => Condition::any()
                            .add(e.clone().ne(n))
                            .add(e.is_null())
                            .into(),
                        "$gt" => e.gt(n),
                        "$gte" => e.gte(n),
                        "$lt" => e.lt(n),
                        "$lte" => e.lte(n),
                        _ => {
                            return Err(invalid(
                                format!("{here}.{op}"),
                                "unknown_operator",
                                format!("{op} is not a comparison"),
                            ));
                        }
                    });
                }
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_labelled_and_found_again() {
        let edges = [0.0, 1000.0, 10000.0];
        let labels: Vec<String> = (0..=3).map(|i| bin_label(&edges, i)).collect();
        assert_eq!(labels, ["< 0", "0–1000", "1000–10000", "≥ 10000"]);
        for (i, l) in labels.iter().enumerate() {
            assert_eq!(bin_index(&edges, l), i);
        }
    }

    #[test]
    fn rows_sort_with_nulls_last_both_ways() {
        let mut rows = vec![vec![json!(2)], vec![Value::Null], vec![json!(10)]];
        sort_rows(&mut rows, &[(0, true)], &|_, v| v.clone());
        assert_eq!(
            rows,
            vec![vec![json!(10)], vec![json!(2)], vec![Value::Null]]
        );
        sort_rows(&mut rows, &[(0, false)], &|_, v| v.clone());
        assert_eq!(
            rows,
            vec![vec![json!(2)], vec![json!(10)], vec![Value::Null]]
        );
    }
}
