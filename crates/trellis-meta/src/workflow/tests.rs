use serde_json::json;

use super::*;

fn forms(name: &str) -> Option<Form> {
    let v = match name {
        "lead" => json!({"name": "lead", "label": {"en": "Lead"}, "fields": [
            {"name": "company", "type": "text"},
            {"name": "status", "type": "select", "options": [{"value": "new"}, {"value": "contacted"}]},
            {"name": "score", "type": "formula", "expression": "1", "result_type": "integer"},
            {"name": "follower", "type": "user"},
            {"name": "next_call", "type": "date"}]}),
        "task" => json!({"name": "task", "label": {"en": "Task"}, "fields": [
            {"name": "title", "type": "text"},
            {"name": "lead", "type": "relation", "target": "lead"},
            {"name": "other", "type": "relation", "target": "task"}]}),
        _ => return None,
    };
    Some(serde_json::from_value(v).unwrap())
}

fn rules(name: &str) -> Option<(String, RuleKind)> {
    match name {
        "lead_route" => Some(("lead".into(), RuleKind::Route)),
        "lead_score" => Some(("lead".into(), RuleKind::Score)),
        "is_big" => Some(("lead".into(), RuleKind::Condition)),
        "task_check" => Some(("task".into(), RuleKind::Condition)),
        _ => None,
    }
}

fn check(doc: Value) -> Result<Workflow, Vec<MetaError>> {
    let cat = Catalog {
        form: &forms,
        rule: &rules,
        role: &|r| r == "sales_manager",
    };
    check_workflow_at(&doc, &cat, "")
}

fn paths(errs: &[MetaError]) -> Vec<(&str, &str)> {
    errs.iter().map(|e| (e.path.as_str(), e.code)).collect()
}

#[test]
fn a_new_lead_workflow_round_trips() {
    let doc = json!({
        "name": "new_lead", "label": {"en": "New lead", "zh-CN": "新线索"}, "form": "lead",
        "trigger": {"on": "created"},
        "condition": {"status": "new"},
        "params": {"first_contact": "24h"},
        "steps": [
            {"type": "assign", "rule": "lead_route"},
            {"id": "todo", "type": "task", "title": "Call {{ record.company }}", "assignee": "owner",
             "due": "$params.first_contact"},
            {"type": "notify", "to": {"field": "follower"}, "message": "New lead"},
            {"type": "if", "rule": "is_big", "then": [
                {"type": "approval", "levels": [{"approver": {"role": "sales_manager"}, "when": {"status": "new"}}],
                 "on_reject": [{"type": "set", "values": {"status": "contacted"}}]}],
             "else": [{"type": "stop"}]},
            {"type": "create", "form": "task", "values": {"title": "Follow up"}, "link": "lead"},
            {"type": "wait", "until": {"status": "contacted"}, "timeout": "3d"},
            {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s", "timeout": "10s", "retries": 3}
        ]
    });
    let wf = check(doc.clone()).unwrap();
    assert_eq!(serde_json::to_value(&wf).unwrap(), doc);
    assert!(matches!(wf.steps[3].kind, StepKind::If { .. }));
}

#[test]
fn references_are_checked_with_their_paths() {
    let errs = check(json!({
        "name": "bad", "label": {"en": "Bad"}, "form": "lead",
        "trigger": {"on": "changed", "field": "status", "to": "won"},
        "condition_rule": "task_check",
        "steps": [
            {"type": "set", "values": {"score": 5, "nothing": 1}},
            {"type": "assign", "rule": "lead_score"},
            {"type": "task", "title": "x", "assignee": {"role": "ghost"}, "due": "$params.missing"},
            {"type": "create", "form": "task", "values": {"title": "t"}, "link": "other"},
            {"type": "update_related", "form": "nowhere", "via": "lead", "values": {}},
            {"type": "wait", "duration": "1h", "until": {"status": "new"}},
            {"id": "a", "type": "stop"}, {"id": "a", "type": "stop"}
        ]
    }))
    .unwrap_err();
    assert_eq!(
        paths(&errs),
        vec![
            ("trigger.to", "unknown_option"),
            ("condition_rule", "wrong_form"),
            ("steps[0].values.score", "read_only"),
            ("steps[0].values.nothing", "unknown_field"),
            ("steps[1].rule", "wrong_kind"),
            ("steps[2].assignee", "unknown_role"),
            ("steps[2].due", "invalid_duration"),
            ("steps[3].link", "not_a_link"),
            ("steps[4].form", "unknown_form"),
            ("steps[5]", "wait_needs_one"),
            ("steps[7].id", "duplicate_id"),
        ]
    );
}

#[test]
fn shape_errors_come_from_the_schema() {
    let errs = check(json!({"name": "x", "label": {"en": "X"}, "form": "lead",
        "trigger": {"on": "sometimes"}, "steps": [{"type": "dance"}]}))
    .unwrap_err();
    assert!(errs.iter().all(|e| e.code == "schema"), "{errs:?}");
    let errs = check(json!({"name": "x", "label": {"en": "X"}, "form": "nowhere",
        "trigger": {"on": "created"}, "steps": []}))
    .unwrap_err();
    assert_eq!(paths(&errs), vec![("form", "unknown_form")]);
}

#[test]
fn triggers_name_real_fields_and_durations() {
    let errs = check(json!({"name": "x", "label": {"en": "X"}, "form": "lead",
        "trigger": {"on": "before", "field": "company", "offset": "$params.lead_time"}, "steps": []}))
    .unwrap_err();
    assert_eq!(
        paths(&errs),
        vec![
            ("trigger.field", "not_a_date"),
            ("trigger.offset", "invalid_duration")
        ]
    );
    let ok = check(json!({"name": "x", "label": {"en": "X"}, "form": "lead",
        "params": {"lead_time": "30d"},
        "trigger": {"on": "before", "field": "next_call", "offset": "$params.lead_time"}, "steps": []}));
    assert!(ok.is_ok(), "{ok:?}");
    let errs = check(json!({"name": "x", "label": {"en": "X"}, "form": "lead",
        "trigger": {"on": "schedule", "cron": "0 9 * * *"}, "steps": []}))
    .unwrap_err();
    assert_eq!(paths(&errs), vec![("trigger.cron", "invalid_cron")]);
}

#[test]
fn a_workflow_that_would_set_itself_off_is_refused() {
    let looped = json!({"name": "x", "label": {"en": "X"}, "form": "lead",
        "trigger": {"on": "updated"},
        "steps": [{"type": "if", "condition": {"status": "new"},
                   "then": [{"type": "set", "values": {"status": "contacted"}}]}]});
    assert_eq!(
        paths(&check(looped).unwrap_err()),
        vec![("trigger", "retriggers_itself")]
    );
    // The owner is a field a trigger may watch (three days after assignment).
    let assigned = json!({"name": "x", "label": {"en": "X"}, "form": "lead",
        "trigger": {"on": "after", "field": "owner", "delay": "3d"}, "condition": {"status": "new"},
        "steps": [{"type": "notify", "to": "owner_manager", "message": "Still new"}]});
    assert!(check(assigned).is_ok());
    let narrowed = json!({"name": "x", "label": {"en": "X"}, "form": "lead",
        "trigger": {"on": "updated", "fields": ["company"]},
        "steps": [{"type": "set", "values": {"status": "contacted"}}]});
    assert!(check(narrowed).is_ok());
}

#[test]
fn durations() {
    let p = BTreeMap::from([("d".to_owned(), json!("3d")), ("n".to_owned(), json!(3))]);
    assert_eq!(parse_duration("90s", &p), Ok(Duration::from_secs(90)));
    assert_eq!(
        parse_duration("2w", &p),
        Ok(Duration::from_secs(14 * 86_400))
    );
    assert_eq!(
        parse_duration("$params.d", &p),
        Ok(Duration::from_secs(3 * 86_400))
    );
    assert!(parse_duration("$params.n", &p).is_err());
    assert!(parse_duration("$params.zz", &p).is_err());
    assert!(parse_duration("3 days", &p).is_err());
    assert!(parse_duration("99999999999w", &p).is_err());
}

#[test]
fn cron_time_zones_and_templates_are_checked_at_save() {
    let doc = json!({
        "name": "w", "label": {"en": "W"}, "form": "lead",
        "trigger": {"on": "schedule", "cron": "0 0 25 * * *", "timezone": "Mars/Olympus"},
        "steps": [
            {"type": "task", "title": "Call {{ record.company", "assignee": "owner"},
            {"type": "email", "to": "{{ record.email }}", "subject": "Hi", "body": "{% if x %}open"},
            {"type": "set", "values": {"company": "{{ record.company | }}"}}
        ]
    });
    let errs = check(doc).unwrap_err();
    let p = paths(&errs);
    assert!(p.contains(&("trigger.cron", "invalid_cron")), "{p:?}");
    assert!(
        p.contains(&("trigger.timezone", "unknown_timezone")),
        "{p:?}"
    );
    assert!(p.contains(&("steps[0].title", "invalid_template")), "{p:?}");
    assert!(p.contains(&("steps[1].body", "invalid_template")), "{p:?}");
    assert!(
        p.contains(&("steps[2].values.company", "invalid_template")),
        "{p:?}"
    );
    let good = json!({
        "name": "w", "label": {"en": "W"}, "form": "lead",
        "trigger": {"on": "schedule", "cron": "0 0 9 * * Mon-Fri", "timezone": "Asia/Shanghai"},
        "steps": [{"type": "task", "title": "Call {{ record.company }}", "assignee": "owner"}]
    });
    assert!(check(good).is_ok());
}
