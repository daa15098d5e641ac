//! The webhook companion: `POST /webhook` takes NanoMDM's webhook events (`-webhook-url`), each
//! check-in and command report with the device's raw property list, verified with NanoMDM's
//! `X-Hmac-Signature` (HMAC-SHA256 of the body, base64) when a key is set. Enrollments, merged
//! statuses and the status-changes feed are kept as for devices that talk to this server
//! directly, while declarations and assignments stay on NanoHUB: a desktop console cannot
//! receive webhooks, so this server receives them for it.
//!
//! What an event does here: Authenticate, TokenUpdate and CheckOut record the enrollment (a first
//! TokenUpdate asks NanoMDM to queue a DeviceInformation command, whose answer gives the
//! device's name and time zone); a DeclarativeManagement `status` check-in is a status report;
//! SetBootstrapToken notes that NanoHUB holds a token (never the token itself); a command
//! report with DeviceInformation answers records them. Anything else is taken and ignored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use updraft_ddm::StatusReport;
use updraft_ddm::checkin::{
    CheckinMessage, CommandReport, CommandStatus, DdmEndpoint, DeviceInformationCommand,
};

use crate::db::{new_uuid, timestamp};
use crate::secrets::verify_hmac;
use crate::{AppState, writes};

/// Where the companion asks NanoMDM to queue commands: its raw enqueue API.
#[derive(Clone)]
pub struct Enqueuer {
    /// `http://host/api/v1/nanomdm/enqueue` (the enrollment id is appended).
    pub url: String,
    /// HTTP Basic user (`nanohub`).
    pub user: String,
    /// The API key.
    pub key: String,
}

impl std::fmt::Debug for Enqueuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enqueuer").field("url", &self.url).finish()
    }
}

/// How the companion takes webhooks.
#[derive(Clone, Debug, Default)]
pub struct WebhookConfig {
    /// NanoMDM's `-webhook-hmac-key`; events without a matching signature are refused.
    pub hmac_key: Option<Vec<u8>>,
    /// Where to queue DeviceInformation for new enrollments (none: names and zones are not asked).
    pub enqueue: Option<Enqueuer>,
}

type Rejection = (StatusCode, Json<serde_json::Value>);

fn reject(status: StatusCode, reason: impl std::fmt::Display) -> Rejection {
    (status, Json(json!({ "error": reason.to_string() })))
}

fn internal(reason: impl std::fmt::Display) -> Rejection {
    tracing::error!(%reason, "webhook event failed");
    reject(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

#[derive(Deserialize)]
struct Event {
    topic: String,
    #[serde(default)]
    checkin_event: Option<Payload>,
    #[serde(default)]
    acknowledge_event: Option<Payload>,
}

#[derive(Deserialize)]
struct Payload {
    raw_payload: String,
}

/// `POST /webhook`
pub(crate) async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Rejection> {
    let Some(config) = &state.webhook else {
        return Err(reject(
            StatusCode::NOT_FOUND,
            "this server takes no webhooks",
        ));
    };
    if let Some(key) = &config.hmac_key {
        let signature = headers
            .get("x-hmac-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| reject(StatusCode::UNAUTHORIZED, "X-Hmac-Signature is required"))?;
        if !verify_hmac(key, &body, signature) {
            tracing::warn!(
                "a webhook event's X-Hmac-Signature does not match: check -webhook-hmac-key on both sides"
            );
            return Err(reject(
                StatusCode::UNAUTHORIZED,
                "X-Hmac-Signature does not match the body",
            ));
        }
    }
    let event: Event = serde_json::from_slice(&body).map_err(|e| {
        reject(
            StatusCode::BAD_REQUEST,
            format!("not a NanoMDM webhook event: {e}"),
        )
    })?;
    let raw = |payload: &Payload| {
        base64::engine::general_purpose::STANDARD
            .decode(payload.raw_payload.trim())
            .map_err(|e| {
                reject(
                    StatusCode::BAD_REQUEST,
                    format!("{}: raw_payload is not base64: {e}", event.topic),
                )
            })
    };
    let now = timestamp(state.clock.now());
    if let Some(payload) = &event.acknowledge_event {
        let report = CommandReport::parse(&raw(payload)?)
            .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("{}: {e}", event.topic)))?;
        let id = report.enrollment();
        if let Some(answers) = report
            .query_responses
            .filter(|_| report.status == CommandStatus::Acknowledged)
        {
            state
                .writer
                .write("recording DeviceInformation", move |c| {
                    writes::device_information(c, &id, &answers)
                })
                .await
                .map_err(internal)?;
        }
        return Ok(StatusCode::OK);
    }
    let Some(payload) = &event.checkin_event else {
        return Ok(StatusCode::OK);
    };
    let message = CheckinMessage::parse(&raw(payload)?)
        .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("{}: {e}", event.topic)))?;
    let id = message
        .enrollment()
        .enrollment_id()
        .ok_or_else(|| reject(StatusCode::BAD_REQUEST, "the check-in names no enrollment"))?;
    match message {
        CheckinMessage::Authenticate(authenticate) => {
            state
                .record_authenticate(authenticate, id, None)
                .await
                .map_err(internal)?;
        }
        CheckinMessage::TokenUpdate(update) => {
            let first = state
                .record_token_update(update, id.clone())
                .await
                .map_err(internal)?;
            if first && let Some(enqueuer) = &config.enqueue {
                ask_device_information(&state, enqueuer, &id).await;
            }
        }
        CheckinMessage::CheckOut(_) => {
            state
                .writer
                .write("recording CheckOut", move |c| {
                    writes::check_out(c, &id, &now)
                })
                .await
                .map_err(internal)?;
        }
        CheckinMessage::SetBootstrapToken(set) => {
            // NanoHUB keeps the token; this server notes only that there is one.
            let held: Option<Vec<u8>> = set
                .bootstrap_token
                .filter(|token| !token.is_empty())
                .map(|_| Vec::new());
            state
                .writer
                .write("noting the bootstrap token", move |c| {
                    writes::set_bootstrap_token(c, &id, held.as_deref(), &now)
                })
                .await
                .map_err(internal)?;
        }
        CheckinMessage::GetBootstrapToken(_) => {
            state
                .writer
                .write("noting a bootstrap token request", move |c| {
                    writes::take_bootstrap_request(c, &id, &now).map(|_| ())
                })
                .await
                .map_err(internal)?;
        }
        CheckinMessage::DeclarativeManagement(request) => {
            let endpoint = request
                .parsed_endpoint()
                .map_err(|e| reject(StatusCode::BAD_REQUEST, e))?;
            if endpoint == DdmEndpoint::Status {
                let data = request.data.unwrap_or_default();
                if data.len() > state.limits.max_status_bytes {
                    return Err(reject(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "status report too large",
                    ));
                }
                let report =
                    StatusReport::parse(&data).map_err(|e| reject(StatusCode::BAD_REQUEST, e))?;
                state
                    .writer
                    .submit(id, data, report)
                    .await
                    .map_err(internal)?;
            }
        }
    }
    Ok(StatusCode::OK)
}

/// Asks NanoMDM to queue DeviceInformation for a new enrollment. A failure is logged: the
/// device is then shown without its name and zone, nothing else is lost.
async fn ask_device_information(state: &AppState, enqueuer: &Enqueuer, id: &str) {
    let command = DeviceInformationCommand::new(new_uuid()).to_xml();
    let url = format!(
        "{}/{}",
        enqueuer.url.trim_end_matches('/'),
        url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
    );
    let answer = state
        .http
        .put(&url)
        .basic_auth(&enqueuer.user, Some(&enqueuer.key))
        .body(command)
        .send()
        .await;
    match answer {
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            // NanoMDM answers 500 when the push fails although the command is queued.
            if !(status.is_success() || (status.as_u16() == 500 && !text.contains("enqueue_error")))
            {
                tracing::warn!(enrollment = id, %status, body = %text, "NanoMDM did not queue DeviceInformation");
            }
        }
        Err(error) => {
            tracing::warn!(enrollment = id, %error, "cannot reach NanoMDM to queue DeviceInformation")
        }
    }
}
