//! The JSON Schema of a form's records, and the preparation of a write: trim, normalize,
//! apply defaults, then validate with the jsonschema crate.

use chrono::{DateTime, SecondsFormat, Utc};
use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value, json};

use crate::SYSTEM_COLUMNS;
use crate::check::pointer_to_path;
use crate::error::{FieldError, MetaError};
use crate::form::{Field, FieldType, Form};

/// Whether a write creates a record or changes some of its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new record: defaults apply, required fields must be present.
    Create,
    /// A partial update: only the given fields are checked.
    Update,
}

/// Pattern a phone number must match: digits with the usual separators.
pub const PHONE_PATTERN: &str = r"^\+?[0-9()][0-9 ()./-]{1,38}[0-9)]$";

const INT_MIN: i64 = -9_007_199_254_740_991;
const INT_MAX: i64 = 9_007_199_254_740_991;

/// The schema of one field's value as a client sends it.
pub fn field_schema(f: &Field) -> Value {
    let mut s = Map::new();
    let st = f.storage_type();
    let nullable = !f.required;
    let ty = |t: &str| {
        if nullable {
            json!([t, "null"])
        } else {
            json!(t)
        }
    };
    match st {
        FieldType::Text
        | FieldType::Textarea
        | FieldType::Email
        | FieldType::Phone
        | FieldType::Url
        | FieldType::Autonumber
        | FieldType::Relation
        | FieldType::User => {
            s.insert("type".into(), ty("string"));
            if let Some(n) = f.effective_max_length() {
                s.insert("maxLength".into(), json!(n));
            }
            if let Some(p) = &f.pattern {
                s.insert("pattern".into(), json!(p));
            }
            match st {
                FieldType::Email => {
                    s.insert("format".into(), json!("email"));
                }
                FieldType::Url => {
                    s.insert("format".into(), json!("uri"));
                }
                FieldType::Phone if f.pattern.is_none() => {
                    s.insert("pattern".into(), json!(PHONE_PATTERN));
                }
                _ => {}
            }
        }
        FieldType::Select => {
            let mut vals: Vec<Value> = f.options.iter().map(|o| json!(o.value)).collect();
            if nullable {
                vals.push(Value::Null);
            }
            s.insert("enum".into(), Value::Array(vals));
        }
        FieldType::Multiselect => {
            s.insert("type".into(), ty("array"));
            let vals: Vec<Value> = f.options.iter().map(|o| json!(o.value)).collect();
            s.insert("items".into(), json!({"enum": vals}));
            s.insert("uniqueItems".into(), json!(true));
            if f.required {
                s.insert("minItems".into(), json!(1));
            }
        }
        FieldType::Integer | FieldType::Decimal | FieldType::Currency => {
            let int = st == FieldType::Integer;
            s.insert("type".into(), ty(if int { "integer" } else { "number" }));
            s.insert(
                "minimum".into(),
                f.min.clone().map(Value::Number).unwrap_or(json!(INT_MIN)),
            );
            s.insert(
                "maximum".into(),
                f.max.clone().map(Value::Number).unwrap_or(json!(INT_MAX)),
            );
        }
        FieldType::Boolean => {
            s.insert("type".into(), ty("boolean"));
        }
        FieldType::Date => {
            s.insert("type".into(), ty("string"));
            s.insert("format".into(), json!("date"));
        }
        FieldType::Datetime => {
            s.insert("type".into(), ty("string"));
            s.insert("format".into(), json!("date-time"));
        }
        FieldType::Subtable => {
            s.insert("type".into(), ty("array"));
            s.insert("maxItems".into(), json!(1000));
            s.insert("items".into(), object_schema(&f.fields, Mode::Create));
        }
        FieldType::Attachment => {
            let file = json!({"type":"object","required":["id"],"additionalProperties":false,"properties":{
                "id":{"type":"string","maxLength":64},"name":{"type":"string","maxLength":255},
                "size":{"type":"integer","minimum":0},"content_type":{"type":"string","maxLength":255}}});
            if f.multiple {
                s.insert("type".into(), ty("array"));
                s.insert("items".into(), file);
                s.insert("maxItems".into(), json!(100));
            } else if nullable {
                s.insert("anyOf".into(), json!([file, {"type":"null"}]));
            } else {
                return file;
            }
        }
        FieldType::Json | FieldType::Formula => {}
    }
    Value::Object(s)
}

/// The schema of an object holding `fields` (a record or a subtable line), for input.
fn object_schema(fields: &[Field], mode: Mode) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in fields.iter().filter(|f| !f.is_read_only()) {
        props.insert(f.name.clone(), field_schema(f));
        if f.required && mode == Mode::Create {
            required.push(json!(f.name));
        }
    }
    // The owner may be given on a write; the server decides whether it is allowed.
    props.insert(
        "owner".into(),
        json!({"type":["string","null"],"maxLength":64}),
    );
    json!({"type":"object","additionalProperties":false,"properties":props,"required":required})
}

/// The schema of a record as a client writes it.
pub fn input_schema(form: &Form, mode: Mode) -> Value {
    let mut s = object_schema(&form.fields, mode);
    if let Some(o) = s.as_object_mut() {
        o.insert("title".into(), json!(form.name));
    }
    s
}

/// The schema of a record as the API returns it (system columns included), for OpenAPI.
pub fn output_schema(form: &Form) -> Value {
    let mut props = Map::new();
    props.insert("id".into(), json!({"type":"string","readOnly":true}));
    props.insert("version".into(), json!({"type":"integer","readOnly":true}));
    props.insert(
        "created_at".into(),
        json!({"type":"string","format":"date-time","readOnly":true}),
    );
    props.insert(
        "updated_at".into(),
        json!({"type":"string","format":"date-time","readOnly":true}),
    );
    props.insert(
        "created_by".into(),
        json!({"type":["string","null"],"readOnly":true}),
    );
    props.insert("owner".into(), json!({"type":["string","null"]}));
    for f in &form.fields {
        let mut fs = field_schema(f);
        if let Some(o) = fs.as_object_mut() {
            if let Some(l) = f.label.get("en") {
                o.insert("title".into(), json!(l));
            }
            if f.is_read_only() {
                o.insert("readOnly".into(), json!(true));
            }
        }
        props.insert(f.name.clone(), fs);
    }
    let required: Vec<&str> = SYSTEM_COLUMNS.to_vec();
    json!({"type":"object","title":form.name,"properties":props,"required":required})
}

/// Validates values of one field, compiled once (used to check existing rows before a
/// schema change).
pub struct FieldValidator {
    name: String,
    validator: jsonschema::Validator,
}

impl FieldValidator {
    /// Compile the schema of `f`.
    pub fn new(f: &Field) -> Result<Self, MetaError> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&field_schema(f))
            .map_err(|e| MetaError::new(&f.name, "schema", e.to_string()))?;
        Ok(Self {
            name: f.name.clone(),
            validator,
        })
    }

    /// Check one value.
    pub fn check(&self, v: &Value) -> Result<(), FieldError> {
        match self.validator.iter_errors(v).next() {
            None => Ok(()),
            Some(e) => Err(to_field_error(&self.name, &e)),
        }
    }
}

/// Check one value against one field (used for defaults).
pub fn validate_field_value(f: &Field, v: &Value) -> Result<(), FieldError> {
    let schema = field_schema(f);
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| FieldError::new(&f.name, "schema", e.to_string(), e.to_string()))?;
    match validator.iter_errors(v).next() {
        None => Ok(()),
        Some(e) => Err(to_field_error(&f.name, &e)),
    }
}

fn to_field_error(prefix: &str, e: &jsonschema::ValidationError<'_>) -> FieldError {
    let path = pointer_to_path(&e.instance_path().to_string());
    let mut field = match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path,
        (false, true) => prefix.to_owned(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    };
    let (code, en, zh): (&'static str, String, String) = match e.kind() {
        ValidationErrorKind::Required { property } => {
            let p = property.as_str().unwrap_or_default();
            field = if field.is_empty() {
                p.to_owned()
            } else {
                format!("{field}.{p}")
            };
            (
                "required",
                "a value is required".into(),
                "此项为必填".into(),
            )
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let p = unexpected.first().cloned().unwrap_or_default();
            field = if field.is_empty() {
                p
            } else {
                format!("{field}.{p}")
            };
            (
                "unknown_field",
                "no such field".into(),
                "没有这个字段".into(),
            )
        }
        ValidationErrorKind::Type { .. } if e.instance().is_null() => (
            "required",
            "a value is required".into(),
            "此项为必填".into(),
        ),
        ValidationErrorKind::Type { kind } => {
            let want = format!("{kind:?}").to_lowercase();
            let zh = match want.as_str() {
                "string" => "文本",
                "integer" => "整数",
                "number" => "数字",
                "boolean" => "是/否",
                "array" => "列表",
                "object" => "对象",
                _ => "正确的类型",
            };
            (
                "type",
                format!("expected a value of type {want}"),
                format!("类型错误，应为{zh}"),
            )
        }
        ValidationErrorKind::Enum { .. } => (
            "option",
            "not one of the allowed options".into(),
            "不是允许的选项".into(),
        ),
        ValidationErrorKind::MaxLength { limit } => (
            "max_length",
            format!("longer than {limit} characters"),
            format!("长度超过 {limit} 个字符"),
        ),
        ValidationErrorKind::MinLength { limit } => (
            "min_length",
            format!("shorter than {limit} characters"),
            format!("长度少于 {limit} 个字符"),
        ),
        ValidationErrorKind::Minimum { limit } => (
            "min",
            format!("less than the minimum {limit}"),
            format!("小于最小值 {limit}"),
        ),
        ValidationErrorKind::Maximum { limit } => (
            "max",
            format!("more than the maximum {limit}"),
            format!("大于最大值 {limit}"),
        ),
        ValidationErrorKind::Pattern { .. } => (
            "pattern",
            "does not match the required pattern".into(),
            "格式不符合要求".into(),
        ),
        ValidationErrorKind::Format { format } => {
            let (what, zh) = match format.as_str() {
                "email" => ("an e-mail address", "电子邮件地址"),
                "uri" => ("a URL", "网址"),
                "date" => ("a date (YYYY-MM-DD)", "日期（YYYY-MM-DD）"),
                "date-time" => ("a date and time (RFC 3339)", "日期时间（RFC 3339）"),
                other => (other, other),
            };
            (
                "format",
                format!("not {what}"),
                format!("格式错误：应为{zh}"),
            )
        }
        ValidationErrorKind::MaxItems { limit } => (
            "max_items",
            format!("more than {limit} items"),
            format!("超过 {limit} 项"),
        ),
        ValidationErrorKind::MinItems { .. } => (
            "required",
            "at least one value is required".into(),
            "至少选择一项".into(),
        ),
        ValidationErrorKind::UniqueItems => (
            "duplicate_items",
            "a value is listed twice".into(),
            "有重复的值".into(),
        ),
        _ => ("invalid", e.to_string(), e.to_string()),
    };
    FieldError::new(field, code, en, zh)
}

/// Prepares and validates writes for one form version; build once, use for every write.
pub struct RecordValidator {
    form: Form,
    create: jsonschema::Validator,
    update: jsonschema::Validator,
}

impl std::fmt::Debug for RecordValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordValidator")
            .field("form", &self.form.name)
            .finish()
    }
}

impl RecordValidator {
    /// Compile the record schemas of `form`.
    pub fn new(form: &Form) -> Result<Self, MetaError> {
        let build = |mode| {
            jsonschema::options()
                .should_validate_formats(true)
                .build(&input_schema(form, mode))
                .map_err(|e| MetaError::new("fields", "schema", e.to_string()))
        };
        Ok(Self {
            form: form.clone(),
            create: build(Mode::Create)?,
            update: build(Mode::Update)?,
        })
    }

    /// The form this validator was built for.
    pub fn form(&self) -> &Form {
        &self.form
    }

    /// Normalize `input` and validate it; on success the map holds the values to store
    /// (defaults applied on create). System columns other than `owner` are refused.
    pub fn prepare(
        &self,
        mut input: Map<String, Value>,
        mode: Mode,
        now: DateTime<Utc>,
    ) -> Result<Map<String, Value>, Vec<FieldError>> {
        let mut errors = Vec::new();
        for key in input.keys() {
            if SYSTEM_COLUMNS.contains(&key.as_str()) && key != "owner" {
                errors.push(FieldError::new(
                    key,
                    "read_only",
                    "set by the system",
                    "由系统设置",
                ));
            } else if let Some(f) = self.form.field(key)
                && f.is_read_only()
            {
                errors.push(FieldError::new(
                    key,
                    "read_only",
                    "computed by the system",
                    "由系统计算",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        normalize_object(&self.form.fields, &mut input);
        if mode == Mode::Create {
            apply_defaults(&self.form.fields, &mut input, now);
        }
        let value = Value::Object(input);
        let validator = if mode == Mode::Create {
            &self.create
        } else {
            &self.update
        };
        let errors: Vec<FieldError> = validator
            .iter_errors(&value)
            .take(100)
            .map(|e| to_field_error("", &e))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        match value {
            Value::Object(m) => Ok(m),
            _ => Ok(Map::new()),
        }
    }
}

fn apply_defaults(fields: &[Field], input: &mut Map<String, Value>, now: DateTime<Utc>) {
    for f in fields {
        if input.get(&f.name).is_some_and(|v| !v.is_null()) {
            continue;
        }
        let Some(d) = &f.default else { continue };
        let v = match (f.kind, d.as_str()) {
            (FieldType::Date, Some("$today" | "$now")) => json!(now.date_naive().to_string()),
            (FieldType::Datetime, Some("$now")) => {
                json!(now.to_rfc3339_opts(SecondsFormat::Micros, true))
            }
            (FieldType::Datetime, Some("$today")) => {
                json!(format!("{}T00:00:00Z", now.date_naive()))
            }
            _ => d.clone(),
        };
        input.insert(f.name.clone(), v);
    }
}

/// Trim text, turn empty strings into null, map spellings through `normalize`, and match
/// select values case-insensitively by value or label.
fn normalize_object(fields: &[Field], input: &mut Map<String, Value>) {
    for f in fields {
        let Some(v) = input.get_mut(&f.name) else {
            continue;
        };
        normalize_value(f, v);
    }
}

/// Normalize one value as a write would: trimmed, spellings mapped, select options
/// matched by value or label, e-mails lower-cased.
pub fn normalize_value(f: &Field, v: &mut Value) {
    let st = f.storage_type();
    match v {
        Value::String(s)
            if st.is_textual()
                || matches!(
                    st,
                    FieldType::Relation | FieldType::User | FieldType::Date | FieldType::Datetime
                ) =>
        {
            let t = s.trim();
            if t.is_empty() {
                *v = Value::Null;
                return;
            }
            let mut out = t.to_owned();
            if let Some(map) = &f.normalize {
                let lower = t.to_lowercase();
                if let Some(to) = map
                    .iter()
                    .find(|(k, _)| k.trim().to_lowercase() == lower)
                    .map(|(_, to)| to)
                {
                    out = to.clone();
                }
            }
            if st == FieldType::Select {
                out = match_option(f, &out).unwrap_or(out);
            }
            if st == FieldType::Email {
                out = out.to_lowercase();
            }
            *v = Value::String(out);
        }
        Value::Array(items) if st == FieldType::Multiselect => {
            for item in items.iter_mut() {
                if let Value::String(s) = item {
                    let t = s.trim().to_owned();
                    let mapped = f
                        .normalize
                        .as_ref()
                        .and_then(|m| {
                            m.iter()
                                .find(|(k, _)| k.trim().to_lowercase() == t.to_lowercase())
                                .map(|(_, to)| to.clone())
                        })
                        .unwrap_or(t);
                    *s = match_option(f, &mapped).unwrap_or(mapped);
                }
            }
        }
        Value::Array(lines) if st == FieldType::Subtable => {
            for line in lines.iter_mut() {
                if let Value::Object(m) = line {
                    normalize_object(&f.fields, m);
                }
            }
        }
        _ => {}
    }
}

fn match_option(f: &Field, s: &str) -> Option<String> {
    let lower = s.to_lowercase();
    f.options
        .iter()
        .find(|o| o.value == s)
        .or_else(|| f.options.iter().find(|o| o.value.to_lowercase() == lower))
        .or_else(|| {
            f.options
                .iter()
                .find(|o| o.label.values().any(|l| l.to_lowercase() == lower))
        })
        .map(|o| o.value.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lead() -> Form {
        serde_json::from_value(json!({"name":"lead","fields":[
            {"name":"company","type":"text","required":true,"max_length":20},
            {"name":"city","type":"text","normalize":{"京":"北京市","北京":"北京市","beijing":"北京市"}},
            {"name":"region","type":"select","options":[{"value":"north","label":{"zh-CN":"华北"}},{"value":"east"}]},
            {"name":"tags","type":"multiselect","options":[{"value":"a"},{"value":"b"}]},
            {"name":"email","type":"email"},
            {"name":"phone","type":"phone"},
            {"name":"employees","type":"integer","min":0,"max":1000000},
            {"name":"budget","type":"currency"},
            {"name":"since","type":"date","default":"$today"},
            {"name":"active","type":"boolean","default":true},
            {"name":"no","type":"autonumber","format":"L-{seq:3}"},
            {"name":"lines","type":"subtable","fields":[{"name":"qty","type":"integer","min":1,"required":true}]}
        ]}))
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-22T06:00:00Z".parse().unwrap()
    }

    #[test]
    fn normalizes_city_spellings_and_select_labels() {
        let v = RecordValidator::new(&lead()).unwrap();
        for spelling in ["北京", "京", " beijing ", "BEIJING", "北京市"] {
            let out = v
                .prepare(
                    json!({"company":"A","city":spelling,"region":"华北"})
                        .as_object()
                        .unwrap()
                        .clone(),
                    Mode::Create,
                    now(),
                )
                .unwrap();
            assert_eq!(out["city"], json!("北京市"), "{spelling}");
            assert_eq!(out["region"], json!("north"));
        }
    }

    #[test]
    fn applies_defaults_on_create_only() {
        let v = RecordValidator::new(&lead()).unwrap();
        let out = v
            .prepare(
                json!({"company":"A"}).as_object().unwrap().clone(),
                Mode::Create,
                now(),
            )
            .unwrap();
        assert_eq!(out["since"], json!("2026-11-22"));
        assert_eq!(out["active"], json!(true));
        let out = v
            .prepare(
                json!({"email":"X@Y.COM"}).as_object().unwrap().clone(),
                Mode::Update,
                now(),
            )
            .unwrap();
        assert_eq!(out.get("since"), None);
        assert_eq!(out["email"], json!("x@y.com"));
    }

    #[test]
    fn names_each_invalid_field() {
        let v = RecordValidator::new(&lead()).unwrap();
        let errs = v
            .prepare(
                json!({"city":"x","region":"mars","email":"nope","phone":"call me","employees":-1,"budget":"12",
                       "since":"2026-13-01","tags":["a","a"],"lines":[{"qty":0},{}],"bogus":1,"company":"x".repeat(21)})
                .as_object().unwrap().clone(),
                Mode::Create,
                now(),
            )
            .unwrap_err();
        let got: Vec<(&str, &str)> = errs.iter().map(|e| (e.field.as_str(), e.code)).collect();
        for want in [
            ("company", "max_length"),
            ("region", "option"),
            ("email", "format"),
            ("phone", "pattern"),
            ("employees", "min"),
            ("budget", "type"),
            ("since", "format"),
            ("tags", "duplicate_items"),
            ("lines[0].qty", "min"),
            ("lines[1].qty", "required"),
            ("bogus", "unknown_field"),
        ] {
            assert!(got.contains(&want), "missing {want:?} in {got:?}");
        }
    }

    #[test]
    fn required_fields_and_read_only_fields() {
        let v = RecordValidator::new(&lead()).unwrap();
        let errs = v.prepare(Map::new(), Mode::Create, now()).unwrap_err();
        assert_eq!(errs[0].field, "company");
        assert_eq!(errs[0].code, "required");
        let errs = v
            .prepare(
                json!({"company":"  "}).as_object().unwrap().clone(),
                Mode::Create,
                now(),
            )
            .unwrap_err();
        assert_eq!(
            errs[0].code, "required",
            "blank counts as missing: {errs:?}"
        );
        let errs = v
            .prepare(
                json!({"no":"L-1","id":"x"}).as_object().unwrap().clone(),
                Mode::Update,
                now(),
            )
            .unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs.iter().all(|e| e.code == "read_only"));
    }

    #[test]
    fn output_schema_lists_system_columns() {
        let s = output_schema(&lead());
        assert!(s["properties"]["id"].is_object());
        assert_eq!(s["properties"]["no"]["readOnly"], json!(true));
    }
}
