//! Declarations, sets and their assignments to enrollments, as KMFDDM serves them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use updraft_ddm::Declaration;

use crate::AppState;
use crate::db::timestamp;

use super::{AdminError, NotifyFlag, bad_request, changed, internal, notify_wanted};
use crate::assignments::Assignment;

pub(crate) async fn list_declarations(
    State(state): State<AppState>,
) -> Result<Json<Vec<String>>, AdminError> {
    let ids = sqlx::query_scalar("SELECT identifier FROM declarations ORDER BY identifier")
        .fetch_all(&state.db.pool)
        .await
        .map_err(internal)?;
    Ok(Json(ids))
}

/// `PUT /v1/declarations`: 204 when new or changed, 304 when identical (KMFDDM's code).
pub(crate) async fn put_declaration(
    State(state): State<AppState>,
    Query(flag): Query<NotifyFlag>,
    body: Bytes,
) -> Result<StatusCode, AdminError> {
    #[derive(Deserialize)]
    struct Incoming {
        #[serde(rename = "Identifier")]
        identifier: String,
        #[serde(rename = "Type")]
        declaration_type: String,
        #[serde(rename = "Payload", default)]
        payload: serde_json::Map<String, Value>,
    }
    let incoming: Incoming = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("declaration is not valid JSON: {e}")))?;
    let declaration = Declaration::from_parts(
        incoming.declaration_type,
        incoming.identifier,
        incoming.payload,
    )
    .map_err(bad_request)?;
    let existing = state
        .db
        .declaration(&declaration.identifier)
        .await
        .map_err(internal)?;
    if existing.as_ref() == Some(&declaration) {
        return Ok(StatusCode::NOT_MODIFIED);
    }
    sqlx::query(
        "INSERT INTO declarations (identifier, type, payload, server_token, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(identifier) DO UPDATE SET type = excluded.type, payload = excluded.payload,
             server_token = excluded.server_token, updated_at = excluded.updated_at",
    )
    .bind(&declaration.identifier)
    .bind(&declaration.declaration_type)
    .bind(Value::Object(declaration.payload.clone()).to_string())
    .bind(&declaration.server_token)
    .bind(timestamp(state.clock.now()))
    .execute(&state.db.pool)
    .await
    .map_err(internal)?;
    if flag.notify() && existing.is_some() {
        let ids = state
            .enrollments_of_declaration(&declaration.identifier)
            .await
            .map_err(internal)?;
        state.notify(ids).await.map_err(internal)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_declaration(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Declaration>, AdminError> {
    state
        .db
        .declaration(&id)
        .await
        .map_err(internal)?
        .map(Json)
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("no declaration {id:?}")))
}

/// `DELETE /v1/declarations/:id`: 204 deleted, 304 absent; no notification (as KMFDDM).
pub(crate) async fn delete_declaration(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    let result = sqlx::query("DELETE FROM declarations WHERE identifier = ?")
        .bind(&id)
        .execute(&state.db.pool)
        .await
        .map_err(internal)?;
    Ok(changed(result.rows_affected() > 0))
}

/// `POST /v1/declarations/:id/touch`: a new ServerToken, so devices fetch it again.
pub(crate) async fn touch_declaration(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(flag): Query<NotifyFlag>,
) -> Result<StatusCode, AdminError> {
    let Some(mut declaration) = state.db.declaration(&id).await.map_err(internal)? else {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no declaration {id:?}"),
        ));
    };
    let touched: i64 = sqlx::query_scalar(
        "UPDATE declarations SET touched = touched + 1 WHERE identifier = ? RETURNING touched",
    )
    .bind(&id)
    .fetch_one(&state.db.pool)
    .await
    .map_err(internal)?;
    let token = format!("{}.{touched}", declaration.content_token());
    declaration.server_token = token
        .chars()
        .take(updraft_ddm::declaration::MAX_SERVER_TOKEN_OCTETS)
        .collect();
    sqlx::query("UPDATE declarations SET server_token = ? WHERE identifier = ?")
        .bind(&declaration.server_token)
        .bind(&id)
        .execute(&state.db.pool)
        .await
        .map_err(internal)?;
    if flag.notify() {
        let ids = state
            .enrollments_of_declaration(&id)
            .await
            .map_err(internal)?;
        state.notify(ids).await.map_err(internal)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_sets(
    State(state): State<AppState>,
) -> Result<Json<Vec<String>>, AdminError> {
    let sets =
        sqlx::query_scalar("SELECT DISTINCT set_name FROM set_declarations ORDER BY set_name")
            .fetch_all(&state.db.pool)
            .await
            .map_err(internal)?;
    Ok(Json(sets))
}

pub(crate) async fn get_set_declarations(
    State(state): State<AppState>,
    Path(set): Path<String>,
) -> Result<Json<Vec<String>>, AdminError> {
    let ids = sqlx::query_scalar(
        "SELECT identifier FROM set_declarations WHERE set_name = ? ORDER BY identifier",
    )
    .bind(&set)
    .fetch_all(&state.db.pool)
    .await
    .map_err(internal)?;
    Ok(Json(ids))
}

#[derive(Deserialize)]
pub(crate) struct DeclarationQuery {
    declaration: Option<String>,
    nonotify: Option<String>,
}

pub(crate) async fn put_set_declaration(
    State(state): State<AppState>,
    Path(set): Path<String>,
    Query(query): Query<DeclarationQuery>,
) -> Result<StatusCode, AdminError> {
    let declaration = query
        .declaration
        .ok_or_else(|| bad_request("missing ?declaration="))?;
    if state
        .db
        .declaration(&declaration)
        .await
        .map_err(internal)?
        .is_none()
    {
        return Err(bad_request(format!("no declaration {declaration:?}")));
    }
    let result =
        sqlx::query("INSERT OR IGNORE INTO set_declarations (set_name, identifier) VALUES (?, ?)")
            .bind(&set)
            .bind(&declaration)
            .execute(&state.db.pool)
            .await
            .map_err(internal)?;
    set_changed(
        &state,
        &set,
        result.rows_affected() > 0,
        notify_wanted(query.nonotify.as_deref()),
    )
    .await
}

pub(crate) async fn delete_set_declaration(
    State(state): State<AppState>,
    Path(set): Path<String>,
    Query(query): Query<DeclarationQuery>,
) -> Result<StatusCode, AdminError> {
    let declaration = query
        .declaration
        .ok_or_else(|| bad_request("missing ?declaration="))?;
    let result = sqlx::query("DELETE FROM set_declarations WHERE set_name = ? AND identifier = ?")
        .bind(&set)
        .bind(&declaration)
        .execute(&state.db.pool)
        .await
        .map_err(internal)?;
    set_changed(
        &state,
        &set,
        result.rows_affected() > 0,
        notify_wanted(query.nonotify.as_deref()),
    )
    .await
}

/// After a set's declarations changed: notify the set's enrollments, and answer 204 or 304.
async fn set_changed(
    state: &AppState,
    set: &str,
    was_changed: bool,
    notify: bool,
) -> Result<StatusCode, AdminError> {
    if was_changed && notify {
        let ids = state
            .enrollments_of_sets(&[set.to_owned()])
            .await
            .map_err(internal)?;
        state.notify(ids).await.map_err(internal)?;
    }
    Ok(changed(was_changed))
}

pub(crate) async fn get_enrollment_sets(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<String>>, AdminError> {
    let sets = sqlx::query_scalar(
        "SELECT set_name FROM enrollment_sets WHERE enrollment_id = ? ORDER BY set_name",
    )
    .bind(&id)
    .fetch_all(&state.db.pool)
    .await
    .map_err(internal)?;
    Ok(Json(sets))
}

#[derive(Deserialize)]
pub(crate) struct SetQuery {
    set: Option<String>,
    nonotify: Option<String>,
}

pub(crate) async fn put_enrollment_set(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<SetQuery>,
) -> Result<StatusCode, AdminError> {
    let set = query.set.ok_or_else(|| bad_request("missing ?set="))?;
    let assignment = Assignment {
        enrollment_id: id,
        set,
    };
    let (touched, _) = state
        .assign(
            std::slice::from_ref(&assignment),
            notify_wanted(query.nonotify.as_deref()),
        )
        .await
        .map_err(internal)?;
    Ok(changed(touched > 0))
}

pub(crate) async fn delete_enrollment_set(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<SetQuery>,
) -> Result<StatusCode, AdminError> {
    let set = query.set.ok_or_else(|| bad_request("missing ?set="))?;
    let assignment = Assignment {
        enrollment_id: id,
        set,
    };
    let (touched, _) = state
        .unassign(
            std::slice::from_ref(&assignment),
            notify_wanted(query.nonotify.as_deref()),
        )
        .await
        .map_err(internal)?;
    Ok(changed(touched > 0))
}

/// `DELETE /v1/enrollment-sets-all/sets/:id` (KMFDDM's code) and `/v1/enrollment-sets-all/:id`
/// (its openapi.yaml): remove every set of an enrollment.
pub(crate) async fn delete_all_enrollment_sets(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(flag): Query<NotifyFlag>,
) -> Result<StatusCode, AdminError> {
    let result = sqlx::query("DELETE FROM enrollment_sets WHERE enrollment_id = ?")
        .bind(&id)
        .execute(&state.db.pool)
        .await
        .map_err(internal)?;
    let was_changed = result.rows_affected() > 0;
    if was_changed && flag.notify() {
        state.notify(vec![id]).await.map_err(internal)?;
    }
    Ok(changed(was_changed))
}

/// `GET /v1/declaration-sets/:id`: the sets holding a declaration.
pub(crate) async fn declaration_sets(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<String>>, AdminError> {
    let sets = sqlx::query_scalar(
        "SELECT set_name FROM set_declarations WHERE identifier = ? ORDER BY set_name",
    )
    .bind(id)
    .fetch_all(&state.db.pool)
    .await
    .map_err(internal)?;
    Ok(Json(sets))
}
