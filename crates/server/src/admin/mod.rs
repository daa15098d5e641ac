//! The admin side: KMFDDM's API (declarations, sets, enrollment sets, status, notify), following
//! KMFDDM's code where its openapi.yaml disagrees, plus Updraft's bulk calls under `/v1/x-updraft`.
//! This module holds what every handler shares: errors, the API key, KMFDDM's `nonotify`.

pub(crate) mod declarations;
pub(crate) mod notify;
pub(crate) mod status;
pub(crate) mod updraft;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::AppState;

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

fn split_ids(ids: &str) -> Vec<String> {
    ids.split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
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
