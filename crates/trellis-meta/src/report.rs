//! Report and dashboard definitions and their checks against the forms they read.
//!
//! A report groups the records of one form by dimensions and aggregates measures over each
//! group; a funnel counts records that reached each stage; RFM scores customers from their
//! orders. The SQL is built elsewhere (`trellis-reports`); here each part is checked so
//! that a definition that is saved can always be compiled.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use chrono::Datelike;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::check::schema_errors;
use crate::error::MetaError;
use crate::form::{Field, FieldType, Form, Label};

/// The JSON Schema of a report definition, as shipped in `schemas/`.
pub const REPORT_SCHEMA: &str = include_str!("../../../schemas/report.schema.json");
/// The JSON Schema of a dashboard definition, as shipped in `schemas/`.
pub const DASHBOARD_SCHEMA: &str = include_str!("../../../schemas/dashboard.schema.json");

/// Most groups a report may return (its `limit` may not be larger).
pub const MAX_GROUPS: u64 = 10_000;
/// Most relation hops in a dimension or measure path.
pub const MAX_HOPS: usize = 3;
/// Most widgets on one dashboard.
pub const MAX_WIDGETS: usize = 24;

/// What a report computes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// Measures per group of dimension values (with pivots, time series, comparisons).
    #[default]
    Grouped,
    /// Records that reached each stage of an ordered select field, from their history.
    Funnel,
    /// Recency, frequency and monetary scores of customers from their orders.
    Rfm,
}

/// A report definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Machine name.
    pub name: String,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
    /// What it shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// The form whose records it reads.
    pub form: String,
    /// What it computes.
    #[serde(default, skip_serializing_if = "is_grouped")]
    pub kind: ReportKind,
    /// Which records count (the filter language; values may be `{"$param": name}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// Values supplied at run time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    /// What the records are grouped by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<Dimension>,
    /// What is computed per group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measures: Vec<Measure>,
    /// Output order: column names, `-` for descending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<OneOrMany>,
    /// Most groups returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Which groups are kept, by their measures: `{"revenue": {"$gte": 1000}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub having: Option<Value>,
    /// The dimension spread over columns (rows × columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pivot: Option<String>,
    /// Fill the periods of the bucketed dimension that have no records.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fill: bool,
    /// Each measure this period against earlier ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<Compare>,
    /// Funnel settings (kind `funnel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funnel: Option<Funnel>,
    /// RFM settings (kind `rfm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfm: Option<Rfm>,
}

fn is_grouped(k: &ReportKind) -> bool {
    *k == ReportKind::Grouped
}

/// One name or a list of names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names, in order.
    pub fn items(&self) -> Vec<&str> {
        match self {
            Self::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// The type of a run-time parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// A string.
    Text,
    /// Any number.
    Number,
    /// A whole number.
    Integer,
    /// A calendar date, or a relative one such as `$today-30d`.
    Date,
    /// An instant, or a relative one such as `$now-1h`.
    Datetime,
    /// True or false.
    Boolean,
    /// A user id, or `$me`.
    User,
}

/// A value supplied at run time, used in filters as `{"$param": name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Name used in filters.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
    /// A run must supply it (else a condition that uses it is left out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Used when a run supplies none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

/// A calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// A day.
    Day,
    /// A week, from Monday.
    Week,
    /// A month.
    Month,
    /// A quarter.
    Quarter,
    /// A year.
    Year,
}

impl Bucket {
    /// The fixed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Quarter => "quarter",
            Self::Year => "year",
        }
    }
}

/// What records are grouped by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// A field, or a path through relations (`customer.industry`).
    pub field: String,
    /// Output column name (default: the field path).
    #[serde(rename = "as", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
    /// Date and date-time fields: group by period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Bucket>,
    /// Date-time fields: the time zone periods are counted in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Numbers: ascending edges of the bins (`[0, 1000, 10000]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bins: Option<Vec<f64>>,
    /// Numbers: bins of equal width from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_width: Option<f64>,
}

impl Dimension {
    /// The output column name.
    pub fn column(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.field)
    }
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureFn {
    /// Records (or records with a value in `field`).
    Count,
    /// Distinct values of `field`.
    CountDistinct,
    /// Sum of `field` (times `weight`).
    Sum,
    /// Average of `field` (weighted by `weight`).
    Avg,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Arithmetic of other measures (`expr`).
    Expr,
}

impl MeasureFn {
    /// The fixed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::CountDistinct => "count_distinct",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::Expr => "expr",
        }
    }
}

/// What is computed per group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    /// The function.
    #[serde(rename = "fn")]
    pub func: MeasureFn,
    /// The field it aggregates (a path through relations allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `sum` and `avg`: a numeric field each value is multiplied by (a weighted sum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<String>,
    /// A factor applied to the result (`0.01` for a weight in percent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// `sum`, `avg`, `min`, `max` of a date or date-time `field`: take the time from this
    /// earlier date to `field` instead (a sales cycle, a resolution time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The unit of a `since` duration (default days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<TimeUnit>,
    /// Only records that match count toward this measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// `expr`: arithmetic of earlier measures, `won / count * 100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// Output column name (default `count`, `sum_amount`, …).
    #[serde(rename = "as", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
}

impl Measure {
    /// The output column name.
    pub fn column(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match &self.field {
            Some(f) => format!("{}_{}", self.func.as_str(), f.replace('.', "_")),
            None => self.func.as_str().to_owned(),
        }
    }
}

/// The unit of a duration between two dates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Days.
    #[default]
    Days,
    /// Hours.
    Hours,
    /// Minutes.
    Minutes,
}

impl TimeUnit {
    /// Seconds in one unit.
    pub fn seconds(self) -> u32 {
        match self {
            Self::Days => 86_400,
            Self::Hours => 3_600,
            Self::Minutes => 60,
        }
    }
}

/// Which earlier periods a comparison shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Against {
    /// The period before (last month).
    Previous,
    /// The same period a year earlier.
    LastYear,
}

/// Measures of the current period against earlier ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// The date or date-time field that places a record in a period.
    pub field: String,
    /// The period.
    pub period: Bucket,
    /// The time zone periods are counted in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// A day inside the current period (default today; `$today-7d`, `{"$param": …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Value>,
    /// The earlier periods shown.
    #[serde(default = "both")]
    pub with: Vec<Against>,
}

fn both() -> Vec<Against> {
    vec![Against::Previous, Against::LastYear]
}

/// Funnel settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Funnel {
    /// The select field whose states are the stages.
    pub field: String,
    /// The stages in order (default: the field's options in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
}

/// What an RFM report returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RfmOutput {
    /// One row per segment: customers, average recency, frequency and monetary.
    #[default]
    Segments,
    /// One row per customer with its scores and segment.
    Customers,
}

/// A named segment: score ranges (1–5, inclusive) a customer must fall in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Machine name.
    pub name: String,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
    /// Recency score range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<[u8; 2]>,
    /// Frequency score range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f: Option<[u8; 2]>,
    /// Monetary score range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<[u8; 2]>,
}

/// RFM settings: the report's form holds the customers, `orders` their orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfm {
    /// The form of the orders.
    pub orders: String,
    /// The relation field of an order that points at its customer.
    pub link: String,
    /// The order's date or date-time.
    pub date: String,
    /// The order's amount.
    pub amount: String,
    /// Which orders count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// The day recency is counted to (default today).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<Value>,
    /// Segments, first match wins (default: high_value, loyal, potential, at_risk,
    /// hibernating, others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
    /// Segments or customers.
    #[serde(default)]
    pub output: RfmOutput,
}

impl Rfm {
    /// The segments in force: the defined ones, or the default set.
    pub fn segments(&self) -> Vec<Segment> {
        if !self.segments.is_empty() {
            return self.segments.clone();
        }
        let seg = |name: &str, en: &str, zh: &str, r, f, m| Segment {
            name: name.to_owned(),
            label: [
                ("en".to_owned(), en.to_owned()),
                ("zh".to_owned(), zh.to_owned()),
            ]
            .into(),
            r,
            f,
            m,
        };
        vec![
            seg(
                "high_value",
                "High value",
                "高价值客户",
                Some([4, 5]),
                Some([4, 5]),
                Some([4, 5]),
            ),
            seg(
                "loyal",
                "Loyal",
                "忠诚客户",
                Some([3, 5]),
                Some([4, 5]),
                None,
            ),
            seg(
                "potential",
                "Potential",
                "潜力客户",
                Some([4, 5]),
                Some([1, 3]),
                None,
            ),
            seg(
                "at_risk",
                "At risk",
                "流失风险客户",
                Some([1, 2]),
                Some([3, 5]),
                None,
            ),
            seg(
                "hibernating",
                "Hibernating",
                "沉睡客户",
                Some([1, 2]),
                Some([1, 2]),
                None,
            ),
            seg("others", "Others", "一般客户", None, None, None),
        ]
    }
}

/// A chart type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chart {
    /// Bars per group.
    Bar,
    /// A line over periods.
    Line,
    /// Slices of a whole.
    Pie,
    /// Stages narrowing down.
    Funnel,
    /// The rows as they are.
    Table,
    /// One number, with its comparison.
    Kpi,
}

/// A report shown on a dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Widget {
    /// The report.
    pub report: String,
    /// How it is drawn.
    pub chart: Chart,
    /// Title per language (default: the report's label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Label>,
    /// Parameter values fixed for this widget (the dashboard's own override none of them).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// Width in twelfths of the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u8>,
}

/// A dashboard: widgets and the parameters every widget receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// Machine name.
    pub name: String,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// Dashboard-wide parameters (a period, an owner), passed to every widget whose
    /// report declares a parameter of that name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    /// The widgets, in reading order.
    pub widgets: Vec<Widget>,
}

/// What a report path ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text, select, e-mail, relation ids and the like.
    Text,
    /// A whole number.
    Integer,
    /// A number.
    Number,
    /// True or false.
    Boolean,
    /// A calendar date.
    Date,
    /// An instant.
    Datetime,
    /// Lists, lines, files, JSON: not groupable.
    Other,
}

impl Kind {
    /// Numbers of either kind.
    pub fn numeric(self) -> bool {
        matches!(self, Self::Integer | Self::Number)
    }

    /// Dates and instants.
    pub fn temporal(self) -> bool {
        matches!(self, Self::Date | Self::Datetime)
    }

    /// The name used in result columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Other => "json",
        }
    }
}

fn kind_of(f: &Field) -> Kind {
    match f.storage_type() {
        FieldType::Integer => Kind::Integer,
        FieldType::Decimal | FieldType::Currency => Kind::Number,
        FieldType::Boolean => Kind::Boolean,
        FieldType::Date => Kind::Date,
        FieldType::Datetime => Kind::Datetime,
        FieldType::Multiselect | FieldType::Subtable | FieldType::Attachment | FieldType::Json => {
            Kind::Other
        }
        _ => Kind::Text,
    }
}

/// Where a path through relations ends: the field (None for a system column) and its kind.
pub fn resolve(
    form_of: &dyn Fn(&str) -> Option<Form>,
    form: &str,
    path: &str,
) -> Result<(Option<Field>, Kind), String> {
    let segs: Vec<&str> = path.split('.').collect();
    if segs.len() > MAX_HOPS + 1 {
        return Err(format!("a path may cross at most {MAX_HOPS} relations"));
    }
    let mut current = form.to_owned();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let def = form_of(&current).ok_or_else(|| format!("no form named {current:?}"))?;
        let sys = match *seg {
            "id" | "created_by" | "owner" => Some(Kind::Text),
            "version" => Some(Kind::Integer),
            "created_at" | "updated_at" => Some(Kind::Datetime),
            _ => None,
        };
        if let Some(k) = sys {
            if !last {
                return Err(format!("{seg:?} is not a relation"));
            }
            return Ok((None, k));
        }
        let f = def
            .fields
            .iter()
            .find(|f| f.name == *seg)
            .ok_or_else(|| format!("the form {current:?} has no field {seg:?}"))?;
        if last {
            return Ok((Some(f.clone()), kind_of(f)));
        }
        match (&f.kind, &f.target) {
            (FieldType::Relation, Some(t)) => current = t.clone(),
            _ => return Err(format!("{seg:?} is not a relation")),
        }
    }
    Err("an empty path".to_owned())
}

fn join(prefix: &str, p: &str) -> String {
    if prefix.is_empty() {
        p.to_owned()
    } else {
        format!("{prefix}.{p}")
    }
}

/// Parsed arithmetic of measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Arith {
    /// A number.
    Num(f64),
    /// An earlier measure, by output name.
    Ref(String),
    /// Negation.
    Neg(Box<Arith>),
    /// `+ - * /` of two terms.
    Bin(char, Box<Arith>, Box<Arith>),
}

impl Arith {
    /// Parse `won / count * 100`: numbers, measure names, `+ - * /`, parentheses.
    pub fn parse(src: &str) -> Result<Arith, String> {
        let toks = tokens(src)?;
        let mut p = ArithParser { toks, at: 0 };
        let e = p.sum(0)?;
        if p.at != p.toks.len() {
            return Err(format!("unexpected {:?}", p.toks[p.at]));
        }
        Ok(e)
    }

    /// The measure names it uses.
    pub fn refs(&self, out: &mut Vec<String>) {
        match self {
            Self::Num(_) => {}
            Self::Ref(r) => out.push(r.clone()),
            Self::Neg(a) => a.refs(out),
            Self::Bin(_, a, b) => {
                a.refs(out);
                b.refs(out);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Op(char),
}

fn tokens(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let cs: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if "+-*/()".contains(c) {
            out.push(Tok::Op(c));
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                i += 1;
            }
            let s: String = cs[start..i].iter().collect();
            out.push(Tok::Num(
                s.parse().map_err(|_| format!("{s:?} is not a number"))?,
            ));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            out.push(Tok::Name(cs[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
        if out.len() > 200 {
            return Err("the expression is too long".to_owned());
        }
    }
    Ok(out)
}

struct ArithParser {
    toks: Vec<Tok>,
    at: usize,
}

impl ArithParser {
    fn sum(&mut self, depth: usize) -> Result<Arith, String> {
        if depth > 16 {
            return Err("the expression nests too deep".to_owned());
        }
        let mut left = self.product(depth)?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.toks.get(self.at).cloned() {
            self.at += 1;
            let right = self.product(depth)?;
            left = Arith::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn product(&mut self, depth: usize) -> Result<Arith, String> {
        let mut left = self.unary(depth)?;
        while let Some(Tok::Op(op @ ('*' | '/'))) = self.toks.get(self.at).cloned() {
            self.at += 1;
            let right = self.unary(depth)?;
            left = Arith::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Arith, String> {
        match self.toks.get(self.at).cloned() {
            Some(Tok::Op('-')) => {
                self.at += 1;
                Ok(Arith::Neg(Box::new(self.unary(depth)?)))
            }
            Some(Tok::Op('(')) => {
                self.at += 1;
                let e = self.sum(depth + 1)?;
                if self.toks.get(self.at) != Some(&Tok::Op(')')) {
                    return Err("a `(` is not closed".to_owned());
                }
                self.at += 1;
                Ok(e)
            }
            Some(Tok::Num(n)) => {
                self.at += 1;
                Ok(Arith::Num(n))
            }
            Some(Tok::Name(n)) => {
                self.at += 1;
                Ok(Arith::Ref(n))
            }
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("the expression ends too early".to_owned()),
        }
    }
}

fn check_tz(tz: Option<&str>, at: &str, errs: &mut Vec<MetaError>) {
    if let Some(tz) = tz
        && tz.parse::<chrono_tz::Tz>().is_err()
    {
        errs.push(MetaError::new(
            at,
            "unknown_time_zone",
            format!("{tz:?} is not an IANA time zone such as Asia/Shanghai"),
        ));
    }
}

fn check_params(params: &[Param], at: &str, errs: &mut Vec<MetaError>) {
    let mut seen = HashSet::new();
    for (i, p) in params.iter().enumerate() {
        let here = join(at, &format!("params[{i}]"));
        if !seen.insert(p.name.as_str()) {
            errs.push(MetaError::new(
                format!("{here}.name"),
                "duplicate_name",
                format!("the parameter {:?} is declared twice", p.name),
            ));
        }
        if let Some(d) = &p.default
            && let Err(e) = param_value(p, d)
        {
            errs.push(MetaError::new(
                format!("{here}.default"),
                "invalid_param",
                e,
            ));
        }
    }
}

/// Check a supplied parameter value against its type; relative dates stay as written.
pub fn param_value(p: &Param, v: &Value) -> Result<Value, String> {
    let bad = || format!("{:?} must be {}", p.name, p.kind_name());
    match (p.kind, v) {
        (_, Value::Null) => Ok(Value::Null),
        (ParamType::Text | ParamType::User, Value::String(s)) if s.chars().count() <= 1000 => {
            Ok(v.clone())
        }
        (ParamType::Number, Value::Number(_)) => Ok(v.clone()),
        (ParamType::Number, Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Value::from)
            .ok_or_else(bad),
        (ParamType::Integer, Value::Number(n)) if n.is_i64() => Ok(v.clone()),
        (ParamType::Integer, Value::String(s)) => {
            s.trim().parse::<i64>().map(Value::from).map_err(|_| bad())
        }
        (ParamType::Boolean, Value::Bool(_)) => Ok(v.clone()),
        (ParamType::Boolean, Value::String(s)) => match s.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        (ParamType::Date, Value::String(s)) => {
            if relative(s) || plain_date(s) {
                Ok(v.clone())
            } else {
                Err(bad())
            }
        }
        (ParamType::Datetime, Value::String(s)) => {
            let instant = chrono::DateTime::parse_from_rfc3339(s)
                .is_ok_and(|t| (1..=9999).contains(&t.year()));
            if relative(s) || plain_date(s) || instant {
                Ok(v.clone())
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

/// `YYYY-MM-DD`, exactly, in years 1 to 9999 (what the filter language takes).
fn plain_date(s: &str) -> bool {
    s.len() == 10
        && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .is_ok_and(|d| (1..=9999).contains(&d.year()))
}

/// `$now`, `$today`, `$today-30d`, `$now+2h` (units m, h, d, w).
fn relative(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("$now").or_else(|| s.strip_prefix("$today")) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(body) = rest.strip_prefix('+').or_else(|| rest.strip_prefix('-')) else {
        return false;
    };
    let (digits, unit) = body.split_at(body.len().saturating_sub(1));
    !digits.is_empty()
        && digits.len() <= 6
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "m" | "h" | "d" | "w")
}

impl Param {
    fn kind_name(&self) -> &'static str {
        match self.kind {
            ParamType::Text => "a text",
            ParamType::Number => "a number",
            ParamType::Integer => "a whole number",
            ParamType::Date => "a date (YYYY-MM-DD or $today-30d)",
            ParamType::Datetime => "a date-time (RFC 3339 or $now-1h)",
            ParamType::Boolean => "true or false",
            ParamType::User => "a user id",
        }
    }
}

/// The values a run gives for `params` (of the report or dashboard `owner`), checked:
/// unknown names refused, defaults filled, required ones present, each of its type, and a
/// `user` parameter's `$me` made `me`. Errors are placed at `params.<name>`.
pub fn bind_run_params(
    params: &[Param],
    given: &Map<String, Value>,
    me: &str,
    owner: &str,
) -> Result<Map<String, Value>, Vec<MetaError>> {
    let mut errs = Vec::new();
    for k in given.keys() {
        if !params.iter().any(|p| &p.name == k) {
            errs.push(MetaError::new(
                format!("params.{k}"),
                "unknown_param",
                format!("{owner} has no parameter {k:?}"),
            ));
        }
    }
    let mut out = Map::new();
    for p in params {
        let value = given
            .get(&p.name)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
            .or(p.default.as_ref());
        let Some(v) = value else {
            if p.required {
                errs.push(MetaError::new(
                    format!("params.{}", p.name),
                    "required",
                    format!("the parameter {} is required", p.name),
                ));
            }
            continue;
        };
        match param_value(p, v) {
            Ok(mut v) => {
                if p.kind == ParamType::User && v.as_str() == Some("$me") {
                    v = Value::String(me.to_owned());
                }
                out.insert(p.name.clone(), v);
            }
            Err(e) => errs.push(MetaError::new(
                format!("params.{}", p.name),
                "invalid_param",
                e,
            )),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// `{"$param": name}` placeholders in a filter, each with its path.
pub fn param_refs<'a>(v: &'a Value, at: &str, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::Object(m) => {
            if m.len() == 1
                && let Some(Value::String(n)) = m.get("$param")
            {
                out.push((at.to_owned(), n.as_str()));
                return;
            }
            for (k, x) in m {
                param_refs(x, &join(at, k), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                param_refs(x, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Put parameter values into a filter. A condition whose parameter has no value is left
/// out (an optional "from" date that was not given filters nothing); an object or list
/// emptied that way goes too.
pub fn bind_params(v: &Value, values: &Map<String, Value>) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.len() == 1
                && let Some(Value::String(n)) = m.get("$param")
            {
                return values.get(n).filter(|x| !x.is_null()).cloned();
            }
            let mut out = Map::new();
            for (k, x) in m {
                if let Some(y) = bind_params(x, values) {
                    out.insert(k.clone(), y);
                }
            }
            // `{}` as a whole filter matches everything; as an operator object it would be
            // an error, so a field whose every test was dropped is dropped.
            if out.is_empty() && !m.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            }
        }
        Value::Array(a) => {
            let out: Vec<Value> = a.iter().filter_map(|x| bind_params(x, values)).collect();
            if out.is_empty() && !a.is_empty() {
                None
            } else {
                Some(Value::Array(out))
            }
        }
        _ => Some(v.clone()),
    }
}

/// A value of each parameter's type, to check filters before any run supplies one.
pub fn sample_params(params: &[Param]) -> Map<String, Value> {
    params
        .iter()
        .map(|p| {
            let v = match p.kind {
                ParamType::Text | ParamType::User => Value::from("x"),
                ParamType::Number | ParamType::Integer => Value::from(0),
                ParamType::Date => Value::from("2000-01-01"),
                ParamType::Datetime => Value::from("2000-01-01T00:00:00Z"),
                ParamType::Boolean => Value::Bool(false),
            };
            (p.name.clone(), v)
        })
        .collect()
}

struct Checker<'a> {
    form_of: &'a dyn Fn(&str) -> Option<Form>,
    errs: Vec<MetaError>,
}

impl Checker<'_> {
    fn path(&mut self, form: &str, path: &str, at: &str) -> Option<(Option<Field>, Kind)> {
        match resolve(self.form_of, form, path) {
            Ok(r) => Some(r),
            Err(e) => {
                self.errs.push(MetaError::new(at, "unknown_field", e));
                None
            }
        }
    }

    fn params_used(&mut self, params: &[Param], v: Option<&Value>, at: &str) {
        let mut refs = Vec::new();
        if let Some(v) = v {
            param_refs(v, at, &mut refs);
        }
        for (p, name) in refs {
            if !params.iter().any(|x| x.name == name) {
                self.errs.push(MetaError::new(
                    p,
                    "unknown_param",
                    format!("no parameter named {name:?} is declared"),
                ));
            }
        }
    }

    fn dimension(&mut self, form: &str, d: &Dimension, at: &str) {
        let Some((_, kind)) = self.path(form, &d.field, &join(at, "field")) else {
            return;
        };
        if kind == Kind::Other {
            self.errs.push(MetaError::new(
                join(at, "field"),
                "not_groupable",
                format!(
                    "{:?} holds lists or documents and cannot be grouped",
                    d.field
                ),
            ));
        }
        if d.bucket.is_some() && !kind.temporal() {
            self.errs.push(MetaError::new(
                join(at, "bucket"),
                "not_a_date",
                format!(
                    "{:?} is not a date or date-time, so it has no periods",
                    d.field
                ),
            ));
        }
        if d.tz.is_some() && (d.bucket.is_none() || kind != Kind::Datetime) {
            self.errs.push(MetaError::new(
                join(at, "tz"),
                "tz_without_bucket",
                "a time zone applies to a bucketed date-time field",
            ));
        }
        check_tz(d.tz.as_deref(), &join(at, "tz"), &mut self.errs);
        let binned = d.bins.is_some() || d.bin_width.is_some();
        if binned && !kind.numeric() {
            self.errs.push(MetaError::new(
                join(
                    at,
                    if d.bins.is_some() {
                        "bins"
                    } else {
                        "bin_width"
                    },
                ),
                "not_numeric",
                format!("{:?} is not a number, so it cannot be binned", d.field),
            ));
        }
        if d.bins.is_some() && d.bin_width.is_some() {
            self.errs.push(MetaError::new(
                join(at, "bins"),
                "conflict",
                "give either bins or bin_width",
            ));
        }
        if binned && d.bucket.is_some() {
            self.errs.push(MetaError::new(
                join(at, "bucket"),
                "conflict",
                "a dimension is either bucketed or binned",
            ));
        }
        if let Some(b) = &d.bins
            && (b.is_empty() || b.windows(2).any(|w| w[0] >= w[1]) || b.len() > 100)
        {
            self.errs.push(MetaError::new(
                join(at, "bins"),
                "invalid_bins",
                "bins are 1 to 100 strictly ascending edges",
            ));
        }
        if let Some(w) = d.bin_width
            && (!w.is_finite() || w <= 0.0)
        {
            self.errs.push(MetaError::new(
                join(at, "bin_width"),
                "invalid_bins",
                "a bin width is a positive number",
            ));
        }
    }

    /// Does the measure give a number (so arithmetic, having and scale apply)?
    fn numeric(&self, form: &str, m: &Measure) -> bool {
        match m.func {
            MeasureFn::Min | MeasureFn::Max => {
                m.since.is_some()
                    || m.field.as_deref().is_some_and(|f| {
                        resolve(self.form_of, form, f).is_ok_and(|(_, k)| k.numeric())
                    })
            }
            _ => true,
        }
    }

    fn measure(
        &mut self,
        form: &str,
        m: &Measure,
        earlier: &[String],
        numeric: &[String],
        at: &str,
    ) {
        if m.scale.is_some() && !self.numeric(form, m) {
            self.errs.push(MetaError::new(
                join(at, "scale"),
                "not_numeric",
                "only a number can be scaled",
            ));
        }
        if m.func == MeasureFn::Expr {
            match &m.expr {
                None => self.errs.push(MetaError::new(
                    join(at, "expr"),
                    "required",
                    "an expr measure needs an expression of earlier measures",
                )),
                Some(src) => match Arith::parse(src) {
                    Err(e) => self
                        .errs
                        .push(MetaError::new(join(at, "expr"), "invalid_expr", e)),
                    Ok(a) => {
                        let mut refs = Vec::new();
                        a.refs(&mut refs);
                        for r in refs {
                            if !earlier.contains(&r) {
                                self.errs.push(MetaError::new(
                                    join(at, "expr"),
                                    "unknown_measure",
                                    format!("no earlier measure is named {r:?}"),
                                ));
                            } else if !numeric.contains(&r) {
                                self.errs.push(MetaError::new(
                                    join(at, "expr"),
                                    "not_numeric",
                                    format!("{r:?} is not a number"),
                                ));
                            }
                        }
                    }
                },
            }
            if m.name.is_none() {
                self.errs.push(MetaError::new(
                    join(at, "as"),
                    "required",
                    "an expr measure needs a name (`as`)",
                ));
            }
            for (k, present) in [
                ("field", m.field.is_some()),
                ("weight", m.weight.is_some()),
                ("filter", m.filter.is_some()),
            ] {
                if present {
                    self.errs.push(MetaError::new(
                        join(at, k),
                        "not_allowed",
                        format!("an expr measure has no {k}"),
                    ));
                }
            }
            return;
        }
        if m.expr.is_some() {
            self.errs.push(MetaError::new(
                join(at, "expr"),
                "not_allowed",
                "only an expr measure has an expression",
            ));
        }
        let needs_field = !matches!(m.func, MeasureFn::Count);
        let kind = match &m.field {
            Some(f) => self.path(form, f, &join(at, "field")).map(|r| r.1),
            None if needs_field => {
                self.errs.push(MetaError::new(
                    join(at, "field"),
                    "required",
                    format!("{} needs a field", m.func.as_str()),
                ));
                None
            }
            None => None,
        };
        if let Some(since) = &m.since {
            let sk = self.path(form, since, &join(at, "since")).map(|r| r.1);
            if !matches!(
                m.func,
                MeasureFn::Sum | MeasureFn::Avg | MeasureFn::Min | MeasureFn::Max
            ) {
                self.errs.push(MetaError::new(
                    join(at, "since"),
                    "not_allowed",
                    "only sum, avg, min and max take a duration since a date",
                ));
            }
            for (p, k) in [("field", kind), ("since", sk)] {
                if k.is_some_and(|k| !k.temporal()) {
                    self.errs.push(MetaError::new(
                        join(at, p),
                        "not_a_date",
                        "a duration is taken between two dates or date-times",
                    ));
                }
            }
            if m.weight.is_some() {
                self.errs.push(MetaError::new(
                    join(at, "weight"),
                    "not_allowed",
                    "a duration takes no weight",
                ));
            }
            return;
        }
        if m.unit.is_some() {
            self.errs.push(MetaError::new(
                join(at, "unit"),
                "not_allowed",
                "a unit belongs to a duration (`since`)",
            ));
        }
        if let Some(k) = kind {
            let ok = match m.func {
                MeasureFn::Sum | MeasureFn::Avg => k.numeric(),
                MeasureFn::Min | MeasureFn::Max => k.numeric() || k.temporal() || k == Kind::Text,
                _ => k != Kind::Other,
            };
            if !ok {
                self.errs.push(MetaError::new(
                    join(at, "field"),
                    "not_numeric",
                    format!(
                        "{} cannot be taken over {:?}, a {} field",
                        m.func.as_str(),
                        m.field.as_deref().unwrap_or_default(),
                        k.as_str()
                    ),
                ));
            }
        }
        if let Some(w) = &m.weight {
            if !matches!(m.func, MeasureFn::Sum | MeasureFn::Avg) {
                self.errs.push(MetaError::new(
                    join(at, "weight"),
                    "not_allowed",
                    "only sum and avg take a weight",
                ));
            } else if let Some((_, k)) = self.path(form, w, &join(at, "weight"))
                && !k.numeric()
            {
                self.errs.push(MetaError::new(
                    join(at, "weight"),
                    "not_numeric",
                    format!("the weight {w:?} is not a number"),
                ));
            }
        }
        if let Some(s) = m.scale
            && !s.is_finite()
        {
            self.errs.push(MetaError::new(
                join(at, "scale"),
                "invalid",
                "a scale is a finite number",
            ));
        }
    }
}

/// The measures' output names, in order.
pub fn measure_names(r: &Report) -> Vec<String> {
    r.measures.iter().map(Measure::column).collect()
}

/// Check a report against its JSON Schema and the forms it reads; `form_of` finds a form.
/// Filters are checked by the caller, which knows the columns.
pub fn check_report_at(
    doc: &Value,
    form_of: &dyn Fn(&str) -> Option<Form>,
    prefix: &str,
) -> Result<Report, Vec<MetaError>> {
    static CELL: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    let errors = schema_errors(REPORT_SCHEMA, &CELL, doc, prefix);
    if !errors.is_empty() {
        return Err(errors);
    }
    let r: Report = serde_json::from_value(doc.clone())
        .map_err(|e| vec![MetaError::new(prefix, "schema", e.to_string())])?;
    let at = |p: &str| join(prefix, p);
    let Some(form) = form_of(&r.form) else {
        return Err(vec![MetaError::new(
            at("form"),
            "unknown_form",
            format!("no form named {:?}", r.form),
        )]);
    };
    let mut c = Checker {
        form_of,
        errs: Vec::new(),
    };
    check_params(&r.params, prefix, &mut c.errs);
    c.params_used(&r.params, r.filter.as_ref(), &at("filter"));
    let mut names: Vec<String> = Vec::new();
    for (i, d) in r.dimensions.iter().enumerate() {
        let here = at(&format!("dimensions[{i}]"));
        c.dimension(&r.form, d, &here);
        if names.iter().any(|n| n == d.column()) {
            c.errs.push(MetaError::new(
                format!("{here}.as"),
                "duplicate_name",
                format!("two columns are named {:?}; name one with `as`", d.column()),
            ));
        }
        names.push(d.column().to_owned());
    }
    let mut measures: Vec<String> = Vec::new();
    let mut numeric: Vec<String> = Vec::new();
    for (i, m) in r.measures.iter().enumerate() {
        let here = at(&format!("measures[{i}]"));
        c.measure(&r.form, m, &measures, &numeric, &here);
        if c.numeric(&r.form, m) {
            numeric.push(m.column());
        }
        c.params_used(&r.params, m.filter.as_ref(), &format!("{here}.filter"));
        let col = m.column();
        if names.contains(&col) || measures.contains(&col) {
            c.errs.push(MetaError::new(
                format!("{here}.as"),
                "duplicate_name",
                format!("two columns are named {col:?}; name one with `as`"),
            ));
        }
        measures.push(col);
    }
    if let Some(l) = r.limit
        && (l == 0 || l > MAX_GROUPS)
    {
        c.errs.push(MetaError::new(
            at("limit"),
            "too_many_groups",
            format!("a limit is 1 to {MAX_GROUPS} groups"),
        ));
    }
    let all: Vec<&String> = names.iter().chain(measures.iter()).collect();
    if let Some(s) = &r.sort {
        for k in s.items() {
            let n = k.strip_prefix('-').unwrap_or(k);
            if !all.iter().any(|x| *x == n) {
                c.errs.push(MetaError::new(
                    at("sort"),
                    "unknown_column",
                    format!("{n:?} is neither a dimension nor a measure of this report"),
                ));
            }
        }
    }
    if let Some(h) = &r.having {
        having_errors(h, &numeric, &at("having"), 1, &mut c.errs);
    }
    match r.kind {
        ReportKind::Grouped => grouped(&r, &form, &names, &mut c, &at),
        ReportKind::Funnel => funnel(&r, &form, &mut c, &at),
        ReportKind::Rfm => rfm(&r, &mut c, &at),
    }
    if c.errs.is_empty() {
        Ok(r)
    } else {
        Err(c.errs)
    }
}

fn grouped(
    r: &Report,
    _form: &Form,
    names: &[String],
    c: &mut Checker<'_>,
    at: &dyn Fn(&str) -> String,
) {
    if r.measures.is_empty() {
        c.errs.push(MetaError::new(
            at("measures"),
            "required",
            "a report needs at least one measure",
        ));
    }
    for (k, present) in [("funnel", r.funnel.is_some()), ("rfm", r.rfm.is_some())] {
        if present {
            c.errs.push(MetaError::new(
                at(k),
                "not_allowed",
                format!("{k} settings belong to a report of kind {k}"),
            ));
        }
    }
    if let Some(p) = &r.pivot {
        if !names.contains(p) {
            c.errs.push(MetaError::new(
                at("pivot"),
                "unknown_column",
                format!("{p:?} is not a dimension of this report"),
            ));
        } else if r.dimensions.len() < 2 {
            c.errs.push(MetaError::new(
                at("pivot"),
                "pivot_needs_rows",
                "a pivot spreads one dimension over columns and keeps another as rows",
            ));
        }
    }
    if r.fill && (r.having.is_some() || r.limit.is_some()) {
        c.errs.push(MetaError::new(
            at("fill"),
            "conflict",
            "filled periods are every period: a report that fills has no having and no limit",
        ));
    }
    let bucketed = r.dimensions.iter().filter(|d| d.bucket.is_some()).count();
    if r.fill && bucketed != 1 {
        c.errs.push(MetaError::new(
            at("fill"),
            "fill_needs_one_period",
            "filling empty periods needs exactly one bucketed dimension",
        ));
    }
    if let Some(cmp) = &r.compare {
        if let Some((_, k)) = c.path(&r.form, &cmp.field, &at("compare.field"))
            && !k.temporal()
        {
            c.errs.push(MetaError::new(
                at("compare.field"),
                "not_a_date",
                format!("{:?} is not a date or date-time", cmp.field),
            ));
        }
        check_tz(cmp.tz.as_deref(), &at("compare.tz"), &mut c.errs);
        c.params_used(&r.params, cmp.at.as_ref(), &at("compare.at"));
        if let Some(Value::String(s)) = &cmp.at
            && !(relative(s) || plain_date(s))
        {
            c.errs.push(MetaError::new(
                at("compare.at"),
                "invalid_date",
                "a day is YYYY-MM-DD or relative such as $today-7d",
            ));
        }
        if cmp.with.is_empty() {
            c.errs.push(MetaError::new(
                at("compare.with"),
                "required",
                "compare with previous, last_year or both",
            ));
        }
        if r.pivot.is_some() || r.fill {
            c.errs.push(MetaError::new(
                at("compare"),
                "conflict",
                "a comparison cannot be pivoted or filled",
            ));
        }
    }
}

fn funnel(r: &Report, form: &Form, c: &mut Checker<'_>, at: &dyn Fn(&str) -> String) {
    let Some(f) = &r.funnel else {
        c.errs.push(MetaError::new(
            at("funnel"),
            "required",
            "a funnel report needs funnel settings: {\"field\": a select field}",
        ));
        return;
    };
    for (k, present) in [
        ("dimensions", !r.dimensions.is_empty()),
        ("measures", !r.measures.is_empty()),
        ("rfm", r.rfm.is_some()),
        ("pivot", r.pivot.is_some()),
        ("compare", r.compare.is_some()),
        ("having", r.having.is_some()),
    ] {
        if present {
            c.errs.push(MetaError::new(
                at(k),
                "not_allowed",
                format!("a funnel has no {k}: its rows are the stages"),
            ));
        }
    }
    let Some(field) = form.fields.iter().find(|x| x.name == f.field) else {
        c.errs.push(MetaError::new(
            at("funnel.field"),
            "unknown_field",
            format!("the form {:?} has no field {:?}", form.name, f.field),
        ));
        return;
    };
    if field.kind != FieldType::Select {
        c.errs.push(MetaError::new(
            at("funnel.field"),
            "not_a_select",
            format!("{:?} is not a select field, so it has no stages", f.field),
        ));
        return;
    }
    let mut seen = HashSet::new();
    for (i, s) in f.stages.iter().enumerate() {
        if !field.options.iter().any(|o| &o.value == s) {
            c.errs.push(MetaError::new(
                at(&format!("funnel.stages[{i}]")),
                "unknown_option",
                format!("{s:?} is not an option of {:?}", f.field),
            ));
        }
        if !seen.insert(s) {
            c.errs.push(MetaError::new(
                at(&format!("funnel.stages[{i}]")),
                "duplicate_name",
                format!("the stage {s:?} is listed twice"),
            ));
        }
    }
}

fn rfm(r: &Report, c: &mut Checker<'_>, at: &dyn Fn(&str) -> String) {
    let Some(x) = &r.rfm else {
        c.errs.push(MetaError::new(
            at("rfm"),
            "required",
            "an RFM report needs rfm settings: orders, link, date, amount",
        ));
        return;
    };
    for (k, present) in [
        ("dimensions", !r.dimensions.is_empty()),
        ("measures", !r.measures.is_empty()),
        ("funnel", r.funnel.is_some()),
        ("pivot", r.pivot.is_some()),
        ("compare", r.compare.is_some()),
        ("having", r.having.is_some()),
    ] {
        if present {
            c.errs.push(MetaError::new(
                at(k),
                "not_allowed",
                format!("an RFM report has no {k}: its columns are fixed"),
            ));
        }
    }
    let Some(orders) = (c.form_of)(&x.orders) else {
        c.errs.push(MetaError::new(
            at("rfm.orders"),
            "unknown_form",
            format!("no form named {:?}", x.orders),
        ));
        return;
    };
    match orders.fields.iter().find(|f| f.name == x.link) {
        Some(f) if f.kind == FieldType::Relation && f.target.as_deref() == Some(&r.form) => {}
        _ => c.errs.push(MetaError::new(
            at("rfm.link"),
            "not_a_link",
            format!(
                "{:?} is not a relation field of {:?} pointing at {:?}",
                x.link, x.orders, r.form
            ),
        )),
    }
    if let Some((_, k)) = c.path(&x.orders, &x.date, &at("rfm.date"))
        && !k.temporal()
    {
        c.errs.push(MetaError::new(
            at("rfm.date"),
            "not_a_date",
            format!("{:?} is not a date or date-time", x.date),
        ));
    }
    if let Some((_, k)) = c.path(&x.orders, &x.amount, &at("rfm.amount"))
        && !k.numeric()
    {
        c.errs.push(MetaError::new(
            at("rfm.amount"),
            "not_numeric",
            format!("{:?} is not a number", x.amount),
        ));
    }
    c.params_used(&r.params, x.filter.as_ref(), &at("rfm.filter"));
    c.params_used(&r.params, x.as_of.as_ref(), &at("rfm.as_of"));
    let mut seen = HashSet::new();
    for (i, s) in x.segments.iter().enumerate() {
        let here = at(&format!("rfm.segments[{i}]"));
        if !seen.insert(s.name.as_str()) {
            c.errs.push(MetaError::new(
                format!("{here}.name"),
                "duplicate_name",
                format!("the segment {:?} is listed twice", s.name),
            ));
        }
        for (k, range) in [("r", s.r), ("f", s.f), ("m", s.m)] {
            if let Some([lo, hi]) = range
                && !(1 <= lo && lo <= hi && hi <= 5)
            {
                c.errs.push(MetaError::new(
                    format!("{here}.{k}"),
                    "invalid_range",
                    "a score range is [low, high] within 1 to 5",
                ));
            }
        }
    }
}

/// Check a filter on measures: `{"m": {"$gte": 10}}`, `$and`, `$or`, `$not`.
fn having_errors(
    v: &Value,
    measures: &[String],
    at: &str,
    depth: usize,
    errs: &mut Vec<MetaError>,
) {
    if depth > 8 {
        errs.push(MetaError::new(
            at,
            "too_deep",
            "the having filter nests too deep",
        ));
        return;
    }
    let Value::Object(m) = v else {
        errs.push(MetaError::new(
            at,
            "invalid",
            "a having filter is an object",
        ));
        return;
    };
    for (k, x) in m {
        let here = join(at, k);
        match k.as_str() {
            "$and" | "$or" => match x {
                Value::Array(a) if !a.is_empty() => {
                    for (i, y) in a.iter().enumerate() {
                        having_errors(y, measures, &format!("{here}[{i}]"), depth + 1, errs);
                    }
                }
                _ => errs.push(MetaError::new(
                    here,
                    "invalid",
                    "a non-empty list of filters",
                )),
            },
            "$not" => having_errors(x, measures, &here, depth + 1, errs),
            name if measures.iter().any(|n| n == name) => match x {
                Value::Number(_) | Value::Null => {}
                Value::Object(ops) => {
                    for (op, val) in ops {
                        let known =
                            matches!(op.as_str(), "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte");
                        if !known {
                            errs.push(MetaError::new(
                                join(&here, op),
                                "unknown_operator",
                                format!("{op:?} is not one of $eq $ne $gt $gte $lt $lte"),
                            ));
                        } else if !val.is_number() {
                            errs.push(MetaError::new(
                                join(&here, op),
                                "not_numeric",
                                "a measure is compared with a number",
                            ));
                        }
                    }
                }
                _ => errs.push(MetaError::new(
                    here,
                    "not_numeric",
                    "a measure is compared with a number",
                )),
            },
            name => errs.push(MetaError::new(
                here,
                "unknown_measure",
                format!("{name:?} is not a numeric measure of this report"),
            )),
        }
    }
}

/// Check a dashboard against its JSON Schema and the reports it shows.
pub fn check_dashboard_at(
    doc: &Value,
    report_of: &dyn Fn(&str) -> Option<Report>,
    prefix: &str,
) -> Result<Dashboard, Vec<MetaError>> {
    static CELL: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    let errors = schema_errors(DASHBOARD_SCHEMA, &CELL, doc, prefix);
    if !errors.is_empty() {
        return Err(errors);
    }
    let d: Dashboard = serde_json::from_value(doc.clone())
        .map_err(|e| vec![MetaError::new(prefix, "schema", e.to_string())])?;
    let mut errs = Vec::new();
    check_params(&d.params, prefix, &mut errs);
    if d.widgets.len() > MAX_WIDGETS {
        errs.push(MetaError::new(
            join(prefix, "widgets"),
            "too_many_widgets",
            format!("a dashboard holds at most {MAX_WIDGETS} widgets"),
        ));
    }
    for (i, w) in d.widgets.iter().enumerate() {
        let here = join(prefix, &format!("widgets[{i}]"));
        let Some(r) = report_of(&w.report) else {
            errs.push(MetaError::new(
                format!("{here}.report"),
                "unknown_report",
                format!("no report named {:?}", w.report),
            ));
            continue;
        };
        let fits = match w.chart {
            Chart::Funnel => r.kind == ReportKind::Funnel,
            Chart::Kpi => r.kind == ReportKind::Grouped && r.dimensions.is_empty(),
            Chart::Pie => r.kind != ReportKind::Grouped || r.dimensions.len() == 1,
            Chart::Line => r.dimensions.iter().any(|x| x.bucket.is_some()),
            Chart::Bar | Chart::Table => true,
        };
        if !fits {
            let why = match w.chart {
                Chart::Funnel => "a funnel chart shows a funnel report",
                Chart::Kpi => "a KPI shows a report without dimensions",
                Chart::Pie => "a pie shows a report with one dimension",
                _ => "a line shows a report with a bucketed date dimension",
            };
            errs.push(MetaError::new(
                format!("{here}.chart"),
                "chart_does_not_fit",
                format!("{why}; {:?} does not fit", w.report),
            ));
        }
        for (k, v) in &w.params {
            match r.params.iter().find(|p| &p.name == k) {
                None => errs.push(MetaError::new(
                    format!("{here}.params.{k}"),
                    "unknown_param",
                    format!("the report {:?} has no parameter {k:?}", w.report),
                )),
                Some(p) => {
                    if let Err(e) = param_value(p, v) {
                        errs.push(MetaError::new(
                            format!("{here}.params.{k}"),
                            "invalid_param",
                            e,
                        ));
                    }
                }
            }
        }
        if let Some(wd) = w.width
            && !(1..=12).contains(&wd)
        {
            errs.push(MetaError::new(
                format!("{here}.width"),
                "invalid",
                "a width is 1 to 12 twelfths",
            ));
        }
    }
    if errs.is_empty() { Ok(d) } else { Err(errs) }
}

#[cfg(test)]
mod tests;
