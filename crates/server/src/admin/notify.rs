//! `POST /v1/notify`: push enrollments, named directly or through sets and declarations.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;

use super::{AdminError, internal};

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

/// `?id=a&id=b&set=s`: each key may repeat (serde's query extractor keeps one value), decoded
/// as Go's `url.Values` does it, `+` as a space.
fn parse_repeated(query: &str) -> NotifyQuery {
    let mut out = NotifyQuery {
        id: vec![],
        set: vec![],
        declaration: vec![],
    };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "id" => out.id.push(value),
            "set" => out.set.push(value),
            "declaration" => out.declaration.push(value),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_all_kept_and_decoded() {
        let query = parse_repeated("id=A%20B&id=C+D&set=s%2F1&declaration=com.x%41&other=1&id");
        assert_eq!(query.id, ["A B", "C D", ""]);
        assert_eq!(query.set, ["s/1"]);
        assert_eq!(
            query.declaration,
            ["com.xA"],
            "an escape at the very end is decoded"
        );
    }
}
