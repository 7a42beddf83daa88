//! Reports and dashboards: every kind checked against an answer computed here from the
//! same generated data (NULLs, time-zone edges, an empty result), drill-down filters
//! checked against the record API, a rep's permission-limited view, bad input, files.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestApp, errors, urlencode};

const SHANGHAI: i64 = 8 * 3600;

/// One generated sale.
#[derive(Clone, Debug)]
struct Sale {
    cust: Option<usize>,
    amount: Option<f64>,
    qty: i64,
    status: &'static str,
    at: DateTime<Utc>,
    mine: bool,
}

struct Data {
    regions: Vec<Option<&'static str>>,
    tiers: Vec<i64>,
    cust_ids: Vec<String>,
    sales: Vec<Sale>,
}

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

/// Customers and sales: a fifth of the customers without a region, some sales without a
/// customer or an amount, instants on both sides of midnight in Shanghai.
async fn load(app: &TestApp, rep: Option<&str>) -> Data {
    forms(app).await;
    records(app, rep).await
}

async fn forms(app: &TestApp) {
    app.form(json!({"name": "cust", "label": {"en": "Customer"}, "fields": [
        {"name": "name", "type": "text"},
        {"name": "region", "type": "select", "options": [{"value": "east"}, {"value": "west"}, {"value": "north"}]},
        {"name": "tier", "type": "integer"}]}))
    .await;
    app.form(json!({"name": "sale", "label": {"en": "Sale"}, "fields": [
        {"name": "cust", "type": "relation", "target": "cust"},
        {"name": "amount", "type": "decimal"},
        {"name": "qty", "type": "integer"},
        {"name": "status", "type": "select", "options": [{"value": "new"}, {"value": "paid"}, {"value": "shipped"}, {"value": "cancelled"}]},
        {"name": "at", "type": "datetime"},
        {"name": "note", "type": "text"}]}))
    .await;
}

async fn records(app: &TestApp, rep: Option<&str>) -> Data {
    let mut seed = 7u64;
    let all_regions = ["east", "west", "north"];
    let mut regions = Vec::new();
    let mut tiers = Vec::new();
    let mut custs = Vec::new();
    for i in 0..30 {
        let region = if i % 5 == 4 {
            None
        } else {
            Some(all_regions[(lcg(&mut seed) % 3) as usize])
        };
        let tier = (lcg(&mut seed) % 4) as i64;
        regions.push(region);
        tiers.push(tier);
        custs.push(json!({"name": format!("C{i}"), "region": region, "tier": tier}));
    }
    let (st, body) = app
        .post("/api/v1/data/cust/batch", json!({"records": custs}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let cust_ids: Vec<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let base = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let statuses = ["new", "paid", "shipped", "cancelled"];
    let mut sales = Vec::new();
    let mut recs = Vec::new();
    for i in 0..400 {
        let day = (lcg(&mut seed) % 120) as i64;
        // Every fourth sale at 15:59:59 or 16:00:00 UTC: the last second of a day in
        // Shanghai, or the first of the next.
        let secs = match i % 4 {
            0 => 16 * 3600 - 1,
            1 => 16 * 3600,
            _ => (lcg(&mut seed) % 86_400) as i64,
        };
        let s = Sale {
            cust: (i % 11 != 10).then(|| (lcg(&mut seed) % 30) as usize),
            amount: (i % 9 != 8).then(|| (lcg(&mut seed) % 100_000) as f64 / 100.0),
            qty: (lcg(&mut seed) % 20) as i64,
            status: statuses[(lcg(&mut seed) % 4) as usize],
            at: base + Duration::days(day) + Duration::seconds(secs),
            mine: rep.is_some() && i % 3 == 0,
        };
        let mut r = json!({"cust": s.cust.map(|c| cust_ids[c].clone()), "amount": s.amount,
            "qty": s.qty, "status": s.status, "at": s.at.to_rfc3339(), "note": "=1+1"});
        if s.mine {
            r["owner"] = json!(rep);
        }
        recs.push(r);
        sales.push(s);
    }
    for chunk in recs.chunks(200) {
        let (st, body) = app
            .post("/api/v1/data/sale/batch", json!({"records": chunk}))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }
    Data {
        regions,
        tiers,
        cust_ids,
        sales,
    }
}

fn month_in_shanghai(t: DateTime<Utc>) -> String {
    (t + Duration::seconds(SHANGHAI))
        .format("%Y-%m")
        .to_string()
}

/// How many records of `form` the filter lists, through the record API (admin).
async fn total(app: &TestApp, form: &str, filter: &Value) -> Value {
    let (st, page) = app
        .list(
            form,
            &[
                ("filter", filter.to_string()),
                ("count", "true".into()),
                ("limit", "1".into()),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page["total"].clone()
}

async fn create_report(app: &TestApp, def: Value) {
    let (st, body) = app.post("/api/v1/reports", def).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
}

async fn run(app: &TestApp, name: &str, body: Value) -> Value {
    let (st, out) = app.post(&format!("/api/v1/reports/{name}/run"), body).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    out
}

fn close(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * (1.0 + x.abs().max(y.abs())),
        _ => a == b,
    }
}

fn assert_rows(got: &[Value], want: &BTreeMap<String, Vec<Value>>, keys: usize) {
    let got: BTreeMap<String, Vec<Value>> = got
        .iter()
        .map(|r| {
            let r = r.as_array().unwrap();
            (
                Value::Array(r[..keys].to_vec()).to_string(),
                r[keys..].to_vec(),
            )
        })
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "groups differ"
    );
    for (k, w) in want {
        let g = &got[k];
        assert!(
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| close(a, b)),
            "group {k}: got {g:?}, want {w:?}"
        );
    }
}

#[tokio::test]
async fn grouped_reports_match_an_independent_computation() {
    let app = TestApp::spawn().await;
    let data = load(&app, None).await;
    create_report(
        &app,
        json!({"name": "by_month_region", "form": "sale",
        "filter": {"status": {"$ne": "cancelled"}},
        "dimensions": [{"field": "at", "bucket": "month", "tz": "Asia/Shanghai", "as": "month"},
                       {"field": "cust.region", "as": "region"}],
        "measures": [{"fn": "count"}, {"fn": "sum", "field": "amount", "as": "revenue"},
                     {"fn": "avg", "field": "amount"}, {"fn": "count_distinct", "field": "cust"},
                     {"fn": "max", "field": "qty"}, {"fn": "sum", "field": "qty"},
                     {"fn": "count", "filter": {"status": "paid"}, "as": "paid"},
                     {"fn": "expr", "expr": "revenue / count", "as": "per_sale"}]}),
    )
    .await;
    let out = run(&app, "by_month_region", json!({"drill": true})).await;
    let names: Vec<&str> = out["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "month",
            "region",
            "count",
            "revenue",
            "avg_amount",
            "count_distinct_cust",
            "max_qty",
            "sum_qty",
            "paid",
            "per_sale"
        ]
    );
    // The same, computed here.
    type Acc = (i64, f64, f64, i64, HashSet<usize>, i64, i64, i64);
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    for s in data.sales.iter().filter(|s| s.status != "cancelled") {
        let region = s.cust.and_then(|c| data.regions[c]);
        let key = json!([month_in_shanghai(s.at), region]).to_string();
        let g = groups
            .entry(key)
            .or_insert((0, 0.0, 0.0, 0, HashSet::new(), i64::MIN, 0, 0));
        g.0 += 1;
        if let Some(a) = s.amount {
            g.1 += a;
            g.2 += a;
            g.3 += 1;
        }
        if let Some(c) = s.cust {
            g.4.insert(c);
        }
        g.5 = g.5.max(s.qty);
        g.6 += s.qty;
        g.7 += i64::from(s.status == "paid");
    }
    let want: BTreeMap<String, Vec<Value>> = groups
        .into_iter()
        .map(|(k, g)| {
            let avg = if g.3 == 0 {
                Value::Null
            } else {
                json!(g.2 / g.3 as f64)
            };
            (
                k,
                vec![
                    json!(g.0),
                    json!(g.1),
                    avg,
                    json!(g.4.len()),
                    json!(g.5),
                    json!(g.6),
                    json!(g.7),
                    json!(g.1 / g.0 as f64),
                ],
            )
        })
        .collect();
    assert_rows(out["rows"].as_array().unwrap(), &want, 2);
    // Each row's drill-down filter lists exactly its records; with the measure's own
    // filter, exactly the cell's.
    let rows = out["rows"].as_array().unwrap();
    let paid_filter = out["columns"][8]["filter"].clone();
    assert_eq!(paid_filter, json!({"status": "paid"}));
    for (i, row) in rows.iter().enumerate().step_by(3) {
        let drill = out["drill"][i].clone();
        assert_eq!(
            total(&app, "sale", &drill).await,
            row[2],
            "row {row} drill {drill}"
        );
        let cell = json!({"$and": [drill, paid_filter]});
        assert_eq!(
            total(&app, "sale", &cell).await,
            row[8],
            "paid cell of {row}"
        );
    }
    // A run's filter narrows further; a report without dimensions on no records is one
    // row of zeros; with dimensions, no rows.
    let out = run(
        &app,
        "by_month_region",
        json!({"filter": {"qty": {"$gt": 1000}}}),
    )
    .await;
    assert_eq!(out["rows"], json!([]));
    create_report(&app, json!({"name": "kpi", "form": "sale",
        "measures": [{"fn": "count"}, {"fn": "sum", "field": "amount"}, {"fn": "avg", "field": "amount"}]}))
    .await;
    let out = run(&app, "kpi", json!({"filter": {"qty": {"$gt": 1000}}})).await;
    assert_eq!(out["rows"], json!([[0, 0.0, null]]));
    // A weighted sum (the forecast's Σ amount × probability %), and the weighted average.
    create_report(
        &app,
        json!({"name": "weighted", "form": "sale",
        "measures": [{"fn": "sum", "field": "amount", "weight": "qty", "scale": 0.01},
                     {"fn": "avg", "field": "amount", "weight": "qty", "as": "wavg"}]}),
    )
    .await;
    let out = run(&app, "weighted", json!({})).await;
    let with_amount = data
        .sales
        .iter()
        .filter_map(|s| s.amount.map(|a| (a, s.qty as f64)));
    let (num, den) = with_amount.fold((0.0, 0.0), |(n, d), (a, q)| (n + a * q, d + q));
    assert!(close(&out["rows"][0][0], &json!(num * 0.01)), "{out} {num}");
    assert!(close(&out["rows"][0][1], &json!(num / den)), "{out}");
    // Durations between two date-times, in hours.
    create_report(&app, json!({"name": "lag", "form": "sale", "filter": {"status": {"$ne": "cancelled"}},
        "measures": [{"fn": "avg", "field": "created_at", "since": "at", "unit": "hours"},
                     {"fn": "min", "field": "created_at", "since": "at", "unit": "hours", "as": "least"}]}))
    .await;
    let (_, page) = app.list("sale", &[("limit", "1000".into())]).await;
    let hours: Vec<f64> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] != "cancelled")
        .map(|r| {
            let t = |k: &str| DateTime::parse_from_rfc3339(r[k].as_str().unwrap()).unwrap();
            (t("created_at") - t("at")).num_microseconds().unwrap() as f64 / 3.6e9
        })
        .collect();
    let out = run(&app, "lag", json!({})).await;
    let avg = hours.iter().sum::<f64>() / hours.len() as f64;
    let least = hours.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        (out["rows"][0][0].as_f64().unwrap() - avg).abs() < 1e-3,
        "{out} {avg}"
    );
    assert!(
        (out["rows"][0][1].as_f64().unwrap() - least).abs() < 1e-3,
        "{out} {least}"
    );
    // Bins, with the NULL amounts in a group of their own.
    create_report(
        &app,
        json!({"name": "bins", "form": "sale",
        "dimensions": [{"field": "amount", "bins": [100, 500]}], "measures": [{"fn": "count"}]}),
    )
    .await;
    let out = run(&app, "bins", json!({})).await;
    let mut want: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in &data.sales {
        let label = match s.amount {
            None => Value::Null,
            Some(a) if a < 100.0 => json!("< 100"),
            Some(a) if a < 500.0 => json!("100–500"),
            Some(_) => json!("≥ 500"),
        };
        let e = want
            .entry(json!([label]).to_string())
            .or_insert(vec![json!(0)]);
        e[0] = json!(e[0].as_i64().unwrap() + 1);
    }
    assert_rows(out["rows"].as_array().unwrap(), &want, 1);
    // Sort, having and limit: the three biggest regions by revenue with over 10 sales.
    create_report(&app, json!({"name": "top", "form": "sale",
        "dimensions": [{"field": "cust.region"}], "measures": [{"fn": "count"}, {"fn": "sum", "field": "amount", "as": "revenue"}],
        "having": {"count": {"$gt": 10}}, "sort": "-revenue", "limit": 2}))
    .await;
    let out = run(&app, "top", json!({})).await;
    let rows = out["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0][2].as_f64() >= rows[1][2].as_f64());
    assert_eq!(
        out["truncated"], true,
        "four region groups (with null) exist"
    );
}

#[tokio::test]
async fn pivots_filled_periods_and_comparisons() {
    let app = TestApp::spawn().await;
    let data = load(&app, None).await;
    // Pivot: regions down, statuses across.
    create_report(
        &app,
        json!({"name": "pivot", "form": "sale",
        "dimensions": [{"field": "cust.region", "as": "region"}, {"field": "status"}],
        "measures": [{"fn": "count"}], "pivot": "status"}),
    )
    .await;
    let out = run(&app, "pivot", json!({"drill": true})).await;
    let cols: Vec<&str> = out["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["region", "cancelled", "new", "paid", "shipped"]);
    let mut want: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in &data.sales {
        let region = s.cust.and_then(|c| data.regions[c]);
        let e = want
            .entry(json!([region]).to_string())
            .or_insert(vec![json!(0); 4]);
        let i = ["cancelled", "new", "paid", "shipped"]
            .iter()
            .position(|x| *x == s.status)
            .unwrap();
        e[i] = json!(e[i].as_i64().unwrap() + 1);
    }
    assert_rows(out["rows"].as_array().unwrap(), &want, 1);
    // A pivot cell's records: the row's filter and the column's.
    let row0 = &out["rows"][0];
    let cell = json!({"$and": [out["drill"][0], out["columns"][3]["filter"]]});
    assert_eq!(total(&app, "sale", &cell).await, row0[3]);
    // Empty months are filled: February is filtered away and comes back as 0.
    create_report(&app, json!({"name": "monthly", "form": "sale",
        "filter": {"$or": [{"at": {"$lt": "2026-01-20T00:00:00Z"}}, {"at": {"$gte": "2026-03-20T00:00:00Z"}}]},
        "dimensions": [{"field": "at", "bucket": "month", "tz": "Asia/Shanghai"}],
        "measures": [{"fn": "count"}, {"fn": "avg", "field": "qty"}], "fill": true}))
    .await;
    let out = run(&app, "monthly", json!({})).await;
    let months: Vec<&str> = out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(
        months,
        ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05"][..months.len()]
    );
    assert_eq!(out["rows"][1], json!(["2026-02", 0, null]));
    // This month against the last and the same month a year before, in Shanghai time.
    create_report(&app, json!({"name": "cmp", "form": "sale",
        "params": [{"name": "day", "type": "date"}],
        "measures": [{"fn": "count"}, {"fn": "sum", "field": "qty"}],
        "compare": {"field": "at", "period": "month", "tz": "Asia/Shanghai", "at": {"$param": "day"}}}))
    .await;
    let out = run(&app, "cmp", json!({"params": {"day": "2026-03-10"}})).await;
    let count = |m: &str| {
        data.sales
            .iter()
            .filter(|s| month_in_shanghai(s.at) == m)
            .count() as i64
    };
    let qty = |m: &str| -> i64 {
        data.sales
            .iter()
            .filter(|s| month_in_shanghai(s.at) == m)
            .map(|s| s.qty)
            .sum()
    };
    let (mar, feb) = (count("2026-03"), count("2026-02"));
    let cols: Vec<&str> = out["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "count",
            "count_previous",
            "count_previous_change",
            "count_last_year",
            "count_last_year_change",
            "sum_qty",
            "sum_qty_previous",
            "sum_qty_previous_change",
            "sum_qty_last_year",
            "sum_qty_last_year_change"
        ]
    );
    let row = &out["rows"][0];
    assert_eq!(row[0], json!(mar));
    assert_eq!(row[1], json!(feb));
    assert!(close(&row[2], &json!((mar - feb) as f64 / feb as f64)));
    assert_eq!(row[3], json!(0));
    assert_eq!(row[4], Value::Null, "no change against nothing");
    assert_eq!(row[5], json!(qty("2026-03")));
    // The period's column filter lists the period's records.
    let f = out["columns"][1]["filter"].clone();
    assert_eq!(total(&app, "sale", &f).await, json!(feb));
}

#[tokio::test]
async fn funnels_count_stages_reached_from_the_history() {
    let app = TestApp::spawn().await;
    app.form(json!({"name": "deal", "label": {"en": "Deal"}, "fields": [
        {"name": "title", "type": "text"},
        {"name": "stage", "type": "select", "options": [{"value": "new"}, {"value": "qualified"},
            {"value": "proposal"}, {"value": "won"}, {"value": "lost"}]}]}))
        .await;
    create_report(
        &app,
        json!({"name": "funnel", "form": "deal", "kind": "funnel",
        "funnel": {"field": "stage", "stages": ["new", "qualified", "proposal", "won"]}}),
    )
    .await;
    let out = run(&app, "funnel", json!({})).await;
    assert_eq!(
        out["rows"][0],
        json!(["new", "new", 0, null, null]),
        "no deals yet"
    );
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            app.create("deal", json!({"title": format!("D{i}"), "stage": "new"}))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // One deal starts at proposal: it reached the stages before it too.
    app.create("deal", json!({"title": "late", "stage": "proposal"}))
        .await;
    let step = |id: String, stage: &'static str| {
        let app = &app;
        async move {
            let (st, b) = app
                .patch(&format!("/api/v1/data/deal/{id}"), json!({"stage": stage}))
                .await;
            assert_eq!(st, StatusCode::OK, "{b}");
        }
    };
    for id in &ids[..12] {
        step(id.clone(), "qualified").await;
    }
    for id in &ids[..8] {
        step(id.clone(), "proposal").await;
    }
    for id in &ids[..3] {
        step(id.clone(), "won").await;
    }
    // Lost after a proposal, and lost when qualified: they still reached those stages.
    for id in &ids[3..6] {
        step(id.clone(), "lost").await;
    }
    for id in &ids[8..10] {
        step(id.clone(), "lost").await;
    }
    let out = run(&app, "funnel", json!({"drill": true})).await;
    let counts: Vec<i64> = out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[2].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [21, 13, 9, 3]);
    assert!(close(&out["rows"][1][3], &json!(13.0 / 21.0)));
    assert!(close(&out["rows"][3][4], &json!(3.0 / 21.0)));
    // A run's filter applies to the records as they are now.
    let out = run(&app, "funnel", json!({"filter": {"stage": "lost"}})).await;
    let counts: Vec<i64> = out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[2].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [5, 5, 3, 0]);
}

#[tokio::test]
async fn rfm_scores_and_segments_match_an_independent_computation() {
    let app = TestApp::spawn().await;
    let data = load(&app, None).await;
    let def = |output: &str| {
        json!({"name": format!("rfm_{output}"), "form": "cust", "kind": "rfm",
            "rfm": {"orders": "sale", "link": "cust", "date": "at", "amount": "amount",
                    "filter": {"status": {"$ne": "cancelled"}}, "as_of": "2026-06-01", "output": output}})
    };
    create_report(&app, def("customers")).await;
    create_report(&app, def("segments")).await;
    // Per customer: last sale, sales, amount; scores by the share at or below.
    let mut per: HashMap<usize, (DateTime<Utc>, i64, f64)> = HashMap::new();
    for s in data.sales.iter().filter(|s| s.status != "cancelled") {
        let Some(c) = s.cust else { continue };
        let e = per.entry(c).or_insert((s.at, 0, 0.0));
        e.0 = e.0.max(s.at);
        e.1 += 1;
        e.2 += s.amount.unwrap_or(0.0);
    }
    let n = per.len() as i64;
    let score = |le: i64| (5 * le + n - 1) / n;
    let out = run(&app, "rfm_customers", json!({})).await;
    let rows = out["rows"].as_array().unwrap();
    assert_eq!(rows.len() as i64, n);
    let segment = |r: i64, f: i64, m: i64| -> &'static str {
        let within = |x: i64, lo: i64, hi: i64| lo <= x && x <= hi;
        if within(r, 4, 5) && within(f, 4, 5) && within(m, 4, 5) {
            "high_value"
        } else if within(r, 3, 5) && within(f, 4, 5) {
            "loyal"
        } else if within(r, 4, 5) && within(f, 1, 3) {
            "potential"
        } else if within(r, 1, 2) && within(f, 3, 5) {
            "at_risk"
        } else if within(r, 1, 2) && within(f, 1, 2) {
            "hibernating"
        } else {
            "others"
        }
    };
    let mut by_segment: HashMap<&str, i64> = HashMap::new();
    for (c, (last, f, m)) in &per {
        let id = &data.cust_ids[*c];
        let row = rows.iter().find(|r| r[0] == json!(id)).unwrap();
        let rs = score(per.values().filter(|v| v.0 <= *last).count() as i64);
        let fs = score(per.values().filter(|v| v.1 <= *f).count() as i64);
        let ms = score(per.values().filter(|v| v.2 <= *m + 1e-9).count() as i64);
        assert_eq!(row[2], json!(f), "{row}");
        assert!(close(&row[3], &json!(m)), "{row}");
        let days = (Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap() - *last).num_seconds()
            as f64
            / 86400.0;
        assert!(
            (row[4].as_f64().unwrap() - days).abs() < 1e-3,
            "{row} {days}"
        );
        assert_eq!(
            (row[5].as_i64(), row[6].as_i64(), row[7].as_i64()),
            (Some(rs), Some(fs), Some(ms)),
            "{row}"
        );
        let seg = segment(rs, fs, ms);
        assert_eq!(row[8], json!(seg), "{row}");
        *by_segment.entry(seg).or_default() += 1;
    }
    let out = run(&app, "rfm_segments", json!({})).await;
    let names: Vec<&str> = out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "high_value",
            "loyal",
            "potential",
            "at_risk",
            "hibernating",
            "others"
        ]
    );
    for r in out["rows"].as_array().unwrap() {
        let want = by_segment.get(r[0].as_str().unwrap()).copied().unwrap_or(0);
        assert_eq!(r[2], json!(want), "{r}");
    }
}

#[tokio::test]
async fn a_reps_report_counts_only_what_the_rep_may_read() {
    let app = TestApp::spawn().await;
    forms(&app).await;
    let (st, body) = app
        .post(
            "/api/v1/roles",
            json!({"name": "rep", "label": {"en": "Rep"}, "forms": {
            "sale": {"read": "own", "create": "own"},
            "cust": {"read": "own", "fields": {"tier": "hidden"}}}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, u) = app
        .post(
            "/api/v1/users",
            json!({"email": "rep@x.com", "password": "rep-pass-123", "roles": ["rep"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    let rep_id = u["id"].as_str().unwrap().to_owned();
    let data = records(&app, Some(&rep_id)).await;
    let rep = app.login("rep@x.com", "rep-pass-123").await;
    create_report(&app, json!({"name": "by_status", "form": "sale",
        "dimensions": [{"field": "status"}], "measures": [{"fn": "count"}, {"fn": "sum", "field": "qty"}]}))
    .await;
    create_report(
        &app,
        json!({"name": "by_tier", "form": "sale",
        "dimensions": [{"field": "cust.tier"}], "measures": [{"fn": "count"}]}),
    )
    .await;
    let as_rep = |path: String| {
        let (app, rep) = (&app, rep.clone());
        async move { app.call_as(Some(&rep), Method::GET, &path, None).await }
    };
    let (st, out) = as_rep("/api/v1/reports/by_status/run".into()).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let mut want: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in data.sales.iter().filter(|s| s.mine) {
        let e = want
            .entry(json!([s.status]).to_string())
            .or_insert(vec![json!(0), json!(0)]);
        e[0] = json!(e[0].as_i64().unwrap() + 1);
        e[1] = json!(e[1].as_i64().unwrap() + s.qty);
    }
    assert_rows(out["rows"].as_array().unwrap(), &want, 1);
    // Customers the rep may not read join as nothing: every sale of the rep groups under
    // no region, and that row's drill lists exactly those sales.
    create_report(
        &app,
        json!({"name": "by_region", "form": "sale",
        "dimensions": [{"field": "cust.region"}], "measures": [{"fn": "count"}]}),
    )
    .await;
    let (st, out) = as_rep("/api/v1/reports/by_region/run?drill=true".into()).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let mine = data.sales.iter().filter(|s| s.mine).count();
    assert_eq!(out["rows"], json!([[null, mine]]));
    let drill = out["drill"][0].to_string();
    let (_, page) = as_rep(format!(
        "/api/v1/data/sale?count=true&limit=1&filter={}",
        urlencode(&drill)
    ))
    .await;
    assert_eq!(page["total"], json!(mine), "{drill}");
    // The admin sees every sale.
    let out = run(&app, "by_status", json!({})).await;
    let total: i64 = out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_i64().unwrap())
        .sum();
    assert_eq!(total, data.sales.len() as i64);
    // A field the rep may not see: 403 naming the dimension.
    let (st, body) = as_rep("/api/v1/reports/by_tier/run".into()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(errors(&body)[0].0, "dimensions[0].field");
    let _ = data.tiers;
    // A dashboard: the widget the rep may not see says so, the other answers.
    let (st, body) = app
        .post(
            "/api/v1/dashboards",
            json!({"name": "desk", "widgets": [
            {"report": "by_status", "chart": "pie"}, {"report": "by_tier", "chart": "bar"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, d) = as_rep("/api/v1/dashboards/desk/run".into()).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(
        d["widgets"][0]["result"]["rows"].as_array().unwrap().len(),
        want.len()
    );
    assert_eq!(d["widgets"][1]["error"]["status"], 403);
    // Reports the rep may not run are not listed to them; definitions are the admin's.
    let (_, list) = as_rep("/api/v1/reports".into()).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
    let (st, _) = app
        .call_as(
            Some(&rep),
            Method::DELETE,
            "/api/v1/reports/by_status",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = app.delete("/api/v1/reports/by_status").await;
    assert_eq!(st, StatusCode::CONFLICT, "the dashboard shows it: {body}");
    // A change that would break the dashboard's pie (two dimensions) is refused.
    let (st, body) = app
        .put(
            "/api/v1/reports/by_status",
            json!({"form": "sale",
            "dimensions": [{"field": "status"}, {"field": "qty"}], "measures": [{"fn": "count"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(errors(&body)[0].0, "dashboards.desk.widgets[0].chart");
}

#[tokio::test]
async fn bad_definitions_and_runs_name_the_part() {
    let app = TestApp::spawn().await;
    load(&app, None).await;
    for (def, path, code) in [
        (
            json!({"dimensions": [{"field": "nope"}], "measures": [{"fn": "count"}]}),
            "dimensions[0].field",
            "unknown_field",
        ),
        (
            json!({"measures": [{"fn": "sum", "field": "note"}]}),
            "measures[0].field",
            "not_numeric",
        ),
        (
            json!({"dimensions": [{"field": "qty", "bucket": "month"}], "measures": [{"fn": "count"}]}),
            "dimensions[0].bucket",
            "not_a_date",
        ),
        (
            json!({"measures": [{"fn": "count"}], "limit": 1_000_000}),
            "limit",
            "schema",
        ),
        (
            json!({"measures": [{"fn": "count"}], "filter": {"ghost": 1}}),
            "filter.ghost",
            "unknown_field",
        ),
        (
            json!({"measures": [{"fn": "count"}], "sort": "-revenue"}),
            "sort",
            "unknown_column",
        ),
        (
            json!({"measures": [{"fn": "expr", "expr": "count / (", "as": "x"}]}),
            "measures[0].expr",
            "invalid_expr",
        ),
    ] {
        let mut d = def.clone();
        d["name"] = json!("bad");
        d["form"] = json!("sale");
        let (st, body) = app.post("/api/v1/reports", d).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{def}: {body}");
        let errs = errors(&body);
        assert!(
            errs.iter().any(|(p, c)| p == path && c == code),
            "{def}: {errs:?}"
        );
    }
    create_report(&app, json!({"name": "ranged", "form": "sale",
        "params": [{"name": "from", "type": "date", "required": true}, {"name": "n", "type": "integer"}],
        "filter": {"at": {"$gte": {"$param": "from"}}, "qty": {"$gte": {"$param": "n"}}},
        "dimensions": [{"field": "at", "bucket": "day"}], "measures": [{"fn": "count"}], "fill": true}))
    .await;
    for (params, field, code) in [
        (json!({}), "params.from", "required"),
        (json!({"from": "yesterday"}), "params.from", "invalid_param"),
        (
            json!({"from": "2026-01-01", "n": "many"}),
            "params.n",
            "invalid_param",
        ),
        (
            json!({"from": "2026-01-01", "who": 1}),
            "params.who",
            "unknown_param",
        ),
    ] {
        let (st, body) = app
            .get(&format!(
                "/api/v1/reports/ranged/run?params={}",
                urlencode(&params.to_string())
            ))
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{params}: {body}");
        assert_eq!(body["type"], "https://trellis.dev/errors/invalid_run");
        assert!(
            errors(&body).iter().any(|(p, c)| p == field && c == code),
            "{params}: {body}"
        );
    }
    let (st, body) = app.get("/api/v1/reports/ranged/run?params=%7Bbroken").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    // A run's filter is checked like any filter.
    let (st, body) = app
        .post(
            "/api/v1/reports/ranged/run",
            json!({"params": {"from": "2026-01-01"}, "filter": {"ghost": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(errors(&body)[0].0, "filter.ghost");
    // Days over decades, filled, would exceed the group limit: refused, not run.
    app.create("sale", json!({"qty": 1, "at": "1990-01-01T00:00:00Z"}))
        .await;
    let (st, body) = app
        .post(
            "/api/v1/reports/ranged/run",
            json!({"params": {"from": "1980-01-01"}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        errors(&body)[0],
        ("fill".to_owned(), "too_many_groups".to_owned())
    );
}

#[tokio::test]
async fn results_download_as_csv_and_xlsx() {
    let app = TestApp::spawn().await;
    load(&app, None).await;
    create_report(&app, json!({"name": "notes", "form": "sale",
        "dimensions": [{"field": "note", "label": {"en": "Note", "zh-CN": "备注"}}], "measures": [{"fn": "count"}]}))
    .await;
    let get = |q: &'static str| {
        let app = &app;
        async move {
            app.client
                .get(app.url(&format!("/api/v1/reports/notes/run?{q}")))
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get("format=csv&lang=zh-CN").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = r.text().await.unwrap();
    // The formula a cell held is written as text.
    assert_eq!(text, "\u{feff}备注,count\n'=1+1,400\n");
    let r = get("format=xlsx").await;
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..2], b"PK");
    let r = get("format=pdf").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_demo_crm_dashboards_answer_every_widget() {
    let app = TestApp::spawn_with(&["--demo"]).await;
    for d in ["ceo", "sales_director", "service"] {
        let (st, body) = app
            .get(&format!(
                "/api/v1/dashboards/{d}/run?params={}",
                urlencode(&json!({"from": "2020-01-01"}).to_string())
            ))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        for w in body["widgets"].as_array().unwrap() {
            assert!(w.get("error").is_none(), "{d}: {w}");
            assert!(
                w["result"]["columns"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty()),
                "{w}"
            );
        }
    }
    // Every opportunity that is not lost reached the first stage; lost ones may have.
    let (_, funnel) = app
        .post("/api/v1/reports/sales_funnel/run", json!({}))
        .await;
    let count = |f: Value| {
        let app = &app;
        async move { total(app, "opportunity", &f).await.as_i64().unwrap() }
    };
    let first = funnel["rows"][0][2].as_i64().unwrap();
    assert!(
        first >= count(json!({"stage": {"$ne": "lost"}})).await,
        "{funnel}"
    );
    assert!(first <= count(json!({})).await, "{funnel}");
}

#[tokio::test]
async fn bundles_install_export_and_own_their_reports() {
    let app = TestApp::spawn().await;
    let bundle = |name: &str, with_form: bool| {
        let mut b = json!({"name": name, "version": "1.0.0", "label": {"en": name},
            "reports": [{"name": "per_kind", "form": "thing",
                "dimensions": [{"field": "kind"}], "measures": [{"fn": "count"}]}],
            "dashboards": [{"name": format!("{name}_desk"), "widgets": [{"report": "per_kind", "chart": "pie"}]}]});
        b["forms"] = if with_form {
            json!([{"name": "thing", "label": {"en": "Thing"}, "fields": [{"name": "kind", "type": "text"}]}])
        } else {
            json!([])
        };
        b
    };
    let (st, r) = app.post("/api/v1/bundles", bundle("first", true)).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        r["reports"],
        json!([{"name": "per_kind", "action": "create"}])
    );
    app.create("thing", json!({"kind": "a"})).await;
    let (st, d) = app.get("/api/v1/dashboards/first_desk/run").await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["widgets"][0]["result"]["rows"], json!([["a", 1]]));
    let (_, exported) = app.get("/api/v1/bundles/first/export").await;
    assert_eq!(exported["reports"][0]["name"], "per_kind");
    assert_eq!(exported["dashboards"][0]["name"], "first_desk");
    // Another bundle may not take the report over.
    let (st, body) = app.post("/api/v1/bundles", bundle("second", false)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        errors(&body)[0],
        ("reports.per_kind".to_owned(), "definition_owned".to_owned())
    );
}
