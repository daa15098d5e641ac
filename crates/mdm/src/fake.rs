//! An in-memory DDM server for the console's own unit tests: it keeps declarations, sets and
//! assignments as a server does, serves a status feed the test writes, and fails pushes when
//! told to. Conformance of the real servers is tested against them, not against this.

use async_trait::async_trait;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use updraft_ddm::Declaration;

use crate::{
    AssignOutcome, Assignment, AssignmentStore, ChangesPage, DeclarationStore, Enrollment,
    MdmError, Notifier, PushResult, StatusChange, StatusSource,
};

#[derive(Debug, Default)]
struct Inner {
    declarations: BTreeMap<String, Declaration>,
    sets: BTreeMap<String, BTreeSet<String>>,
    assignments: BTreeSet<(String, String)>,
    feed: Vec<(Enrollment, Option<String>)>,
    push_failure: Option<String>,
    pushes: Vec<String>,
    touches: Vec<String>,
}

/// The in-memory server.
#[derive(Debug, Default)]
pub struct FakeServer(Mutex<Inner>);

impl FakeServer {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A device reports: its enrollment and merged status (a full report's JSON) join the feed.
    pub fn report(&self, enrollment: Enrollment, status: Option<&str>) {
        let mut inner = self.inner();
        let seq = inner.feed.len() as i64 + 1;
        inner
            .feed
            .push((Enrollment { seq, ..enrollment }, status.map(str::to_owned)));
    }

    /// From now on every push fails with `reason` (`None`: pushes succeed again).
    pub fn fail_pushes(&self, reason: Option<&str>) {
        self.inner().push_failure = reason.map(str::to_owned);
    }

    /// The sets assigned to an enrollment.
    pub fn sets_of(&self, enrollment_id: &str) -> Vec<String> {
        self.inner()
            .assignments
            .iter()
            .filter(|(id, _)| id == enrollment_id)
            .map(|(_, set)| set.clone())
            .collect()
    }

    /// The declarations of a set.
    pub fn set(&self, set: &str) -> Vec<String> {
        self.inner()
            .sets
            .get(set)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every enrollment pushed, in order.
    pub fn pushes(&self) -> Vec<String> {
        self.inner().pushes.clone()
    }

    fn change(&self, assignments: &[Assignment], add: bool) -> AssignOutcome {
        let mut inner = self.inner();
        let mut outcome = AssignOutcome::default();
        for a in assignments {
            let key = (a.enrollment_id.clone(), a.set.clone());
            let changed = if add {
                inner.assignments.insert(key)
            } else {
                inner.assignments.remove(&key)
            };
            if changed {
                outcome.changed += 1;
                match inner.push_failure.clone() {
                    Some(reason) => {
                        outcome.push_failed.insert(a.enrollment_id.clone(), reason);
                    }
                    None => inner.pushes.push(a.enrollment_id.clone()),
                }
            }
        }
        outcome
    }
}

#[async_trait]
impl DeclarationStore for FakeServer {
    async fn put_declaration(&self, declaration: &Declaration) -> Result<bool, MdmError> {
        let mut inner = self.inner();
        let old = inner
            .declarations
            .insert(declaration.identifier.clone(), declaration.clone());
        Ok(old.as_ref() != Some(declaration))
    }

    async fn add_to_set(&self, set: &str, declaration_id: &str) -> Result<bool, MdmError> {
        let mut inner = self.inner();
        if !inner.declarations.contains_key(declaration_id) {
            return Err(MdmError::Status {
                method: "PUT",
                url: format!("fake:/set-declarations/{set}"),
                status: 500,
                body: "declaration not found".into(),
            });
        }
        Ok(inner
            .sets
            .entry(set.to_owned())
            .or_default()
            .insert(declaration_id.to_owned()))
    }

    async fn touch(&self, declaration_id: &str) -> Result<(), MdmError> {
        self.inner().touches.push(declaration_id.to_owned());
        Ok(())
    }
}

#[async_trait]
impl AssignmentStore for FakeServer {
    async fn assign(&self, assignments: &[Assignment]) -> Result<AssignOutcome, MdmError> {
        Ok(self.change(assignments, true))
    }

    async fn unassign(&self, assignments: &[Assignment]) -> Result<AssignOutcome, MdmError> {
        Ok(self.change(assignments, false))
    }
}

#[async_trait]
impl StatusSource for FakeServer {
    async fn status_changes(&self, after: i64, limit: u32) -> Result<ChangesPage, MdmError> {
        let inner = self.inner();
        let changes: Vec<StatusChange> = inner
            .feed
            .iter()
            .filter(|(enrollment, _)| enrollment.seq > after)
            .take(limit as usize)
            .map(|(enrollment, status)| StatusChange {
                enrollment: enrollment.clone(),
                status: status
                    .as_ref()
                    .and_then(|s| RawValue::from_string(s.clone()).ok()),
            })
            .collect();
        let next = changes.last().map_or(after, |c| c.enrollment.seq);
        Ok(ChangesPage { changes, next })
    }
}

#[async_trait]
impl Notifier for FakeServer {
    async fn push(
        &self,
        enrollment_ids: &[String],
    ) -> Result<BTreeMap<String, PushResult>, MdmError> {
        let mut inner = self.inner();
        let failure = inner.push_failure.clone();
        Ok(enrollment_ids
            .iter()
            .map(|id| {
                let result = match &failure {
                    Some(reason) => PushResult::Failed(reason.clone()),
                    None => {
                        inner.pushes.push(id.clone());
                        PushResult::Sent
                    }
                };
                (id.clone(), result)
            })
            .collect())
    }
}
