//! One registry of error codes, each with its HTTP status and a stable name; every client
//! error is RFC 9457 problem+json naming the field and the reason.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};
use trellis_store::StoreError;

/// Every error the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The body is not valid JSON (or not UTF-8).
    MalformedJson,
    /// A query parameter is malformed.
    InvalidQuery,
    /// The filter, sort, cursor, fields or expand is invalid.
    InvalidFilter,
    /// No or bad token.
    Unauthorized,
    /// Wrong e-mail or password.
    BadCredentials,
    /// Authenticated, but not allowed.
    Forbidden,
    /// No such form.
    UnknownForm,
    /// No such record.
    RecordNotFound,
    /// Nothing at that address.
    NotFound,
    /// A unique value is already used.
    UniqueViolation,
    /// The request conflicts with existing data or definitions.
    Conflict,
    /// If-Match does not match the current version.
    StaleVersion,
    /// The body is too large.
    PayloadTooLarge,
    /// Record values are invalid.
    Validation,
    /// A definition is invalid.
    InvalidDefinition,
    /// A report cannot run as asked (parameters, too many groups).
    InvalidRun,
    /// A schema change would lose data.
    LossyChange,
    /// Too many requests.
    RateLimited,
    /// The route does not take that method.
    MethodNotAllowed,
    /// The database cannot take the request now; retry.
    Unavailable,
    /// A bug or an unreachable database.
    Internal,
}

impl Code {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedJson | Self::InvalidQuery | Self::InvalidFilter => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized | Self::BadCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::UnknownForm | Self::RecordNotFound | Self::NotFound => StatusCode::NOT_FOUND,
            Self::UniqueViolation | Self::Conflict => StatusCode::CONFLICT,
            Self::StaleVersion => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Validation | Self::InvalidDefinition | Self::InvalidRun | Self::LossyChange => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable name, the last segment of the problem `type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidFilter => "invalid_filter",
            Self::Unauthorized => "unauthorized",
            Self::BadCredentials => "bad_credentials",
            Self::Forbidden => "forbidden",
            Self::UnknownForm => "unknown_form",
            Self::RecordNotFound => "record_not_found",
            Self::NotFound => "not_found",
            Self::UniqueViolation => "unique_violation",
            Self::Conflict => "conflict",
            Self::StaleVersion => "stale_version",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Validation => "validation",
            Self::InvalidDefinition => "invalid_definition",
            Self::InvalidRun => "invalid_run",
            Self::LossyChange => "lossy_change",
            Self::RateLimited => "rate_limited",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The title in Chinese.
    pub fn title_zh(self) -> &'static str {
        match self {
            Self::MalformedJson => "JSON 格式错误",
            Self::InvalidQuery => "查询参数无效",
            Self::InvalidFilter => "筛选条件无效",
            Self::Unauthorized => "需要登录",
            Self::BadCredentials => "邮箱或密码错误",
            Self::Forbidden => "没有权限",
            Self::UnknownForm => "表单不存在",
            Self::RecordNotFound => "记录不存在",
            Self::NotFound => "未找到",
            Self::UniqueViolation => "该值已被使用",
            Self::Conflict => "冲突",
            Self::StaleVersion => "记录已被修改",
            Self::PayloadTooLarge => "请求内容过大",
            Self::Validation => "数据校验失败",
            Self::InvalidDefinition => "定义无效",
            Self::InvalidRun => "报表无法按此运行",
            Self::LossyChange => "此更改会丢失数据",
            Self::RateLimited => "请求过于频繁",
            Self::MethodNotAllowed => "不支持该请求方法",
            Self::Unavailable => "服务暂不可用",
            Self::Internal => "内部错误",
        }
    }

    /// A short title.
    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedJson => "Malformed JSON",
            Self::InvalidQuery => "Invalid query parameter",
            Self::InvalidFilter => "Invalid filter",
            Self::Unauthorized => "Authentication required",
            Self::BadCredentials => "Wrong e-mail or password",
            Self::Forbidden => "Not permitted",
            Self::UnknownForm => "Unknown form",
            Self::RecordNotFound => "Record not found",
            Self::NotFound => "Not found",
            Self::UniqueViolation => "Value already used",
            Self::Conflict => "Conflict",
            Self::StaleVersion => "Stale version",
            Self::PayloadTooLarge => "Payload too large",
            Self::Validation => "Validation failed",
            Self::InvalidDefinition => "Invalid definition",
            Self::InvalidRun => "The report cannot run as asked",
            Self::LossyChange => "Change would lose data",
            Self::RateLimited => "Too many requests",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Unavailable => "Service unavailable",
            Self::Internal => "Internal error",
        }
    }
}

/// An error answer: a code, a detail and the per-field errors.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The registered code.
    pub code: Code,
    /// Human detail.
    pub detail: String,
    /// Per-field errors (`field`, `code`, `message`, …).
    pub errors: Vec<Value>,
    /// Extra members of the problem document.
    pub extra: Option<Box<(&'static str, Value)>>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.detail)
    }
}

impl ApiError {
    /// An error without field details.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            extra: None,
        }
    }

    /// An error about one field.
    pub fn field(code: Code, field: &str, reason: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            code,
            detail: if field.is_empty() {
                message.clone()
            } else {
                format!("{field}: {message}")
            },
            errors: vec![json!({"field": field, "code": reason, "message": message})],
            extra: None,
        }
    }
}

/// The Chinese message of an error entry, by its code (entries from validation carry their
/// own, more specific one).
pub fn zh_for(code: &str) -> &'static str {
    match code {
        "unknown_field" => "没有这个字段",
        "unknown_operator" | "unsupported_operator" => "不支持的运算符",
        "invalid_value" | "invalid_record_value" | "invalid" => "值无效",
        "invalid_path" | "not_a_relation" => "路径无效，或不是关联字段",
        "too_deep" => "嵌套层数过多",
        "too_many_conditions" => "条件过多",
        "too_long" => "内容过长",
        "not_an_object" => "应为 JSON 对象",
        "unsupported_in_memory" => "此条件无法在内存中计算",
        "unknown_form" => "表单不存在",
        "not_sortable" => "此字段不能排序",
        "too_many_sort_keys" => "排序字段过多",
        "invalid_cursor" => "分页游标无效",
        "unique" => "该值已被其他记录使用",
        "restricted" => "有其他记录引用此记录，不能删除",
        "cascade_too_deep" => "级联删除层数过多",
        "form_exists" => "同名表单已存在",
        "form_referenced" => "其他表单引用了此表单",
        "form_not_empty" => "表单中还有记录",
        "form_owned" => "此表单属于另一个应用包",
        "downgrade" => "不能安装更旧的版本",
        "definition_changed" => "表单已被修改，请重新规划",
        "lossy_change" => "部分记录的值无法转换",
        "values_violate" => "部分现有记录不符合新定义",
        "required_without_default" => "新的必填字段需要默认值",
        "duplicate_name" => "名称重复",
        "reserved_name" => "名称为系统保留",
        "duplicate_option" => "选项重复",
        "unknown_option" => "不是此字段的选项",
        "invalid_name" | "rename" => "名称无效",
        "invalid_pattern" => "正则表达式无效",
        "invalid_format" => "编号格式无效",
        "invalid_version" => "版本号无效",
        "min_above_max" => "最小值大于最大值",
        "not_allowed" | "not_in_subtable" => "此设置不适用于该字段类型",
        "too_many_fields" => "字段过多",
        "invalid_default" => "默认值无效",
        "required" => "此项为必填",
        "malformed" | "schema" => "格式错误",
        "out_of_range" | "count" => "超出允许范围",
        "file_type" => "不接受此类型的文件",
        "max_size" => "文件过大",
        "not_found" => "引用的对象不存在",
        "read_only" => "你不能修改此字段",
        "not_permitted" => "你没有执行此操作的权限",
        "owner_out_of_scope" => "不能把记录交给这个负责人",
        "out_of_scope" => "你的角色不允许创建这样的记录",
        "role_filter_invalid" => "角色的数据范围条件已失效，请联系管理员",
        "csrf" => "缺少或错误的 CSRF 令牌",
        "role_in_use" => "仍有用户拥有此角色",
        "role_owned" => "此角色属于另一个应用包",
        "cycle" => "汇报关系不能形成循环",
        "unknown_role" => "角色不存在",
        "rule" => "规则校验未通过",
        "formula" => "公式计算失败",
        "rule_syntax" => "脚本语法错误",
        "rule_runtime" => "脚本运行出错",
        "rule_too_many_operations" => "脚本运行步数超限",
        "rule_timeout" => "脚本运行超时",
        "rule_too_deep" => "脚本嵌套过深",
        "rule_too_large" => "脚本数据过大",
        _ => "请求无效",
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let body = self.problem();
        let mut r = HttpResponse::build(self.code.status());
        r.content_type("application/problem+json");
        if self.code == Code::Unauthorized {
            r.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Some(("retry_after", v)) = self.extra.as_deref().map(|(k, v)| (*k, v)) {
            r.insert_header(("Retry-After", v.to_string()));
        }
        r.body(body.to_string())
    }
}

impl ApiError {
    /// The problem+json document (RFC 9457) of this error, for answers that embed one.
    pub fn problem(&self) -> Value {
        let mut body = json!({
            "type": format!("https://trellis.dev/errors/{}", self.code.name()),
            "title": self.code.title(),
            "title_zh": self.code.title_zh(),
            "status": self.code.status().as_u16(),
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            // Every entry speaks both languages.
            let errors = self
                .errors
                .iter()
                .cloned()
                .map(|mut e| {
                    if e.get("message_zh").is_none() {
                        let zh = zh_for(e.get("code").and_then(Value::as_str).unwrap_or_default());
                        e["message_zh"] = Value::String(zh.to_owned());
                    }
                    e
                })
                .collect();
            body["errors"] = Value::Array(errors);
        }
        if let Some((k, v)) = self.extra.as_deref() {
            body[*k] = v.clone();
        }
        body
    }
}

impl From<trellis_workflow::WorkflowError> for ApiError {
    fn from(e: trellis_workflow::WorkflowError) -> Self {
        use trellis_workflow::WorkflowError as W;
        match e {
            W::Store(e) => e.into(),
            W::NotFound(m) => Self::new(Code::NotFound, format!("{m} not found")),
            W::Forbidden(m) => Self::new(Code::Forbidden, m),
            W::Conflict(m) => Self::new(Code::Conflict, m),
            W::Invalid { field, message } => {
                Self::field(Code::Validation, &field, "invalid", message)
            }
            other => {
                tracing::error!(error = %other, "workflow engine error");
                Self::new(
                    Code::Internal,
                    "the workflow engine failed; the error is logged",
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(e) => {
                tracing::error!(error = %e, "database error");
                Self::new(Code::Internal, "the database failed; the error is logged")
            }
            StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "database unavailable");
                Self::new(Code::Unavailable, "the database cannot take the request now; retry")
            }
            StoreError::Corrupt(m) => {
                tracing::error!(error = %m, "corrupt data");
                Self::new(Code::Internal, "stored data could not be read; the error is logged")
            }
            StoreError::UnknownForm(f) => Self::field(Code::UnknownForm, "form", "unknown_form", format!("no form named {f:?}")),
            StoreError::RecordNotFound { form, id } => Self::new(Code::RecordNotFound, format!("no {form} record with id {id:?}")),
            StoreError::NotFound(what) => Self::new(Code::NotFound, format!("{what} not found")),
            StoreError::Definition(errs) => Self {
                code: Code::InvalidDefinition,
                detail: format!("{} problem(s) in the definition", errs.len()),
                errors: errs.iter().map(|e| json!({"field": e.path, "code": e.code, "message": e.message})).collect(),
                extra: None,
            },
            StoreError::Validation(errs) => Self {
                code: Code::Validation,
                detail: if errs.len() == 1 { "1 field is invalid".to_owned() } else { format!("{} fields are invalid", errs.len()) },
                errors: errs.iter().map(|e| json!({"field": e.field, "code": e.code, "message": e.message, "message_zh": e.message_zh})).collect(),
                extra: None,
            },
            StoreError::Filter(e) => Self::field(Code::InvalidFilter, &e.path, e.code, e.message),
            StoreError::Unique { field } => Self::field(Code::UniqueViolation, &field, "unique", "the value is already used by another record"),
            StoreError::Conflict { field, code, message, rows } => {
                let mut err = json!({"field": field, "code": code, "message": message});
                if !rows.is_empty() {
                    err["rows"] = json!(rows);
                }
                Self { code: Code::Conflict, detail: message, errors: vec![err], extra: None }
            }
            StoreError::Stale { current } => Self {
                code: Code::StaleVersion,
                detail: format!("the record has changed since; its version is now {current}"),
                errors: vec![],
                extra: Some(Box::new(("current_version", json!(current)))),
            },
            StoreError::Lossy(blockers) => Self {
                code: Code::LossyChange,
                detail: format!("the change would lose or invalidate data in {} field(s)", blockers.len()),
                errors: blockers.iter().map(|b| json!({"field": b.field, "code": b.code, "message": b.message, "total": b.total, "rows": b.rows})).collect(),
                extra: None,
            },
            StoreError::Forbidden { field, code, message } => Self::field(Code::Forbidden, &field, code, message),
            StoreError::BadCredentials => Self::new(Code::BadCredentials, "wrong e-mail or password"),
            StoreError::Locked { retry_after } => Self {
                code: Code::RateLimited,
                detail: format!("too many failed logins; try again in {retry_after} seconds"),
                errors: vec![],
                extra: Some(Box::new(("retry_after", json!(retry_after)))),
            },
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
