//! Updraft's own calls under `/v1/x-updraft`: bulk assignments, paged enrollments and
//! assignments, and the status-changes feed the console follows.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sqlx::Row;

use crate::AppState;
use crate::db::EnrollmentRecord;

use super::{AdminError, bad_request, internal};
use crate::assignments::Assignment;

#[derive(Deserialize)]
pub(crate) struct Bulk {
    assignments: Vec<Assignment>,
    #[serde(default)]
    notify: Option<bool>,
}

/// `PUT /v1/x-updraft/enrollment-sets`: assign many at once; one push per changed enrollment.
pub(crate) async fn bulk_assign(
    State(state): State<AppState>,
    Json(bulk): Json<Bulk>,
) -> Result<Json<Value>, AdminError> {
    let (changed, push_failed) = state
        .assign(&bulk.assignments, bulk.notify.unwrap_or(true))
        .await
        .map_err(internal)?;
    Ok(Json(
        json!({ "changed": changed, "push_failed": push_failed }),
    ))
}

/// `DELETE /v1/x-updraft/enrollment-sets`: unassign many at once.
pub(crate) async fn bulk_unassign(
    State(state): State<AppState>,
    Json(bulk): Json<Bulk>,
) -> Result<Json<Value>, AdminError> {
    let (changed, push_failed) = state
        .unassign(&bulk.assignments, bulk.notify.unwrap_or(true))
        .await
        .map_err(internal)?;
    Ok(Json(
        json!({ "changed": changed, "push_failed": push_failed }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct Page {
    after: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/x-updraft/enrollments?after=<id>&limit=N`
pub(crate) async fn enrollments(
    State(state): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<EnrollmentRecord>>, AdminError> {
    let limit = page.limit.unwrap_or(1000).clamp(1, 10_000);
    Ok(Json(
        state
            .db
            .enrollments(page.after.as_deref().unwrap_or(""), limit)
            .await
            .map_err(internal)?,
    ))
}

/// `GET /v1/x-updraft/assignments?after=<enrollment id>&limit=N`: every (enrollment, set) pair,
/// by enrollment.
pub(crate) async fn assignments(
    State(state): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<Assignment>>, AdminError> {
    let limit = page.limit.unwrap_or(10_000).clamp(1, 100_000);
    let rows = sqlx::query("SELECT enrollment_id, set_name FROM enrollment_sets WHERE enrollment_id > ? ORDER BY enrollment_id, set_name LIMIT ?")
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(limit)
        .fetch_all(&state.db.pool)
        .await
        .map_err(internal)?;
    Ok(Json(
        rows.into_iter()
            .map(|row| Assignment {
                enrollment_id: row.get("enrollment_id"),
                set: row.get("set_name"),
            })
            .collect(),
    ))
}

/// One entry of the changes feed.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusChange {
    /// The enrollment, as the server knows it.
    pub enrollment: EnrollmentRecord,
    /// Its merged status as one full report (Apple's JSON), if it has reported: the stored
    /// text as it is, since the feed is read for every change of every device.
    pub status: Option<Box<RawValue>>,
}

/// `GET /v1/x-updraft/status-changes?after=<seq>&limit=N`: every enrollment whose status,
/// enrollment or bootstrap token changed after the cursor, with its current merged status.
pub(crate) async fn status_changes(
    State(state): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<ChangesPage>, AdminError> {
    let after: i64 = page
        .after
        .as_deref()
        .unwrap_or("0")
        .parse()
        .map_err(|_| bad_request("after must be a number"))?;
    let limit = page.limit.unwrap_or(1000).clamp(1, 10_000);
    state.writer.flush().await.map_err(internal)?;
    let rows = state
        .db
        .changes_after(after, limit)
        .await
        .map_err(internal)?;
    let next = rows.last().map_or(after, |(record, _)| record.seq);
    let changes: Vec<StatusChange> = rows
        .into_iter()
        .map(|(enrollment, report)| StatusChange {
            enrollment,
            status: report.and_then(|text| RawValue::from_string(text).ok()),
        })
        .collect();
    Ok(Json(ChangesPage { changes, next }))
}

/// A page of the changes feed, serialized straight from the rows (through a `Value` tree, every
/// stored status would be parsed again only to be written out).
#[derive(Serialize)]
pub(crate) struct ChangesPage {
    changes: Vec<StatusChange>,
    next: i64,
}
