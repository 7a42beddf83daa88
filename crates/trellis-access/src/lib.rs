//! Who may do what: a user's roles, scopes and field levels resolved into answers the
//! record service asks — which rows (as a filter in the filter language), which fields,
//! which owners. No I/O: the caller loads the user, their teams and reporting line.
//!
//! Permissions add up: a row is reachable when any role's grant reaches it, a field has
//! the highest level any grant on the form gives it. Tokens can only narrow this.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use trellis_meta::role::{Action, FieldAccess, Grant, Role, Scope};

/// Most ids in one `$in` of a generated filter (the filter language's limit).
const IN_CHUNK: usize = 1000;

/// The string in role filters that stands for the user's id.
pub const ME: &str = "$me";
/// Stands for the ids of everyone in the user's teams (a list, for `$in`).
pub const TEAM: &str = "$team";
/// Stands for the user and everyone below them (a list, for `$in`).
pub const SUBORDINATES: &str = "$subordinates";

/// A user as far as permissions go.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// User id.
    pub user: String,
    /// The user is an administrator (flag on the user).
    pub admin: bool,
    /// Everyone in the user's teams and the teams they manage, the user included.
    pub team: Vec<String>,
    /// Everyone below the user in the reporting line (the user not included).
    pub subordinates: Vec<String>,
    /// The token only reads.
    pub read_only: bool,
    /// The token reaches only these forms.
    pub forms: Option<Vec<String>>,
}

/// The rows an action reaches.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// None at all: the action is not granted on the form.
    None,
    /// Every row.
    All,
    /// Rows matching this filter (the filter language).
    Filter(Value),
}

/// A user's resolved permissions.
#[derive(Debug, Clone)]
pub struct Permissions {
    subject: Subject,
    roles: Vec<Arc<Role>>,
    admin: bool,
}

/// Replace the placeholders of a role filter: `"$me"` with the user's id, `"$team"` and
/// `"$subordinates"` with lists of ids.
pub fn bind(filter: &Value, me: &str, team: &[String], subordinates: &[String]) -> Value {
    match filter {
        Value::String(s) if s == ME => Value::String(me.to_owned()),
        Value::String(s) if s == TEAM => json!(team),
        Value::String(s) if s == SUBORDINATES => {
            let mut v = vec![me.to_owned()];
            v.extend(subordinates.iter().cloned());
            json!(v)
        }
        Value::Array(a) => {
            Value::Array(a.iter().map(|v| bind(v, me, team, subordinates)).collect())
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), bind(v, me, team, subordinates)))
                .collect::<Map<_, _>>(),
        ),
        v => v.clone(),
    }
}

/// `owner IN ids`, split to respect the filter language's `$in` limit.
fn owner_in(ids: &[String]) -> Value {
    let mut parts: Vec<Value> = ids
        .chunks(IN_CHUNK)
        .map(|c| json!({"owner": {"$in": c}}))
        .collect();
    match parts.len() {
        0 => json!({"owner": {"$in": []}}),
        1 => parts.pop().unwrap_or(Value::Null),
        _ => json!({ "$or": parts }),
    }
}

impl Permissions {
    /// Resolve a subject with the definitions of the roles they hold.
    pub fn new(subject: Subject, roles: Vec<Arc<Role>>) -> Self {
        let admin = subject.admin || roles.iter().any(|r| r.admin);
        Self {
            subject,
            roles,
            admin,
        }
    }

    /// Everything, for the system itself (command line, seeds, migrations).
    pub fn system() -> Self {
        Self::new(
            Subject {
                admin: true,
                ..Subject::default()
            },
            Vec::new(),
        )
    }

    fn bind(&self, f: &Value) -> Value {
        let team = self.owners(Scope::Team).unwrap_or_default();
        bind(f, &self.subject.user, &team, &self.subject.subordinates)
    }

    /// The user id.
    pub fn user(&self) -> &str {
        &self.subject.user
    }

    /// The names of the roles held.
    pub fn role_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.roles.iter().map(|r| r.name.clone()).collect();
        if self.subject.admin && !v.iter().any(|r| r == "admin") {
            v.insert(0, "admin".to_owned());
        }
        v
    }

    /// Administrator (through the user flag or a role), whatever the token.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// May change definitions, users, roles and bundles: an administrator with a token
    /// that is neither read-only nor limited to some forms.
    pub fn may_administer(&self) -> bool {
        self.admin && !self.subject.read_only && self.subject.forms.is_none()
    }

    /// May read what administrators read (users, the admin audit).
    pub fn may_inspect(&self) -> bool {
        self.admin && self.subject.forms.is_none()
    }

    /// The token writes nothing.
    pub fn read_only(&self) -> bool {
        self.subject.read_only
    }

    fn token_allows(&self, form: &str, action: Action) -> bool {
        (action == Action::Read || !self.subject.read_only)
            && self
                .subject
                .forms
                .as_ref()
                .is_none_or(|f| f.iter().any(|x| x == form))
    }

    fn grants<'a>(&'a self, form: &'a str) -> impl Iterator<Item = &'a Grant> + 'a {
        self.roles.iter().filter_map(move |r| r.grant(form))
    }

    /// Owners a scope reaches; None means every owner.
    fn owners(&self, scope: Scope) -> Option<Vec<String>> {
        let me = self.subject.user.clone();
        match scope {
            Scope::All => None,
            Scope::Own => Some(vec![me]),
            Scope::Team => {
                let mut v = self.subject.team.clone();
                if !v.contains(&me) {
                    v.push(me);
                }
                Some(v)
            }
            Scope::Subordinates => {
                let mut v = vec![me];
                v.extend(self.subject.subordinates.iter().cloned());
                Some(v)
            }
        }
    }

    /// The rows of `form` that `action` reaches.
    pub fn rows(&self, form: &str, action: Action) -> Rows {
        if !self.token_allows(form, action) {
            return Rows::None;
        }
        if self.admin {
            return Rows::All;
        }
        let mut clauses = Vec::new();
        for g in self.grants(form) {
            let Some(scope) = g.scope(action) else {
                continue;
            };
            let filter = g.filter.as_ref().map(|f| self.bind(f));
            let owner = self.owners(scope).map(|ids| owner_in(&ids));
            match (owner, filter) {
                (None, None) => return Rows::All,
                (Some(o), None) => clauses.push(o),
                (None, Some(f)) => clauses.push(f),
                (Some(o), Some(f)) => clauses.push(json!({"$and": [o, f]})),
            }
        }
        match clauses.len() {
            0 => Rows::None,
            1 => Rows::Filter(clauses.pop().unwrap_or(Value::Null)),
            _ => Rows::Filter(json!({ "$or": clauses })),
        }
    }

    /// May `action` be done on `form` at all (on some rows)?
    pub fn may(&self, form: &str, action: Action) -> bool {
        self.rows(form, action) != Rows::None
    }

    /// The level of a field: the highest any grant on the form gives it.
    pub fn field(&self, form: &str, field: &str) -> FieldAccess {
        if !self.token_allows(form, Action::Read) {
            return FieldAccess::Hidden;
        }
        let level = if self.admin {
            FieldAccess::Write
        } else {
            self.grants(form)
                .filter(|g| g.any())
                .map(|g| g.field(field))
                .max()
                .unwrap_or(FieldAccess::Hidden)
        };
        if self.subject.read_only {
            level.min(FieldAccess::Read)
        } else {
            level
        }
    }

    /// May `action` put a record of `form` in the hands of `owner`? (Creating for someone,
    /// handing a record over.) Only the owner part of the scopes counts here.
    pub fn may_own(&self, form: &str, action: Action, owner: &str) -> bool {
        if !self.token_allows(form, action) {
            return false;
        }
        if self.admin {
            return true;
        }
        self.grants(form).any(|g| {
            g.scope(action).is_some_and(|s| {
                self.owners(s)
                    .is_none_or(|ids| ids.iter().any(|i| i == owner))
            })
        })
    }

    /// The filters a new record owned by `owner` must match one of, one per grant that
    /// creates for that owner (None: no filter). Empty: the create is not allowed.
    pub fn create_filters(&self, form: &str, owner: &str) -> Vec<Option<Value>> {
        if !self.token_allows(form, Action::Create) {
            return Vec::new();
        }
        if self.admin {
            return vec![None];
        }
        self.grants(form)
            .filter(|g| {
                g.create.is_some_and(|s| {
                    self.owners(s)
                        .is_none_or(|ids| ids.iter().any(|i| i == owner))
                })
            })
            .map(|g| g.filter.as_ref().map(|f| self.bind(f)))
            .collect()
    }

    /// What the user may do with one form, for display: the scope of each action (the
    /// widest one when several roles grant it), whether rows are filtered, and each
    /// field's level.
    pub fn summary(&self, form: &str, fields: &[String]) -> Value {
        let mut actions = Map::new();
        let mut filtered = false;
        for a in Action::ALL {
            let scope = if !self.token_allows(form, a) {
                None
            } else if self.admin {
                Some(Scope::All)
            } else {
                self.grants(form).filter_map(|g| g.scope(a)).max()
            };
            if scope.is_some() && !self.admin {
                filtered |= self
                    .grants(form)
                    .any(|g| g.scope(a).is_some() && g.filter.is_some());
            }
            actions.insert(
                a.as_str().to_owned(),
                scope.map_or(Value::Null, |s| json!(s.as_str())),
            );
        }
        let levels: Map<String, Value> = fields
            .iter()
            .map(|f| (f.clone(), json!(self.field(form, f).as_str())))
            .collect();
        actions.insert("filtered".into(), json!(filtered));
        actions.insert("fields".into(), Value::Object(levels));
        Value::Object(actions)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn role(doc: Value) -> Arc<Role> {
        Arc::new(serde_json::from_value(doc).unwrap())
    }

    fn rep() -> Arc<Role> {
        role(
            json!({"name": "sales_rep", "label": {"en": "Rep"}, "forms": {
            "lead": {"create": "own", "read": "own", "update": "own",
                     "fields": {"score": "read", "secret": "hidden"}},
            "customer": {"read": "team"}}}),
        )
    }

    fn warehouse() -> Arc<Role> {
        role(
            json!({"name": "warehouse", "label": {"en": "Warehouse"}, "forms": {
            "order": {"read": "all", "update": "all",
                      "filter": {"status": "pending_shipment"},
                      "fields": {"*": "hidden", "status": "write", "lines": "read"}}}}),
        )
    }

    fn subject(user: &str) -> Subject {
        Subject {
            user: user.into(),
            team: vec!["u1".into(), "u2".into()],
            subordinates: vec!["u7".into()],
            ..Subject::default()
        }
    }

    #[test]
    fn scopes_become_owner_filters() {
        let p = Permissions::new(subject("u1"), vec![rep()]);
        assert_eq!(
            p.rows("lead", Action::Read),
            Rows::Filter(json!({"owner": {"$in": ["u1"]}}))
        );
        assert_eq!(
            p.rows("customer", Action::Read),
            Rows::Filter(json!({"owner": {"$in": ["u1", "u2"]}}))
        );
        assert_eq!(p.rows("lead", Action::Delete), Rows::None);
        assert_eq!(p.rows("order", Action::Read), Rows::None);
    }

    #[test]
    fn permissions_add_up_across_roles() {
        let mgr = role(json!({"name": "m", "label": {"en": "M"}, "forms": {
            "lead": {"read": "subordinates", "fields": {"secret": "read"}}}}));
        let p = Permissions::new(subject("u1"), vec![rep(), mgr]);
        assert_eq!(
            p.rows("lead", Action::Read),
            Rows::Filter(json!({"$or": [
                {"owner": {"$in": ["u1"]}},
                {"owner": {"$in": ["u1", "u7"]}}]}))
        );
        assert_eq!(p.field("lead", "secret"), FieldAccess::Read);
        assert_eq!(p.field("lead", "company"), FieldAccess::Write);
        let all =
            role(json!({"name": "d", "label": {"en": "D"}, "forms": {"lead": {"read": "all"}}}));
        let p = Permissions::new(subject("u1"), vec![rep(), all]);
        assert_eq!(p.rows("lead", Action::Read), Rows::All);
    }

    #[test]
    fn filters_narrow_and_fields_default_to_the_star() {
        let p = Permissions::new(subject("w"), vec![warehouse()]);
        assert_eq!(
            p.rows("order", Action::Update),
            Rows::Filter(json!({"status": "pending_shipment"}))
        );
        assert_eq!(p.field("order", "status"), FieldAccess::Write);
        assert_eq!(p.field("order", "lines"), FieldAccess::Read);
        assert_eq!(p.field("order", "total"), FieldAccess::Hidden);
        assert_eq!(p.field("lead", "company"), FieldAccess::Hidden);
    }

    #[test]
    fn me_is_bound_in_role_filters() {
        let r = role(json!({"name": "s", "label": {"en": "S"}, "forms": {
            "ticket": {"read": "all", "filter": {"$or": [{"assignee": "$me"}, {"assignee": {"$in": ["$me"]}}]}}}}));
        let p = Permissions::new(subject("u9"), vec![r]);
        assert_eq!(
            p.rows("ticket", Action::Read),
            Rows::Filter(json!({"$or": [{"assignee": "u9"}, {"assignee": {"$in": ["u9"]}}]}))
        );
    }

    #[test]
    fn tokens_only_narrow() {
        let mut s = subject("u1");
        s.read_only = true;
        let p = Permissions::new(s, vec![rep()]);
        assert!(p.may("lead", Action::Read));
        assert!(!p.may("lead", Action::Update));
        assert_eq!(p.field("lead", "company"), FieldAccess::Read);
        let mut s = subject("root");
        s.admin = true;
        s.forms = Some(vec!["lead".into()]);
        let p = Permissions::new(s, vec![]);
        assert!(p.is_admin() && !p.may_administer());
        assert_eq!(p.rows("lead", Action::Delete), Rows::All);
        assert_eq!(p.rows("order", Action::Read), Rows::None);
    }

    #[test]
    fn owners_of_new_and_handed_over_records() {
        let p = Permissions::new(subject("u1"), vec![rep()]);
        assert!(p.may_own("lead", Action::Create, "u1"));
        assert!(!p.may_own("lead", Action::Create, "u2"));
        assert_eq!(p.create_filters("lead", "u1"), vec![None]);
        assert!(p.create_filters("lead", "u2").is_empty());
        assert!(p.create_filters("customer", "u1").is_empty());
    }

    #[test]
    fn many_owners_stay_within_the_in_limit() {
        let mut s = subject("boss");
        s.subordinates = (0..2500).map(|i| format!("u{i}")).collect();
        let r = role(
            json!({"name": "m", "label": {"en": "M"}, "forms": {"lead": {"read": "subordinates"}}}),
        );
        let p = Permissions::new(s, vec![r]);
        let Rows::Filter(f) = p.rows("lead", Action::Read) else {
            panic!("expected a filter")
        };
        let parts = f["$or"].as_array().unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0]["owner"]["$in"].as_array().unwrap().len(), 1000);
    }
}
