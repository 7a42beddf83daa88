use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn rec(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn engine() -> RuleEngine {
    RuleEngine::default()
}

fn run(script: &str, record: Value) -> Result<Outcome, RuleError> {
    let e = engine();
    let c = e.compile("t", script)?;
    e.run(&c, &rec(record), None)
}

const LEAD_SCORE: &str = include_str!("../fixtures/lead_score.rhai");

#[test]
fn a_script_reads_the_record_and_answers_json() {
    let o = run(
        "let b = value_or(record.budget, 0.0); #{score: record.employees * 2, big: b > 100000}",
        json!({"employees": 21, "budget": 250000.5}),
    )
    .unwrap();
    assert_eq!(o.value, json!({"score": 42, "big": true}));
    assert_eq!(run("record.missing", json!({})).unwrap().value, Value::Null);
    assert_eq!(
        run("value_or(record.city, \"北京市\")", json!({"city": null}))
            .unwrap()
            .value,
        json!("北京市")
    );
}

#[test]
fn updates_see_the_previous_values() {
    let e = engine();
    let c = e
        .compile("t", "if is_new { \"new\" } else if record.status != previous.status { \"moved\" } else { \"same\" }")
        .unwrap();
    let now = rec(json!({"status": "won"}));
    assert_eq!(e.run(&c, &now, None).unwrap().value, json!("new"));
    let before = rec(json!({"status": "open"}));
    assert_eq!(
        e.run(&c, &now, Some(&before)).unwrap().value,
        json!("moved")
    );
}

#[test]
fn rejections_assignments_and_the_log_are_collected() {
    let o = run(
        r#"
        print("checking");
        if !value_or(record.phone, "").starts_with("1") { reject("phone", "手机号应以 1 开头"); }
        debug(record.region);
        assign("u-42");
        "#,
        json!({"phone": "0211234", "region": "east"}),
    )
    .unwrap();
    assert_eq!(
        o.rejections,
        vec![Rejection {
            field: "phone".into(),
            message: "手机号应以 1 开头".into()
        }]
    );
    assert_eq!(o.assigned.as_deref(), Some("u-42"));
    assert_eq!(o.log[0], "checking");
    assert!(o.log[1].starts_with("line 4: "), "{:?}", o.log);
    // The next run starts clean.
    let o = run("1", json!({})).unwrap();
    assert!(o.rejections.is_empty() && o.assigned.is_none() && o.log.is_empty());
}

#[test]
fn date_helpers() {
    assert_eq!(
        run(
            "days_between(\"2026-11-01\", \"2026-11-23T08:00:00Z\")",
            json!({})
        )
        .unwrap()
        .value,
        json!(22)
    );
    assert_eq!(run("today().len()", json!({})).unwrap().value, json!(10));
    let e = run("days_between(\"soon\", today())", json!({})).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Runtime);
    assert!(e.message.contains("days_between"), "{e}");
}

#[test]
fn syntax_errors_name_the_line_and_column() {
    let e = engine()
        .compile("lead_score", "let x = 1;\nlet y = x +;\n")
        .unwrap_err();
    assert_eq!((e.kind, e.line), (ErrorKind::Syntax, Some(2)));
    assert!(e.column.is_some());
    assert!(
        e.to_string().starts_with("rule \"lead_score\" at line 2"),
        "{e}"
    );
}

#[test]
fn runtime_errors_name_the_rule_and_line() {
    for (script, what) in [
        ("let a = 1;\nlet b = a / 0;", "division"),
        ("let a = 1;\nlet b = a + \"x\" * 2;", "type"),
        ("let a = 1;\nthrow \"no\";", "throw"),
        ("let a = 1;\nno_such_function(a);", "unknown"),
    ] {
        let e = run(script, json!({})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Runtime, "{what}: {e}");
        assert_eq!(e.line, Some(2), "{what}: {e}");
        assert_eq!(e.rule, "t");
    }
    for script in ["100.0 / 0", "0.0 / 0.0"] {
        let e = run(script, json!({})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Runtime, "{script}: {e}");
        assert!(e.message.contains("not a number"), "{e}");
    }
}

#[test]
fn runaway_scripts_are_stopped() {
    let e = run("loop { }", json!({})).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyOperations);
    let e = run("fn f(n) { f(n + 1) } f(0)", json!({})).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooDeep);
    let e = run("let s = \"x\"; loop { s += s; }", json!({})).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    let e = run("let a = []; loop { a.push(1); }", json!({})).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::TooLarge | ErrorKind::TooManyOperations),
        "{e}"
    );
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert!(engine().compile("t", &deep).is_err());
}

#[test]
fn wall_time_is_limited() {
    let e = RuleEngine::new(Limits {
        max_operations: 0,
        max_time: Duration::from_millis(50),
        ..Limits::default()
    });
    let c = e.compile("slow", "let i = 0; loop { i += 1; }").unwrap();
    let started = Instant::now();
    let err = e.run(&c, &Map::new(), None).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn no_modules_and_no_eval() {
    assert!(run("import \"x\" as x; 1", json!({})).is_err());
    assert!(engine().compile("t", "eval(\"1\")").is_err());
}

#[test]
fn the_crm_lead_score_ranks_website_consultations_from_large_manufacturers_hot() {
    let e = engine();
    let c = e.compile("lead_score", LEAD_SCORE).unwrap();
    let hot = rec(
        json!({"company": "苏州精工机械有限公司", "source": "website", "industry": "manufacturing",
        "employees": 1200, "title": "采购总监", "downloaded_pricing": true, "page_visits": 6}),
    );
    let cold = rec(
        json!({"company": "Corner Cafe", "source": "expo", "industry": "retail", "employees": 4}),
    );
    let empty = rec(json!({}));
    let score = |r: &Map<String, Value>| e.run(&c, r, None).unwrap().value.as_i64().unwrap();
    assert_eq!(score(&hot), 100);
    assert!(score(&cold) < 50, "{}", score(&cold));
    assert_eq!(score(&empty), 5, "missing fields count as nothing");
    let manager = rec(
        json!({"source": "referral", "industry": "it", "employees": 300, "title": "IT Manager"}),
    );
    assert_eq!(score(&manager), 25 + 15 + 15 + 15);
}

#[test]
fn one_engine_serves_many_threads() {
    let e = std::sync::Arc::new(engine());
    let c = std::sync::Arc::new(e.compile("t", "record.n * 2").unwrap());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (e, c) = (e.clone(), c.clone());
            std::thread::spawn(move || e.run(&c, &rec(json!({"n": i})), None).unwrap().value)
        })
        .collect();
    let got: Vec<Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got, vec![json!(0), json!(2), json!(4), json!(6)]);
}

#[test]
fn the_log_and_rejections_stay_small() {
    let o = run(
        "let s = \"x\"; for i in 0..12 { s += s; } for i in 0..5000 { print(s); reject(\"f\", s); }",
        json!({}),
    )
    .unwrap();
    assert_eq!(o.log.len(), 200);
    assert!(o.log[0].len() < 2100);
    assert_eq!(o.rejections.len(), 200);
}

#[test]
fn long_texts_fit() {
    let long = "长".repeat(100_000);
    let o = run("value_or(record.notes, \"\").len()", json!({"notes": long})).unwrap();
    assert_eq!(o.value, json!(100_000));
}

/// Drive a run to the end, answering facts from `host` and counting the runs.
fn run_facts(
    script: &str,
    record: Value,
    host: impl Fn(&Fact) -> Value,
) -> (Result<Outcome, RuleError>, Vec<Fact>) {
    let e = engine();
    let c = e.compile("route", script).unwrap();
    let mut facts = Facts::new();
    let mut asked = Vec::new();
    loop {
        match e.run_with(&c, &rec(record.clone()), None, &mut facts) {
            Ok(Step::Done(o)) => return (Ok(o), asked),
            Ok(Step::Need(Need { fact: f, .. })) => {
                asked.push(f.clone());
                let v = host(&f);
                facts.insert(f, v);
            }
            Err(err) => return (Err(err), asked),
        }
    }
}

#[test]
fn helpers_that_need_data_ask_the_host_and_the_script_runs_again() {
    let script = r#"
        let c = related("customer");
        if value_or(c, #{}).level == "A" { assign("vip@x.com"); return; }
        let team = if record.region == "east" { "shanghai" } else { "north" };
        print(`members ${team_members(team).len()}`);
        assign(least_loaded(team, "lead"));
    "#;
    let host = |f: &Fact| match f {
        Fact::Related(field) if field == "customer" => json!({"level": "B"}),
        Fact::TeamMembers(t) if t == "shanghai" => json!(["a@x.com", "b@x.com"]),
        Fact::LeastLoaded { team, form } if team == "shanghai" && form == "lead" => {
            json!("b@x.com")
        }
        other => panic!("unexpected {other:?}"),
    };
    let (o, asked) = run_facts(script, json!({"region": "east"}), host);
    let o = o.unwrap();
    assert_eq!(o.assigned.as_deref(), Some("b@x.com"));
    // Only the last run's output counts: one line, not one per run.
    assert_eq!(o.log, vec!["members 2"]);
    assert_eq!(asked.len(), 3);
}

#[test]
fn an_empty_answer_is_unit_and_assigning_it_keeps_the_owner() {
    let (o, _) = run_facts(
        r#"assign(round_robin("nobody")); lookup("customer", record.customer)"#,
        json!({"customer": null}),
        |_| Value::Null,
    );
    let o = o.unwrap();
    assert_eq!(o.assigned, None);
    assert_eq!(o.value, Value::Null);
}

#[test]
fn a_fact_that_cannot_be_had_fails_where_the_script_asked() {
    let e = engine();
    let c = e
        .compile("route", "let x = 1;\nassign(round_robin(\"nowhere\"));")
        .unwrap();
    let Ok(Step::Need(n)) = e.run_with(&c, &Map::new(), None, &mut Facts::new()) else {
        panic!("expected a need");
    };
    let err = n.failed("route", "no team named \"nowhere\"");
    assert_eq!((err.line, err.column), (Some(2), Some(8)));
    assert_eq!(
        err.to_string(),
        "rule \"route\" at line 2, column 8: round_robin(): no team named \"nowhere\""
    );
}

#[test]
fn a_script_cannot_catch_the_pause_for_a_fact() {
    let (o, asked) = run_facts(
        r#"let n = 0; try { n = open_count("a@x.com", "lead"); } catch { n = -1; } n"#,
        json!({}),
        |_| json!(7),
    );
    assert_eq!(o.unwrap().value, json!(7));
    assert_eq!(asked.len(), 1);
}

#[test]
fn without_a_host_the_helpers_fail_with_their_name() {
    let err = run(r#"team_members("north")"#, json!({})).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Runtime);
    assert!(err.message.contains("team_members"), "{err}");
}

#[test]
fn a_script_that_asks_for_endless_facts_is_stopped() {
    let (o, asked) = run_facts(
        r#"let i = 0; loop { lookup("lead", `${i}`); i += 1; }"#,
        json!({}),
        |_| json!({}),
    );
    let err = o.unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooManyOperations);
    assert!(err.message.contains("lookups"), "{err}");
    assert_eq!(asked.len(), MAX_FACTS);
}

#[test]
fn the_runs_of_one_evaluation_share_its_time_limit() {
    let e = engine();
    let c = e
        .compile(
            "slow",
            r#"let i = 0; while i < 1000 { i += 1; } lookup("lead", "1")"#,
        )
        .unwrap();
    // A fresh evaluation gets as far as its first fact...
    let fresh = e.run_with(&c, &Map::new(), None, &mut Facts::new());
    assert!(matches!(fresh, Ok(Step::Need(_))), "{fresh:?}");
    // ...one that began longer ago than the limit is out of time, however short this run.
    let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(1)) else {
        return;
    };
    let err = e
        .run_with(&c, &Map::new(), None, &mut Facts::since(long_ago))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
}
