//! Bundles: the unit of delivery — a named, versioned set of definitions.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check::{check_bundle_shape, check_form_at};
use crate::error::MetaError;
use crate::form::{Form, Label};
use crate::report::{Dashboard, Report, check_dashboard_at, check_report_at};
use crate::role::{Role, check_role_at};
use crate::rule::{Rule, RuleKind, check_rule_at};
use crate::workflow::{Catalog, Workflow, check_workflow_at};

/// A bundle document: forms now, more sections as the engine grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// Machine name of the bundle.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub label: Label,
    /// Description per language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// Form definitions, in install order.
    #[serde(default)]
    pub forms: Vec<Form>,
    /// Role definitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// Rule definitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Workflow definitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workflows: Vec<Workflow>,
    /// Report definitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<Report>,
    /// Dashboard definitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dashboards: Vec<Dashboard>,
}

/// What is installed already, for checking a bundle that refers to it.
pub struct Installed<'a> {
    /// A form by name.
    pub form: &'a dyn Fn(&str) -> Option<Form>,
    /// A rule's form and kind by name.
    pub rule: &'a dyn Fn(&str) -> Option<(String, RuleKind)>,
    /// Does a role exist?
    pub role: &'a dyn Fn(&str) -> bool,
    /// A report by name.
    pub report: &'a dyn Fn(&str) -> Option<Report>,
}

/// Parse a semantic version `MAJOR.MINOR.PATCH` (pre-release and build suffixes ignored).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    let out = (it.next()??, it.next()??, it.next()??);
    if it.next().is_some() { None } else { Some(out) }
}

/// Check a bundle: its shape, each form, relation targets within the bundle or among
/// `existing` forms, unique form and role names, and each role against the forms.
/// `existing` finds an installed form (None: no such form). Rule scripts are compiled by
/// the caller.
pub fn check_bundle(
    doc: &Value,
    existing: &dyn Fn(&str) -> Option<Form>,
) -> Result<Bundle, Vec<MetaError>> {
    check_bundle_with(
        doc,
        &Installed {
            form: existing,
            rule: &|_| None,
            role: &|_| false,
            report: &|_| None,
        },
    )
}

/// Check a bundle against what is installed: as [`check_bundle`], and its workflows
/// against the bundle's and the installed forms, rules and roles.
pub fn check_bundle_with(doc: &Value, installed: &Installed<'_>) -> Result<Bundle, Vec<MetaError>> {
    let existing = installed.form;
    let mut errs = check_bundle_shape(doc);
    if !errs.is_empty() {
        return Err(errs);
    }
    let version = doc
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if parse_version(version).is_none() {
        errs.push(MetaError::new(
            "version",
            "invalid_version",
            "a version looks like 1.2.3",
        ));
    }
    let form_docs = doc
        .get("forms")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: HashSet<String> = form_docs
        .iter()
        .filter_map(|f| f.get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    let known = |n: &str| names.contains(n) || existing(n).is_some();
    let mut seen = HashSet::new();
    let mut forms = Vec::new();
    for (i, fd) in form_docs.iter().enumerate() {
        let at = format!("forms[{i}]");
        if let Some(n) = fd.get("name").and_then(Value::as_str)
            && !seen.insert(n.to_owned())
        {
            errs.push(MetaError::new(
                format!("{at}.name"),
                "duplicate_name",
                format!("the form {n:?} is listed twice"),
            ));
        }
        match check_form_at(fd, &known, &at) {
            Ok(f) => forms.push(f),
            Err(e) => errs.extend(e),
        }
    }
    // Roles and rules see the bundle's forms as they will be, else the installed ones.
    let form_of = |n: &str| {
        forms
            .iter()
            .find(|f: &&Form| f.name == n)
            .cloned()
            .or_else(|| existing(n))
    };
    let fields_of = |n: &str| form_of(n).map(|f| f.fields.iter().map(|x| x.name.clone()).collect());
    let mut roles = Vec::new();
    let mut seen_roles = HashSet::new();
    for (i, rd) in doc
        .get("roles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("roles[{i}]");
        if let Some(n) = rd.get("name").and_then(Value::as_str)
            && !seen_roles.insert(n.to_owned())
        {
            errs.push(MetaError::new(
                format!("{at}.name"),
                "duplicate_name",
                format!("the role {n:?} is listed twice"),
            ));
        }
        match check_role_at(rd, &fields_of, &at) {
            Ok(r) => roles.push(r),
            Err(e) => errs.extend(e),
        }
    }
    let mut rules = Vec::new();
    let mut seen_rules = HashSet::new();
    for (i, rd) in doc
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("rules[{i}]");
        if let Some(n) = rd.get("name").and_then(Value::as_str)
            && !seen_rules.insert(n.to_owned())
        {
            errs.push(MetaError::new(
                format!("{at}.name"),
                "duplicate_name",
                format!("the rule {n:?} is listed twice"),
            ));
        }
        match check_rule_at(rd, &form_of, &at) {
            Ok(r) => rules.push(r),
            Err(e) => errs.extend(e),
        }
    }
    let rule_of = |n: &str| {
        rules
            .iter()
            .find(|r: &&Rule| r.name == n)
            .map(|r| (r.form.clone(), r.kind))
            .or_else(|| (installed.rule)(n))
    };
    let role_names: HashSet<&str> = roles.iter().map(|r: &Role| r.name.as_str()).collect();
    let has_role = |n: &str| role_names.contains(n) || (installed.role)(n);
    let cat = Catalog {
        form: &form_of,
        rule: &rule_of,
        role: &has_role,
    };
    let mut workflows = Vec::new();
    let mut seen_workflows = HashSet::new();
    for (i, wd) in doc
        .get("workflows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("workflows[{i}]");
        if let Some(n) = wd.get("name").and_then(Value::as_str)
            && !seen_workflows.insert(n.to_owned())
        {
            errs.push(MetaError::new(
                format!("{at}.name"),
                "duplicate_name",
                format!("the workflow {n:?} is listed twice"),
            ));
        }
        match check_workflow_at(wd, &cat, &at) {
            Ok(w) => workflows.push(w),
            Err(e) => errs.extend(e),
        }
    }
    let items = |k: &str| -> Vec<Value> {
        doc.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut reports = Vec::new();
    let mut seen_reports = HashSet::new();
    for (i, rd) in items("reports").iter().enumerate() {
        let at = format!("reports[{i}]");
        if let Some(n) = rd.get("name").and_then(Value::as_str)
            && !seen_reports.insert(n.to_owned())
        {
            errs.push(MetaError::new(
                format!("{at}.name"),
                "duplicate_name",
                format!("the report {n:?} is listed twice"),
            ));
        }
        match check_report_at(rd, &form_of, &at) {
            Ok(r) => reports.push(r),
            Err(e) => errs.extend(e),
        }
    }
    // Dashboards see the bundle's reports, else the installed ones.
    let report_of = |n: &str| {
        reports
            .iter()
            .find(|r: &&Report| r.name == n)
            .cloned()
            .or_else(|| (installed.report)(n))
    };
    let mut dashboards = Vec::new();
    let mut seen_dashboards = HashSet::new();
    for (i, dd) in items("dashboards").iter().enumerate() {
        let at = format!("dashboards[{i}]");
        if let Some(n) = dd.get("name").and_then(Value::as_str)
            && !seen_dashboards.insert(n.to_owned())
        {
            errs.push(MetaError::new(
                format!("{at}.name"),
                "duplicate_name",
                format!("the dashboard {n:?} is listed twice"),
            ));
        }
        match check_dashboard_at(dd, &report_of, &at) {
            Ok(d) => dashboards.push(d),
            Err(e) => errs.extend(e),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let mut bundle: Bundle = serde_json::from_value(doc.clone())
        .map_err(|e| vec![MetaError::new("", "schema", e.to_string())])?;
    bundle.forms = forms;
    bundle.roles = roles;
    bundle.rules = rules;
    bundle.workflows = workflows;
    bundle.reports = reports;
    bundle.dashboards = dashboards;
    Ok(bundle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.2.3"), Some((1, 2, 3)));
        assert_eq!(parse_version("1.2.3-beta.1"), Some((1, 2, 3)));
        assert_eq!(parse_version("1.2"), None);
    }

    #[test]
    fn reports_and_dashboards_are_checked_against_the_bundle() {
        let doc = json!({"name":"app","version":"1.0.0","label":{"en":"App"},"forms":[
            {"name":"a","label":{"en":"A"},"fields":[{"name":"n","type":"integer"}]}],
            "reports":[{"name":"r","form":"a","measures":[{"fn":"sum","field":"n"}]},
                       {"name":"bad","form":"a","measures":[{"fn":"sum","field":"zz"}]}],
            "dashboards":[{"name":"d","widgets":[{"report":"r","chart":"kpi"},{"report":"gone","chart":"bar"}]}]});
        let errs = check_bundle(&doc, &|_| None).unwrap_err();
        let paths: Vec<(&str, &str)> = errs.iter().map(|e| (e.path.as_str(), e.code)).collect();
        assert_eq!(
            paths,
            vec![
                ("reports[1].measures[0].field", "unknown_field"),
                ("dashboards[0].widgets[1].report", "unknown_report")
            ]
        );
    }

    #[test]
    fn relation_targets_resolve_within_the_bundle() {
        let doc = json!({"name":"app","version":"1.0.0","label":{"en":"App"},"forms":[
            {"name":"b","label":{"en":"B"},"fields":[{"name":"a","type":"relation","target":"a"}]},
            {"name":"a","label":{"en":"A"},"fields":[{"name":"x","type":"text"}]}]});
        let b = check_bundle(&doc, &|_| None).unwrap();
        assert_eq!(b.forms.len(), 2);
        let doc = json!({"name":"app","version":"1.0.0","label":{"en":"App"},"forms":[
            {"name":"b","label":{"en":"B"},"fields":[{"name":"a","type":"relation","target":"zzz"}]},
            {"name":"b","label":{"en":"B"},"fields":[{"name":"x","type":"text"}]}]});
        let errs = check_bundle(&doc, &|_| None).unwrap_err();
        assert!(
            errs.iter().any(|e| e.path == "forms[0].fields[0].target"),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.path == "forms[1].name"), "{errs:?}");
    }
}
