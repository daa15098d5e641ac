//! What devices reported: declaration status, errors, values and the raw reports.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use updraft_ddm::StatusReport;

use crate::AppState;

use super::{AdminError, internal, split_ids};

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
