//! Suggested mapping of file columns to form fields, for the user to confirm.

use std::collections::HashSet;

use serde::Serialize;
use trellis_meta::text::fold;
use trellis_meta::{FieldType, Form};

/// How a column was matched to a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchedBy {
    /// The header is the field's name.
    Name,
    /// The header is one of the field's labels.
    Label,
    /// The header is a known synonym (手机 for a phone field).
    Synonym,
}

/// The suggested field for one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    /// Column index in the file, 0-based.
    pub column: usize,
    /// The header as found.
    pub header: String,
    /// The field (or system column `id` / `owner`) it maps to.
    pub field: Option<String>,
    /// How it was matched.
    pub by: Option<MatchedBy>,
    /// The field is computed (formula, autonumber): import ignores it.
    pub computed: bool,
}

/// Synonyms of phone-type fields.
const PHONE_SYNONYMS: [&str; 10] = [
    "手机",
    "手机号",
    "手机号码",
    "电话",
    "联系电话",
    "座机",
    "mobile",
    "tel",
    "telephone",
    "phone number",
];
/// Synonyms of email-type fields.
const EMAIL_SYNONYMS: [&str; 5] = ["邮箱", "电子邮件", "邮件", "e-mail", "mail"];
/// Synonyms of the `owner` system column.
const OWNER_SYNONYMS: [&str; 2] = ["负责人", "owner"];
/// System columns an import may set.
const SYSTEM_MATCHES: [&str; 2] = ["id", "owner"];

/// A header in comparable form: half width, lower case, without a trailing unit or note in
/// brackets ("(元)", "【必填】"), required stars, spaces and `_ - . :`.
pub fn fold_header(s: &str) -> String {
    let folded = fold(s);
    let mut t = folded.trim();
    loop {
        let before = t.len();
        t = t.trim_matches(|c: char| c == '*' || c.is_whitespace());
        if let Some(stripped) = strip_trailing_bracket(t) {
            t = stripped;
        }
        if t.len() == before {
            break;
        }
    }
    t.chars()
        .filter(|&c| !(c.is_whitespace() || matches!(c, '*' | '_' | '-' | '.' | ':' | '：')))
        .collect()
}

/// Drop a trailing bracketed part, unless it is the whole text.
fn strip_trailing_bracket(t: &str) -> Option<&str> {
    const PAIRS: [(char, char); 5] = [
        ('(', ')'),
        ('[', ']'),
        ('【', '】'),
        ('（', '）'),
        ('〔', '〕'),
    ];
    for (open, close) in PAIRS {
        if let Some(inner) = t.strip_suffix(close)
            && let Some(at) = inner.rfind(open)
            && at > 0
        {
            return Some(&t[..at]);
        }
    }
    None
}

/// Suggest a field for each header: by name, then label, then synonym; each field once.
pub fn suggest(headers: &[String], form: &trellis_meta::Form) -> Vec<Suggestion> {
    let folded: Vec<String> = headers.iter().map(|h| fold_header(h)).collect();
    let names: Vec<String> = form.fields.iter().map(|f| fold_header(&f.name)).collect();
    let labels: Vec<Vec<String>> = form
        .fields
        .iter()
        .map(|f| {
            f.label
                .values()
                .map(|l| fold_header(l))
                .filter(|l| !l.is_empty())
                .collect()
        })
        .collect();
    let mut used: HashSet<String> = HashSet::new();
    let mut out: Vec<Suggestion> = headers
        .iter()
        .enumerate()
        .map(|(column, header)| Suggestion {
            column,
            header: header.clone(),
            field: None,
            by: None,
            computed: false,
        })
        .collect();

    for (i, h) in folded.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let free = |j: &usize| !used.contains(&form.fields[*j].name);
        let found = (0..form.fields.len())
            .filter(free)
            .find(|&j| names[j] == *h)
            .map(|j| (form.fields[j].name.clone(), MatchedBy::Name))
            .or_else(|| {
                (0..form.fields.len())
                    .filter(free)
                    .find(|&j| labels[j].contains(h))
                    .map(|j| (form.fields[j].name.clone(), MatchedBy::Label))
            })
            .or_else(|| {
                SYSTEM_MATCHES
                    .iter()
                    .find(|&&s| s == h && !used.contains(s))
                    .map(|&s| (s.to_owned(), MatchedBy::Name))
            });
        if let Some((field, by)) = found {
            used.insert(field.clone());
            out[i].field = Some(field);
            out[i].by = Some(by);
        }
    }

    let phone: Vec<String> = PHONE_SYNONYMS.iter().map(|s| fold_header(s)).collect();
    let email: Vec<String> = EMAIL_SYNONYMS.iter().map(|s| fold_header(s)).collect();
    let owner: Vec<String> = OWNER_SYNONYMS.iter().map(|s| fold_header(s)).collect();
    for (i, h) in folded.iter().enumerate() {
        if h.is_empty() || out[i].field.is_some() {
            continue;
        }
        let target = if phone.contains(h) {
            only_free_of_type(form, FieldType::Phone, &used)
        } else if email.contains(h) {
            only_free_of_type(form, FieldType::Email, &used)
        } else if owner.contains(h) && !used.contains("owner") {
            Some("owner".to_owned())
        } else {
            None
        };
        if let Some(field) = target {
            used.insert(field.clone());
            out[i].field = Some(field);
            out[i].by = Some(MatchedBy::Synonym);
        }
    }

    for s in &mut out {
        s.computed = s
            .field
            .as_deref()
            .and_then(|name| form.field(name))
            .is_some_and(|f| f.is_read_only());
    }
    out
}

/// The one not-yet-mapped field of `kind`, if exactly one.
fn only_free_of_type(form: &Form, kind: FieldType, used: &HashSet<String>) -> Option<String> {
    let mut free = form
        .fields
        .iter()
        .filter(|f| f.kind == kind && !used.contains(&f.name));
    let first = free.next()?;
    if free.next().is_some() {
        return None;
    }
    Some(first.name.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use trellis_meta::{Field, Label};

    fn label(en: &str, zh: &str) -> Label {
        [
            ("en".to_owned(), en.to_owned()),
            ("zh-CN".to_owned(), zh.to_owned()),
        ]
        .into_iter()
        .collect()
    }

    fn field(name: &str, kind: FieldType, en: &str, zh: &str) -> Field {
        let mut f = Field::new(name, kind);
        f.label = label(en, zh);
        f
    }

    /// Built through serde so fields other crates add to `Form` keep their defaults.
    fn form(fields: Vec<Field>) -> Form {
        serde_json::from_value(serde_json::json!({
            "name": "customer",
            "label": label("Customer", "客户"),
            "fields": fields,
        }))
        .unwrap()
    }

    fn crm() -> Form {
        form(vec![
            field("code", FieldType::Autonumber, "Code", "编号"),
            field("company_name", FieldType::Text, "Company", "公司名称"),
            field("amount", FieldType::Currency, "Amount", "金额"),
            field("mobile_phone", FieldType::Phone, "Cell", "移动电话"),
            field(
                "contact_email",
                FieldType::Email,
                "Contact email",
                "联系人邮箱",
            ),
            field("score", FieldType::Formula, "Score", "评分"),
            field("signed_on", FieldType::Date, "Signed on", "签约日期"),
        ])
    }

    fn mapped(s: &[Suggestion]) -> Vec<(Option<&str>, Option<MatchedBy>)> {
        s.iter().map(|s| (s.field.as_deref(), s.by)).collect()
    }

    #[test]
    fn folds_headers() {
        assert_eq!(fold_header(" 金额（元）"), "金额");
        assert_eq!(fold_header("金额(元)*"), "金额");
        assert_eq!(fold_header("*公司名称【必填】"), "公司名称");
        assert_eq!(fold_header("Company_Name [text]"), "companyname");
        assert_eq!(fold_header("Ｅ-Ｍａｉｌ："), "email");
        assert_eq!(fold_header("Signed On:"), "signedon");
        assert_eq!(fold_header("(备注)"), "(备注)");
        assert_eq!(fold_header("  "), "");
    }

    #[test]
    fn maps_by_name_label_and_synonym() {
        let headers: Vec<String> = [
            "公司名称*",
            "Amount (CNY)",
            "手机号",
            "邮箱",
            "ID",
            "负责人",
            "signed_on",
            "编号",
            "评分",
            "备注",
            "",
        ]
        .map(String::from)
        .to_vec();
        let s = suggest(&headers, &crm());
        assert_eq!(
            mapped(&s),
            vec![
                (Some("company_name"), Some(MatchedBy::Label)),
                (Some("amount"), Some(MatchedBy::Name)),
                (Some("mobile_phone"), Some(MatchedBy::Synonym)),
                (Some("contact_email"), Some(MatchedBy::Synonym)),
                (Some("id"), Some(MatchedBy::Name)),
                (Some("owner"), Some(MatchedBy::Synonym)),
                (Some("signed_on"), Some(MatchedBy::Name)),
                (Some("code"), Some(MatchedBy::Label)),
                (Some("score"), Some(MatchedBy::Label)),
                (None, None),
                (None, None),
            ]
        );
        let computed: Vec<bool> = s.iter().map(|s| s.computed).collect();
        assert_eq!(
            computed,
            [
                false, false, false, false, false, false, false, true, true, false, false
            ]
        );
        assert_eq!(s[2].column, 2);
        assert_eq!(s[2].header, "手机号");
        let json = serde_json::to_value(&s[0]).unwrap();
        assert_eq!(json["by"], "label");
    }

    #[test]
    fn each_field_once_first_column_wins() {
        let headers: Vec<String> = ["Company", "公司名称", "company_name", "owner", "Owner"]
            .map(String::from)
            .to_vec();
        let s = suggest(&headers, &crm());
        assert_eq!(
            mapped(&s),
            vec![
                (Some("company_name"), Some(MatchedBy::Label)),
                (None, None),
                (None, None),
                (Some("owner"), Some(MatchedBy::Name)),
                (None, None),
            ]
        );
    }

    #[test]
    fn name_beats_label_and_synonym_needs_one_free_field() {
        let f = form(vec![
            field("home", FieldType::Phone, "Home phone", "家庭电话"),
            field("work", FieldType::Phone, "Work phone", "工作电话"),
            field("email", FieldType::Email, "Email", "邮箱"),
            // A label equal to another field's name: the name match wins.
            field("title", FieldType::Text, "home", "标题"),
        ]);
        let headers: Vec<String> = ["电话", "标题", "mail", "E-mail"]
            .map(String::from)
            .to_vec();
        let s = suggest(&headers, &f);
        assert_eq!(
            mapped(&s),
            vec![
                // Two phone fields are free: ambiguous.
                (None, None),
                (Some("title"), Some(MatchedBy::Label)),
                (None, None),
                (Some("email"), Some(MatchedBy::Name)),
            ]
        );
        // After `home` is taken by name, one phone field is left for the synonym.
        let headers: Vec<String> = ["home", "Tel"].map(String::from).to_vec();
        let s = suggest(&headers, &f);
        assert_eq!(
            mapped(&s),
            vec![
                (Some("home"), Some(MatchedBy::Name)),
                (Some("work"), Some(MatchedBy::Synonym)),
            ]
        );
    }
}
