//! The facts rule scripts ask for — teams, workloads, turns, related records — fetched
//! between runs of a script, and running a rule to the end with them.
//!
//! Routing is fair under concurrent creates because it happens inside the create's
//! transaction: the turn counter is a row updated there (a failed create gives its turn
//! back), and workloads are counted there — behind the single writer on SQLite, behind a
//! transaction-scoped advisory lock on PostgreSQL, so two creates never both see the same
//! member as least loaded.

use std::collections::HashMap;

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{
    Alias, Condition, Expr, ExprTrait, JoinType, OnConflict, Query, UnionType,
};
use sea_orm::{ColumnTrait, EntityName, EntityTrait, QueryFilter};
use serde_json::{Map, Value, json};
use trellis_meta::form::FieldType;
use trellis_query::Dialect;
use trellis_rules::{Fact, Facts, Outcome, RuleError, Step};

use crate::entity::{team, team_member, user};
use crate::error::StoreError;
use crate::forms::{FormEntry, Snapshot};
use crate::migrate::{ROLES, ROUTE_TURNS, USER_ROLES};

/// What taking a turn does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turns {
    /// Take it: the next record goes to the next member (a create).
    Take,
    /// Only look (a test run, a re-run): nothing is written.
    Peek,
}

/// Why a fact could not be had.
enum Miss {
    /// The script asked for something that does not exist.
    Script(String),
    /// The database failed.
    Store(StoreError),
}

impl From<StoreError> for Miss {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<sea_orm::DbErr> for Miss {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Store(e.into())
    }
}

/// A team member: e-mail (what scripts see) and id (what records store).
#[derive(Debug, Clone)]
struct Member {
    email: String,
    id: String,
}

/// Fetches facts over one connection (the create's transaction, or a reader) for the
/// records of one form; lives as long as that transaction.
pub struct Host<'a, C> {
    conn: &'a C,
    dialect: Dialect,
    snap: &'a Snapshot,
    form: &'a FormEntry,
    turns: Turns,
    /// Records routed in this transaction, not yet written: (form, field, user id) → n.
    pending: HashMap<(String, String, String), i64>,
    teams: HashMap<String, (Option<String>, Vec<Member>)>,
    users: HashMap<String, Option<Member>>,
    locked: bool,
}

impl<'a, C: ConnectionTrait> Host<'a, C> {
    /// A host for rules over records of `form`.
    pub fn new(
        conn: &'a C,
        dialect: Dialect,
        snap: &'a Snapshot,
        form: &'a FormEntry,
        turns: Turns,
    ) -> Self {
        Self {
            conn,
            dialect,
            snap,
            form,
            turns,
            pending: HashMap::new(),
            teams: HashMap::new(),
            users: HashMap::new(),
            locked: false,
        }
    }

    /// Run a rule to the end, fetching what it asks for. The outer error is the
    /// database's; the inner one the rule's.
    pub async fn run(
        &mut self,
        rule: &trellis_rules::Compiled,
        record: &Map<String, Value>,
        previous: Option<&Map<String, Value>>,
    ) -> Result<Result<Outcome, RuleError>, StoreError> {
        let engine = trellis_rules::shared();
        let mut facts = Facts::new();
        loop {
            match engine.run_with(rule, record, previous, &mut facts) {
                Err(e) => return Ok(Err(e)),
                Ok(Step::Done(o)) => return Ok(Ok(o)),
                Ok(Step::Need(need)) => match self.fetch(&need.fact, record).await {
                    Ok(v) => {
                        facts.insert(need.fact, v);
                    }
                    Err(Miss::Script(m)) => return Ok(Err(need.failed(rule.name(), m))),
                    Err(Miss::Store(e)) => return Err(e),
                },
            }
        }
    }

    /// The id of an active user named by e-mail or id, for `assign`.
    pub async fn user_id(&mut self, who: &str) -> Result<Option<String>, StoreError> {
        Ok(self.user(who).await?.map(|m| m.id))
    }

    /// A record of this form now goes to `user` through `field`: later counts in this
    /// transaction include it, if it is open.
    pub fn routed(&mut self, record: &Map<String, Value>, field: &str, user: &str) {
        if is_open(self.form, record) {
            *self
                .pending
                .entry((
                    self.form.form.name.clone(),
                    field.to_owned(),
                    user.to_owned(),
                ))
                .or_default() += 1;
        }
    }

    async fn fetch(&mut self, fact: &Fact, record: &Map<String, Value>) -> Result<Value, Miss> {
        match fact {
            Fact::TeamMembers(t) => {
                let members = self.team(t).await?;
                Ok(json!(members.iter().map(|m| &m.email).collect::<Vec<_>>()))
            }
            Fact::TeamManager(t) => Ok(match self.team_and_manager(t).await?.0 {
                Some(id) => self
                    .user(&id)
                    .await?
                    .map_or(Value::Null, |m| json!(m.email)),
                None => Value::Null,
            }),
            Fact::OpenCount { user, form } => {
                let (entry, field) = self.workload(form)?;
                let Some(m) = self.user(user).await? else {
                    return Err(Miss::Script(format!("no active user {user:?}")));
                };
                self.lock().await?;
                let counts = self
                    .counts(&entry, &field, std::slice::from_ref(&m.id))
                    .await?;
                Ok(json!(counts.get(&m.id).copied().unwrap_or(0)))
            }
            Fact::LeastLoaded { team, form } => {
                let (entry, field) = self.workload(form)?;
                let members = self.team(team).await?;
                if members.is_empty() {
                    return Ok(Value::Null);
                }
                self.lock().await?;
                let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
                let counts = self.counts(&entry, &field, &ids).await?;
                let load = |m: &Member| counts.get(&m.id).copied().unwrap_or(0);
                let least = members.iter().map(load).min().unwrap_or(0);
                let tied: Vec<&Member> = members.iter().filter(|m| load(m) == least).collect();
                let pick = if tied.len() == 1 {
                    0
                } else {
                    self.turn(team).await? % tied.len()
                };
                Ok(tied.get(pick).map_or(Value::Null, |m| json!(m.email)))
            }
            Fact::HasRole { user, role } => {
                // Whether the role exists, and whether this active user holds it.
                let (r, ur, u) = (Alias::new("r"), Alias::new("ur"), Alias::new("u"));
                let mut q = Query::select();
                q.expr(Expr::col((r.clone(), Alias::new("name"))).count())
                    .expr(Expr::col((u.clone(), Alias::new("id"))).count())
                    .from_as(Alias::new(ROLES), r.clone())
                    .join_as(
                        JoinType::LeftJoin,
                        Alias::new(USER_ROLES),
                        ur.clone(),
                        Expr::col((ur.clone(), Alias::new("role")))
                            .equals((r.clone(), Alias::new("name"))),
                    )
                    .join_as(
                        JoinType::LeftJoin,
                        Alias::new(user::Entity.table_name()),
                        u.clone(),
                        Condition::all()
                            .add(
                                Expr::col((u.clone(), Alias::new("id")))
                                    .equals((ur, Alias::new("user_id"))),
                            )
                            .add(Expr::col((u.clone(), Alias::new("active"))).eq(true))
                            .add(
                                Condition::any()
                                    .add(Expr::col((u.clone(), Alias::new("id"))).eq(user.as_str()))
                                    .add(
                                        Expr::col((u, Alias::new("email"))).eq(user.to_lowercase()),
                                    ),
                            ),
                    )
                    .and_where(Expr::col((r, Alias::new("name"))).eq(role.as_str()));
                let row = self.conn.query_one(&q).await?;
                let (exists, holds): (i64, i64) = match row {
                    Some(r) => (r.try_get_by_index(0)?, r.try_get_by_index(1)?),
                    None => (0, 0),
                };
                if exists == 0 {
                    return Err(Miss::Script(format!("no role named {role:?}")));
                }
                Ok(json!(holds > 0))
            }
            Fact::RoundRobin(team) => {
                let members = self.team(team).await?;
                if members.is_empty() {
                    return Ok(Value::Null);
                }
                let n = self.turn(team).await? % members.len();
                Ok(members.get(n).map_or(Value::Null, |m| json!(m.email)))
            }
            Fact::Record { form, id } => {
                let Ok(entry) = self.snap.get(form) else {
                    return Err(Miss::Script(format!("no form named {form:?}")));
                };
                self.record(&entry, id).await
            }
            Fact::Related(field) => {
                let f = self.form.form.field(field);
                let Some(target) = f
                    .filter(|f| f.kind == FieldType::Relation)
                    .and_then(|f| f.target.as_deref())
                else {
                    return Err(Miss::Script(format!(
                        "{} has no relation field {field:?}",
                        self.form.form.name
                    )));
                };
                let Some(id) = record.get(field).and_then(Value::as_str) else {
                    return Ok(Value::Null);
                };
                let entry = self.snap.get(target)?;
                self.record(&entry, id).await
            }
        }
    }

    async fn record(&self, entry: &FormEntry, id: &str) -> Result<Value, Miss> {
        Ok(crate::records::read_one(self.conn, self.dialect, entry, id)
            .await?
            .map_or(Value::Null, Value::Object))
    }

    /// `form` or `form.user_field`: whose records count as a user's workload.
    fn workload(&self, spec: &str) -> Result<(std::sync::Arc<FormEntry>, String), Miss> {
        let (form, field) = spec.split_once('.').unwrap_or((spec, "owner"));
        let Ok(entry) = self.snap.get(form) else {
            return Err(Miss::Script(format!("no form named {form:?}")));
        };
        if field != "owner"
            && entry
                .form
                .field(field)
                .is_none_or(|f| f.kind != FieldType::User)
        {
            return Err(Miss::Script(format!(
                "{form} has no user field {field:?} (workload is counted by the owner or a user field: \"{form}\" or \"{form}.assignee\")"
            )));
        }
        Ok((entry, field.to_owned()))
    }

    /// Open records of `entry` per user in `field`, with those routed in this transaction.
    async fn counts(
        &self,
        entry: &FormEntry,
        field: &str,
        users: &[String],
    ) -> Result<HashMap<String, i64>, Miss> {
        let Some((column, _)) = entry.column(field) else {
            return Err(Miss::Script(format!("no field {field:?}")));
        };
        // Open: in an open state of each gated select field, or in none yet. Each is
        // counted apart ("= state" or "IS NULL"), so an (owner, status) index reads only
        // the open records, however many closed ones pile up; an OR of both scans them all.
        let mut parts =
            vec![Condition::all().add(Expr::col(Alias::new(column)).is_in(users.to_vec()))];
        for (f, _) in entry.form.closed_states() {
            let Some((c, _)) = entry.column(&f.name) else {
                continue;
            };
            let states: Vec<String> = f
                .options
                .iter()
                .filter(|o| !o.closed)
                .map(|o| o.value.clone())
                .collect();
            parts = parts
                .into_iter()
                .flat_map(|p| {
                    [
                        p.clone()
                            .add(Expr::col(Alias::new(c)).is_in(states.clone())),
                        p.add(Expr::col(Alias::new(c)).is_null()),
                    ]
                })
                .collect();
        }
        let select = |cond: Condition| {
            let mut s = Query::select();
            s.column(Alias::new(column))
                .expr(Expr::cust("COUNT(*)"))
                .from(Alias::new(&entry.table))
                .cond_where(cond)
                .group_by_col(Alias::new(column));
            s
        };
        let mut parts = parts.into_iter();
        let mut q = select(parts.next().unwrap_or_else(Condition::all));
        for p in parts {
            q.union(UnionType::All, select(p));
        }
        let mut out: HashMap<String, i64> = HashMap::new();
        for r in self.conn.query_all(&q).await? {
            *out.entry(r.try_get_by_index::<String>(0)?).or_default() +=
                r.try_get_by_index::<i64>(1)?;
        }
        for ((form, f, u), n) in &self.pending {
            if *form == entry.form.name && f == field && users.contains(u) {
                *out.entry(u.clone()).or_default() += n;
            }
        }
        Ok(out)
    }

    /// Workloads are counted one routing at a time: on PostgreSQL concurrent transactions
    /// cannot see each other's new records, so they wait for each other here (until
    /// commit). On SQLite the single writer already orders them.
    async fn lock(&mut self) -> Result<(), Miss> {
        if self.locked || self.turns == Turns::Peek || self.dialect != Dialect::Postgres {
            return Ok(());
        }
        self.conn
            .execute_unprepared("SELECT pg_advisory_xact_lock(hashtext('trellis.route'))")
            .await?;
        self.locked = true;
        Ok(())
    }

    /// The team's turn counter: taken (advanced in this transaction) or peeked.
    async fn turn(&mut self, team: &str) -> Result<usize, Miss> {
        let n: i64 = match self.turns {
            Turns::Take => {
                // The routing lock first, always: a turn row locked before it could
                // deadlock with a transaction that holds the lock and wants the row.
                self.lock().await?;
                let mut ins = Query::insert();
                ins.into_table(Alias::new(ROUTE_TURNS))
                    .columns([Alias::new("team"), Alias::new("turn")])
                    .values([Expr::val(team), Expr::val(1i64)])
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?
                    .on_conflict(
                        OnConflict::column(Alias::new("team"))
                            .value(
                                Alias::new("turn"),
                                Expr::col((Alias::new(ROUTE_TURNS), Alias::new("turn"))).add(1),
                            )
                            .to_owned(),
                    )
                    .returning_col(Alias::new("turn"));
                let row = self.conn.query_one(&ins).await?;
                row.map(|r| r.try_get_by_index::<i64>(0))
                    .transpose()?
                    .unwrap_or(1)
                    - 1
            }
            Turns::Peek => {
                let mut s = Query::select();
                s.column(Alias::new("turn"))
                    .from(Alias::new(ROUTE_TURNS))
                    .and_where(Expr::col(Alias::new("team")).eq(team));
                let row = self.conn.query_one(&s).await?;
                row.map(|r| r.try_get_by_index::<i64>(0))
                    .transpose()?
                    .unwrap_or(0)
            }
        };
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The active members of a team but its manager, by e-mail.
    async fn team(&mut self, name: &str) -> Result<Vec<Member>, Miss> {
        Ok(self.team_and_manager(name).await?.1)
    }

    /// A team's manager (id) and active members but the manager, in one query.
    async fn team_and_manager(
        &mut self,
        name: &str,
    ) -> Result<(Option<String>, Vec<Member>), Miss> {
        if let Some(t) = self.teams.get(name) {
            return Ok(t.clone());
        }
        let (t, m, u) = (Alias::new("t"), Alias::new("m"), Alias::new("u"));
        let mut q = Query::select();
        q.column((t.clone(), Alias::new("manager")))
            .column((u.clone(), Alias::new("email")))
            .column((u.clone(), Alias::new("id")))
            .from_as(Alias::new(team::Entity.table_name()), t.clone())
            .join_as(
                JoinType::LeftJoin,
                Alias::new(team_member::Entity.table_name()),
                m.clone(),
                Expr::col((m.clone(), Alias::new("team"))).equals((t.clone(), Alias::new("name"))),
            )
            .join_as(
                JoinType::LeftJoin,
                Alias::new(user::Entity.table_name()),
                u.clone(),
                Condition::all()
                    .add(
                        Expr::col((u.clone(), Alias::new("id"))).equals((m, Alias::new("user_id"))),
                    )
                    .add(Expr::col((u, Alias::new("active"))).eq(true)),
            )
            .and_where(Expr::col((t, Alias::new("name"))).eq(name));
        let rows = self.conn.query_all(&q).await?;
        let Some(first) = rows.first() else {
            return Err(Miss::Script(format!("no team named {name:?}")));
        };
        let manager: Option<String> = first.try_get_by_index(0)?;
        let mut members = Vec::new();
        for r in &rows {
            let (email, id): (Option<String>, Option<String>) =
                (r.try_get_by_index(1)?, r.try_get_by_index(2)?);
            // The manager leads the team; the members do its work.
            if let (Some(email), Some(id)) = (email, id)
                && manager.as_ref() != Some(&id)
            {
                members.push(Member { email, id });
            }
        }
        members.sort_by(|a, b| a.email.cmp(&b.email));
        let out = (manager, members);
        self.teams.insert(name.to_owned(), out.clone());
        Ok(out)
    }

    /// An active user by e-mail (any case) or id.
    async fn user(&mut self, who: &str) -> Result<Option<Member>, StoreError> {
        if let Some(m) = self.users.get(who) {
            return Ok(m.clone());
        }
        let q = if who.contains('@') {
            user::Entity::find().filter(user::Column::Email.eq(who.to_lowercase()))
        } else {
            user::Entity::find().filter(user::Column::Id.eq(who))
        };
        let found = q
            .filter(user::Column::Active.eq(true))
            .one(self.conn)
            .await?
            .map(|u| Member {
                email: u.email,
                id: u.id,
            });
        self.users.insert(who.to_owned(), found.clone());
        Ok(found)
    }
}

/// Is a record open work: each select field with end states is unset or in an open state
/// (as the counts in SQL see it)?
fn is_open(form: &FormEntry, record: &Map<String, Value>) -> bool {
    form.form.closed_states().iter().all(|(f, _)| {
        match record.get(&f.name).and_then(Value::as_str) {
            None => true,
            Some(v) => f.options.iter().any(|o| o.value == v && !o.closed),
        }
    })
}
