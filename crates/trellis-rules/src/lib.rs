//! The rule engine: rhai scripts that score, grade, route, validate and compute over one
//! record, in a sandbox with hard limits (operations, call depth, expression depth,
//! string, array and map sizes, wall time), no file, network or module access. One engine
//! serves every worker (rhai `sync`); scripts are compiled once and their ASTs shared.
//!
//! What a script sees: `record` (the record as a map), `previous` (its values before an
//! update, `()` on create), `is_new`; helpers `now()`, `today()`, `days_between(a, b)`,
//! `value_or(v, default)`; results `reject(field, message)` and `assign(user)`; `print`
//! and `debug` go to the run's log. A missing field or a JSON null is `()`, which compares
//! unequal to everything: use `value_or` to give it a default.
//!
//! Helpers that need data (`team_members`, `team_manager`, `has_role`, `open_count`,
//! `least_loaded`, `round_robin`, `lookup`, `related`) ask the host for a [`Fact`]: the run stops, the host fetches the
//! fact, and the script runs again with it ([`RuleEngine::run_with`]). Scripts have no side
//! effects but their outcome, so running one again from the start is safe; a run may ask
//! for at most [`MAX_FACTS`] facts.
//!
//! This crate knows no database and no HTTP.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use rhai::{
    AST, Dynamic, Engine, EvalAltResult, ImmutableString, NativeCallContext, ParseErrorType,
    Position, Scope,
};
use serde_json::{Map, Value};

/// Hard limits on one evaluation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Operations (roughly: expression nodes, loop iterations, calls).
    pub max_operations: u64,
    /// Nested function calls.
    pub max_call_levels: usize,
    /// Nesting of expressions at the top level.
    pub max_expr_depth: usize,
    /// Nesting of expressions inside functions.
    pub max_function_expr_depth: usize,
    /// Longest string, in bytes.
    pub max_string_size: usize,
    /// Most items in an array.
    pub max_array_size: usize,
    /// Most entries in a map.
    pub max_map_size: usize,
    /// Wall time of one evaluation.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 500_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            // A textarea holds 100,000 characters (up to 400 KB of UTF-8).
            max_string_size: 1 << 20,
            max_array_size: 10_000,
            max_map_size: 10_000,
            max_time: Duration::from_millis(200),
        }
    }
}

/// Why a rule failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The script does not parse.
    Syntax,
    /// It failed while running: a type error, division by zero, an unknown function, a
    /// `throw`.
    Runtime,
    /// It ran past its operations limit.
    TooManyOperations,
    /// It ran past its wall time.
    Timeout,
    /// Calls or expressions nest too deep.
    TooDeep,
    /// A string, array or map grew past its limit.
    TooLarge,
}

impl ErrorKind {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Syntax => "rule_syntax",
            Self::Runtime => "rule_runtime",
            Self::TooManyOperations => "rule_too_many_operations",
            Self::Timeout => "rule_timeout",
            Self::TooDeep => "rule_too_deep",
            Self::TooLarge => "rule_too_large",
        }
    }
}

/// A rule that could not be compiled or run, with where in the script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule:?}{}: {message}", at(*line, *column))]
pub struct RuleError {
    /// The rule's name.
    pub rule: String,
    /// What went wrong.
    pub kind: ErrorKind,
    /// Line in the script, from 1.
    pub line: Option<usize>,
    /// Column in the line, from 1.
    pub column: Option<usize>,
    /// Human explanation.
    pub message: String,
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

/// A field a validation rule refused, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Field path.
    pub field: String,
    /// Message for the user.
    pub message: String,
}

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The script's value, as JSON (`()` is null).
    pub value: Value,
    /// `reject(field, message)` calls.
    pub rejections: Vec<Rejection>,
    /// The last `assign(user)`.
    pub assigned: Option<String>,
    /// `print` and `debug` output.
    pub log: Vec<String>,
}

/// A fact a script asked for, which the host fetches between runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fact {
    /// The active members of a team who are not its manager, by e-mail, sorted:
    /// `team_members(team)`.
    TeamMembers(String),
    /// The team's manager, by e-mail, if active: `team_manager(team)`.
    TeamManager(String),
    /// How many open records of `form` a user owns: `open_count(user, form)`.
    OpenCount {
        /// A user's e-mail or id.
        user: String,
        /// The form.
        form: String,
    },
    /// The member of a team with the fewest open records of `form`, ties taken in turn:
    /// `least_loaded(team, form)`.
    LeastLoaded {
        /// The team.
        team: String,
        /// The form.
        form: String,
    },
    /// Does a user (e-mail or id) hold a role: `has_role(user, role)`. No user holds none.
    HasRole {
        /// A user's e-mail or id.
        user: String,
        /// The role.
        role: String,
    },
    /// The team's next member in turn: `round_robin(team)`.
    RoundRobin(String),
    /// A record by form and id: `lookup(form, id)`.
    Record {
        /// The form.
        form: String,
        /// The record's id.
        id: String,
    },
    /// The record a relation field of this record points at: `related(field)`.
    Related(String),
}

impl Fact {
    /// The helper that asks for it, for messages.
    pub fn helper(&self) -> &'static str {
        match self {
            Self::TeamMembers(_) => "team_members",
            Self::TeamManager(_) => "team_manager",
            Self::OpenCount { .. } => "open_count",
            Self::LeastLoaded { .. } => "least_loaded",
            Self::RoundRobin(_) => "round_robin",
            Self::HasRole { .. } => "has_role",
            Self::Record { .. } => "lookup",
            Self::Related(_) => "related",
        }
    }
}

/// Facts fetched so far for one evaluation (`null` answers "none": no such record, an empty
/// team), and when it began: all its runs share one time limit.
#[derive(Debug, Clone)]
pub struct Facts {
    known: HashMap<Fact, Value>,
    started: Instant,
}

impl Facts {
    /// None yet; the evaluation's clock starts now.
    pub fn new() -> Self {
        Self {
            known: HashMap::new(),
            started: Instant::now(),
        }
    }

    /// None yet, for an evaluation that began at `started`.
    pub fn since(started: Instant) -> Self {
        Self {
            known: HashMap::new(),
            started,
        }
    }

    /// Add what the host fetched.
    pub fn insert(&mut self, fact: Fact, value: Value) {
        self.known.insert(fact, value);
    }

    /// A fact fetched before.
    pub fn get(&self, fact: &Fact) -> Option<&Value> {
        self.known.get(fact)
    }

    /// How many were fetched.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// None fetched yet?
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

impl Default for Facts {
    fn default() -> Self {
        Self::new()
    }
}

/// Most facts one evaluation may ask for.
pub const MAX_FACTS: usize = 64;

/// A fact a run stopped for, and where the script asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The fact.
    pub fact: Fact,
    /// Line of the call, from 1.
    pub line: Option<usize>,
    /// Column of the call, from 1.
    pub column: Option<usize>,
}

impl Need {
    /// The fact could not be had (an unknown team, form or user): the rule fails there.
    pub fn failed(&self, rule: &str, message: impl std::fmt::Display) -> RuleError {
        RuleError {
            rule: rule.to_owned(),
            kind: ErrorKind::Runtime,
            line: self.line,
            column: self.column,
            message: format!("{}(): {message}", self.fact.helper()),
        }
    }
}

/// Where a run with facts got to.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// It finished.
    Done(Outcome),
    /// It needs this fact: fetch it, add it to the facts and run again.
    Need(Need),
}

/// A compiled rule: its AST, shared by every worker.
#[derive(Debug, Clone)]
pub struct Compiled {
    name: String,
    ast: AST,
}

impl Compiled {
    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Default)]
struct RunState {
    deadline: Option<Instant>,
    rejections: Vec<Rejection>,
    assigned: Option<String>,
    log: Vec<String>,
    /// What the host has fetched; `None` when the run has no host.
    facts: Option<Facts>,
    /// The fact that stopped the run.
    needed: Option<Need>,
}

/// Answer a fact from what the host fetched, or stop the run to ask for it. The stop is
/// `ErrorTerminated`, which `try`/`catch` cannot swallow at the top level; inside a script
/// function rhai wraps it and a `catch` may see it, but the run is still answered as a
/// pause for the fact (`needed` is looked at before the script's result).
fn ask(ctx: &NativeCallContext, fact: Fact) -> Result<Dynamic, Box<EvalAltResult>> {
    RUN.with(|r| {
        let mut r = r.borrow_mut();
        let known = match &r.facts {
            None => {
                return Err(format!("{}(): no data can be reached here", fact.helper()).into());
            }
            Some(f) => f.get(&fact).cloned(),
        };
        match known {
            Some(Value::Null) => Ok(Dynamic::UNIT),
            Some(v) => Ok(to_dynamic(&v)),
            None => {
                let at = ctx.call_position();
                r.needed = Some(Need {
                    fact,
                    line: at.line(),
                    column: at.position(),
                });
                Err(EvalAltResult::ErrorTerminated(Dynamic::from("fact"), Position::NONE).into())
            }
        }
    })
}

thread_local! {
    // One evaluation at a time per thread: what its script reports goes here.
    static RUN: RefCell<RunState> = RefCell::new(RunState::default());
}

/// How often (in operations) the wall clock is looked at.
const CLOCK_EVERY: u64 = 128;
/// Most `print`/`debug` lines and `reject` calls one run keeps.
const MAX_LOG_LINES: usize = 200;
/// Longest `print`/`debug` line or `reject` message kept, in bytes.
const MAX_LOG_LINE: usize = 2000;

/// Keep a log line within bounds: a loop of prints cannot fill the memory.
fn keep(log: &mut Vec<String>, mut line: String) {
    if log.len() >= MAX_LOG_LINES {
        return;
    }
    if line.len() > MAX_LOG_LINE {
        line.truncate(line.floor_char_boundary(MAX_LOG_LINE));
        line.push('…');
    }
    log.push(line);
}

/// The engine: one per process, shared by every worker.
pub struct RuleEngine {
    engine: Engine,
    limits: Limits,
}

fn parse_day(s: &str) -> Option<NaiveDate> {
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc).date_naive());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn days_between(a: ImmutableString, b: ImmutableString) -> Result<i64, Box<EvalAltResult>> {
    match (parse_day(&a), parse_day(&b)) {
        (Some(x), Some(y)) => Ok((y - x).num_days()),
        _ => Err(
            format!("days_between needs dates (YYYY-MM-DD or RFC 3339), got {a:?} and {b:?}")
                .into(),
        ),
    }
}

impl RuleEngine {
    /// An engine with these limits and the helper functions.
    pub fn new(limits: Limits) -> Self {
        let mut engine = Engine::new();
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_levels)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_function_expr_depth)
            .set_max_string_size(limits.max_string_size)
            .set_max_array_size(limits.max_array_size)
            .set_max_map_size(limits.max_map_size)
            // No `import`: a script is one self-contained piece of logic.
            .set_max_modules(0);
        engine.disable_symbol("eval");
        engine.on_progress(|ops| {
            if ops % CLOCK_EVERY != 0 {
                return None;
            }
            let late = RUN.with(|r| r.borrow().deadline.is_some_and(|d| Instant::now() > d));
            late.then(|| Dynamic::from("timeout"))
        });
        engine.on_print(|s| RUN.with(|r| keep(&mut r.borrow_mut().log, s.to_owned())));
        engine.on_debug(|s, _, pos| {
            let line = pos
                .line()
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            RUN.with(|r| keep(&mut r.borrow_mut().log, format!("{line}{s}")));
        });
        engine.register_fn(
            "reject",
            |field: ImmutableString, message: ImmutableString| {
                RUN.with(|r| {
                    let mut r = r.borrow_mut();
                    if r.rejections.len() < MAX_LOG_LINES {
                        let mut message = message.to_string();
                        message.truncate(message.floor_char_boundary(MAX_LOG_LINE));
                        r.rejections.push(Rejection {
                            field: field.to_string(),
                            message,
                        });
                    }
                });
            },
        );
        engine.register_fn("assign", |user: ImmutableString| {
            RUN.with(|r| r.borrow_mut().assigned = Some(user.to_string()));
        });
        // `assign(least_loaded(..))` of an empty team leaves the owner as it is.
        engine.register_fn("assign", |_: ()| {});
        // Helpers that ask the host for a fact.
        fn ask1(engine: &mut Engine, name: &str, fact: fn(String) -> Fact) {
            engine.register_fn(name, move |ctx: NativeCallContext, a: ImmutableString| {
                ask(&ctx, fact(a.to_string()))
            });
        }
        fn ask2(engine: &mut Engine, name: &str, fact: fn(String, String) -> Fact) {
            engine.register_fn(
                name,
                move |ctx: NativeCallContext, a: ImmutableString, b: ImmutableString| {
                    ask(&ctx, fact(a.to_string(), b.to_string()))
                },
            );
        }
        ask1(&mut engine, "team_members", Fact::TeamMembers);
        ask1(&mut engine, "team_manager", Fact::TeamManager);
        ask1(&mut engine, "round_robin", Fact::RoundRobin);
        ask1(&mut engine, "related", Fact::Related);
        ask2(&mut engine, "open_count", |user, form| Fact::OpenCount {
            user,
            form,
        });
        ask2(&mut engine, "least_loaded", |team, form| {
            Fact::LeastLoaded { team, form }
        });
        ask2(&mut engine, "has_role", |user, role| Fact::HasRole {
            user,
            role,
        });
        ask2(&mut engine, "lookup", |form, id| Fact::Record { form, id });
        // Nobody (a public form's visitor) holds no role.
        engine.register_fn("has_role", |_: (), _: ImmutableString| false);
        // A relation that is not set has no related record.
        engine.register_fn("lookup", |_: ImmutableString, _: ()| Dynamic::UNIT);
        engine.register_fn("now", || {
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
        engine.register_fn("today", || Utc::now().date_naive().to_string());
        engine.register_fn("days_between", days_between);
        engine.register_fn(
            "value_or",
            |v: Dynamic, default: Dynamic| {
                if v.is_unit() { default } else { v }
            },
        );
        Self { engine, limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compile a script; a syntax error names its line and column.
    pub fn compile(&self, name: &str, script: &str) -> Result<Compiled, RuleError> {
        self.engine
            .compile(script)
            .map(|ast| Compiled {
                name: name.to_owned(),
                ast,
            })
            .map_err(|e| {
                let kind = match e.err_type() {
                    ParseErrorType::ExprTooDeep => ErrorKind::TooDeep,
                    _ => ErrorKind::Syntax,
                };
                error(name, kind, e.position(), e.err_type().to_string())
            })
    }

    /// Run a rule on a record (and, on update, its previous values). Helpers that need
    /// data fail: use [`run_with`](Self::run_with) where a host can fetch it.
    pub fn run(
        &self,
        rule: &Compiled,
        record: &Map<String, Value>,
        previous: Option<&Map<String, Value>>,
    ) -> Result<Outcome, RuleError> {
        let deadline = Instant::now() + self.limits.max_time;
        match self.run_inner(rule, record, previous, None, deadline)? {
            (Step::Done(o), _) => Ok(o),
            (Step::Need(n), _) => {
                Err(n.failed(&rule.name, "needs data this rule cannot reach here"))
            }
        }
    }

    /// Run a rule with the facts fetched so far: it finishes, or names the next fact it
    /// needs. The facts are lent to the run and handed back.
    pub fn run_with(
        &self,
        rule: &Compiled,
        record: &Map<String, Value>,
        previous: Option<&Map<String, Value>>,
        facts: &mut Facts,
    ) -> Result<Step, RuleError> {
        let deadline = facts.started + self.limits.max_time;
        let (step, back) = self.run_inner(
            rule,
            record,
            previous,
            Some(std::mem::take(facts)),
            deadline,
        )?;
        *facts = back.unwrap_or_default();
        if matches!(step, Step::Need(_)) && facts.len() >= MAX_FACTS {
            return Err(error(
                &rule.name,
                ErrorKind::TooManyOperations,
                Position::NONE,
                format!("the script asked for more than {MAX_FACTS} lookups"),
            ));
        }
        Ok(step)
    }

    fn run_inner(
        &self,
        rule: &Compiled,
        record: &Map<String, Value>,
        previous: Option<&Map<String, Value>>,
        facts: Option<Facts>,
        deadline: Instant,
    ) -> Result<(Step, Option<Facts>), RuleError> {
        let mut scope = Scope::new();
        scope.push_constant("record", map_to_dynamic(record));
        scope.push_constant("previous", previous.map_or(Dynamic::UNIT, map_to_dynamic));
        scope.push_constant("is_new", previous.is_none());
        RUN.with(|r| {
            *r.borrow_mut() = RunState {
                deadline: Some(deadline),
                facts,
                ..RunState::default()
            }
        });
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &rule.ast);
        let mut state = RUN.with(|r| std::mem::take(&mut *r.borrow_mut()));
        let facts = state.facts.take();
        if let Some(f) = state.needed.take() {
            return Ok((Step::Need(f), facts));
        }
        let value = result.map_err(|e| runtime_error(&rule.name, &e))?;
        if let Ok(x) = value.as_float()
            && !x.is_finite()
        {
            return Err(error(
                &rule.name,
                ErrorKind::Runtime,
                Position::NONE,
                format!("the result is {x}, not a number (a division by zero?)"),
            ));
        }
        let value = if value.is_unit() {
            Value::Null
        } else {
            rhai::serde::from_dynamic::<Value>(&value).map_err(|e| {
                error(
                    &rule.name,
                    ErrorKind::Runtime,
                    Position::NONE,
                    format!("the result cannot be stored: {e}"),
                )
            })?
        };
        Ok((
            Step::Done(Outcome {
                value,
                rejections: state.rejections,
                assigned: state.assigned,
                log: state.log,
            }),
            facts,
        ))
    }
}

/// JSON as rhai sees it: null is `()`, whole numbers are `INT`, others `FLOAT`. Built
/// directly, not through serde: this runs for every record a rule sees.
fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        Value::Array(a) => Dynamic::from_array(a.iter().map(to_dynamic).collect()),
        Value::Object(m) => map_to_dynamic(m),
    }
}

fn map_to_dynamic(m: &Map<String, Value>) -> Dynamic {
    Dynamic::from_map(
        m.iter()
            .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
            .collect(),
    )
}

/// The process's engine, with the default limits.
pub fn shared() -> &'static RuleEngine {
    static ENGINE: std::sync::OnceLock<RuleEngine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(RuleEngine::default)
}

impl Default for RuleEngine {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

fn error(rule: &str, kind: ErrorKind, pos: Position, message: String) -> RuleError {
    RuleError {
        rule: rule.to_owned(),
        kind,
        line: pos.line(),
        column: pos.position(),
        message,
    }
}

fn runtime_error(rule: &str, e: &EvalAltResult) -> RuleError {
    let kind = match e {
        EvalAltResult::ErrorTooManyOperations(_) => ErrorKind::TooManyOperations,
        EvalAltResult::ErrorTerminated(..) => ErrorKind::Timeout,
        EvalAltResult::ErrorStackOverflow(_) => ErrorKind::TooDeep,
        EvalAltResult::ErrorDataTooLarge(..) => ErrorKind::TooLarge,
        EvalAltResult::ErrorParsing(ParseErrorType::ExprTooDeep, _) => ErrorKind::TooDeep,
        _ => ErrorKind::Runtime,
    };
    let message = match kind {
        ErrorKind::TooManyOperations => "the script ran too long (operations limit)".to_owned(),
        ErrorKind::Timeout => "the script ran too long (time limit)".to_owned(),
        ErrorKind::TooDeep => "calls or expressions nest too deep".to_owned(),
        _ => e.to_string(),
    };
    // The innermost position is where the script went wrong.
    let mut pos = e.position();
    let mut inner = e;
    while let EvalAltResult::ErrorInFunctionCall(_, _, cause, p) = inner {
        if !p.is_none() {
            pos = *p;
        }
        inner = cause;
        if !inner.position().is_none() {
            pos = inner.position();
        }
    }
    error(rule, kind, pos, message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
