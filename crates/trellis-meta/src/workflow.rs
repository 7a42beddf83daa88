//! Workflow definitions: a trigger on a form's records, a condition, and steps. This module
//! knows their shape and checks them against the forms, rules and roles; running them is
//! the workflow engine's job. Filters (conditions, `when`, `until`) are checked by the
//! caller, which knows the filter language.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::check::schema_errors;
use crate::error::MetaError;
use crate::form::{FieldType, Form, Label};
use crate::rule::RuleKind;

/// The JSON Schema of a workflow definition, as shipped in `schemas/`.
pub const WORKFLOW_SCHEMA: &str = include_str!("../../../schemas/workflow.schema.json");

/// How deep steps may nest (`if` and `approval` branches).
pub const MAX_DEPTH: usize = 8;

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    /// Machine name.
    pub name: String,
    /// Display name per language.
    pub label: Label,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// The form whose records it runs on.
    pub form: String,
    /// What starts it.
    pub trigger: Trigger,
    /// A filter the record must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    /// A condition rule that must answer true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_rule: Option<String>,
    /// Values referred to as `$params.<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    /// What it does.
    pub steps: Vec<Step>,
    /// Does it start runs?
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
}

/// What starts a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum Trigger {
    /// A record was created.
    Created,
    /// A record was updated (when one of `fields` changed, if any are named).
    Updated {
        /// Only these fields count.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fields: Vec<String>,
    },
    /// A record was created, or updated when one of `fields` changed (any, if none are
    /// named): for work that must follow a record's first state and every edit of it.
    Saved {
        /// Only these fields count on update.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fields: Vec<String>,
    },
    /// A record was deleted.
    Deleted,
    /// A field changed, optionally from and to given values.
    Changed {
        /// The field.
        field: String,
        /// Only from this value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// Only to this value (a stage entered).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// On a schedule, for every record matching the condition.
    Schedule {
        /// Six fields, with seconds.
        cron: String,
        /// IANA time zone (default UTC).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// A while after creation or after a field was set.
    After {
        /// The field whose setting starts the clock (default: creation).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        /// How long after.
        delay: String,
    },
    /// A while before a date field.
    Before {
        /// A date or datetime field.
        field: String,
        /// How long before.
        offset: String,
    },
    /// A person starts it on a record.
    Manual {
        /// The button's caption.
        #[serde(default, skip_serializing_if = "Label::is_empty")]
        label: Label,
    },
    /// An inbound webhook starts it.
    Webhook,
}

/// One step, with an optional id for run logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Names the step in run logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What it does.
    #[serde(flatten)]
    pub kind: StepKind,
}

impl Step {
    /// Visit these steps and every step in their branches, each with its path
    /// (`steps[2].then[0]`).
    pub fn walk<'a>(steps: &'a [Step], at: &str, f: &mut dyn FnMut(&str, &'a StepKind)) {
        for (i, s) in steps.iter().enumerate() {
            let at = format!("{at}[{i}]");
            f(&at, &s.kind);
            let branches: [(&str, &'a [Step]); 2] = match &s.kind {
                StepKind::Approval {
                    on_approve,
                    on_reject,
                    ..
                } => [("on_approve", on_approve), ("on_reject", on_reject)],
                StepKind::If {
                    then, otherwise, ..
                } => [("then", then), ("else", otherwise)],
                _ => continue,
            };
            for (name, b) in branches {
                Self::walk(b, &format!("{at}.{name}"), f);
            }
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepKind {
    /// Set fields of the record.
    Set {
        /// Field values.
        values: Map<String, Value>,
    },
    /// Run a score, grade or formula rule and store its value.
    Rule {
        /// The rule.
        rule: String,
    },
    /// Route the record with a route rule.
    Assign {
        /// The rule.
        rule: String,
    },
    /// Create a record.
    Create {
        /// Its form.
        form: String,
        /// Its values.
        values: Map<String, Value>,
        /// A relation field of the new record set to this record.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<String>,
    },
    /// Update the records that point at this one.
    UpdateRelated {
        /// Their form.
        form: String,
        /// Their relation field pointing here.
        via: String,
        /// The values.
        values: Map<String, Value>,
    },
    /// Create a to-do.
    Task {
        /// Title (a template).
        title: String,
        /// Details (a template).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Who does it.
        assignee: Assignee,
        /// When it is due, from now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<String>,
    },
    /// An in-app notice.
    Notify {
        /// Who gets it.
        to: Assignee,
        /// The message (a template).
        message: String,
    },
    /// Send an e-mail.
    Email {
        /// Addresses (a template).
        to: String,
        /// Subject (a template).
        subject: String,
        /// Body (a template).
        body: String,
    },
    /// Call a URL.
    Webhook {
        /// The URL (a template).
        url: String,
        /// HMAC-SHA256 signing secret (a template: `{{ params.secret }}`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        /// How long one attempt may take.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<String>,
        /// Attempts after the first before the dead letter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retries: Option<u32>,
        /// The body (default: the record).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Value>,
    },
    /// Ask for approval, level by level.
    Approval {
        /// The levels, in order.
        levels: Vec<Level>,
        /// Steps after approval.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        on_approve: Vec<Step>,
        /// Steps after a rejection.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        on_reject: Vec<Step>,
    },
    /// Wait a while, or until the record matches a filter.
    Wait {
        /// How long.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<String>,
        /// Until the record matches this filter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<Value>,
        /// Give up waiting for `until` after this long.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<String>,
    },
    /// Branch on a filter or a condition rule.
    If {
        /// The filter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        condition: Option<Value>,
        /// Or a condition rule.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        /// Steps when it holds.
        then: Vec<Step>,
        /// Steps when it does not.
        #[serde(default, rename = "else", skip_serializing_if = "Vec::is_empty")]
        otherwise: Vec<Step>,
    },
    /// End the run.
    Stop,
}

/// One level of an approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// Who approves.
    pub approver: Assignee,
    /// The level applies only to records matching this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Value>,
    /// Its name per language.
    #[serde(default, skip_serializing_if = "Label::is_empty")]
    pub label: Label,
}

/// Who a task, notice or approval goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Assignee {
    /// Someone related to the record.
    Who(Who),
    /// A user by e-mail.
    User {
        /// The e-mail.
        user: String,
    },
    /// Everyone holding a role.
    Role {
        /// The role.
        role: String,
    },
    /// The user in a user field of the record.
    Field {
        /// The field.
        field: String,
    },
    /// The owner's manager this many levels up the reporting line (1: their manager).
    Manager {
        /// Levels up, 1 to 8.
        manager: u8,
    },
}

/// Someone related to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Who {
    /// Its owner.
    Owner,
    /// Its owner's manager.
    OwnerManager,
    /// Whoever created it.
    Creator,
}

/// Parse a duration: `30s`, `15m`, `24h`, `3d`, `2w`, or `$params.<name>` naming one.
pub fn parse_duration(s: &str, params: &BTreeMap<String, Value>) -> Result<Duration, String> {
    let s = match s.strip_prefix("$params.") {
        Some(name) => match params.get(name) {
            Some(Value::String(v)) if !v.starts_with('$') => v.as_str(),
            Some(_) => return Err(format!("the parameter {name:?} is not a duration")),
            None => return Err(format!("no parameter named {name:?}")),
        },
        None => s,
    };
    let unit = s.chars().last().ok_or("an empty duration")?;
    let secs: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(format!("{s:?} is not a duration (30s, 15m, 24h, 3d, 2w)")),
    };
    let n: u64 = s[..s.len() - 1]
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (30s, 15m, 24h, 3d, 2w)"))?;
    n.checked_mul(secs)
        .filter(|t| *t <= 10 * 366 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is longer than ten years"))
}

/// What a workflow check needs to know besides the forms.
pub struct Catalog<'a> {
    /// A form by name.
    pub form: &'a dyn Fn(&str) -> Option<Form>,
    /// A rule's form and kind by name.
    pub rule: &'a dyn Fn(&str) -> Option<(String, RuleKind)>,
    /// Does a role exist?
    pub role: &'a dyn Fn(&str) -> bool,
}

/// Check a workflow's shape and what it refers to (forms, fields, rules, roles, durations,
/// step nesting, a trigger it would set off itself). Filters are left to the caller.
pub fn check_workflow_at(
    doc: &Value,
    cat: &Catalog<'_>,
    prefix: &str,
) -> Result<Workflow, Vec<MetaError>> {
    static CELL: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    let errors = schema_errors(WORKFLOW_SCHEMA, &CELL, doc, prefix);
    if !errors.is_empty() {
        return Err(errors);
    }
    let wf: Workflow = serde_json::from_value(doc.clone())
        .map_err(|e| vec![MetaError::new(prefix, "schema", e.to_string())])?;
    let at = |p: &str| {
        if prefix.is_empty() {
            p.to_owned()
        } else {
            format!("{prefix}.{p}")
        }
    };
    let Some(form) = (cat.form)(&wf.form) else {
        return Err(vec![MetaError::new(
            at("form"),
            "unknown_form",
            format!("no form named {:?}", wf.form),
        )]);
    };
    let mut c = Checker {
        wf: &wf,
        form: &form,
        cat,
        errs: Vec::new(),
        ids: HashSet::new(),
        sets: HashSet::new(),
    };
    c.trigger(&at("trigger"));
    if let Some(r) = &wf.condition_rule {
        c.rule(&at("condition_rule"), r, &[RuleKind::Condition]);
    }
    c.steps(&wf.steps, &at("steps"), 1);
    // A workflow that sets what its own update trigger watches would set itself off again.
    if let Trigger::Updated { fields } | Trigger::Saved { fields } = &wf.trigger {
        let loops = if fields.is_empty() {
            !c.sets.is_empty()
        } else {
            fields.iter().any(|f| c.sets.contains(f.as_str()))
        };
        if loops {
            c.errs.push(MetaError::new(
                at("trigger"),
                "retriggers_itself",
                "the steps change a field this trigger watches, so every run would start another; name the fields the trigger watches, or use a changed trigger",
            ));
        }
    }
    if c.errs.is_empty() {
        Ok(wf)
    } else {
        Err(c.errs)
    }
}

/// A system column (`owner`, `updated_at`): triggers may watch it.
fn system(name: &str) -> bool {
    crate::SYSTEM_COLUMNS.contains(&name)
}

struct Checker<'a> {
    wf: &'a Workflow,
    form: &'a Form,
    cat: &'a Catalog<'a>,
    errs: Vec<MetaError>,
    ids: HashSet<String>,
    /// Fields of this record the steps set.
    sets: HashSet<String>,
}

impl Checker<'_> {
    fn err(&mut self, at: &str, code: &'static str, msg: String) {
        self.errs.push(MetaError::new(at, code, msg));
    }

    fn field<'f>(
        &mut self,
        form: &'f Form,
        at: &str,
        name: &str,
    ) -> Option<&'f crate::form::Field> {
        let f = form.field(name);
        if f.is_none() {
            self.err(
                at,
                "unknown_field",
                format!("{} has no field {name:?}", form.name),
            );
        }
        f
    }

    /// The form a step writes to, named at `{at}.form`.
    fn other_form(&mut self, at: &str, name: &str) -> Option<Form> {
        let f = (self.cat.form)(name);
        if f.is_none() {
            self.err(
                &format!("{at}.form"),
                "unknown_form",
                format!("no form named {name:?}"),
            );
        }
        f
    }

    fn duration(&mut self, at: &str, s: &str) {
        if let Err(e) = parse_duration(s, &self.wf.params) {
            self.err(at, "invalid_duration", e);
        }
    }

    fn rule(&mut self, at: &str, name: &str, kinds: &[RuleKind]) {
        match (self.cat.rule)(name) {
            None => self.err(at, "unknown_rule", format!("no rule named {name:?}")),
            Some((form, _)) if form != self.form.name => self.err(
                at,
                "wrong_form",
                format!(
                    "the rule {name:?} is a rule of {form}, not of {}",
                    self.form.name
                ),
            ),
            Some((_, kind)) if !kinds.contains(&kind) => self.err(
                at,
                "wrong_kind",
                format!("the rule {name:?} cannot be used here ({kind:?})"),
            ),
            Some(_) => {}
        }
    }

    fn trigger(&mut self, at: &str) {
        let form = self.form;
        match &self.wf.trigger {
            Trigger::Updated { fields } | Trigger::Saved { fields } => {
                for (i, f) in fields.iter().enumerate() {
                    if !system(f) {
                        self.field(form, &format!("{at}.fields[{i}]"), f);
                    }
                }
            }
            Trigger::Changed { field, from, to } => {
                if system(field) {
                    return;
                }
                let Some(f) = self.field(form, &format!("{at}.field"), field) else {
                    return;
                };
                if f.kind == FieldType::Select {
                    for (k, v) in [("from", from), ("to", to)] {
                        if let Some(v) = v
                            && !f.options.iter().any(|o| &o.value == v)
                        {
                            self.err(
                                &format!("{at}.{k}"),
                                "unknown_option",
                                format!("{v:?} is not an option of {field}"),
                            );
                        }
                    }
                }
            }
            Trigger::Schedule { cron, timezone } => {
                let n = cron.split_whitespace().count();
                if !(6..=7).contains(&n) {
                    self.err(
                        &format!("{at}.cron"),
                        "invalid_cron",
                        format!("a schedule has six fields with seconds (\"0 0 9 * * *\"); {cron:?} has {n}"),
                    );
                } else if let Err(e) = croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Required)
                    .dom_and_dow(true)
                    .build()
                    .parse(cron)
                {
                    self.err(
                        &format!("{at}.cron"),
                        "invalid_cron",
                        format!("{cron:?} does not parse: {e}"),
                    );
                }
                if let Some(tz) = timezone
                    && tz.parse::<chrono_tz::Tz>().is_err()
                {
                    self.err(
                        &format!("{at}.timezone"),
                        "unknown_timezone",
                        format!("{tz:?} is not an IANA time zone (such as \"Asia/Shanghai\")"),
                    );
                }
            }
            Trigger::After { field, delay } => {
                if let Some(f) = field.as_deref().filter(|f| !system(f)) {
                    self.field(form, &format!("{at}.field"), f);
                }
                self.duration(&format!("{at}.delay"), delay);
            }
            Trigger::Before { field, offset } => {
                if let Some(f) = self.field(form, &format!("{at}.field"), field)
                    && !matches!(f.storage_type(), FieldType::Date | FieldType::Datetime)
                {
                    self.err(
                        &format!("{at}.field"),
                        "not_a_date",
                        format!("{field:?} is not a date or datetime field"),
                    );
                }
                self.duration(&format!("{at}.offset"), offset);
            }
            Trigger::Created | Trigger::Deleted | Trigger::Manual { .. } | Trigger::Webhook => {}
        }
    }

    /// Values for a record of `form`: known fields that a person could write.
    fn values(&mut self, form: &Form, at: &str, values: &Map<String, Value>) {
        for k in values.keys() {
            if k == "owner" {
                continue;
            }
            if let Some(f) = self.field(form, &format!("{at}.{k}"), k)
                && f.is_read_only()
            {
                self.err(
                    &format!("{at}.{k}"),
                    "read_only",
                    format!("{k:?} is computed; a workflow cannot set it"),
                );
            }
        }
    }

    fn assignee(&mut self, at: &str, a: &Assignee) {
        match a {
            Assignee::Role { role } if !(self.cat.role)(role) => {
                self.err(at, "unknown_role", format!("no role named {role:?}"));
            }
            Assignee::Field { field } => {
                let form = self.form;
                if let Some(f) = self.field(form, &format!("{at}.field"), field)
                    && f.kind != FieldType::User
                {
                    self.err(
                        &format!("{at}.field"),
                        "not_a_user",
                        format!("{field:?} is not a user field"),
                    );
                }
            }
            _ => {}
        }
    }

    /// A template (or a value holding templates) must parse.
    fn template(&mut self, at: &str, v: &Value) {
        match v {
            Value::String(t) if t.contains("{{") || t.contains("{%") => {
                let env = minijinja::Environment::new();
                if let Err(e) = env.template_from_str(t) {
                    self.err(
                        at,
                        "invalid_template",
                        format!("the template does not parse: {e}"),
                    );
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    self.template(&format!("{at}.{k}"), x);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.template(&format!("{at}[{i}]"), x);
                }
            }
            _ => {}
        }
    }

    fn text(&mut self, at: &str, t: &str) {
        self.template(at, &Value::String(t.to_owned()));
    }

    fn steps(&mut self, steps: &[Step], at: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.err(
                at,
                "too_deep",
                format!("steps nest at most {MAX_DEPTH} levels"),
            );
            return;
        }
        for (i, s) in steps.iter().enumerate() {
            let at = format!("{at}[{i}]");
            if let Some(id) = &s.id
                && !self.ids.insert(id.clone())
            {
                self.err(
                    &format!("{at}.id"),
                    "duplicate_id",
                    format!("the step id {id:?} is used twice"),
                );
            }
            self.step(&s.kind, &at, depth);
        }
    }

    fn step(&mut self, kind: &StepKind, at: &str, depth: usize) {
        let own = self.form;
        match kind {
            StepKind::Set { values } => {
                self.values(own, &format!("{at}.values"), values);
                self.template(&format!("{at}.values"), &Value::Object(values.clone()));
                self.sets.extend(values.keys().cloned());
            }
            StepKind::Rule { rule } => self.rule(
                &format!("{at}.rule"),
                rule,
                &[RuleKind::Score, RuleKind::Grade, RuleKind::Formula],
            ),
            StepKind::Assign { rule } => {
                self.rule(&format!("{at}.rule"), rule, &[RuleKind::Route]);
                self.sets.insert("owner".into());
            }
            StepKind::Create { form, values, link } => {
                let Some(target) = self.other_form(at, form) else {
                    return;
                };
                self.values(&target, &format!("{at}.values"), values);
                self.template(&format!("{at}.values"), &Value::Object(values.clone()));
                if let Some(l) = link
                    && let Some(f) = self.field(&target, &format!("{at}.link"), l)
                    && f.target.as_deref() != Some(own.name.as_str())
                {
                    self.err(
                        &format!("{at}.link"),
                        "not_a_link",
                        format!("{l:?} is not a relation from {form} to {}", own.name),
                    );
                }
            }
            StepKind::UpdateRelated { form, via, values } => {
                let Some(target) = self.other_form(at, form) else {
                    return;
                };
                if let Some(f) = self.field(&target, &format!("{at}.via"), via)
                    && f.target.as_deref() != Some(own.name.as_str())
                {
                    self.err(
                        &format!("{at}.via"),
                        "not_a_link",
                        format!("{via:?} is not a relation from {form} to {}", own.name),
                    );
                }
                self.values(&target, &format!("{at}.values"), values);
                self.template(&format!("{at}.values"), &Value::Object(values.clone()));
            }
            StepKind::Task {
                assignee,
                due,
                title,
                description,
            } => {
                self.text(&format!("{at}.title"), title);
                if let Some(d) = description {
                    self.text(&format!("{at}.description"), d);
                }
                self.assignee(&format!("{at}.assignee"), assignee);
                if let Some(d) = due {
                    self.duration(&format!("{at}.due"), d);
                }
            }
            StepKind::Notify { to, message } => {
                self.assignee(&format!("{at}.to"), to);
                self.text(&format!("{at}.message"), message);
            }
            StepKind::Email { to, subject, body } => {
                self.text(&format!("{at}.to"), to);
                self.text(&format!("{at}.subject"), subject);
                self.text(&format!("{at}.body"), body);
            }
            StepKind::Webhook {
                timeout,
                url,
                body,
                secret,
                ..
            } => {
                self.text(&format!("{at}.url"), url);
                if let Some(x) = secret {
                    self.text(&format!("{at}.secret"), x);
                }
                if let Some(b) = body {
                    self.template(&format!("{at}.body"), b);
                }
                if let Some(t) = timeout {
                    self.duration(&format!("{at}.timeout"), t);
                }
            }
            StepKind::Approval {
                levels,
                on_approve,
                on_reject,
            } => {
                for (i, l) in levels.iter().enumerate() {
                    self.assignee(&format!("{at}.levels[{i}].approver"), &l.approver);
                }
                self.steps(on_approve, &format!("{at}.on_approve"), depth + 1);
                self.steps(on_reject, &format!("{at}.on_reject"), depth + 1);
            }
            StepKind::Wait {
                duration,
                until,
                timeout,
            } => {
                match (duration, until) {
                    (Some(d), None) => self.duration(&format!("{at}.duration"), d),
                    (None, Some(_)) => {}
                    _ => self.err(
                        at,
                        "wait_needs_one",
                        "a wait has either a duration or an until filter".into(),
                    ),
                }
                if let Some(t) = timeout {
                    if until.is_none() {
                        self.err(
                            &format!("{at}.timeout"),
                            "not_allowed",
                            "a timeout limits a wait until a filter holds".into(),
                        );
                    }
                    self.duration(&format!("{at}.timeout"), t);
                }
            }
            StepKind::If {
                condition,
                rule,
                then,
                otherwise,
            } => {
                match (condition, rule) {
                    (Some(_), None) => {}
                    (None, Some(r)) => {
                        self.rule(&format!("{at}.rule"), r, &[RuleKind::Condition]);
                    }
                    _ => self.err(
                        at,
                        "if_needs_one",
                        "an if step has either a condition filter or a condition rule".into(),
                    ),
                }
                self.steps(then, &format!("{at}.then"), depth + 1);
                self.steps(otherwise, &format!("{at}.else"), depth + 1);
            }
            StepKind::Stop => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
