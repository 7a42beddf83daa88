use serde_json::json;

use super::*;
use crate::check::check_form_at;

fn forms(name: &str) -> Option<Form> {
    let doc = match name {
        "customer" => json!({"name": "customer", "label": {"en": "Customer"}, "fields": [
            {"name": "name", "type": "text"},
            {"name": "industry", "type": "select", "options": [{"value": "it"}, {"value": "retail"}]},
            {"name": "tags", "type": "multiselect", "options": [{"value": "a"}]}]}),
        "order" => json!({"name": "order", "label": {"en": "Order"}, "fields": [
            {"name": "customer", "type": "relation", "target": "customer"},
            {"name": "amount", "type": "currency"},
            {"name": "note", "type": "text"},
            {"name": "ordered_on", "type": "date"},
            {"name": "status", "type": "select", "options": [{"value": "new"}, {"value": "paid"}, {"value": "shipped"}]}]}),
        _ => return None,
    };
    check_form_at(&doc, &|_| true, "").ok()
}

fn check(doc: Value) -> Result<Report, Vec<(String, &'static str)>> {
    check_report_at(&doc, &forms, "")
        .map_err(|es| es.into_iter().map(|e| (e.path, e.code)).collect())
}

#[test]
fn a_grouped_report_with_paths_buckets_and_expressions_passes() {
    let r = check(json!({"name": "r", "form": "order",
        "dimensions": [{"field": "customer.industry"}, {"field": "created_at", "bucket": "month", "tz": "Asia/Shanghai"}],
        "measures": [{"fn": "count"}, {"fn": "sum", "field": "amount", "as": "revenue"},
                     {"fn": "expr", "expr": "revenue / count", "as": "aov"}],
        "sort": "-revenue", "limit": 50, "having": {"count": {"$gte": 2}}, "pivot": "created_at"}))
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(measure_names(&r), ["count", "revenue", "aov"]);
}

#[test]
fn each_bad_part_is_named() {
    let errs = check(json!({"name": "r", "form": "order",
        "dimensions": [{"field": "nope"}, {"field": "amount", "bucket": "month"}, {"field": "customer.tags"}],
        "measures": [{"fn": "sum", "field": "note"}, {"fn": "expr", "expr": "x / count", "as": "e"}],
        "sort": "-zzz", "having": {"q": 1}}))
    .err()
    .unwrap_or_default();
    for want in [
        ("dimensions[0].field", "unknown_field"),
        ("dimensions[1].bucket", "not_a_date"),
        ("dimensions[2].field", "not_groupable"),
        ("measures[0].field", "not_numeric"),
        ("measures[1].expr", "unknown_measure"),
        ("sort", "unknown_column"),
        ("having.q", "unknown_measure"),
    ] {
        assert!(
            errs.iter().any(|(p, c)| p == want.0 && *c == want.1),
            "{want:?} missing from {errs:?}"
        );
    }
}

#[test]
fn a_limit_beyond_the_cap_is_refused_by_the_schema() {
    let errs = check(
        json!({"name": "r", "form": "order", "measures": [{"fn": "count"}], "limit": 1_000_000}),
    )
    .err()
    .unwrap_or_default();
    assert_eq!(errs.first().map(|e| e.0.as_str()), Some("limit"));
}

#[test]
fn funnel_and_rfm_settings_are_checked() {
    assert!(
        check(
            json!({"name": "f", "form": "order", "kind": "funnel", "funnel": {"field": "status"}})
        )
        .is_ok()
    );
    let errs = check(json!({"name": "f", "form": "order", "kind": "funnel", "funnel": {"field": "status", "stages": ["new", "gone"]}}))
        .err()
        .unwrap_or_default();
    assert_eq!(
        errs,
        vec![("funnel.stages[1]".to_owned(), "unknown_option")]
    );
    assert!(
        check(json!({"name": "x", "form": "customer", "kind": "rfm",
        "rfm": {"orders": "order", "link": "customer", "date": "ordered_on", "amount": "amount"}}))
        .is_ok()
    );
    let errs = check(json!({"name": "x", "form": "customer", "kind": "rfm",
        "rfm": {"orders": "order", "link": "note", "date": "amount", "amount": "note"}}))
    .err()
    .unwrap_or_default();
    let paths: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(paths, ["rfm.link", "rfm.date", "rfm.amount"]);
}

#[test]
fn params_must_be_declared_and_typed() {
    let errs = check(
        json!({"name": "r", "form": "order", "measures": [{"fn": "count"}],
        "params": [{"name": "from", "type": "date", "default": "yesterday"}],
        "filter": {"ordered_on": {"$gte": {"$param": "from"}}, "owner": {"$param": "who"}}}),
    )
    .err()
    .unwrap_or_default();
    assert_eq!(
        errs,
        vec![
            ("params[0].default".to_owned(), "invalid_param"),
            ("filter.owner".to_owned(), "unknown_param")
        ]
    );
    let p = Param {
        name: "n".into(),
        kind: ParamType::Integer,
        label: Label::new(),
        required: false,
        default: None,
    };
    assert_eq!(param_value(&p, &json!("12")), Ok(json!(12)));
    assert!(param_value(&p, &json!("twelve")).is_err());
}

#[test]
fn arithmetic_parses_with_precedence() {
    let a = Arith::parse("a + b * (c - 2) / -d").unwrap_or_else(|e| panic!("{e}"));
    let mut refs = Vec::new();
    a.refs(&mut refs);
    assert_eq!(refs, ["a", "b", "c", "d"]);
    assert!(Arith::parse("a +").is_err());
    assert!(Arith::parse("(a").is_err());
    assert!(Arith::parse("a; drop").is_err());
}

#[test]
fn widgets_must_fit_their_reports() {
    let kpi = check(json!({"name": "k", "form": "order", "measures": [{"fn": "count"}]})).ok();
    let by = check(json!({"name": "b", "form": "order", "dimensions": [{"field": "status"}], "measures": [{"fn": "count"}]})).ok();
    let report_of = |n: &str| match n {
        "k" => kpi.clone(),
        "b" => by.clone(),
        _ => None,
    };
    let doc = json!({"name": "d", "widgets": [
        {"report": "k", "chart": "kpi"}, {"report": "b", "chart": "kpi"},
        {"report": "b", "chart": "funnel"}, {"report": "zz", "chart": "bar"}]});
    let errs: Vec<(String, &str)> = check_dashboard_at(&doc, &report_of, "")
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.path, e.code))
        .collect();
    assert_eq!(
        errs,
        vec![
            ("widgets[1].chart".to_owned(), "chart_does_not_fit"),
            ("widgets[2].chart".to_owned(), "chart_does_not_fit"),
            ("widgets[3].report".to_owned(), "unknown_report")
        ]
    );
}

#[test]
fn params_bind_and_missing_ones_drop_their_condition() {
    let f = json!({"status": "won", "closed_on": {"$gte": {"$param": "from"}, "$lt": {"$param": "to"}},
                   "$or": [{"owner": {"$param": "owner"}}]});
    let mut vals = Map::new();
    vals.insert("from".into(), json!("2026-01-01"));
    assert_eq!(
        bind_params(&f, &vals),
        Some(json!({"status": "won", "closed_on": {"$gte": "2026-01-01"}}))
    );
    assert_eq!(
        bind_params(&json!({"owner": {"$param": "o"}}), &Map::new()),
        None
    );
}

#[test]
fn arithmetic_having_and_scale_take_numbers_only() {
    let errs = check(
        json!({"name": "r", "form": "order", "dimensions": [{"field": "status"}],
        "measures": [{"fn": "max", "field": "ordered_on", "as": "last"}, {"fn": "count"},
                     {"fn": "expr", "expr": "last / count", "as": "x"},
                     {"fn": "min", "field": "note", "scale": 2.0, "as": "y"}],
        "having": {"last": {"$gt": 1}}}),
    )
    .err()
    .unwrap_or_default();
    for want in [
        ("measures[2].expr", "not_numeric"),
        ("measures[3].scale", "not_numeric"),
        ("having.last", "unknown_measure"),
    ] {
        assert!(
            errs.iter().any(|(p, c)| p == want.0 && *c == want.1),
            "{want:?} missing from {errs:?}"
        );
    }
    // A duration is a number.
    assert!(
        check(json!({"name": "r", "form": "order", "measures": [
        {"fn": "max", "field": "ordered_on", "since": "created_at", "as": "d"},
        {"fn": "expr", "expr": "d * 24", "as": "h"}]}))
        .is_ok()
    );
}

#[test]
fn filled_reports_take_no_limit_and_dates_are_strict() {
    let errs = check(
        json!({"name": "r", "form": "order", "measures": [{"fn": "count"}],
        "dimensions": [{"field": "ordered_on", "bucket": "month"}], "fill": true, "limit": 10}),
    )
    .err()
    .unwrap_or_default();
    assert_eq!(errs, vec![("fill".to_owned(), "conflict")]);
    let p = Param {
        name: "d".into(),
        kind: ParamType::Date,
        label: Label::new(),
        required: false,
        default: None,
    };
    for ok in ["2026-01-05", "$today", "$today-30d", "$now+2h"] {
        assert!(param_value(&p, &json!(ok)).is_ok(), "{ok}");
    }
    for bad in ["2026-1-5", "$junk", "$today-", "+262142-12-31", "$today-3y"] {
        assert!(param_value(&p, &json!(bad)).is_err(), "{bad}");
    }
}
