//! Duplicate-detection rules: when two records of a form are the same thing, and what
//! happens when a new or imported record matches an existing one.
//!
//! A rule lists up to five fields; two records match when every field's normalized value
//! is equal. [`MatchRule::key`] computes that value for a record; the store indexes it.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::MetaError;
use crate::form::{FieldType, Form, Label};
use crate::text::fold;

/// Most fields one rule may compare.
pub const MAX_MATCH_FIELDS: usize = 5;
/// Country calling code assumed for a phone number written without one.
pub const DEFAULT_COUNTRY: &str = "86";
/// Separator of the field values inside a key (ASCII unit separator).
pub const KEY_SEPARATOR: char = '\u{1f}';

/// A rule that says when two records are the same thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// Name, `^[a-z][a-z0-9_]{0,62}$`, unique within the form.
    pub name: String,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
    /// The fields compared, 1 to 5; all must match, and a record with any of them empty
    /// has no key for this rule.
    pub fields: Vec<MatchField>,
    /// What happens when a record created by hand matches an existing one.
    #[serde(default)]
    pub on_create: OnCreate,
    /// What happens when an imported row matches an existing record.
    #[serde(default)]
    pub on_import: OnImport,
}

/// One field a rule compares, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchField {
    /// Name of a top-level field of the form.
    pub field: String,
    /// How values are compared; absent means by the field's type (see [`MatchField::matcher`]).
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub how: Option<Matcher>,
    /// Phone only: the country calling code of numbers written without one (default `86`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// How two values are compared: both are normalized, then compared as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matcher {
    /// Case, width and runs of white space ignored.
    Exact,
    /// An e-mail address: case, width and all white space ignored.
    Email,
    /// A telephone number: digits with the country code, extension dropped.
    Phone,
    /// A company name: punctuation and legal-form suffixes (有限公司, Co., Ltd.) ignored.
    Company,
}

/// What happens when a record created by hand matches an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnCreate {
    /// Refuse the record.
    Block,
    /// Create it, and tell the user about the match.
    #[default]
    Warn,
}

/// What happens when an imported row matches an existing record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnImport {
    /// The row is not imported.
    Skip,
    /// The existing record takes the row's non-empty values.
    Update,
    /// The existing record's empty fields are filled from the row; its values are kept.
    Merge,
    /// The row is created and the pair is recorded as a possible duplicate.
    #[default]
    Flag,
}

impl MatchField {
    /// The matcher used: the one given, else by the field's type (email → `email`,
    /// phone → `phone`, anything else → `exact`).
    pub fn matcher(&self, form: &Form) -> Matcher {
        self.how
            .unwrap_or_else(|| match form.field(&self.field).map(|f| f.kind) {
                Some(FieldType::Email) => Matcher::Email,
                Some(FieldType::Phone) => Matcher::Phone,
                _ => Matcher::Exact,
            })
    }

    /// The country calling code of numbers written without one.
    pub fn country(&self) -> &str {
        self.country.as_deref().unwrap_or(DEFAULT_COUNTRY)
    }
}

impl MatchRule {
    /// The record's key for this rule: its fields' normalized values joined with U+001F;
    /// `None` when any of them is missing, empty or normalizes to nothing.
    pub fn key(&self, form: &Form, record: &Map<String, Value>) -> Option<String> {
        if self.fields.is_empty() {
            return None;
        }
        let mut parts = Vec::with_capacity(self.fields.len());
        for mf in &self.fields {
            let part = match record.get(&mf.field)? {
                Value::String(s) => normalize(mf.matcher(form), s, mf.country())?,
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            parts.push(part);
        }
        Some(parts.join(&KEY_SEPARATOR.to_string()))
    }

    /// A label in `lang`, falling back to English, then to the name.
    pub fn label_in(&self, lang: &str) -> &str {
        crate::form::label_in(&self.label, lang, &self.name)
    }
}

/// Normalize `s` for comparison by `how`; `None` when nothing is left. `country` is the
/// calling code assumed for a phone number written without one.
pub fn normalize(how: Matcher, s: &str, country: &str) -> Option<String> {
    let folded = fold(s);
    let out = match how {
        Matcher::Exact => folded.split_whitespace().collect::<Vec<_>>().join(" "),
        Matcher::Email => folded.chars().filter(|c| !c.is_whitespace()).collect(),
        Matcher::Phone => return phone(&folded, country),
        Matcher::Company => company(&folded),
    };
    (!out.is_empty()).then_some(out)
}

/// Where an extension starts: 转, 分机, `#`, `ext`/`ext.`, or `x` followed by digits.
fn extension_start(s: &str) -> Option<usize> {
    let marker = ["转", "分机", "#", "ext"]
        .iter()
        .filter_map(|m| s.find(m))
        .min();
    let x = s
        .match_indices('x')
        .find(|(i, _)| {
            s[i + 1..]
                .trim_start()
                .starts_with(|d: char| d.is_ascii_digit())
        })
        .map(|(i, _)| i);
    match (marker, x) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Longest national number (without the trunk 0) of a country, to tell a number that
/// already carries the country code from one that happens to start with its digits.
fn national_max(country: &str) -> usize {
    match country {
        "86" => 11,
        _ => 10,
    }
}

fn phone(folded: &str, country: &str) -> Option<String> {
    let main = match extension_start(folded) {
        Some(i) => &folded[..i],
        None => folded,
    };
    let plus = main
        .chars()
        .find(|c| *c == '+' || c.is_ascii_digit())
        .is_some_and(|c| c == '+');
    let mut digits: String = main.chars().filter(char::is_ascii_digit).collect();
    let international = plus || digits.starts_with("00");
    if !plus && international {
        digits.drain(..2);
    }
    if digits.len() < 5 {
        return None;
    }
    let full = if international
        || (!country.is_empty()
            && digits.starts_with(country)
            && digits.len() > national_max(country))
    {
        digits
    } else if let Some(national) = digits.strip_prefix('0') {
        format!("{country}{national}")
    } else {
        format!("{country}{digits}")
    };
    Some(full)
}

/// Legal-form suffixes a company name is compared without.
const LEGAL_FORMS: &[&str] = &[
    "集团股份有限公司",
    "股份有限公司",
    "有限责任公司",
    "集团有限公司",
    "有限公司",
    "集团公司",
    "总公司",
    "分公司",
    "公司",
    "集团",
    "companylimited",
    "corporationlimited",
    "colimited",
    "coltd",
    "ltd",
    "limited",
    "incorporated",
    "inc",
    "corporation",
    "corp",
    "company",
    "co",
    "llc",
    "llp",
    "plc",
    "gmbh",
    "ag",
    "sa",
    "srl",
    "bv",
    "pteltd",
    "pte",
    "pvt",
    "private",
];

/// Letters and digits only (`&` read as `and`), then legal-form suffixes stripped from the
/// end, longest first, until none applies. A Latin suffix is stripped only where a word
/// starts (so `Tesco` keeps its `co`); the name is never stripped to nothing.
fn company(folded: &str) -> String {
    let mut text = String::new();
    // `starts[i]`: a word starts at the `i`th char of `text`.
    let mut starts: Vec<bool> = Vec::new();
    let mut last: Option<char> = None;
    let mut gap = true;
    for c in folded.replace('&', " and ").chars() {
        if c.is_alphanumeric() {
            let script_change = last.is_some_and(|p| p.is_ascii() != c.is_ascii());
            starts.push(gap || script_change);
            text.push(c);
            last = Some(c);
            gap = false;
        } else {
            gap = true;
        }
    }
    loop {
        let len = starts.len();
        let cut = LEGAL_FORMS
            .iter()
            .filter(|s| text.ends_with(**s))
            .map(|s| (s.is_ascii(), s.len(), s.chars().count()))
            .filter(|&(ascii, _, n)| n < len && (!ascii || starts[len - n]))
            .max_by_key(|&(_, _, n)| n);
        match cut {
            Some((_, bytes, n)) => {
                text.truncate(text.len() - bytes);
                starts.truncate(len - n);
            }
            None => break,
        }
    }
    text
}

/// Check a form's duplicate rules; errors are located under `duplicates`.
pub fn check(form: &Form) -> Vec<MetaError> {
    check_at(form, "duplicates")
}

/// Types whose values a rule can compare.
fn matchable(kind: FieldType) -> bool {
    matches!(
        kind,
        FieldType::Text
            | FieldType::Textarea
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Url
            | FieldType::Select
            | FieldType::Integer
            | FieldType::Autonumber
    )
}

/// Check a form's duplicate rules, locating errors under `base` (`forms[2].duplicates`).
pub(crate) fn check_at(form: &Form, base: &str) -> Vec<MetaError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, rule) in form.duplicates.iter().enumerate() {
        let p = format!("{base}[{i}]");
        if !crate::check::name_ok(&rule.name) {
            errs.push(MetaError::new(
                format!("{p}.name"),
                "invalid_name",
                "a name matches ^[a-z][a-z0-9_]{0,62}$",
            ));
        }
        if !names.insert(rule.name.as_str()) {
            errs.push(MetaError::new(
                format!("{p}.name"),
                "duplicate_name",
                format!("the rule name {:?} is used twice", rule.name),
            ));
        }
        if rule.fields.is_empty() {
            errs.push(MetaError::new(
                format!("{p}.fields"),
                "required",
                "a duplicate rule compares at least one field",
            ));
        } else if rule.fields.len() > MAX_MATCH_FIELDS {
            errs.push(MetaError::new(
                format!("{p}.fields"),
                "too_many_fields",
                format!("a duplicate rule compares at most {MAX_MATCH_FIELDS} fields"),
            ));
        }
        let mut seen = HashSet::new();
        for (j, mf) in rule.fields.iter().enumerate() {
            check_field(form, mf, &format!("{p}.fields[{j}]"), &mut seen, &mut errs);
        }
    }
    errs
}

fn check_field<'a>(
    form: &Form,
    mf: &'a MatchField,
    p: &str,
    seen: &mut HashSet<&'a str>,
    errs: &mut Vec<MetaError>,
) {
    let mut err = |key: &str, code: &'static str, msg: String| {
        errs.push(MetaError::new(format!("{p}.{key}"), code, msg));
    };
    let Some(f) = form.field(&mf.field) else {
        err(
            "field",
            "unknown_field",
            format!("{:?} is not a field of this form", mf.field),
        );
        return;
    };
    if !seen.insert(mf.field.as_str()) {
        err(
            "field",
            "duplicate_field",
            format!("the field {:?} is compared twice", mf.field),
        );
    }
    let k = f.kind;
    if !matchable(k) {
        err(
            "field",
            "not_allowed",
            format!("a {} field cannot be compared for duplicates", k.as_str()),
        );
        return;
    }
    let fits = match mf.how {
        None | Some(Matcher::Exact) => true,
        Some(Matcher::Email) => matches!(k, FieldType::Text | FieldType::Email),
        Some(Matcher::Phone) => matches!(k, FieldType::Text | FieldType::Phone),
        Some(Matcher::Company) => matches!(k, FieldType::Text | FieldType::Textarea),
    };
    if !fits {
        let how = mf.matcher(form);
        err(
            "match",
            "not_allowed",
            format!(
                "a {} field cannot be compared as {}",
                k.as_str(),
                matcher_name(how)
            ),
        );
    }
    if let Some(c) = &mf.country {
        if mf.matcher(form) != Matcher::Phone {
            err(
                "country",
                "not_allowed",
                "only a phone comparison has a country".into(),
            );
        } else if !(1..=3).contains(&c.len()) || !c.chars().all(|d| d.is_ascii_digit()) {
            err(
                "country",
                "invalid",
                format!("{c:?} is not a country calling code of 1 to 3 digits"),
            );
        }
    }
}

fn matcher_name(how: Matcher) -> &'static str {
    match how {
        Matcher::Exact => "exact",
        Matcher::Email => "email",
        Matcher::Phone => "phone",
        Matcher::Company => "company",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn n(how: Matcher, s: &str) -> Option<String> {
        normalize(how, s, DEFAULT_COUNTRY)
    }

    fn form(duplicates: Value) -> Form {
        serde_json::from_value(json!({"name": "customer", "fields": [
            {"name": "name", "type": "text"},
            {"name": "phone", "type": "phone"},
            {"name": "email", "type": "email"},
            {"name": "notes", "type": "textarea"},
            {"name": "site", "type": "url"},
            {"name": "level", "type": "select", "options": [{"value": "a"}]},
            {"name": "staff", "type": "integer"},
            {"name": "no", "type": "autonumber", "format": "C-{seq:4}"},
            {"name": "budget", "type": "currency"},
            {"name": "since", "type": "date"},
            {"name": "lines", "type": "subtable", "fields": [{"name": "sku", "type": "text"}]}],
            "duplicates": duplicates}))
        .unwrap()
    }

    fn paths(errs: &[MetaError]) -> Vec<(&str, &str)> {
        errs.iter().map(|e| (e.path.as_str(), e.code)).collect()
    }

    #[test]
    fn exact_folds_case_width_and_spaces() {
        assert_eq!(
            n(Matcher::Exact, "  ＡＢＣ \t  Tech　Ltd "),
            Some("abc tech ltd".into())
        );
        assert_eq!(n(Matcher::Exact, " \u{3000} "), None);
        assert_eq!(n(Matcher::Exact, ""), None);
    }

    #[test]
    fn email_folds_and_drops_white_space() {
        assert_eq!(
            n(Matcher::Email, " Li.Lei @ Example.COM "),
            Some("li.lei@example.com".into())
        );
        assert_eq!(
            n(Matcher::Email, "ｌｉ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
            Some("li@example.com".into())
        );
        // No provider-specific tricks.
        assert_ne!(
            n(Matcher::Email, "a.b+x@gmail.com"),
            n(Matcher::Email, "ab@gmail.com")
        );
        assert_eq!(n(Matcher::Email, "   "), None);
    }

    #[test]
    fn mobile_numbers_get_the_country_code() {
        for s in [
            "+86 138-0013-8000",
            "13800138000",
            "0086 13800138000",
            "86 13800138000",
            "138 0013 8000",
            "１３８００１３８０００",
            "+86 (138) 0013 8000",
            "13800138000转123",
            "13800138000 ext. 12",
            "13800138000 EXT12",
            "13800138000 x 12",
            "13800138000x12",
            "13800138000#9",
            "13800138000 分机 88",
        ] {
            assert_eq!(
                n(Matcher::Phone, s).as_deref(),
                Some("8613800138000"),
                "{s}"
            );
        }
    }

    #[test]
    fn landlines_drop_the_trunk_zero() {
        for s in [
            "(010) 6552-1234",
            "010-65521234",
            "+86 10 6552 1234",
            "86-10-65521234",
            "0086 10 65521234",
            "010-65521234 转 8001",
        ] {
            assert_eq!(n(Matcher::Phone, s).as_deref(), Some("861065521234"), "{s}");
        }
        assert_eq!(
            n(Matcher::Phone, "0755-12345678").as_deref(),
            Some("8675512345678")
        );
    }

    #[test]
    fn phone_edge_cases() {
        assert_eq!(n(Matcher::Phone, "1234"), None);
        assert_eq!(n(Matcher::Phone, "ext 12345"), None);
        assert_eq!(n(Matcher::Phone, "n/a"), None);
        assert_eq!(n(Matcher::Phone, ""), None);
        assert_eq!(n(Matcher::Phone, "12345").as_deref(), Some("8612345"));
        // Another country's numbers.
        assert_eq!(
            normalize(Matcher::Phone, "+1 (212) 555-1234", "86").as_deref(),
            Some("12125551234")
        );
        assert_eq!(
            normalize(Matcher::Phone, "(212) 555-1234", "1").as_deref(),
            Some("12125551234")
        );
        assert_eq!(
            normalize(Matcher::Phone, "1 212 555 1234", "1").as_deref(),
            Some("12125551234")
        );
        assert_eq!(
            normalize(Matcher::Phone, "9123 4567", "852").as_deref(),
            Some("85291234567")
        );
        assert_eq!(
            normalize(Matcher::Phone, "852 9123 4567", "852").as_deref(),
            Some("85291234567")
        );
        assert_ne!(
            n(Matcher::Phone, "13800138000"),
            n(Matcher::Phone, "13800138001")
        );
    }

    #[test]
    fn company_names_ignore_legal_forms_and_punctuation() {
        let same_cn = [
            "华信科技有限公司",
            "华信科技",
            "华信科技股份有限公司",
            "华信科技 有限公司",
            "华信科技（有限公司）",
            "华信科技有限责任公司",
            "华信科技集团有限公司",
            "华信科技集团股份有限公司",
            "华信科技集团",
        ];
        for s in same_cn {
            assert_eq!(n(Matcher::Company, s).as_deref(), Some("华信科技"), "{s}");
        }
        let same_en = [
            "ＡＢＣ Tech Co., Ltd.",
            "abc tech",
            "ABC TECH INC.",
            "ABC Tech Company Limited",
            "ABC Tech Corporation",
            "ABC Tech Corp.",
            "A.B.C. Tech, LLC",
            "ABC Tech Pte. Ltd.",
            "ABC Tech GmbH",
            "ABC-Tech Co. Limited",
        ];
        for s in same_en {
            assert_eq!(n(Matcher::Company, s).as_deref(), Some("abctech"), "{s}");
        }
        assert_ne!(
            n(Matcher::Company, "华信科技"),
            n(Matcher::Company, "华信软件")
        );
        assert_ne!(
            n(Matcher::Company, "北京华信科技"),
            n(Matcher::Company, "华信科技")
        );
        assert_eq!(
            n(Matcher::Company, "Johnson & Johnson").as_deref(),
            Some("johnsonandjohnson")
        );
        assert_eq!(
            n(Matcher::Company, "Johnson and Johnson"),
            n(Matcher::Company, "Johnson & Johnson")
        );
    }

    #[test]
    fn company_names_are_never_stripped_to_nothing() {
        assert_eq!(n(Matcher::Company, "有限公司").as_deref(), Some("有限"));
        assert_eq!(n(Matcher::Company, "集团公司").as_deref(), Some("集团"));
        assert_eq!(
            n(Matcher::Company, "Company Ltd.").as_deref(),
            Some("company")
        );
        assert_eq!(n(Matcher::Company, "Inc").as_deref(), Some("inc"));
        assert_eq!(n(Matcher::Company, " ()（） "), None);
    }

    #[test]
    fn latin_suffixes_are_stripped_only_as_words() {
        assert_eq!(n(Matcher::Company, "Tesco").as_deref(), Some("tesco"));
        assert_eq!(n(Matcher::Company, "Tesco PLC").as_deref(), Some("tesco"));
        assert_eq!(n(Matcher::Company, "Visa Inc.").as_deref(), Some("visa"));
        assert_eq!(n(Matcher::Company, "华信Ltd").as_deref(), Some("华信"));
    }

    #[test]
    fn matcher_defaults_by_field_type() {
        let f = form(json!([]));
        let mf = |field: &str, how: Option<Matcher>| MatchField {
            field: field.into(),
            how,
            country: None,
        };
        assert_eq!(mf("email", None).matcher(&f), Matcher::Email);
        assert_eq!(mf("phone", None).matcher(&f), Matcher::Phone);
        assert_eq!(mf("name", None).matcher(&f), Matcher::Exact);
        assert_eq!(mf("staff", None).matcher(&f), Matcher::Exact);
        assert_eq!(
            mf("name", Some(Matcher::Company)).matcher(&f),
            Matcher::Company
        );
        assert_eq!(mf("phone", None).country(), "86");
    }

    #[test]
    fn keys_join_every_field_and_need_them_all() {
        let f = form(json!([
            {"name": "same_company", "fields": [{"field": "name", "match": "company"}],
             "on_create": "block", "on_import": "merge"},
            {"name": "name_phone", "fields": [
                {"field": "name", "match": "company"}, {"field": "phone"}, {"field": "level"},
                {"field": "staff"}]},
            {"name": "hk_phone", "fields": [{"field": "phone", "country": "852"}]}]));
        let rec = |v: Value| v.as_object().unwrap().clone();
        let r = &f.duplicates;
        assert_eq!(r[1].on_create, OnCreate::Warn);
        assert_eq!(r[1].on_import, OnImport::Flag);
        let full = rec(json!({"name": "华信科技有限公司", "phone": "010-65521234",
            "level": "a", "staff": 120}));
        assert_eq!(r[0].key(&f, &full).as_deref(), Some("华信科技"));
        assert_eq!(
            r[1].key(&f, &full).as_deref(),
            Some("华信科技\u{1f}861065521234\u{1f}a\u{1f}120")
        );
        let other = rec(json!({"name": "华信科技", "phone": "+86 10 6552 1234",
            "level": "A", "staff": 120}));
        assert_eq!(r[1].key(&f, &full), r[1].key(&f, &other));
        for missing in [
            json!({"name": "华信科技", "phone": "010-65521234", "level": "a"}),
            json!({"name": "华信科技", "phone": null, "level": "a", "staff": 1}),
            json!({"name": "华信科技", "phone": "  ", "level": "a", "staff": 1}),
            json!({"name": "华信科技", "phone": "123", "level": "a", "staff": 1}),
            json!({"name": "", "phone": "010-65521234", "level": "a", "staff": 1}),
            json!({"name": "华信科技", "phone": "010-65521234", "level": ["a"], "staff": 1}),
            json!({"name": "华信科技", "phone": "010-65521234", "level": "a", "staff": true}),
        ] {
            assert_eq!(r[1].key(&f, &rec(missing.clone())), None, "{missing}");
        }
        assert_eq!(
            r[2].key(&f, &rec(json!({"phone": "9123 4567"}))).as_deref(),
            Some("85291234567")
        );
        let empty = MatchRule {
            name: "none".into(),
            label: Label::new(),
            fields: Vec::new(),
            on_create: OnCreate::Warn,
            on_import: OnImport::Flag,
        };
        assert_eq!(empty.key(&f, &full), None);
    }

    #[test]
    fn rules_round_trip_and_refuse_unknown_keys() {
        let f = form(json!([{"name": "same_phone", "label": {"en": "Same phone"},
            "fields": [{"field": "phone", "match": "phone", "country": "86"}],
            "on_create": "warn", "on_import": "skip"}]));
        let back = serde_json::to_value(&f).unwrap();
        assert_eq!(
            back["duplicates"],
            json!([{"name": "same_phone", "label": {"en": "Same phone"},
                "fields": [{"field": "phone", "match": "phone", "country": "86"}],
                "on_create": "warn", "on_import": "skip"}])
        );
        assert_eq!(f.duplicates[0].label_in("zh-CN"), "Same phone");
        let bare = form(json!([]));
        assert!(
            serde_json::to_value(&bare)
                .unwrap()
                .get("duplicates")
                .is_none()
        );
        assert!(
            serde_json::from_value::<MatchRule>(
                json!({"name": "x", "fields": [], "on_update": "warn"})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<MatchField>(json!({"field": "x", "how": "exact"})).is_err()
        );
        assert!(
            serde_json::from_value::<MatchRule>(
                json!({"name": "x", "fields": [], "on_import": "ignore"})
            )
            .is_err()
        );
    }

    #[test]
    fn good_rules_pass_the_checks() {
        let f = form(json!([
            {"name": "same_company", "fields": [{"field": "name", "match": "company"}]},
            {"name": "all_kinds", "fields": [{"field": "notes", "match": "company"},
                {"field": "email"}, {"field": "site"}, {"field": "no"},
                {"field": "phone", "country": "1"}]},
            {"name": "as_text", "fields": [{"field": "name", "match": "email"},
                {"field": "staff", "match": "exact"}, {"field": "level"}]}]));
        assert_eq!(check(&f), Vec::new());
    }

    #[test]
    fn each_rejection_names_its_path() {
        let f = form(json!([
            {"name": "Bad Name", "fields": [{"field": "ghost"}, {"field": "budget"},
                {"field": "since"}, {"field": "lines"}, {"field": "sku"}]},
            {"name": "ok", "fields": []},
            {"name": "ok", "fields": [{"field": "name"}, {"field": "phone"}, {"field": "email"},
                {"field": "notes"}, {"field": "site"}, {"field": "staff"}]},
            {"name": "misfits", "fields": [{"field": "phone", "match": "email"},
                {"field": "email", "match": "phone"}, {"field": "level", "match": "company"},
                {"field": "name", "match": "phone", "country": "8600"},
                {"field": "notes", "country": "86"}]},
            {"name": "twice", "fields": [{"field": "name"}, {"field": "name"},
                {"field": "phone", "country": "+86"}, {"field": "phone", "country": ""}]},
            {"name": "more", "fields": [{"field": "email", "match": "company"},
                {"field": "site", "match": "email"}, {"field": "staff", "match": "phone"}]}]));
        assert_eq!(
            paths(&check(&f)),
            vec![
                ("duplicates[0].name", "invalid_name"),
                ("duplicates[0].fields[0].field", "unknown_field"),
                ("duplicates[0].fields[1].field", "not_allowed"),
                ("duplicates[0].fields[2].field", "not_allowed"),
                ("duplicates[0].fields[3].field", "not_allowed"),
                ("duplicates[0].fields[4].field", "unknown_field"),
                ("duplicates[1].fields", "required"),
                ("duplicates[2].name", "duplicate_name"),
                ("duplicates[2].fields", "too_many_fields"),
                ("duplicates[3].fields[0].match", "not_allowed"),
                ("duplicates[3].fields[1].match", "not_allowed"),
                ("duplicates[3].fields[2].match", "not_allowed"),
                ("duplicates[3].fields[3].country", "invalid"),
                ("duplicates[3].fields[4].country", "not_allowed"),
                ("duplicates[4].fields[1].field", "duplicate_field"),
                ("duplicates[4].fields[2].country", "invalid"),
                ("duplicates[4].fields[3].field", "duplicate_field"),
                ("duplicates[4].fields[3].country", "invalid"),
                ("duplicates[5].fields[0].match", "not_allowed"),
                ("duplicates[5].fields[1].match", "not_allowed"),
                ("duplicates[5].fields[2].match", "not_allowed"),
            ]
        );
    }

    #[test]
    fn saving_a_form_with_bad_rules_is_refused() {
        let doc = |duplicates: Value| {
            json!({"name": "lead", "label": {"en": "Lead"}, "fields": [
                {"name": "company", "type": "text"}, {"name": "phone", "type": "phone"}],
                "duplicates": duplicates})
        };
        let ok = crate::check::check_form(
            &doc(
                json!([{"name": "same_phone", "label": {"en": "Same phone", "zh-CN": "相同电话"},
                "fields": [{"field": "phone"}], "on_create": "warn", "on_import": "flag"}]),
            ),
            &|_| false,
        )
        .unwrap();
        assert_eq!(ok.duplicates[0].fields[0].matcher(&ok), Matcher::Phone);
        // Semantic: a field the schema cannot know.
        let errs = crate::check::check_form(
            &doc(json!([{"name": "same", "fields": [{"field": "phone"}, {"field": "email"}]}])),
            &|_| false,
        )
        .unwrap_err();
        assert_eq!(
            paths(&errs),
            vec![("duplicates[0].fields[1].field", "unknown_field")]
        );
        // Inside a bundle, under the form's path.
        let errs = crate::check::check_form_at(
            &doc(
                json!([{"name": "same", "fields": [{"field": "company", "match": "phone"}]},
                {"name": "same", "fields": [{"field": "company"}]}]),
            ),
            &|_| false,
            "forms[1]",
        )
        .unwrap_err();
        assert_eq!(
            paths(&errs),
            vec![("forms[1].duplicates[1].name", "duplicate_name")]
        );
        // Shape: the schema refuses before the semantic checks run.
        for (bad, path) in [
            (json!([{"name": "x", "fields": []}]), "duplicates[0].fields"),
            (
                json!([{"name": "x", "fields": [{"field": "phone", "match": "fuzzy"}]}]),
                "duplicates[0].fields[0].match",
            ),
            (
                json!([{"name": "x", "fields": [{"field": "phone", "country": "0086"}]}]),
                "duplicates[0].fields[0].country",
            ),
            (
                json!([{"name": "x", "fields": [{"field": "phone"}], "on_create": "skip"}]),
                "duplicates[0].on_create",
            ),
            (
                json!([{"name": "x", "fields": [{"field": "phone"}], "extra": 1}]),
                "duplicates[0]",
            ),
            (
                json!([{"name": "X", "fields": [{"field": "phone"}]}]),
                "duplicates[0].name",
            ),
            (
                json!([{"name": "x", "fields": [{"field": "phone"}, {"field": "phone"},
                    {"field": "phone"}, {"field": "phone"}, {"field": "phone"}, {"field": "phone"}]}]),
                "duplicates[0].fields",
            ),
        ] {
            let errs = crate::check::check_form(&doc(bad.clone()), &|_| false).unwrap_err();
            assert!(
                errs.iter().all(|e| e.code == "schema") && errs.iter().any(|e| e.path == path),
                "{bad}: {errs:?}"
            );
        }
    }

    #[test]
    fn the_crm_forms_rules_check_and_match() {
        let load = |src: &str| {
            let doc: Value = serde_json::from_str(src).unwrap();
            crate::check::check_form(&doc, &|_| true).unwrap()
        };
        let customer = load(include_str!("../../../examples/crm/forms/customer.json"));
        let lead = load(include_str!("../../../examples/crm/forms/lead.json"));
        let contact = load(include_str!("../../../examples/crm/forms/contact.json"));
        let rule = |f: &Form, name: &str| {
            f.duplicates
                .iter()
                .find(|r| r.name == name)
                .cloned()
                .unwrap()
        };
        let rec = |v: Value| v.as_object().unwrap().clone();
        let same_company = rule(&customer, "same_company");
        assert_eq!(
            (same_company.on_create, same_company.on_import),
            (OnCreate::Block, OnImport::Merge)
        );
        assert_eq!(same_company.label_in("zh-CN"), "同一公司");
        assert_eq!(
            same_company.key(&customer, &rec(json!({"name": "华信科技股份有限公司"}))),
            same_company.key(&customer, &rec(json!({"name": "华信科技"})))
        );
        let same_phone = rule(&customer, "same_phone");
        assert_eq!(
            (same_phone.on_create, same_phone.on_import),
            (OnCreate::Warn, OnImport::Flag)
        );
        assert_eq!(
            same_phone
                .key(&customer, &rec(json!({"phone": "010-65521234"})))
                .as_deref(),
            Some("861065521234")
        );
        let same_email = rule(&lead, "same_email");
        assert_eq!(same_email.on_import, OnImport::Skip);
        assert_eq!(
            same_email
                .key(&lead, &rec(json!({"email": " Li@Example.com"})))
                .as_deref(),
            Some("li@example.com")
        );
        assert_eq!(rule(&lead, "same_phone").on_import, OnImport::Flag);
        let same_mobile = rule(&contact, "same_mobile");
        assert_eq!(same_mobile.label_in("zh-CN"), "相同手机号");
        assert_eq!(
            same_mobile
                .key(&contact, &rec(json!({"phone": "+86 138-0013-8000"})))
                .as_deref(),
            Some("8613800138000")
        );
        // City spellings: unique keys, whatever their case.
        for f in [&customer, &lead] {
            let map = f.field("city").and_then(|c| c.normalize.as_ref()).unwrap();
            let lower: HashSet<String> = map.keys().map(|k| k.to_lowercase()).collect();
            assert_eq!(lower.len(), map.len(), "{}", f.name);
            for (k, v) in [
                ("北京市", "北京市"),
                ("peking", "北京市"),
                ("canton", "广州市"),
                ("nanjing", "南京市"),
                ("成都市", "成都市"),
                ("wuhan", "武汉市"),
            ] {
                let to = map
                    .iter()
                    .find(|(from, _)| from.to_lowercase() == k)
                    .map(|(_, to)| to);
                assert_eq!(to.map(String::as_str), Some(v), "{}: {k}", f.name);
            }
        }
    }
}
