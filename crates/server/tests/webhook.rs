//! The webhook companion: NanoMDM's captured webhook events (a device enrolling, syncing,
//! reporting and checking out through a real NanoHUB) become enrollments, merged statuses and
//! the status-changes feed, as if the device had talked to this server.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

use updraft_clock::ManualClock;
use updraft_ddm::checkin::{CommandReport, CommandStatus, IncomingCommand, QueryResponses};
use updraft_server::secrets::sign_hmac;
use updraft_server::{
    AppState, Db, Enqueuer, Limits, NoPusher, SealingKey, ServerConfig, WebhookConfig, app,
};

const KEY: &str = "admin-key";
const HMAC: &[u8] = b"webhook-secret";
const UDID: &str = "SIM-UDID-0001";

fn events() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/nanohub/webhook-events.jsonl"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn companion(dir: &tempfile::TempDir, enqueue: Option<Enqueuer>) -> AppState {
    let db = Db::open(&dir.path().join("companion.db")).await.unwrap();
    AppState::new(ServerConfig {
        db,
        clock: Arc::new(ManualClock::new("2026-04-10T09:00:00Z".parse().unwrap())),
        pusher: Arc::new(NoPusher),
        sealing_key: SealingKey::from_bytes(&[3; 32]),
        api_key: Some(KEY.into()),
        forwarding: updraft_server::DdmForwarding::Off,
        device_trust: None,
        push_certificate: None,
        webhook: Some(WebhookConfig {
            hmac_key: Some(HMAC.to_vec()),
            enqueue,
        }),
        limits: Limits::default(),
    })
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

async fn post_event(state: &AppState, event: &str, signature: Option<String>) -> StatusCode {
    let mut request = Request::post("/webhook").header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("x-hmac-signature", signature);
    }
    send(state, request.body(Body::from(event.to_owned())).unwrap())
        .await
        .0
}

async fn feed(state: &AppState) -> Value {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("kmfddm:{KEY}"));
    let request = Request::get("/v1/x-updraft/status-changes?after=0")
        .header("authorization", format!("Basic {auth}"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(state, request).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn captured_events_make_the_enrollment_and_its_merged_status() {
    let dir = tempfile::tempdir().unwrap();
    let state = companion(&dir, None).await;
    let events = events();
    // Up to the two status reports, before the CheckOut.
    for event in &events[..9] {
        let status = post_event(&state, event, Some(sign_hmac(HMAC, event.as_bytes()))).await;
        assert_eq!(status, StatusCode::OK, "{event}");
    }
    let page = feed(&state).await;
    let change = &page["changes"][0];
    assert_eq!(change["enrollment"]["id"], UDID);
    assert_eq!(change["enrollment"]["product_name"], "Mac14,2");
    assert_eq!(change["enrollment"]["device_name"], "sim-0001");
    assert_eq!(change["enrollment"]["push_ready"], true);
    let items = &change["status"]["StatusItems"];
    // The first report's device facts, then the second report's increment on top.
    assert_eq!(
        items["device"]["identifier"]["serial-number"],
        "SIMDID-0001"
    );
    assert_eq!(items["softwareupdate"]["install-state"], "installing");

    // CheckOut is recorded too.
    let last = &events[9];
    assert_eq!(
        post_event(&state, last, Some(sign_hmac(HMAC, last.as_bytes()))).await,
        StatusCode::OK
    );
    let page = feed(&state).await;
    assert!(page["changes"][0]["enrollment"]["checked_out_at"].is_string());
}

#[tokio::test]
async fn an_unsigned_or_forged_event_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = companion(&dir, None).await;
    let authenticate = &events()[0];
    assert_eq!(
        post_event(&state, authenticate, None).await,
        StatusCode::UNAUTHORIZED
    );
    let forged = sign_hmac(b"another key", authenticate.as_bytes());
    assert_eq!(
        post_event(&state, authenticate, Some(forged)).await,
        StatusCode::UNAUTHORIZED
    );
    let garbage = "{\"topic\":\"mdm.Authenticate\",\"checkin_event\":{\"raw_payload\":\"!!\"}}";
    assert_eq!(
        post_event(&state, garbage, Some(sign_hmac(HMAC, garbage.as_bytes()))).await,
        StatusCode::BAD_REQUEST
    );
    assert!(feed(&state).await["changes"].as_array().unwrap().is_empty());
}

/// A command NanoMDM was asked to queue: the enrollment, the Authorization header, the body.
type Enqueued = (String, Option<String>, Vec<u8>);

#[tokio::test]
async fn a_new_enrollment_is_asked_its_name_and_zone_through_nanomdm_and_the_answer_is_kept() {
    // NanoMDM's enqueue API, as far as this test needs it: it records what it is sent.
    let queued: Arc<Mutex<Vec<Enqueued>>> = Arc::default();
    let recorder = queued.clone();
    let api = axum::Router::new().route(
        "/api/v1/nanomdm/enqueue/{id}",
        axum::routing::put(
            move |axum::extract::Path(id): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap,
                  body: axum::body::Bytes| {
                let recorder = recorder.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    recorder.lock().unwrap().push((id, auth, body.to_vec()));
                    StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api).await });

    let dir = tempfile::tempdir().unwrap();
    let state = companion(
        &dir,
        Some(Enqueuer {
            url: format!("http://{address}/api/v1/nanomdm/enqueue"),
            user: "nanohub".into(),
            key: "hub-key".into(),
        }),
    )
    .await;
    for event in &events()[..2] {
        post_event(&state, event, Some(sign_hmac(HMAC, event.as_bytes()))).await;
    }
    let queued = queued.lock().unwrap().clone();
    assert_eq!(
        queued.len(),
        1,
        "one DeviceInformation, at the first TokenUpdate"
    );
    let (id, auth, body) = &queued[0];
    assert_eq!(id, UDID);
    let expected = base64::engine::general_purpose::STANDARD.encode("nanohub:hub-key");
    assert_eq!(auth.as_deref(), Some(format!("Basic {expected}").as_str()));
    let command = IncomingCommand::parse(body).unwrap();
    assert_eq!(command.command.request_type, "DeviceInformation");

    // The device's answer arrives as an mdm.Connect event.
    let mut answer =
        CommandReport::result(UDID, CommandStatus::Acknowledged, &command.command_uuid);
    answer.query_responses = Some(QueryResponses {
        device_name: Some("Ana's MacBook Air".into()),
        time_zone: Some("Europe/Lisbon".into()),
    });
    let event = serde_json::json!({
        "topic": "mdm.Connect",
        "acknowledge_event": {
            "udid": UDID, "status": "Acknowledged", "command_uuid": command.command_uuid,
            "raw_payload": base64::engine::general_purpose::STANDARD.encode(answer.to_xml()),
        },
    })
    .to_string();
    assert_eq!(
        post_event(&state, &event, Some(sign_hmac(HMAC, event.as_bytes()))).await,
        StatusCode::OK
    );
    let enrollment = &feed(&state).await["changes"][0]["enrollment"];
    assert_eq!(enrollment["device_name"], "Ana's MacBook Air");
    assert_eq!(enrollment["time_zone"], "Europe/Lisbon");
}
