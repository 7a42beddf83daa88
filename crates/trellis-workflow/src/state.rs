//! Where a run is: a stack of positions in the step tree, and what waits and approvals
//! decided. Stored as JSON in the run's row, rewritten with every step.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trellis_meta::workflow::{Step, StepKind};

/// One position: the index in a list of steps, and which branch of the parent step the
/// list is (`steps` at the top).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame(pub String, pub usize);

/// A run's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The next step to take; empty when the run is over.
    pub pc: Vec<Frame>,
    /// Has the condition been checked?
    #[serde(default)]
    pub started: bool,
    /// A wait step under way: when it ends (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<i64>,
    /// An approval step under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// What earlier steps left for templates (`approval` of the last decision, ids of
    /// created records).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub vars: Map<String, Value>,
}

/// An approval in progress.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Approval {
    /// The levels that apply, by index into the step's levels.
    pub levels: Vec<usize>,
    /// Which of them is asked now.
    pub at: usize,
    /// The request of the current level.
    pub request: String,
    /// `approve` or `reject` once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

impl State {
    /// A new run, at its first step.
    pub fn new() -> Self {
        Self {
            pc: vec![Frame("steps".into(), 0)],
            ..Self::default()
        }
    }

    /// The path of the current step, as in definitions (`steps[2].then[0]`).
    pub fn path(&self) -> String {
        let mut out = String::new();
        for (i, Frame(b, n)) in self.pc.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(&format!("{b}[{n}]"));
        }
        out
    }
}

/// The branch of a step by name.
fn branch<'a>(step: &'a Step, name: &str) -> Option<&'a [Step]> {
    match (&step.kind, name) {
        (StepKind::If { then, .. }, "then") => Some(then),
        (StepKind::If { otherwise, .. }, "else") => Some(otherwise),
        (StepKind::Approval { on_approve, .. }, "on_approve") => Some(on_approve),
        (StepKind::Approval { on_reject, .. }, "on_reject") => Some(on_reject),
        _ => None,
    }
}

/// The step at a position.
pub fn at<'a>(steps: &'a [Step], pc: &[Frame]) -> Option<&'a Step> {
    let mut list = steps;
    let mut step: Option<&Step> = None;
    for (i, Frame(b, n)) in pc.iter().enumerate() {
        if i > 0 {
            list = branch(step?, b)?;
        }
        step = list.get(*n);
    }
    step
}

/// Move past the current step, out of branches that end.
pub fn advance(steps: &[Step], pc: &mut Vec<Frame>) {
    while let Some(last) = pc.last_mut() {
        last.1 += 1;
        if at(steps, pc).is_some() {
            return;
        }
        pc.pop();
    }
}

/// Go into a branch of the current step (past it when the branch is empty).
pub fn enter(steps: &[Step], pc: &mut Vec<Frame>, name: &str) {
    pc.push(Frame(name.to_owned(), 0));
    if at(steps, pc).is_none() {
        pc.pop();
        advance(steps, pc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn steps() -> Vec<Step> {
        serde_json::from_value(json!([
            {"type": "stop"},
            {"type": "if", "condition": {}, "then": [{"type": "stop"}, {"type": "stop"}], "else": []},
            {"type": "stop"}
        ]))
        .unwrap_or_default()
    }

    #[test]
    fn walks_into_and_out_of_branches() {
        let s = steps();
        let mut st = State::new();
        advance(&s, &mut st.pc);
        assert_eq!(st.path(), "steps[1]");
        enter(&s, &mut st.pc, "then");
        assert_eq!(st.path(), "steps[1].then[0]");
        advance(&s, &mut st.pc);
        assert_eq!(st.path(), "steps[1].then[1]");
        advance(&s, &mut st.pc);
        assert_eq!(st.path(), "steps[2]");
        advance(&s, &mut st.pc);
        assert!(st.pc.is_empty());
    }

    #[test]
    fn an_empty_branch_is_stepped_over() {
        let s = steps();
        let mut pc = vec![Frame("steps".into(), 1)];
        enter(&s, &mut pc, "else");
        assert_eq!(pc, vec![Frame("steps".into(), 2)]);
    }
}
