//! The admin side: KMFDDM's API (declarations, sets, enrollment sets, status, notify), following
//! KMFDDM's code where its openapi.yaml disagrees, plus Updraft's bulk calls under `/v1/x-updraft`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sqlx::Row;
use subtle::ConstantTimeEq;

use updraft_ddm::{Declaration, StatusReport};

use crate::AppState;
use crate::db::{EnrollmentRecord, timestamp};
use crate::writes;

/// An admin failure: KMFDDM's `{"error": "..."}` body.
pub(crate) struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn internal(error: impl std::fmt::Display) -> AdminError {
    tracing::error!(%error, "admin request failed");
    AdminError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

fn bad_request(reason: impl std::fmt::Display) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, reason.to_string())
}

/// HTTP Basic, user `kmfddm`, password the API key, compared in constant time.
pub(crate) async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    use base64::Engine;
    let Some(key) = state.api_key.as_deref() else {
        return AdminError(
            StatusCode::FORBIDDEN,
            "the admin API is off: start the server with an API key".into(),
        )
        .into_response();
    };
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .unwrap_or_default();
    let expected = format!("kmfddm:{key}");
    if presented.len() == expected.len() && bool::from(presented.ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        let mut response =
            AdminError(StatusCode::UNAUTHORIZED, "wrong or missing API key".into()).into_response();
        response.headers_mut().insert(
            "www-authenticate",
            "Basic realm=\"updraft\"".parse().unwrap(),
        );
        response
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct NotifyFlag {
    nonotify: Option<String>,
}

impl NotifyFlag {
    fn notify(&self) -> bool {
        notify_wanted(self.nonotify.as_deref())
    }
}

/// KMFDDM's reading of `?nonotify=`: absent, empty, `0`, `false`, `no` or `off` (any case)
/// still notify; any other value suppresses the notification.
fn notify_wanted(nonotify: Option<&str>) -> bool {
    matches!(
        nonotify.unwrap_or_default().to_ascii_lowercase().as_str(),
        "" | "0" | "false" | "no" | "off"
    )
}

fn changed(changed: bool) -> StatusCode {
    if changed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    }
}

pub(crate) async fn version() -> Json<Value> {
    Json(json!({ "version": concat!("updraft-", env!("CARGO_PKG_VERSION")) }))
}

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

fn split_ids(ids: &str) -> Vec<String> {
    ids.split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `GET /v1/declaration-status/:ids`: each enrollment's declarations as the device last reported.
pub(crate) async fn declaration_status(
    State(state): State<AppState>,
    Path(ids): Path<String>,
) -> Result<Json<Value>, AdminError> {
    state.writer.flush().await.map_err(internal)?;
    let mut out = serde_json::Map::new();
    for id in split_ids(&ids) {
        let Some((status, _)) = merged_status(&state, &id).await? else {
            continue;
        };
        let entries: Vec<Value> = status
            .declarations()
            .map(|declarations| {
                declarations
                    .all()
                    .map(|d| {
                        json!({
                            "identifier": d.identifier, "active": d.active,
                            "valid": serde_json::to_value(&d.valid).unwrap_or_default(),
                            "server-token": d.server_token,
                            "reasons": serde_json::to_value(&d.reasons).unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(id, Value::Array(entries));
    }
    Ok(Json(Value::Object(out)))
}

/// An enrollment's merged status and when it last changed, parsed off the async workers.
async fn merged_status(
    state: &AppState,
    id: &str,
) -> Result<Option<(updraft_ddm::DeviceStatus, String)>, AdminError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT report, updated_at FROM status WHERE enrollment_id = ?")
            .bind(id)
            .fetch_optional(&state.db.pool)
            .await
            .map_err(internal)?;
    let Some((report, updated_at)) = row else {
        return Ok(None);
    };
    let status = tokio::task::spawn_blocking(move || {
        let mut status = updraft_ddm::DeviceStatus::default();
        if let Ok(parsed) = StatusReport::parse(report.as_bytes()) {
            status.apply(&parsed);
        }
        status
    })
    .await
    .map_err(internal)?;
    Ok(Some((status, updated_at)))
}

/// `GET /v1/status-errors/:ids`: as KMFDDM, the latest ten errors of each enrollment: each
/// entry of the report's `Errors` (path `.Errors`, including the items this server refused
/// to keep) and each declaration neither active nor valid.
pub(crate) async fn status_errors(
    State(state): State<AppState>,
    Path(ids): Path<String>,
) -> Result<Json<Value>, AdminError> {
    state.writer.flush().await.map_err(internal)?;
    let mut out = serde_json::Map::new();
    for id in split_ids(&ids) {
        let Some((status, updated_at)) = merged_status(&state, &id).await? else {
            continue;
        };
        let mut errors: Vec<Value> = status
            .errors()
            .map(|error| json!({"path": ".Errors", "error": error, "timestamp": updated_at}))
            .collect();
        if let Some(declarations) = status.declarations() {
            errors.extend(
                declarations
                    .all()
                    .filter(|d| !d.active && d.valid != updraft_ddm::status::Validity::Valid)
                    .map(|d| {
                        json!({
                            "path": ".StatusItems.management.declarations",
                            "error": d, "timestamp": updated_at,
                        })
                    }),
            );
        }
        errors.truncate(10);
        if !errors.is_empty() {
            out.insert(id, Value::Array(errors));
        }
    }
    Ok(Json(Value::Object(out)))
}

#[derive(Deserialize)]
pub(crate) struct PrefixQuery {
    prefix: Option<String>,
}

/// `GET /v1/status-values/:ids?prefix=`: as KMFDDM, every scalar of the merged status by its
/// path (`.StatusItems.device.operating-system.version`), the elements of an array under the
/// array's path; `prefix` is an SQL LIKE pattern (`%` any run, `_` one character).
pub(crate) async fn status_values(
    State(state): State<AppState>,
    Path(ids): Path<String>,
    Query(query): Query<PrefixQuery>,
) -> Result<Json<Value>, AdminError> {
    state.writer.flush().await.map_err(internal)?;
    let mut out = serde_json::Map::new();
    for id in split_ids(&ids) {
        let Some(report) = state.db.status(&id).await.map_err(internal)? else {
            continue;
        };
        let prefix = query.prefix.clone().unwrap_or_default();
        let values = tokio::task::spawn_blocking(move || {
            let tree: Value = serde_json::from_str(&report).unwrap_or_default();
            let mut values = Vec::new();
            if let Some(items) = tree.get("StatusItems") {
                flatten_values(items, ".StatusItems".into(), &mut values);
            }
            values
                .into_iter()
                .filter(|(path, _)| prefix.is_empty() || sql_like(&prefix, path))
                .map(|(path, value)| json!({"path": path, "value": value}))
                .collect::<Vec<Value>>()
        })
        .await
        .map_err(internal)?;
        if !values.is_empty() {
            out.insert(id, Value::Array(values));
        }
    }
    Ok(Json(Value::Object(out)))
}

/// KMFDDM's status values: scalars as text by path, without recursion.
fn flatten_values(root: &Value, path: String, out: &mut Vec<(String, String)>) {
    let mut stack = vec![(root, path)];
    while let Some((value, path)) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter().rev() {
                    stack.push((child, format!("{path}.{key}")));
                }
            }
            Value::Array(items) => {
                for child in items.iter().rev() {
                    stack.push((child, path.clone()));
                }
            }
            Value::String(text) => out.push((path, text.clone())),
            Value::Number(number) => out.push((path, number.to_string())),
            Value::Bool(flag) => out.push((path, flag.to_string())),
            Value::Null => {}
        }
    }
}

/// SQL LIKE (case-sensitive, as SQLite's for non-ASCII and KMFDDM's MySQL with a binary
/// collation): `%` matches any run, `_` any one character.
fn sql_like(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('%') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '_' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((bp, bt)) => {
                    p = bp + 1;
                    t = bt + 1;
                    backtrack = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '%')
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

/// Every admin rejection as KMFDDM's JSON `{"error": …}`, including axum's own (a bad path
/// or query, a body over the limit), which are plain text.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    parts.headers.remove("content-type");
    parts.headers.remove("content-length");
    (parts, AdminError(status, message)).into_response()
}

/// `GET /v1/x-updraft/push-certificate`: the push certificate's topic and expiry; 404 when the
/// server has none.
pub(crate) async fn push_certificate(
    State(state): State<AppState>,
) -> Result<Json<crate::push_certificate::PushCertificateInfo>, AdminError> {
    state.push_certificate.clone().map(Json).ok_or_else(|| {
        AdminError(
            StatusCode::NOT_FOUND,
            "this server has no push certificate (--apns-identity or --apns-p12)".into(),
        )
    })
}

/// Any path no route serves: a JSON 404 naming it.
pub(crate) async fn no_such_endpoint(uri: axum::http::Uri) -> AdminError {
    AdminError(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
    )
}

#[derive(Deserialize)]
pub(crate) struct IndexQuery {
    index: Option<i64>,
}

/// `GET /v1/status-report/:id?index=N`: a raw report, 0 the newest.
pub(crate) async fn status_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<IndexQuery>,
) -> Result<Response, AdminError> {
    // The list of kept reports is written with the merged status.
    state.writer.flush().await.map_err(internal)?;
    let index = query.index.unwrap_or(0).max(0);
    let (report_id, received_at, body) = state
        .db
        .recent_report(&id, usize::try_from(index).unwrap_or(usize::MAX))
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            AdminError(
                StatusCode::NOT_FOUND,
                format!("no status report {index} for {id:?}"),
            )
        })?;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in [
        ("last-modified", http_date(&received_at)),
        ("x-status-report-id", report_id.to_string()),
        // As KMFDDM's stores: the report's own number, which only grows, not the `index` asked
        // (a poller tells new reports from seen ones by it).
        ("x-status-report-index", report_id.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Ok((headers, body).into_response())
}

/// An RFC 3339 time as an HTTP date (`Last-Modified`), or as it is if it does not parse.
fn http_date(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or_else(
        |_| rfc3339.to_owned(),
        |at| at.to_utc().format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    )
}

#[derive(Deserialize)]
pub(crate) struct NotifyQuery {
    #[serde(default)]
    id: Vec<String>,
    #[serde(default)]
    set: Vec<String>,
    #[serde(default)]
    declaration: Vec<String>,
}

/// `POST /v1/notify?id=..&set=..&declaration=..`
pub(crate) async fn notify(
    State(state): State<AppState>,
    raw_query: axum::extract::RawQuery,
) -> Result<Response, AdminError> {
    let query: NotifyQuery = parse_repeated(raw_query.0.as_deref().unwrap_or(""));
    let mut ids = query.id;
    ids.extend(
        state
            .enrollments_of_sets(&query.set)
            .await
            .map_err(internal)?,
    );
    for declaration in &query.declaration {
        ids.extend(
            state
                .enrollments_of_declaration(declaration)
                .await
                .map_err(internal)?,
        );
    }
    ids.sort();
    ids.dedup();
    let push_failed = state.notify(ids).await.map_err(internal)?;
    // KMFDDM answers 204 (or 500 for any failed push); a 200 names each failed push instead.
    if push_failed.is_empty() {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Ok(Json(json!({ "push_failed": push_failed })).into_response())
    }
}

fn parse_repeated(query: &str) -> NotifyQuery {
    let mut out = NotifyQuery {
        id: vec![],
        set: vec![],
        declaration: vec![],
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "id" => out.id.push(value),
            "set" => out.set.push(value),
            "declaration" => out.declaration.push(value),
            _ => {}
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One enrollment-set assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The enrollment.
    pub enrollment_id: String,
    /// The set.
    pub set: String,
}

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

/// Enrollments whose push failed, with the reason.
pub(crate) type PushFailures = std::collections::BTreeMap<String, String>;

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

impl AppState {
    pub(crate) async fn enrollments_of_sets(
        &self,
        sets: &[String],
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut ids = Vec::new();
        for set in sets {
            let found: Vec<String> =
                sqlx::query_scalar("SELECT enrollment_id FROM enrollment_sets WHERE set_name = ?")
                    .bind(set)
                    .fetch_all(&self.db.pool)
                    .await?;
            ids.extend(found);
        }
        Ok(ids)
    }

    pub(crate) async fn enrollments_of_declaration(
        &self,
        declaration: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT DISTINCT es.enrollment_id FROM set_declarations sd JOIN enrollment_sets es ON es.set_name = sd.set_name
             WHERE sd.identifier = ?",
        )
        .bind(declaration)
        .fetch_all(&self.db.pool)
        .await
    }

    /// Adds assignments; notifies the enrollments whose sets changed. Returns how many changed,
    /// and the enrollments whose push failed with the reason.
    pub(crate) async fn assign(
        &self,
        assignments: &[Assignment],
        notify: bool,
    ) -> Result<(u64, PushFailures), sqlx::Error> {
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
    ) -> Result<(u64, PushFailures), sqlx::Error> {
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
    ) -> Result<(u64, PushFailures), sqlx::Error> {
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
                .await
                .map_err(|error| sqlx::Error::Protocol(error.to_string()))?;
            changed_ids.extend(changed);
        }
        let changed = changed_ids.len() as u64;
        let mut push_failed = PushFailures::new();
        if notify {
            changed_ids.sort();
            changed_ids.dedup();
            push_failed = self
                .notify(changed_ids)
                .await
                .map_err(|error| sqlx::Error::Protocol(error.to_string()))?;
        }
        Ok((changed, push_failed))
    }
}
