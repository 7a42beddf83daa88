//! The form definition: a named entity with typed fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use crate::dedupe;

/// Labels by language tag (`en`, `zh-CN`).
pub type Label = BTreeMap<String, String>;

/// A form: becomes one table with one column per field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Form {
    /// Immutable name, `^[a-z][a-z0-9_]{0,62}$`.
    pub name: String,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
    /// Longer description per language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// The field that names a record in lists and relation pickers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_field: Option<String>,
    /// The fields, in display order.
    pub fields: Vec<Field>,
    /// Rules that say when two records are the same thing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<dedupe::MatchRule>,
}

impl Form {
    /// The field called `name`, if any.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// A label in `lang`, falling back to English, then to the name.
    pub fn label_in(&self, lang: &str) -> &str {
        label_in(&self.label, lang, &self.name)
    }
}

/// Pick a label in `lang`, then English, then the fallback.
pub fn label_in<'a>(label: &'a Label, lang: &str, fallback: &'a str) -> &'a str {
    label
        .get(lang)
        .or_else(|| label.get("en"))
        .map(String::as_str)
        .unwrap_or(fallback)
}

/// Field types (fixed names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// One line of text.
    Text,
    /// Several lines of text.
    Textarea,
    /// A whole number.
    Integer,
    /// A number with a fractional part.
    Decimal,
    /// An amount of money.
    Currency,
    /// True or false.
    Boolean,
    /// A calendar date.
    Date,
    /// An instant in time.
    Datetime,
    /// One value of a list.
    Select,
    /// Several values of a list.
    Multiselect,
    /// An e-mail address.
    Email,
    /// A telephone number.
    Phone,
    /// A web address.
    Url,
    /// A number assigned by the server from a format.
    Autonumber,
    /// A reference to a record of another form.
    Relation,
    /// A reference to a user.
    User,
    /// Lines with their own fields (order lines).
    Subtable,
    /// Files.
    Attachment,
    /// A computed value.
    Formula,
    /// Free JSON.
    Json,
}

impl FieldType {
    /// The fixed name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Textarea => "textarea",
            Self::Integer => "integer",
            Self::Decimal => "decimal",
            Self::Currency => "currency",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Select => "select",
            Self::Multiselect => "multiselect",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Url => "url",
            Self::Autonumber => "autonumber",
            Self::Relation => "relation",
            Self::User => "user",
            Self::Subtable => "subtable",
            Self::Attachment => "attachment",
            Self::Formula => "formula",
            Self::Json => "json",
        }
    }

    /// Types whose value is a string of text.
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            Self::Text
                | Self::Textarea
                | Self::Email
                | Self::Phone
                | Self::Url
                | Self::Select
                | Self::Autonumber
        )
    }

    /// Types whose value is a number.
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Integer | Self::Decimal | Self::Currency)
    }

    /// Default maximum length of a textual value, in characters.
    pub fn default_max_length(self) -> Option<u64> {
        match self {
            Self::Text | Self::Autonumber | Self::Select => Some(1000),
            Self::Textarea => Some(100_000),
            Self::Email => Some(254),
            Self::Phone => Some(40),
            Self::Url => Some(2048),
            Self::Relation | Self::User => Some(64),
            _ => None,
        }
    }
}

/// What happens to referring records when the target of a relation is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// Refuse the delete while records refer to it.
    #[default]
    Restrict,
    /// Clear the reference.
    SetNull,
    /// Delete the referring records too.
    Cascade,
}

/// One choice of a select or multiselect field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectOption {
    /// The stored value.
    pub value: String,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
    /// Display colour (`#rrggbb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// Explanation of the choice per language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// An end state (a lost lead, a closed ticket): a record holding it is no longer open
    /// work, and workload routing does not count it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub closed: bool,
    /// Select fields only: fields that must hold a value for a record to enter this state
    /// (an opportunity's `amount` to enter `proposal`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
}

impl Form {
    /// Each select field with end states, with those states: a record is open while none of
    /// these fields holds one of its end states.
    pub fn closed_states(&self) -> Vec<(&Field, Vec<&str>)> {
        self.fields
            .iter()
            .filter(|f| f.kind == FieldType::Select)
            .map(|f| {
                let closed = f
                    .options
                    .iter()
                    .filter(|o| o.closed)
                    .map(|o| o.value.as_str())
                    .collect::<Vec<_>>();
                (f, closed)
            })
            .filter(|(_, c)| !c.is_empty())
            .collect()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One field of a form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Name, `^[a-z][a-z0-9_]{0,62}$`, not a reserved name.
    pub name: String,
    /// The field type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Display name per language.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: Label,
    /// Help text per language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// A value must be given.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// No two records may share a value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    /// Create an index for filters and sorts.
    #[serde(default, skip_serializing_if = "is_false")]
    pub indexed: bool,
    /// Value used when a new record gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Smallest allowed number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Number>,
    /// Largest allowed number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Number>,
    /// Longest allowed text, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// Regular expression a text must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The choices of a select or multiselect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<SelectOption>,
    /// Select fields only: for each state, the states it may move to (a state not listed
    /// may move anywhere; `[]` is final).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transitions: Option<BTreeMap<String, Vec<String>>>,
    /// Target form of a relation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Policy when the target record is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_delete: Option<OnDelete>,
    /// Autonumber format, e.g. `C-{YYYY}-{seq:5}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Spellings mapped to the one stored value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<BTreeMap<String, String>>,
    /// Columns of a subtable's lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    /// Largest attachment, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Accepted MIME types or extensions of an attachment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<String>,
    /// An attachment field holds several files.
    #[serde(default, skip_serializing_if = "is_false")]
    pub multiple: bool,
    /// Formula expression (rhai).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// Type of a formula's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_type: Option<FieldType>,
    /// Digits after the decimal point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<u32>,
    /// ISO currency code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

impl Field {
    /// A bare field of `kind`, for tests and generated forms.
    pub fn new(name: &str, kind: FieldType) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            label: Label::new(),
            description: None,
            required: false,
            unique: false,
            indexed: false,
            default: None,
            min: None,
            max: None,
            max_length: None,
            pattern: None,
            options: Vec::new(),
            transitions: None,
            target: None,
            on_delete: None,
            format: None,
            normalize: None,
            fields: Vec::new(),
            max_size: None,
            accept: Vec::new(),
            multiple: false,
            expression: None,
            result_type: None,
            precision: None,
            currency: None,
        }
    }

    /// The type whose values this field stores (a formula stores its result type).
    pub fn storage_type(&self) -> FieldType {
        match self.kind {
            FieldType::Formula => self.result_type.unwrap_or(FieldType::Decimal),
            k => k,
        }
    }

    /// Values are assigned by the server and never written by clients.
    pub fn is_read_only(&self) -> bool {
        matches!(self.kind, FieldType::Autonumber | FieldType::Formula)
    }

    /// The effective maximum length of a textual value.
    pub fn effective_max_length(&self) -> Option<u64> {
        self.max_length
            .or_else(|| self.storage_type().default_max_length())
    }

    /// The effective on-delete policy of a relation.
    pub fn on_delete_policy(&self) -> OnDelete {
        self.on_delete.unwrap_or_default()
    }
}
