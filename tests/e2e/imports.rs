//! Imports: the messy CRM example against the counts its generator wrote down; one table
//! in every encoding, delimiter and XLSX giving the same records; a server killed in the
//! middle of an import leaving no partial batch and resuming to exactly the file; bad
//! files and options answered clearly; insert, update, upsert, all or nothing, skipped
//! rows and their error file, relations by title and by another key.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, errors, urlencode};

/// POST a file to the import endpoint with query parameters.
async fn import(
    app: &TestApp,
    form: &str,
    params: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    import_with(app, &app.token, form, params, body).await
}

/// [`import`] with another token.
async fn import_with(
    app: &TestApp,
    token: &str,
    form: &str,
    params: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let q: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/data/{form}/import?{q}")))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("import request");
    let st = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    assert!(st.as_u16() < 500, "server error {st}: {v}");
    (st, v)
}

/// Import and wait for the job to finish; the finished job.
async fn import_done(
    app: &TestApp,
    form: &str,
    params: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Value {
    let mut p = params.to_vec();
    p.push(("wait", "true"));
    let (st, job) = import(app, form, &p, body).await;
    assert_eq!(st, StatusCode::OK, "{job}");
    job
}

/// Poll a job until it is no longer queued or running.
async fn finished(app: &TestApp, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (st, job) = app.get(&format!("/api/v1/imports/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{job}");
        if !matches!(job["status"].as_str(), Some("queued" | "running")) {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the import did not finish: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every row outcome of a job.
async fn outcomes(app: &TestApp, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let (st, page) = app
            .get(&format!(
                "/api/v1/imports/{id}/rows?from={}&limit=1000",
                out.len()
            ))
            .await;
        assert_eq!(st, StatusCode::OK, "{page}");
        let rows = page["data"].as_array().unwrap();
        if rows.is_empty() {
            return out;
        }
        out.extend(rows.iter().cloned());
    }
}

/// The (row, column) of every error of every rejected row.
fn rejected_cells(rows: &[Value]) -> BTreeSet<(u64, String)> {
    rows.iter()
        .filter(|r| r["action"] == "reject")
        .flat_map(|r| {
            let row = r["row"].as_u64().unwrap();
            r["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |e| (row, e["column"].as_str().unwrap_or("").to_owned()))
        })
        .collect()
}

/// The error file of a job as CSV records (the byte-order mark checked and dropped).
async fn error_file(app: &TestApp, id: &str) -> Vec<Vec<String>> {
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/imports/{id}/errors")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.bytes().await.unwrap();
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBF"),
        "the error file starts with a UTF-8 byte-order mark"
    );
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&bytes[3..])
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// created, merged, flagged, skipped, rejected.
fn counts(p: &Value) -> [u64; 5] {
    ["created", "merged", "flagged", "skipped", "rejected"].map(|k| {
        p[k].as_u64()
            .unwrap_or_else(|| panic!("no count {k} in {p}"))
    })
}

async fn total(app: &TestApp, form: &str) -> u64 {
    let (st, page) = app
        .get(&format!("/api/v1/data/{form}?count=true&limit=1"))
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page["total"].as_u64().unwrap()
}

/// All records of a form (up to 1,000).
async fn records(app: &TestApp, form: &str) -> Vec<Value> {
    let (st, page) = app.list(form, &[("limit", "1000".into())]).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    page["data"].as_array().unwrap().clone()
}

/// CSV text from rows, quoted where needed, with this delimiter and CRLF line ends.
fn csv_text(rows: &[Vec<&str>], delimiter: u8) -> String {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for r in rows {
        w.write_record(r).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/crm/data")
        .join(name)
}

fn differences(
    what: &str,
    got: &BTreeSet<(u64, String)>,
    want: &BTreeSet<(u64, String)>,
) -> String {
    let extra: Vec<_> = got.difference(want).take(10).collect();
    let missing: Vec<_> = want.difference(got).take(10).collect();
    format!(
        "{what}: the rejected (row, column) differ from expected.json: reported but not expected \
         {extra:?}, expected but not reported {missing:?}"
    )
}

#[tokio::test]
async fn the_messy_crm_example_imports_with_the_expected_counts() {
    let app = TestApp::spawn_with(&["--demo"]).await;
    let expected: Value =
        serde_json::from_slice(&std::fs::read(example("expected.json")).unwrap()).unwrap();
    let want = |file: &str| -> ([u64; 5], BTreeSet<(u64, String)>, u64) {
        let e = &expected[file];
        let rows = e["rejected_rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["row"].as_u64().unwrap(),
                    r["column"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (counts(e), rows, e["rows"].as_u64().unwrap())
    };
    // Row-number mismatches are collected and reported at the end, so that every other
    // check still runs.
    let mut wrong_rows: Vec<String> = Vec::new();
    let skip = [("on_error", "skip"), ("tz", "Asia/Shanghai")];

    // A dry run of the UTF-8 file (BOM, `;`): the plan, and nothing written.
    let (lead_counts, lead_rejected, lead_rows) = want("leads-utf8.csv");
    let before = total(&app, "lead").await;
    let utf8 = std::fs::read(example("leads-utf8.csv")).unwrap();
    let mut p = skip.to_vec();
    p.push(("dry_run", "true"));
    let job = import_done(&app, "lead", &p, utf8).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["source"]["encoding"], "utf-8");
    assert_eq!(job["source"]["delimiter"], ";");
    assert_eq!(job["progress"]["rows"].as_u64(), Some(lead_rows));
    assert_eq!(
        counts(&job["progress"]),
        lead_counts,
        "created, merged, flagged, skipped, rejected of the UTF-8 dry run"
    );
    let remark = job["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["header"] == "备注")
        .expect("the 备注 column is listed");
    assert!(
        remark["field"].is_null() && remark["note"].is_string(),
        "{remark}"
    );
    let rows = outcomes(&app, job["id"].as_str().unwrap()).await;
    assert_eq!(rows.len() as u64, lead_rows);
    let got = rejected_cells(&rows);
    if got != lead_rejected {
        wrong_rows.push(differences("leads-utf8.csv dry run", &got, &lead_rejected));
    }
    assert_eq!(
        total(&app, "lead").await,
        before,
        "a dry run writes nothing"
    );

    // The GBK file (`,`, CRLF) for real: the same counts, and the records are there.
    let gbk = std::fs::read(example("leads-gbk.csv")).unwrap();
    let (gbk_counts, gbk_rejected, _) = want("leads-gbk.csv");
    let job = import_done(&app, "lead", &skip, gbk.clone()).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["source"]["encoding"], "gb18030");
    assert_eq!(job["source"]["delimiter"], ",");
    assert_eq!(
        counts(&job["progress"]),
        gbk_counts,
        "created, merged, flagged, skipped, rejected of the GBK import"
    );
    let id = job["id"].as_str().unwrap().to_owned();
    let got = rejected_cells(&outcomes(&app, &id).await);
    if got != gbk_rejected {
        wrong_rows.push(differences("leads-gbk.csv", &got, &gbk_rejected));
    }
    let ef = error_file(&app, &id).await;
    assert_eq!(
        ef.len() as u64,
        gbk_counts[4] + 1,
        "a header and the rejected rows"
    );
    let rows_in_file: BTreeSet<u64> = ef[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    let want_rows: BTreeSet<u64> = gbk_rejected.iter().map(|r| r.0).collect();
    if rows_in_file != want_rows {
        wrong_rows.push(format!(
            "leads-gbk.csv error file: rows {:?} not expected, {:?} expected but missing",
            rows_in_file
                .difference(&want_rows)
                .take(10)
                .collect::<Vec<_>>(),
            want_rows
                .difference(&rows_in_file)
                .take(10)
                .collect::<Vec<_>>()
        ));
    }
    let after = total(&app, "lead").await;
    assert_eq!(
        after,
        before + gbk_counts[0] + gbk_counts[2],
        "the lead count grows by the rows created and flagged"
    );

    // The same file again: every good row is now a duplicate.
    let mut p = skip.to_vec();
    p.push(("dry_run", "true"));
    let job = import_done(&app, "lead", &p, gbk).await;
    assert_eq!(job["status"], "done", "{job}");
    let again = &job["progress"];
    assert_eq!(
        again["created"], 0,
        "a second import creates nothing: {again}"
    );
    assert_eq!(again["rejected"].as_u64(), Some(gbk_counts[4]), "{again}");
    assert_eq!(
        again["skipped"].as_u64().unwrap() + again["flagged"].as_u64().unwrap(),
        lead_rows - gbk_counts[4],
        "every good row is skipped or flagged as a duplicate: {again}"
    );
    assert_eq!(total(&app, "lead").await, after);

    // The customers workbook, data on its second sheet.
    let (cust_counts, cust_rejected, cust_rows) = want("customers.xlsx");
    let sheet = expected["customers.xlsx"]["sheet"].as_str().unwrap();
    assert_eq!(sheet, "客户");
    let before = total(&app, "customer").await;
    let xlsx = std::fs::read(example("customers.xlsx")).unwrap();
    let mut p = skip.to_vec();
    p.push(("sheet", sheet));
    let job = import_done(&app, "customer", &p, xlsx).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["source"]["format"], "xlsx");
    assert_eq!(job["source"]["sheet"], sheet);
    assert!(
        job["source"]["sheets"].as_array().unwrap().len() >= 2,
        "{}",
        job["source"]
    );
    assert_eq!(job["progress"]["rows"].as_u64(), Some(cust_rows));
    assert_eq!(
        counts(&job["progress"]),
        cust_counts,
        "created, merged, flagged, skipped, rejected of customers.xlsx"
    );
    let id = job["id"].as_str().unwrap().to_owned();
    let got = rejected_cells(&outcomes(&app, &id).await);
    if got != cust_rejected {
        wrong_rows.push(differences("customers.xlsx", &got, &cust_rejected));
    }
    let ef = error_file(&app, &id).await;
    let mut header = vec!["row".to_owned()];
    header.extend(
        job["source"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_owned()),
    );
    header.push("errors".into());
    assert_eq!(ef[0], header);
    assert_eq!(
        ef.len() as u64,
        cust_counts[4] + 1,
        "one line per rejected row plus the header"
    );
    let rows_in_file: BTreeSet<u64> = ef[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(
        rows_in_file,
        cust_rejected.iter().map(|r| r.0).collect::<BTreeSet<u64>>()
    );
    assert!(
        ef[1..].iter().all(|r| !r.last().unwrap().is_empty()),
        "every line says what is wrong"
    );
    assert_eq!(
        total(&app, "customer").await,
        before + cust_counts[0] + cust_counts[2]
    );

    assert!(wrong_rows.is_empty(), "{}", wrong_rows.join("\n"));
}

/// The table every encoding and format carries, and what it must become.
const HEADERS: [&str; 6] = ["名称", "数量", "单价", "启用", "日期", "级别"];
const CELLS: [[&str; 6]; 3] = [
    [
        "星辰科技, \"北京\"; 分公司",
        "1,200",
        "￥12,345.50",
        "是",
        "2024年3月5日",
        "金牌",
    ],
    ["Acme Ltd", "7", "0.5", "否", "2024/12/31", "Silver"],
    [
        "上海数据",
        "12,000",
        "1,000,000",
        "yes",
        "2024-01-02",
        "gold",
    ],
];

fn expected_records() -> Vec<Value> {
    vec![
        json!({"name": "星辰科技, \"北京\"; 分公司", "qty": 1200, "price": 12345.5,
            "active": true, "since": "2024-03-05", "level": "gold"}),
        json!({"name": "Acme Ltd", "qty": 7, "price": 0.5, "active": false,
            "since": "2024-12-31", "level": "silver"}),
        json!({"name": "上海数据", "qty": 12000, "price": 1000000.0, "active": true,
            "since": "2024-01-02", "level": "gold"}),
    ]
}

fn table(delimiter: u8) -> String {
    let mut rows = vec![HEADERS.to_vec()];
    rows.extend(CELLS.iter().map(|r| r.to_vec()));
    csv_text(&rows, delimiter)
}

/// A workbook with a notes sheet first and the table on the second: row 1 as text like
/// the CSV, row 2 as native numbers, a boolean and a date cell.
fn workbook() -> Vec<u8> {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut wb = Workbook::new();
    let notes = wb.add_worksheet();
    notes.set_name("说明").unwrap();
    notes.write_string(0, 0, "数据在第二个工作表").unwrap();
    notes.write_string(1, 0, "名称,数量").unwrap();
    let ws = wb.add_worksheet();
    ws.set_name("数据").unwrap();
    for (c, h) in HEADERS.iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    for (c, v) in CELLS[0].iter().enumerate() {
        ws.write_string(1, c as u16, *v).unwrap();
    }
    ws.write_string(2, 0, CELLS[1][0]).unwrap();
    ws.write_number(2, 1, 7).unwrap();
    ws.write_number(2, 2, 0.5).unwrap();
    ws.write_boolean(2, 3, false).unwrap();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    ws.write_datetime_with_format(2, 4, ExcelDateTime::from_ymd(2024, 12, 31).unwrap(), &date)
        .unwrap();
    ws.write_string(2, 5, CELLS[1][5]).unwrap();
    ws.write_string(3, 0, CELLS[2][0]).unwrap();
    ws.write_number(3, 1, 12000).unwrap();
    for (c, v) in CELLS[2].iter().enumerate().skip(2) {
        ws.write_string(3, c as u16, *v).unwrap();
    }
    wb.save_to_buffer().unwrap()
}

/// A form, a file, extra parameters, the encoding and delimiter it should be read with.
type Variant = (
    &'static str,
    Vec<u8>,
    Vec<(&'static str, &'static str)>,
    Value,
    Value,
);

#[tokio::test]
async fn every_encoding_and_format_imports_the_same_records() {
    let app = TestApp::spawn().await;
    let comma = table(b',');
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(comma.as_bytes());
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(&comma);
    assert!(!unmappable, "the table is all GBK");
    let mut utf16 = vec![0xFF, 0xFE];
    for u in comma.encode_utf16() {
        utf16.extend(u.to_le_bytes());
    }
    let variants: Vec<Variant> = vec![
        (
            "t_utf8",
            comma.clone().into_bytes(),
            vec![],
            json!("utf-8"),
            json!(","),
        ),
        ("t_bom", bom, vec![], json!("utf-8"), json!(",")),
        (
            "t_gbk",
            gbk.into_owned(),
            vec![],
            json!("gb18030"),
            json!(","),
        ),
        ("t_utf16", utf16, vec![], json!("utf-16le"), json!(",")),
        (
            "t_semicolon",
            table(b';').into_bytes(),
            vec![],
            json!("utf-8"),
            json!(";"),
        ),
        (
            "t_tab",
            table(b'\t').into_bytes(),
            vec![],
            json!("utf-8"),
            json!("\t"),
        ),
        (
            "t_xlsx",
            workbook(),
            vec![("sheet", "数据")],
            Value::Null,
            Value::Null,
        ),
    ];
    let want = expected_records();
    for (form, body, extra, encoding, delimiter) in variants {
        app.form(
            json!({"name": form, "label": {"en": "Table", "zh-CN": "表格"}, "fields": [
            {"name": "name", "type": "text", "label": {"en": "Name", "zh-CN": "名称"}},
            {"name": "qty", "type": "integer", "label": {"en": "Quantity", "zh-CN": "数量"}},
            {"name": "price", "type": "decimal", "label": {"en": "Price", "zh-CN": "单价"}},
            {"name": "active", "type": "boolean", "label": {"en": "Active", "zh-CN": "启用"}},
            {"name": "since", "type": "date", "label": {"en": "Since", "zh-CN": "日期"}},
            {"name": "level", "type": "select", "label": {"en": "Level", "zh-CN": "级别"},
             "options": [{"value": "gold", "label": {"en": "Gold", "zh-CN": "金牌"}},
                         {"value": "silver", "label": {"en": "Silver", "zh-CN": "银牌"}}]}]}),
        )
        .await;
        // A dry run first: the plan and what was detected.
        let mut dry = extra.clone();
        dry.push(("dry_run", "true"));
        let job = import_done(&app, form, &dry, body.clone()).await;
        assert_eq!(job["status"], "done", "{form}: {job}");
        assert_eq!(
            (&job["source"]["encoding"], &job["source"]["delimiter"]),
            (&encoding, &delimiter),
            "{form}: detected {}",
            job["source"]
        );
        assert_eq!(counts(&job["progress"]), [3, 0, 0, 0, 0], "{form}: {job}");
        let fields: Vec<&Value> = job["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["field"])
            .collect();
        assert_eq!(
            fields,
            [
                &json!("name"),
                &json!("qty"),
                &json!("price"),
                &json!("active"),
                &json!("since"),
                &json!("level")
            ],
            "{form}: the zh-CN labels map the columns"
        );
        assert!(
            records(&app, form).await.is_empty(),
            "{form}: a dry run writes nothing"
        );
        // For real: the stored values, field by field.
        let job = import_done(&app, form, &extra, body).await;
        assert_eq!(job["status"], "done", "{form}: {job}");
        assert_eq!(counts(&job["progress"]), [3, 0, 0, 0, 0], "{form}: {job}");
        if form == "t_xlsx" {
            assert_eq!(job["source"]["format"], "xlsx");
            assert_eq!(job["source"]["sheet"], "数据");
            assert_eq!(job["source"]["sheets"], json!(["说明", "数据"]));
        } else {
            assert_eq!(job["source"]["format"], "csv");
        }
        let got = records(&app, form).await;
        assert_eq!(got.len(), 3, "{form}: {got:?}");
        for w in &want {
            let r = got
                .iter()
                .find(|r| r["name"] == w["name"])
                .unwrap_or_else(|| panic!("{form}: no record named {}: {got:?}", w["name"]));
            for (k, v) in w.as_object().unwrap() {
                let same = match (v.as_f64(), r[k].as_f64()) {
                    (Some(a), Some(b)) => (a - b).abs() < 1e-9,
                    _ => &r[k] == v,
                };
                assert!(
                    same,
                    "{form}: {} field {k}: got {}, want {v}",
                    w["name"], r[k]
                );
            }
        }
    }
}

/// The id of the `trellis serve` process on this database.
fn server_pid(db_url: &str) -> u32 {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("trellis"))
            && args
                .windows(2)
                .any(|w| w[0] == "--database-url" && w[1] == db_url)
        {
            return pid;
        }
    }
    panic!("no server process on {db_url}");
}

/// SIGKILL the server (no chance to finish a batch) and wait until it is gone.
fn kill_server(app: &TestApp) {
    let pid = server_pid(&app.db_url);
    let ok = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -9 {pid}");
    let start = Instant::now();
    loop {
        // Gone, or a zombie waiting for the harness to reap it.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if state.is_empty() || zombie {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{pid} lives on");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const BULK: usize = 30_000;
const BATCH: u64 = 500;

/// Start an import of `BULK` good rows (n = 0, 1, 2, ...), with a bad row (n not a number)
/// after every thousandth when `bad`, without waiting; answers the job id and the
/// kind of each data row (true: good) once at least 3,000 rows are done (the job must
/// still be running then). With `api_token`, the import goes through a new API token
/// limited to the form, whose id comes back too.
async fn start_bulk(
    app: &TestApp,
    form: &str,
    on_error: &str,
    bad: bool,
    api_token: bool,
) -> (String, Vec<bool>, Option<String>) {
    app.form(json!({"name": form, "label": {"en": "Bulk"}, "fields": [
        {"name": "n", "type": "integer", "unique": true},
        {"name": "label", "type": "text"}]}))
        .await;
    let (token, token_id) = if api_token {
        let (st, t) = app
            .post(
                "/api/v1/tokens",
                json!({"name": format!("{form} only"), "forms": [form]}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{t}");
        (
            t["token"].as_str().unwrap().to_owned(),
            Some(t["id"].as_str().unwrap().to_owned()),
        )
    } else {
        (app.token.clone(), None)
    };
    let mut body = String::from("n,label\n");
    let mut kinds = Vec::new();
    for i in 0..BULK {
        body.push_str(&format!("{i},row {i}\n"));
        kinds.push(true);
        if bad && i % 1000 == 777 {
            body.push_str(&format!("about {i},bad row\n"));
            kinds.push(false);
        }
    }
    let batch = BATCH.to_string();
    let (st, job) = import_with(
        app,
        &token,
        form,
        &[("on_error", on_error), ("batch", &batch)],
        body,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let (_, job) = app.get(&format!("/api/v1/imports/{id}")).await;
        assert!(
            matches!(job["status"].as_str(), Some("queued" | "running")),
            "the import ended before it could be interrupted (make the file bigger): {job}"
        );
        if job["progress"]["rows"].as_u64().unwrap_or(0) >= 3000 {
            return (id, kinds, token_id);
        }
        assert!(start.elapsed() < Duration::from_secs(300), "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (records, distinct n, min n, max n) in the form's table, from the database itself.
async fn n_stats(db_url: &str, form: &str) -> (i64, i64, Option<i64>, Option<i64>) {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(db_url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*), COUNT(DISTINCT n), MIN(n), MAX(n) FROM rec_{form}"),
        ))
        .await
        .unwrap()
        .unwrap();
    let out = (
        row.try_get_by_index::<i64>(0).unwrap(),
        row.try_get_by_index::<i64>(1).unwrap(),
        row.try_get_by_index::<Option<i64>>(2).unwrap(),
        row.try_get_by_index::<Option<i64>>(3).unwrap(),
    );
    let _ = db.close().await;
    out
}

#[tokio::test]
async fn a_killed_import_leaves_no_partial_batch() {
    let app = TestApp::spawn().await;

    // Skip mode: whole batches are in, and the resumed job adds exactly the rest.
    let (skip_id, kinds, _) = start_bulk(&app, "bulk", "skip", true, false).await;
    kill_server(&app);
    let (n, distinct, min, max) = n_stats(&app.db_url, "bulk").await;
    // The good rows of the first m batches of 500 rows, for some m >= 1: n = 0, 1, ...
    let whole: Vec<i64> = kinds
        .chunks(BATCH as usize)
        .scan(0i64, |good, c| {
            *good += c.iter().filter(|&&k| k).count() as i64;
            Some(*good)
        })
        .collect();
    assert!(
        n > 0 && whole.contains(&n),
        "after the kill the table holds the good rows of whole batches of {BATCH} \
         (one of {:?}...): {n} records",
        &whole[..10]
    );
    assert_eq!((distinct, min, max), (n, Some(0), Some(n - 1)));
    let app = app.kill_and_restart(&[]).await;
    let job = finished(&app, &skip_id).await;
    let bad_lines: BTreeSet<u64> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| !**k)
        .map(|(i, _)| i as u64 + 2)
        .collect();
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(
        (
            job["progress"]["rows"].as_u64(),
            job["progress"]["created"].as_u64(),
            job["progress"]["rejected"].as_u64()
        ),
        (
            Some(kinds.len() as u64),
            Some(BULK as u64),
            Some(bad_lines.len() as u64)
        ),
        "the resumed job counts every row once: {job}"
    );
    assert_eq!(
        n_stats(&app.db_url, "bulk").await,
        (BULK as i64, BULK as i64, Some(0), Some(BULK as i64 - 1)),
        "every row once: none lost, none twice"
    );
    assert_eq!(total(&app, "bulk").await, BULK as u64);
    let rows = outcomes(&app, &skip_id).await;
    let lines: BTreeSet<u64> = rows.iter().map(|r| r["row"].as_u64().unwrap()).collect();
    assert_eq!(
        (rows.len(), lines.len()),
        (kinds.len(), kinds.len()),
        "the row report of the resumed job has each row once"
    );
    let rejected: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r["action"] == "reject")
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, bad_lines);
    let ef = error_file(&app, &skip_id).await;
    let in_file: Vec<u64> = ef[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(
        in_file,
        bad_lines.iter().copied().collect::<Vec<_>>(),
        "the error file has each bad row once, in order"
    );

    // All or nothing: nothing is in after the kill; the restart imports it all.
    let (abort_id, _, _) = start_bulk(&app, "bulk2", "abort", false, false).await;
    kill_server(&app);
    assert_eq!(
        n_stats(&app.db_url, "bulk2").await,
        (0, 0, None, None),
        "an all-or-nothing import leaves nothing behind when killed"
    );
    let app = app.kill_and_restart(&[]).await;
    let job = finished(&app, &abort_id).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(
        job["progress"]["created"].as_u64(),
        Some(BULK as u64),
        "{job}"
    );
    assert_eq!(
        n_stats(&app.db_url, "bulk2").await,
        (BULK as i64, BULK as i64, Some(0), Some(BULK as i64 - 1))
    );

    // A job resumes through the token it was started with: once that token is revoked,
    // the restart ends the job where it stopped, saying why.
    let (token_job, _, token_id) = start_bulk(&app, "bulk3", "skip", false, true).await;
    let (st, body) = app
        .delete(&format!("/api/v1/tokens/{}", token_id.unwrap()))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    kill_server(&app);
    let (before, ..) = n_stats(&app.db_url, "bulk3").await;
    assert!(before < BULK as i64, "the kill came before the end");
    let app = app.kill_and_restart(&[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, job) = app.get(&format!("/api/v1/imports/{token_job}")).await;
    assert_eq!(job["status"], "failed", "not resumed: {job}");
    assert!(
        job["progress"]["failure"]
            .as_str()
            .is_some_and(|f| f.contains("revoked")),
        "{job}"
    );
    assert_eq!(
        n_stats(&app.db_url, "bulk3").await.0,
        before,
        "nothing written after the restart"
    );
}

/// Send a request over a plain TCP connection: the header block as given, then `body`
/// in pieces, reading the answer meanwhile (as a browser does). Answers the status code,
/// or None when the connection broke before one came.
async fn raw_request(
    app: &TestApp,
    head: String,
    body: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").to_owned();
    let s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for piece in body {
            if wr.write_all(&piece).await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(60), rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => panic!("no answer within 60 s"),
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
}

#[tokio::test]
async fn bad_files_get_clear_answers() {
    let app = TestApp::spawn_with(&["--max-import-bytes", "1000000"]).await;
    app.form(
        json!({"name": "thing", "label": {"en": "Thing"}, "fields": [
        {"name": "name", "type": "text", "required": true},
        {"name": "qty", "type": "integer"},
        {"name": "link", "type": "text"}]}),
    )
    .await;
    let file_problem = |st: StatusCode, body: &Value, code: &str| {
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            errors(body).first(),
            Some(&("file".to_owned(), code.to_owned())),
            "{body}"
        );
    };
    let skip = [("on_error", "skip"), ("wait", "true")];

    let (st, body) = import(&app, "thing", &[], Vec::new()).await;
    file_problem(st, &body, "empty_file");

    let (st, job) = import(&app, "thing", &skip, "name,qty\r\n").await;
    assert_eq!(st, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["progress"]["rows"], 0, "{job}");

    // More cells than headers.
    let (st, job) = import(&app, "thing", &skip, "name,qty\nok,1\nbad,2,extra\n").await;
    assert_eq!(st, StatusCode::OK, "{job}");
    assert_eq!(counts(&job["progress"]), [1, 0, 0, 0, 1], "{job}");
    let rows = outcomes(&app, job["id"].as_str().unwrap()).await;
    assert_eq!(rows[1]["action"], "reject", "{rows:?}");
    assert_eq!(rows[1]["row"], 3, "{rows:?}");
    assert_eq!(rows[1]["errors"][0]["code"], "ragged", "{rows:?}");

    // Binary bytes.
    let mut seed = 12345u64;
    let mut binary = vec![0x01, 0x00, 0x02, 0x00];
    for _ in 0..4000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        binary.push((seed >> 56) as u8);
    }
    let (st, body) = import(&app, "thing", &[], binary).await;
    file_problem(st, &body, "binary_file");

    // A GBK file said to be UTF-8: its Chinese rows are refused, not garbled.
    let (gbk, _, _) = encoding_rs::GBK.encode("name,qty\n北京,1\n上海,2\n");
    let mut p = skip.to_vec();
    p.push(("encoding", "utf-8"));
    let (st, job) = import(&app, "thing", &p, gbk.into_owned()).await;
    assert_eq!(st, StatusCode::OK, "{job}");
    assert_eq!(job["source"]["encoding"], "utf-8");
    assert_eq!(counts(&job["progress"]), [0, 0, 0, 0, 2], "{job}");
    let rows = outcomes(&app, job["id"].as_str().unwrap()).await;
    assert!(
        rows.iter().all(|r| r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "encoding")),
        "{rows:?}"
    );
    assert!(
        records(&app, "thing")
            .await
            .iter()
            .all(|r| r["name"] == "ok")
    );

    let (st, body) = import(&app, "thing", &[], "name,qty,name\nx,1,y\n").await;
    file_problem(st, &body, "duplicate_header");

    let (st, body) = import(
        &app,
        "thing",
        &[("format", "xlsx")],
        "this is not a workbook",
    )
    .await;
    file_problem(st, &body, "bad_xlsx");

    let wb = {
        let mut wb = rust_xlsxwriter::Workbook::new();
        let a = wb.add_worksheet();
        a.set_name("One").unwrap();
        a.write_string(0, 0, "name").unwrap();
        let b = wb.add_worksheet();
        b.set_name("第二").unwrap();
        b.write_string(0, 0, "name").unwrap();
        wb.save_to_buffer().unwrap()
    };
    let (st, body) = import(&app, "thing", &[("sheet", "Three")], wb).await;
    file_problem(st, &body, "unknown_sheet");
    let msg = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("One") && msg.contains("第二"),
        "the message names the sheets: {body}"
    );

    // An unknown column is left out with a note; a formula is kept as text.
    let hyperlink = "=HYPERLINK(\"http://evil\",\"x\")";
    let file = csv_text(
        &[
            vec!["name", "qty", "remarks"],
            vec!["formula", "3", "ignored"],
            vec![hyperlink, "4", "ignored"],
        ],
        b',',
    );
    let (st, job) = import(&app, "thing", &skip, file).await;
    assert_eq!(st, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(counts(&job["progress"]), [2, 0, 0, 0, 0], "{job}");
    let remarks = &job["columns"][2];
    assert_eq!(remarks["header"], "remarks");
    assert!(
        remarks["field"].is_null() && !remarks["note"].as_str().unwrap_or("").is_empty(),
        "{remarks}"
    );
    let all = records(&app, "thing").await;
    let formula = all
        .iter()
        .find(|r| r["qty"] == 4)
        .expect("the row with a formula");
    assert_eq!(formula["name"], hyperlink, "kept as exactly that text");

    // Over the limit: refused, and the server goes on.
    let big = vec![b'a'; 3_000_000];
    let (st, body) = import(&app, "thing", &[], big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let path = "/api/v1/data/thing/import";
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: text/csv\r\nContent-Length: 2000000000\r\n\r\n",
        app.token
    );
    let status = raw_request(&app, head, std::iter::once(b"name\nx\n".to_vec())).await;
    assert_eq!(
        status,
        Some(413),
        "a declared length of 2 GB is refused at once"
    );
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n",
        app.token
    );
    let piece = {
        let data = "name,qty\nsome thing,1\n".repeat(3000).into_bytes();
        let mut p = format!("{:x}\r\n", data.len()).into_bytes();
        p.extend(data);
        p.extend(b"\r\n");
        p
    };
    let pieces = (20_000_000 / piece.len()) + 1;
    let status = raw_request(
        &app,
        head,
        std::iter::repeat_n(piece, pieces).chain(std::iter::once(b"0\r\n\r\n".to_vec())),
    )
    .await;
    assert!(
        status.is_none() || status == Some(413),
        "20 MB without a length is refused or cut off, not imported: {status:?}"
    );
    let (st, _) = app
        .call_as(None, reqwest::Method::GET, "/healthz", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, list) = app.get("/api/v1/imports").await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(
        total(&app, "thing").await,
        3,
        "nothing of the refused bodies was imported"
    );

    // Options: each refusal names the option at fault.
    let file = "name,qty\nx,1\n";
    let mut named = Vec::new();
    for (k, v) in [
        ("mode", "sideways"),
        ("on_error", "sometimes"),
        ("duplicates", "twice"),
        ("batch", "0"),
        ("tz", "Mars/Olympus"),
        ("encoding", "ebcdic"),
        ("mode", "update"),
        ("relation_keys", r#"{"name": "x"}"#),
    ] {
        let (st, body) = import(&app, "thing", &[(k, v)], file).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{k}={v}: {body}");
        named.push(format!("{k}={v} → {}", errors(&body)[0].0));
    }
    let (st, body) = import(&app, "thing", &[("mapping", r#"{"Nom": "name"}"#)], file).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(errors(&body)[0].0, "mapping.Nom", "{body}");
    let (st, body) = import(&app, "thing", &[("mapping", r#"{"qty": "weight"}"#)], file).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(errors(&body)[0].0, "mapping.qty", "{body}");
    assert_eq!(
        total(&app, "thing").await,
        3,
        "refused imports write nothing"
    );
    assert_eq!(
        named,
        [
            "mode=sideways → mode",
            "on_error=sometimes → on_error",
            "duplicates=twice → duplicates",
            "batch=0 → batch",
            "tz=Mars/Olympus → tz",
            "encoding=ebcdic → encoding",
            "mode=update → key",
            r#"relation_keys={"name": "x"} → relation_keys.name"#,
        ],
        "the field of the 422 names the option"
    );
}

/// The record of `form` whose `field` is `value`.
async fn one(app: &TestApp, form: &str, field: &str, value: &str) -> Option<Value> {
    let (st, page) = app
        .list(
            form,
            &[
                ("filter", json!({ field: value }).to_string()),
                ("limit", "5".into()),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let rows = page["data"].as_array().unwrap();
    assert!(rows.len() <= 1, "{page}");
    rows.first().cloned()
}

#[tokio::test]
async fn modes_and_all_or_nothing() {
    let app = TestApp::spawn().await;
    app.form(json!({"name": "item", "label": {"en": "Item"}, "fields": [
        {"name": "sku", "type": "text", "unique": true},
        {"name": "name", "type": "text", "required": true},
        {"name": "qty", "type": "integer", "min": 0},
        {"name": "note", "type": "text"}]}))
        .await;
    let state = |r: &Value| (r["name"].clone(), r["qty"].clone(), r["note"].clone());

    // Insert, then insert again by a key: the existing row is skipped.
    let job = import_done(
        &app,
        "item",
        &[("key", "sku")],
        "sku,name,qty,note\nA1,Apple,5,red\nB2,Banana,7,yellow\n",
    )
    .await;
    assert_eq!(counts(&job["progress"]), [2, 0, 0, 0, 0], "{job}");
    let a1 = one(&app, "item", "sku", "A1").await.unwrap();
    let a1_id = a1["id"].as_str().unwrap().to_owned();
    let job = import_done(
        &app,
        "item",
        &[("key", "sku")],
        "sku,name,qty,note\nA1,Apple again,9,x\nC3,Cherry,3,\n",
    )
    .await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(counts(&job["progress"]), [1, 0, 0, 1, 0], "{job}");
    let rows = outcomes(&app, job["id"].as_str().unwrap()).await;
    assert_eq!(
        (
            &rows[0]["row"],
            &rows[0]["action"],
            &rows[0]["errors"][0]["code"]
        ),
        (&json!(2), &json!("skip"), &json!("exists")),
        "{rows:?}"
    );
    assert_eq!(rows[0]["matched"], a1_id);
    assert_eq!(
        state(&one(&app, "item", "sku", "A1").await.unwrap()),
        (json!("Apple"), json!(5), json!("red")),
        "an insert leaves an existing record alone"
    );

    // Update by key: empty cells keep values; an unknown key is skipped.
    let job = import_done(
        &app,
        "item",
        &[("mode", "update"), ("key", "sku")],
        "sku,name,qty,note\nA1,,6,\nZZ,Zed,1,\n",
    )
    .await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["progress"]["updated"], 1, "{job}");
    assert_eq!(counts(&job["progress"]), [0, 0, 0, 1, 0], "{job}");
    let rows = outcomes(&app, job["id"].as_str().unwrap()).await;
    assert_eq!(rows[0]["action"], "update", "{rows:?}");
    assert_eq!(rows[0]["id"], a1_id, "{rows:?}");
    assert_eq!(
        (&rows[1]["action"], &rows[1]["errors"][0]["code"]),
        (&json!("skip"), &json!("no_match")),
        "{rows:?}"
    );
    assert_eq!(
        state(&one(&app, "item", "sku", "A1").await.unwrap()),
        (json!("Apple"), json!(6), json!("red")),
        "empty cells keep the values"
    );
    assert!(one(&app, "item", "sku", "ZZ").await.is_none());
    // With clear_empty an empty cell clears.
    let job = import_done(
        &app,
        "item",
        &[("mode", "update"), ("key", "sku"), ("clear_empty", "true")],
        "sku,qty,note\nB2,8,\n",
    )
    .await;
    assert_eq!(job["progress"]["updated"], 1, "{job}");
    assert_eq!(
        state(&one(&app, "item", "sku", "B2").await.unwrap()),
        (json!("Banana"), json!(8), Value::Null),
        "clear_empty: the empty note is cleared, the absent name kept"
    );

    // Upsert: update where the key is, create where it is not.
    let job = import_done(
        &app,
        "item",
        &[("mode", "upsert"), ("key", "sku")],
        "sku,name,qty\nC3,Cherry red,4\nD4,Date,2\n",
    )
    .await;
    assert_eq!(job["progress"]["updated"], 1, "{job}");
    assert_eq!(counts(&job["progress"]), [1, 0, 0, 0, 0], "{job}");
    assert_eq!(
        state(&one(&app, "item", "sku", "C3").await.unwrap()),
        (json!("Cherry red"), json!(4), Value::Null)
    );
    assert_eq!(
        state(&one(&app, "item", "sku", "D4").await.unwrap()),
        (json!("Date"), json!(2), Value::Null)
    );
    assert_eq!(total(&app, "item").await, 4);

    // All or nothing: two bad rows among good ones; nothing is written, both reported.
    let file = "sku,name,qty\nE5,Egg,1\nF6,Fig,lots\nG7,Grape,3\nH8,,2\nI9,Ice,1.5\n";
    let job = import_done(&app, "item", &[], file).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(job["progress"]["failure"].is_string(), "{job}");
    assert_eq!(job["progress"]["rejected"], 3, "{job}");
    let reported: BTreeSet<(u64, String)> = job["progress"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["column"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reported,
        BTreeSet::from([
            (3, "qty".to_owned()),
            (5, "name".to_owned()),
            (6, "qty".to_owned())
        ]),
        "{job}"
    );
    assert_eq!(total(&app, "item").await, 4, "nothing was written");
    assert!(one(&app, "item", "sku", "E5").await.is_none());

    // The same, skipping bad rows: the good ones go in, the bad ones to the error file.
    let job = import_done(&app, "item", &[("on_error", "skip")], file).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(counts(&job["progress"]), [2, 0, 0, 0, 3], "{job}");
    assert_eq!(total(&app, "item").await, 6);
    assert_eq!(
        state(&one(&app, "item", "sku", "G7").await.unwrap()),
        (json!("Grape"), json!(3), Value::Null)
    );
    let ef = error_file(&app, job["id"].as_str().unwrap()).await;
    assert_eq!(ef[0], ["row", "sku", "name", "qty", "errors"]);
    assert_eq!(ef.len(), 4, "{ef:?}");
    let by_row: BTreeMap<&str, &Vec<String>> = ef[1..].iter().map(|r| (r[0].as_str(), r)).collect();
    assert_eq!(by_row["3"][..4], ["3", "F6", "Fig", "lots"]);
    assert_eq!(by_row["5"][..4], ["5", "H8", "", "2"]);
    assert_eq!(by_row["6"][..4], ["6", "I9", "Ice", "1.5"]);
    for (row, col) in [("3", "qty"), ("5", "name"), ("6", "qty")] {
        let why = &by_row[row][4];
        assert!(why.contains(col), "row {row}: {why:?}");
    }

    // Relations: by the target's title field, and by relation_keys.
    app.form(
        json!({"name": "supplier", "label": {"en": "Supplier"}, "title_field": "name", "fields": [
        {"name": "name", "type": "text"}, {"name": "code", "type": "text"}]}),
    )
    .await;
    app.form(json!({"name": "part", "label": {"en": "Part"}, "fields": [
        {"name": "label", "type": "text"},
        {"name": "supplier", "type": "relation", "target": "supplier"}]}))
        .await;
    let acme = app
        .create("supplier", json!({"name": "Acme", "code": "S-1"}))
        .await;
    let globex = app
        .create("supplier", json!({"name": "Globex", "code": "S-2"}))
        .await;
    let job = import_done(
        &app,
        "part",
        &[("on_error", "skip")],
        "label,supplier\nbolt,Acme\nnut,Globex\nscrew,Initech\n",
    )
    .await;
    assert_eq!(counts(&job["progress"]), [2, 0, 0, 0, 1], "{job}");
    let e = &job["progress"]["errors"][0];
    assert_eq!(
        (&e["row"], &e["column"], &e["code"]),
        (&json!(4), &json!("supplier"), &json!("not_found")),
        "{job}"
    );
    assert_eq!(
        one(&app, "part", "label", "bolt").await.unwrap()["supplier"],
        acme["id"]
    );
    assert_eq!(
        one(&app, "part", "label", "nut").await.unwrap()["supplier"],
        globex["id"]
    );
    let job = import_done(
        &app,
        "part",
        &[
            ("on_error", "skip"),
            ("relation_keys", r#"{"supplier": "code"}"#),
        ],
        "label,supplier\nwasher,S-2\npin,Acme\n",
    )
    .await;
    assert_eq!(counts(&job["progress"]), [1, 0, 0, 0, 1], "{job}");
    let e = &job["progress"]["errors"][0];
    assert_eq!(
        (&e["row"], &e["column"], &e["code"]),
        (&json!(3), &json!("supplier"), &json!("not_found")),
        "by code, a name finds nothing: {job}"
    );
    assert_eq!(
        one(&app, "part", "label", "washer").await.unwrap()["supplier"],
        globex["id"]
    );
    assert!(one(&app, "part", "label", "pin").await.is_none());

    // A key repeated in one file: the first row creates the record, the second finds it
    // (update in upsert, skip in insert), whatever the batch size.
    let mut got = Vec::new();
    for (i, (mode, batch)) in [
        ("upsert", "1"),
        ("upsert", "1000"),
        ("insert", "1"),
        ("insert", "1000"),
    ]
    .into_iter()
    .enumerate()
    {
        let form = format!("stock{i}");
        app.form(json!({"name": form, "label": {"en": "Stock"}, "fields": [
            {"name": "sku", "type": "text"}, {"name": "qty", "type": "integer"}]}))
            .await;
        let job = import_done(
            &app,
            &form,
            &[
                ("mode", mode),
                ("key", "sku"),
                ("batch", batch),
                ("on_error", "skip"),
            ],
            "sku,qty\nK,1\nK,2\n",
        )
        .await;
        let p = &job["progress"];
        let stored: Vec<Value> = records(&app, &form)
            .await
            .iter()
            .map(|r| json!([r["sku"], r["qty"]]))
            .collect();
        got.push(format!(
            "{mode} batch={batch}: created {} updated {} skipped {}, records {}",
            p["created"],
            p["updated"],
            p["skipped"],
            Value::Array(stored)
        ));
    }
    assert_eq!(
        got,
        [
            "upsert batch=1: created 1 updated 1 skipped 0, records [[\"K\",2]]",
            "upsert batch=1000: created 1 updated 1 skipped 0, records [[\"K\",2]]",
            "insert batch=1: created 1 updated 0 skipped 1, records [[\"K\",1]]",
            "insert batch=1000: created 1 updated 0 skipped 1, records [[\"K\",1]]",
        ]
    );
}
