//! The filter language: a JSON document parsed into a typed tree, checked against a
//! [`Catalog`], compiled to a sea-query [`Condition`] or evaluated in memory.
//!
//! Shape (a fixed public contract):
//! - `{"field": value}` is equality (`null` means IS NULL); several keys are ANDed.
//! - `{"field": {"$op": value}}` with `$eq $ne $gt $gte $lt $lte $in $nin $contains
//!   $icontains $startswith $null`; several operators in one object are ANDed.
//! - `{"$and": [..]}`, `{"$or": [..]}`, `{"$not": {..}}`.
//! - `{"customer.industry": ..}` reads through relation fields (up to 3 hops).
//! - Date and date-time values may be relative: `$now`, `$now-3d`, `$today+1w` (m h d w).
//!
//! Null semantics are two-valued and consistent between SQL and memory: a positive test
//! (`$eq`, `$gt`, `$contains`, ...) never matches a NULL field, and every negated test
//! (`$ne`, `$nin`, `$not`) matches exactly the rows the positive one does not, NULLs
//! included. So `{"status": {"$ne": "lost"}}` also returns records with no status; it
//! compiles to `(status <> ? OR status IS NULL)`.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use sea_orm::sea_query::extension::sqlite::SqliteExpr as _;
use sea_orm::sea_query::{
    Alias, BinOper, Condition, Expr, ExprTrait, Func, LikeExpr, Query, SelectStatement, Value,
};
use serde_json::{Map, Value as Json};

use crate::value::{self, Scalar};
use crate::{Catalog, Dialect, ValueKind};

/// Deepest allowed nesting of objects (the top-level object is depth 1).
pub const MAX_DEPTH: usize = 12;
/// Most tests a single filter may hold.
pub const MAX_CONDITIONS: usize = 500;
/// Longest allowed string value, in characters.
pub const MAX_STRING_CHARS: usize = 10_000;
/// Most values in one `$in` / `$nin` list.
pub const MAX_IN_VALUES: usize = 1000;
/// Most relation hops in a field path.
pub const MAX_HOPS: usize = 3;

/// A filter (or sort, or cursor) that cannot be used, with where in the input it went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct FilterError {
    /// Location in the input, e.g. `$or[1].score.$gte` (empty for the whole filter).
    pub path: String,
    /// Stable machine-readable code, e.g. `unknown_field`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl FilterError {
    /// Builds an error at `path`.
    pub fn new(path: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        FilterError {
            path: path.into(),
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A parsed, checked filter over one form.
#[derive(Clone, Debug)]
pub struct Filter {
    root: Node,
}

#[derive(Clone, Debug)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Leaf(Leaf),
}

/// One test on one column; `negated` flips it with NULLs on the negated side.
#[derive(Clone, Debug)]
struct Leaf {
    /// Field name (first path segment), for in-memory records and errors.
    name: String,
    table: String,
    column: String,
    kind: ValueKind,
    op: Op,
    negated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextOp {
    Contains,
    IContains,
    StartsWith,
}

#[derive(Clone, Debug)]
enum Op {
    Cmp(CmpOp, Scalar),
    In(Vec<Scalar>),
    Text(TextOp, String),
    IsNull,
    /// A JSON string array holds at least one of these.
    ArrayHas(Vec<String>),
    /// The relation column points at a row of `table` that satisfies `inner`.
    Through {
        table: String,
        inner: Box<Node>,
    },
}

impl Filter {
    /// Parses `json` as a filter over `form`, resolving relative dates against `now`.
    pub fn parse(
        form: &str,
        json: &Json,
        catalog: &dyn Catalog,
        now: DateTime<Utc>,
    ) -> Result<Filter, FilterError> {
        Self::parse_with(form, json, catalog, now, MAX_IN_VALUES)
    }

    /// Parses a filter the system wrote (a role's scope, with the ids of a large team):
    /// `$in` lists may hold up to `max_in` values.
    pub fn parse_trusted(
        form: &str,
        json: &Json,
        catalog: &dyn Catalog,
        now: DateTime<Utc>,
        max_in: usize,
    ) -> Result<Filter, FilterError> {
        Self::parse_with(form, json, catalog, now, max_in.max(MAX_IN_VALUES))
    }

    fn parse_with(
        form: &str,
        json: &Json,
        catalog: &dyn Catalog,
        now: DateTime<Utc>,
        max_in: usize,
    ) -> Result<Filter, FilterError> {
        let table = catalog.table(form).ok_or_else(|| {
            FilterError::new("", "unknown_form", format!("unknown form `{form}`"))
        })?;
        let mut parser = Parser {
            catalog,
            now,
            conditions: 0,
            max_in,
        };
        let root = parser.object(form, &table, json, "", 1)?;
        Ok(Filter { root })
    }

    /// A filter on `table` that matches no record (`id IS NULL`: ids never are).
    pub fn nothing(table: &str) -> Filter {
        Filter {
            root: Node::Leaf(Leaf {
                name: "id".to_owned(),
                table: table.to_owned(),
                column: "id".to_owned(),
                kind: ValueKind::Text,
                op: Op::IsNull,
                negated: false,
            }),
        }
    }

    /// A filter that matches every record.
    pub fn all() -> Filter {
        Filter {
            root: Node::All(Vec::new()),
        }
    }

    /// Compiles to a condition whose columns are qualified with their table names.
    pub fn to_condition(&self, dialect: Dialect) -> Condition {
        compile(&self.root, false, dialect)
    }

    /// Evaluates against a record keyed by field name; relation paths are not supported.
    pub fn matches(&self, record: &Map<String, Json>) -> Result<bool, FilterError> {
        // Checked up front so the answer never depends on short-circuiting.
        if let Some(name) = first_path(&self.root) {
            return Err(FilterError::new(
                name,
                "unsupported_in_memory",
                "relation paths cannot be evaluated in memory",
            ));
        }
        eval(&self.root, record)
    }

    /// Both filters must match.
    pub fn and(self, other: Filter) -> Filter {
        Filter {
            root: Node::All(vec![self.root, other.root]),
        }
    }
}

struct Parser<'a> {
    catalog: &'a dyn Catalog,
    now: DateTime<Utc>,
    conditions: usize,
    max_in: usize,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn invalid(path: &str, message: impl Into<String>) -> FilterError {
    FilterError::new(path, "invalid_value", message)
}

impl Parser<'_> {
    fn object(
        &mut self,
        form: &str,
        table: &str,
        json: &Json,
        path: &str,
        depth: usize,
    ) -> Result<Node, FilterError> {
        if depth > MAX_DEPTH {
            return Err(FilterError::new(
                path,
                "too_deep",
                format!("filter is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let Json::Object(obj) = json else {
            return Err(FilterError::new(
                path,
                "not_an_object",
                "expected a filter object",
            ));
        };
        let mut nodes = Vec::with_capacity(obj.len());
        for (key, val) in obj {
            let here = join(path, key);
            let node = match key.as_str() {
                "$and" | "$or" => {
                    let Json::Array(items) = val else {
                        return Err(invalid(&here, "expected an array of filter objects"));
                    };
                    if items.is_empty() {
                        return Err(invalid(&here, "expected at least one filter object"));
                    }
                    let children = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            self.object(form, table, item, &format!("{here}[{i}]"), depth + 1)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if key == "$and" {
                        Node::All(children)
                    } else {
                        Node::Any(children)
                    }
                }
                "$not" => Node::Not(Box::new(self.object(form, table, val, &here, depth + 1)?)),
                op if op.starts_with('$') => {
                    return Err(FilterError::new(
                        here,
                        "unknown_operator",
                        format!("unknown operator `{op}`"),
                    ));
                }
                _ => self.field(form, table, key, val, &here)?,
            };
            nodes.push(node);
        }
        Ok(single(nodes))
    }

    /// A `"field": value` or `"a.b.c": value` entry.
    fn field(
        &mut self,
        form: &str,
        table: &str,
        key: &str,
        val: &Json,
        path: &str,
    ) -> Result<Node, FilterError> {
        let segments: Vec<&str> = key.split('.').collect();
        if segments.len() > MAX_HOPS + 1 {
            return Err(FilterError::new(
                path,
                "invalid_path",
                format!("a field path may cross at most {MAX_HOPS} relations"),
            ));
        }
        // Walk the relations, remembering each hop so the tests can be wrapped inside-out.
        let mut hops: Vec<(String, crate::FieldInfo, String)> = Vec::new();
        let (mut form, mut table) = (form.to_owned(), table.to_owned());
        let (last, through) = segments.split_last().unwrap_or((&key, &[]));
        for seg in through {
            let info = self.lookup(&form, seg, path)?;
            let Some(target) = info.target.clone() else {
                return Err(FilterError::new(
                    path,
                    "invalid_path",
                    format!("`{seg}` is not a relation field"),
                ));
            };
            let target_table = self.catalog.table(&target).ok_or_else(|| {
                FilterError::new(path, "unknown_form", format!("unknown form `{target}`"))
            })?;
            hops.push((
                std::mem::replace(&mut table, target_table),
                info,
                target.clone(),
            ));
            form = target;
        }
        let info = self.lookup(&form, last, path)?;
        let name = segments.first().copied().unwrap_or(key).to_owned();
        let leaves = self.ops(&name, &table, &info.column, info.kind, val, path)?;
        let mut node = single(leaves.into_iter().map(Node::Leaf).collect());
        for (outer_table, relation, target) in hops.into_iter().rev() {
            let inner_table = std::mem::replace(&mut table, outer_table.clone());
            if let Some(scope) = self.catalog.row_scope(&target) {
                node = Node::All(vec![node, scope.root]);
            }
            node = Node::Leaf(Leaf {
                name: name.clone(),
                table: outer_table,
                column: relation.column,
                kind: relation.kind,
                op: Op::Through {
                    table: inner_table,
                    inner: Box::new(node),
                },
                negated: false,
            });
        }
        Ok(node)
    }

    fn lookup(&self, form: &str, name: &str, path: &str) -> Result<crate::FieldInfo, FilterError> {
        self.catalog.field(form, name).ok_or_else(|| {
            FilterError::new(path, "unknown_field", format!("unknown field `{name}`"))
        })
    }

    /// The tests for one field: a bare value (equality) or an object of operators.
    fn ops(
        &mut self,
        name: &str,
        table: &str,
        column: &str,
        kind: ValueKind,
        val: &Json,
        path: &str,
    ) -> Result<Vec<Leaf>, FilterError> {
        let pairs: Vec<(&str, &Json, String)> = match val {
            Json::Object(obj) => {
                if obj.is_empty() {
                    return Err(invalid(path, "expected at least one operator"));
                }
                obj.iter()
                    .map(|(op, arg)| (op.as_str(), arg, join(path, op)))
                    .collect()
            }
            _ => vec![("$eq", val, path.to_owned())],
        };
        let mut leaves = Vec::with_capacity(pairs.len());
        for (op, arg, here) in pairs {
            self.conditions += 1;
            if self.conditions > MAX_CONDITIONS {
                return Err(FilterError::new(
                    here,
                    "too_many_conditions",
                    format!("a filter may hold at most {MAX_CONDITIONS} conditions"),
                ));
            }
            let (op, negated) = self.op(kind, op, arg, &here)?;
            leaves.push(Leaf {
                name: name.to_owned(),
                table: table.to_owned(),
                column: column.to_owned(),
                kind,
                op,
                negated,
            });
        }
        Ok(leaves)
    }

    fn op(
        &self,
        kind: ValueKind,
        op: &str,
        arg: &Json,
        path: &str,
    ) -> Result<(Op, bool), FilterError> {
        let unsupported = || {
            FilterError::new(
                path,
                "unsupported_operator",
                format!("`{op}` cannot be used on a {} field", kind_name(kind)),
            )
        };
        match op {
            "$eq" | "$ne" => {
                let negated = op == "$ne";
                if arg.is_null() {
                    return Ok((Op::IsNull, negated));
                }
                match kind {
                    ValueKind::Json => Err(unsupported()),
                    ValueKind::TextArray => {
                        Ok((Op::ArrayHas(vec![self.string(arg, path)?]), negated))
                    }
                    _ => Ok((Op::Cmp(CmpOp::Eq, self.scalar(kind, arg, path)?), negated)),
                }
            }
            "$gt" | "$gte" | "$lt" | "$lte" => {
                if matches!(
                    kind,
                    ValueKind::Boolean | ValueKind::TextArray | ValueKind::Json
                ) {
                    return Err(unsupported());
                }
                let cmp = match op {
                    "$gt" => CmpOp::Gt,
                    "$gte" => CmpOp::Gte,
                    "$lt" => CmpOp::Lt,
                    _ => CmpOp::Lte,
                };
                Ok((Op::Cmp(cmp, self.non_null(kind, arg, path)?), false))
            }
            "$in" | "$nin" => {
                let negated = op == "$nin";
                let Json::Array(items) = arg else {
                    return Err(invalid(path, "expected an array of values"));
                };
                if items.is_empty() || items.len() > self.max_in {
                    return Err(invalid(
                        path,
                        format!("expected between 1 and {} values", self.max_in),
                    ));
                }
                let at = |i: usize| format!("{path}[{i}]");
                match kind {
                    ValueKind::Json => Err(unsupported()),
                    ValueKind::TextArray => {
                        let strings = items
                            .iter()
                            .enumerate()
                            .map(|(i, v)| self.string(v, &at(i)))
                            .collect::<Result<_, _>>()?;
                        Ok((Op::ArrayHas(strings), negated))
                    }
                    _ => {
                        let scalars = items
                            .iter()
                            .enumerate()
                            .map(|(i, v)| self.non_null(kind, v, &at(i)))
                            .collect::<Result<_, _>>()?;
                        Ok((Op::In(scalars), negated))
                    }
                }
            }
            "$contains" | "$icontains" | "$startswith" => {
                let text_op = match op {
                    "$contains" => TextOp::Contains,
                    "$icontains" => TextOp::IContains,
                    _ => TextOp::StartsWith,
                };
                match kind {
                    ValueKind::Text => Ok((Op::Text(text_op, self.string(arg, path)?), false)),
                    ValueKind::TextArray if text_op == TextOp::Contains => {
                        Ok((Op::ArrayHas(vec![self.string(arg, path)?]), false))
                    }
                    _ => Err(unsupported()),
                }
            }
            "$null" => match arg {
                Json::Bool(b) => Ok((Op::IsNull, !b)),
                _ => Err(invalid(path, "expected true or false")),
            },
            _ => Err(FilterError::new(
                path,
                "unknown_operator",
                format!("unknown operator `{op}`"),
            )),
        }
    }

    fn string(&self, arg: &Json, path: &str) -> Result<String, FilterError> {
        match arg {
            Json::String(s) => {
                check_len(s, path)?;
                Ok(s.clone())
            }
            _ => Err(invalid(path, "expected a string")),
        }
    }

    fn non_null(&self, kind: ValueKind, arg: &Json, path: &str) -> Result<Scalar, FilterError> {
        if arg.is_null() {
            return Err(invalid(path, "null is not allowed here; use $null"));
        }
        self.scalar(kind, arg, path)
    }

    /// Type-checks a value through the shared codec, resolving relative dates first.
    fn scalar(&self, kind: ValueKind, arg: &Json, path: &str) -> Result<Scalar, FilterError> {
        if let Json::String(s) = arg {
            check_len(s, path)?;
            if matches!(kind, ValueKind::Date | ValueKind::DateTime) && s.starts_with('$') {
                let dt = relative_date(s, self.now).ok_or_else(|| {
                    invalid(
                        path,
                        format!("`{s}` is not a relative date such as $now-3d or $today"),
                    )
                })?;
                return Ok(if kind == ValueKind::Date {
                    Scalar::Date(dt.date_naive())
                } else {
                    Scalar::DateTime(dt)
                });
            }
        }
        value::parse(kind, arg).map_err(|e| invalid(path, e.to_string()))
    }
}

fn check_len(s: &str, path: &str) -> Result<(), FilterError> {
    // Cheap byte check first; chars are never more than bytes.
    if s.len() > MAX_STRING_CHARS && s.chars().count() > MAX_STRING_CHARS {
        return Err(FilterError::new(
            path,
            "too_long",
            format!("strings may hold at most {MAX_STRING_CHARS} characters"),
        ));
    }
    Ok(())
}

fn single(mut nodes: Vec<Node>) -> Node {
    if nodes.len() == 1 {
        nodes.pop().unwrap_or(Node::All(Vec::new()))
    } else {
        Node::All(nodes)
    }
}

fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Text => "text",
        ValueKind::Integer => "integer",
        ValueKind::Float => "number",
        ValueKind::Boolean => "boolean",
        ValueKind::Date => "date",
        ValueKind::DateTime => "date-time",
        ValueKind::TextArray => "multi-select",
        ValueKind::Json => "JSON",
    }
}

/// Resolves `$now[±N unit]` or `$today[±N unit]` (units m h d w); `$today` is midnight UTC.
pub fn relative_date(s: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (base, rest) = if let Some(rest) = s.strip_prefix("$now") {
        (now, rest)
    } else if let Some(rest) = s.strip_prefix("$today") {
        (now.date_naive().and_time(NaiveTime::MIN).and_utc(), rest)
    } else {
        return None;
    };
    if rest.is_empty() {
        return Some(base);
    }
    let mut chars = rest.chars();
    let sign = match chars.next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    let unit = chars.next_back()?;
    let digits = chars.as_str();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: i64 = digits.parse().ok()?;
    let amount = amount.checked_mul(sign)?;
    let delta = match unit {
        'm' => Duration::try_minutes(amount)?,
        'h' => Duration::try_hours(amount)?,
        'd' => Duration::try_days(amount)?,
        'w' => Duration::try_weeks(amount)?,
        _ => return None,
    };
    base.checked_add_signed(delta)
}

// ---------------------------------------------------------------------------------------
// Compilation to SQL

fn compile(node: &Node, neg: bool, dialect: Dialect) -> Condition {
    match node {
        // De Morgan: negation is pushed down to the leaves so each leaf decides about NULLs.
        Node::All(children) | Node::Any(children) => {
            let conjunctive = matches!(node, Node::All(_)) != neg;
            let mut cond = if conjunctive {
                Condition::all()
            } else {
                Condition::any()
            };
            for child in children {
                cond = cond.add(compile(child, neg, dialect));
            }
            cond
        }
        Node::Not(inner) => compile(inner, !neg, dialect),
        Node::Leaf(leaf) => compile_leaf(leaf, neg != leaf.negated, dialect),
    }
}

fn column(table: &str, column: &str) -> Expr {
    Expr::col((Alias::new(table), Alias::new(column)))
}

fn compile_leaf(leaf: &Leaf, neg: bool, dialect: Dialect) -> Condition {
    let col = || column(&leaf.table, &leaf.column);
    if let Op::IsNull = leaf.op {
        let e = if neg {
            col().is_not_null()
        } else {
            col().is_null()
        };
        return Condition::all().add(e);
    }
    // Every positive test is NULL exactly when the column is NULL, so this is its complement.
    let positive = positive_expr(leaf, dialect);
    if neg {
        Condition::any().add(positive.not()).add(col().is_null())
    } else {
        Condition::all().add(positive)
    }
}

fn positive_expr(leaf: &Leaf, dialect: Dialect) -> Expr {
    let col = column(&leaf.table, &leaf.column);
    let bind = |s: &Scalar| -> Value { s.to_sql(leaf.kind, dialect) };
    match &leaf.op {
        Op::Cmp(op, s) => {
            let v = bind(s);
            match op {
                CmpOp::Eq => col.eq(v),
                CmpOp::Gt => col.gt(v),
                CmpOp::Gte => col.gte(v),
                CmpOp::Lt => col.lt(v),
                CmpOp::Lte => col.lte(v),
            }
        }
        Op::In(list) => col.is_in(list.iter().map(bind)),
        Op::Text(TextOp::Contains, s) => {
            // SQLite's LIKE ignores ASCII case, so substring search uses position functions.
            let func = match dialect {
                Dialect::Sqlite => "instr",
                Dialect::Postgres => "strpos",
            };
            Expr::from(Func::cust(func).arg(col).arg(s.clone())).gt(0)
        }
        Op::Text(TextOp::IContains, s) => {
            let pattern = format!("%{}%", escape_like(s));
            Expr::from(Func::lower(col)).binary(
                BinOper::Like,
                Expr::from(Func::lower(Expr::val(pattern)))
                    .binary(BinOper::Escape, Expr::Constant('\\'.into())),
            )
        }
        Op::Text(TextOp::StartsWith, s) => match dialect {
            // GLOB is case-sensitive on SQLite, like LIKE on PostgreSQL.
            Dialect::Sqlite => col.glob(format!("{}*", escape_glob(s))),
            Dialect::Postgres => {
                col.like(LikeExpr::new(format!("{}%", escape_like(s))).escape('\\'))
            }
        },
        Op::ArrayHas(items) => match dialect {
            Dialect::Sqlite => {
                let element = column("je", "value");
                let test = if let [one] = items.as_slice() {
                    element.eq(one.clone())
                } else {
                    element.is_in(items.iter().cloned())
                };
                let sub: SelectStatement = Query::select()
                    .expr(Expr::cust("1"))
                    .from_function(Func::cust("json_each").arg(col), Alias::new("je"))
                    .and_where(test)
                    .to_owned();
                Expr::exists(sub)
            }
            Dialect::Postgres => {
                let mut any = Condition::any();
                for item in items {
                    let needle = Value::Json(Some(Box::new(Json::Array(vec![Json::String(
                        item.clone(),
                    )]))));
                    // Called by path: the trait's `contains` would shadow `str::contains`.
                    any = any.add(sea_orm::sea_query::extension::postgres::PgExpr::contains(
                        col.clone(),
                        Expr::val(needle).cast_as(Alias::new("jsonb")),
                    ));
                }
                any.into()
            }
        },
        Op::Through { table, inner } => {
            let sub = Query::select()
                .column((Alias::new(table), Alias::new("id")))
                .from(Alias::new(table))
                .cond_where(compile(inner, false, dialect))
                .to_owned();
            col.in_subquery(sub)
        }
        // Handled by the caller; kept total so the match needs no panic.
        Op::IsNull => col.is_null(),
    }
}

/// Escapes LIKE wildcards for use with `ESCAPE '\'`.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes GLOB wildcards by wrapping them in character classes.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// In-memory evaluation

fn first_path(node: &Node) -> Option<&str> {
    match node {
        Node::All(children) | Node::Any(children) => children.iter().find_map(first_path),
        Node::Not(inner) => first_path(inner),
        Node::Leaf(leaf) => match leaf.op {
            Op::Through { .. } => Some(&leaf.name),
            _ => None,
        },
    }
}

fn eval(node: &Node, record: &Map<String, Json>) -> Result<bool, FilterError> {
    match node {
        Node::All(children) => {
            for child in children {
                if !eval(child, record)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Node::Any(children) => {
            for child in children {
                if eval(child, record)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Node::Not(inner) => Ok(!eval(inner, record)?),
        Node::Leaf(leaf) => Ok(eval_leaf(leaf, record)? != leaf.negated),
    }
}

/// The positive test's result; a NULL field fails every test but IS NULL, as in SQL.
fn eval_leaf(leaf: &Leaf, record: &Map<String, Json>) -> Result<bool, FilterError> {
    let raw = record.get(&leaf.name).unwrap_or(&Json::Null);
    if let Op::IsNull = leaf.op {
        return Ok(raw.is_null());
    }
    let got = record_scalar(leaf, raw)?;
    if got == Scalar::Null {
        return Ok(false);
    }
    Ok(match &leaf.op {
        Op::Cmp(op, want) => match got.compare(want) {
            Some(ord) => match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Gte => ord != Ordering::Less,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Lte => ord != Ordering::Greater,
            },
            None => false,
        },
        Op::In(list) => list
            .iter()
            .any(|want| got.compare(want) == Some(Ordering::Equal)),
        Op::Text(op, needle) => {
            let Scalar::Text(hay) = &got else {
                return Ok(false);
            };
            match op {
                TextOp::Contains => hay.contains(needle.as_str()),
                TextOp::IContains => hay.to_lowercase().contains(&needle.to_lowercase()),
                TextOp::StartsWith => hay.starts_with(needle.as_str()),
            }
        }
        Op::ArrayHas(items) => match &got {
            Scalar::Json(Json::Array(values)) => values
                .iter()
                .any(|v| v.as_str().is_some_and(|s| items.iter().any(|i| i == s))),
            _ => false,
        },
        Op::IsNull | Op::Through { .. } => false,
    })
}

/// Reads a record value, tolerating the shapes a store may hand back (JSON text, 0/1).
fn record_scalar(leaf: &Leaf, raw: &Json) -> Result<Scalar, FilterError> {
    let lenient = match (leaf.kind, raw) {
        (ValueKind::TextArray, Json::String(s)) => serde_json::from_str(s).ok(),
        (ValueKind::Boolean, Json::Number(n)) => match n.as_i64() {
            Some(0) => Some(Json::Bool(false)),
            Some(1) => Some(Json::Bool(true)),
            _ => None,
        },
        _ => None,
    };
    value::parse(leaf.kind, lenient.as_ref().unwrap_or(raw)).map_err(|e| {
        FilterError::new(
            leaf.name.clone(),
            "invalid_record_value",
            format!("record value does not fit the field: {e}"),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
