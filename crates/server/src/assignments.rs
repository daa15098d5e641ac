//! Changing assignments and finding whom a change concerns: the logic behind KMFDDM's set and
//! enrollment-set calls and Updraft's bulk calls, apart from their HTTP handlers.

use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::db::{Context, DbError};
use crate::writes;

/// One enrollment-set assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The enrollment.
    pub enrollment_id: String,
    /// The set.
    pub set: String,
}

/// Enrollments whose push failed, with the reason.
pub(crate) type PushFailures = std::collections::BTreeMap<String, String>;

impl AppState {
    pub(crate) async fn enrollments_of_sets(
        &self,
        sets: &[String],
    ) -> Result<Vec<String>, DbError> {
        let mut ids = Vec::new();
        for set in sets {
            let found: Vec<String> =
                sqlx::query_scalar("SELECT enrollment_id FROM enrollment_sets WHERE set_name = ?")
                    .bind(set)
                    .fetch_all(&self.db.pool)
                    .await
                    .context("finding the enrollments of a set")?;
            ids.extend(found);
        }
        Ok(ids)
    }

    pub(crate) async fn enrollments_of_declaration(
        &self,
        declaration: &str,
    ) -> Result<Vec<String>, DbError> {
        sqlx::query_scalar(
            "SELECT DISTINCT es.enrollment_id FROM set_declarations sd JOIN enrollment_sets es ON es.set_name = sd.set_name
             WHERE sd.identifier = ?",
        )
        .bind(declaration)
        .fetch_all(&self.db.pool)
        .await
        .context("finding the enrollments of a declaration")
    }

    /// Adds assignments; notifies the enrollments whose sets changed. Returns how many changed,
    /// and the enrollments whose push failed with the reason.
    pub(crate) async fn assign(
        &self,
        assignments: &[Assignment],
        notify: bool,
    ) -> Result<(u64, PushFailures), DbError> {
        self.change_assignments(
            assignments,
            notify,
            "INSERT OR IGNORE INTO enrollment_sets (enrollment_id, set_name) VALUES (?, ?)",
        )
        .await
    }

    /// Removes assignments; notifies the enrollments whose sets changed.
    pub(crate) async fn unassign(
        &self,
        assignments: &[Assignment],
        notify: bool,
    ) -> Result<(u64, PushFailures), DbError> {
        self.change_assignments(
            assignments,
            notify,
            "DELETE FROM enrollment_sets WHERE enrollment_id = ? AND set_name = ?",
        )
        .await
    }

    async fn change_assignments(
        &self,
        assignments: &[Assignment],
        notify: bool,
        statement: &'static str,
    ) -> Result<(u64, PushFailures), DbError> {
        let mut changed_ids = Vec::new();
        // In chunks, so reports and check-ins wait for no more than one of them.
        for chunk in assignments.chunks(1000) {
            let pairs: Vec<(String, String)> = chunk
                .iter()
                .map(|a| (a.enrollment_id.clone(), a.set.clone()))
                .collect();
            let changed = self
                .writer
                .write("changing assignments", move |connection| {
                    writes::change_assignments(connection, statement, &pairs)
                })
                .await?;
            changed_ids.extend(changed);
        }
        let changed = changed_ids.len() as u64;
        let mut push_failed = PushFailures::new();
        if notify {
            changed_ids.sort();
            changed_ids.dedup();
            push_failed = self.notify(changed_ids).await?;
        }
        Ok((changed, push_failed))
    }
}
