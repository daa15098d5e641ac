//! The test harness of the server's tests: a server without a socket (`app().oneshot`) and
//! devices that sign what they send, as real ones do.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

use updraft_clock::ManualClock;
use updraft_ddm::checkin::{
    CheckinMessage, CommandReport, CommandStatus, DeclarativeManagementCheckin,
    DeclarativeManagementCommand, EnrollmentKeys, IncomingCommand, QueryResponses,
};
use updraft_server::{
    AppState, Db, DdmForwarding, DeviceTrust, Limits, NoPusher, SealingKey, ServerConfig, app,
};
use updraft_sim::{DeviceIdentity, IdentityIssuer};

pub const KEY: &str = "secret-key";
pub const UDID: &str = "66ADE930-5FDF-5EC4-8429-15640684C489";

pub struct Server {
    pub state: AppState,
    pub _dir: tempfile::TempDir,
    pub db_path: std::path::PathBuf,
    /// The device CA the server trusts.
    pub issuer: Arc<IdentityIssuer>,
    identities: Mutex<HashMap<String, DeviceIdentity>>,
}

pub async fn server(forwarding: DdmForwarding) -> Server {
    server_in(tempfile::tempdir().unwrap(), forwarding).await
}

/// A server on `server.db` in `dir`, which may hold one already.
pub async fn server_in(dir: tempfile::TempDir, forwarding: DdmForwarding) -> Server {
    let db_path = dir.path().join("server.db");
    let issuer = Arc::new(IdentityIssuer::generate("Test device CA").unwrap());
    Server {
        state: state_on(&db_path, forwarding, &issuer).await,
        _dir: dir,
        db_path,
        issuer,
        identities: Mutex::default(),
    }
}

/// A server with `limits` rather than the tests' small ones.
pub async fn server_with(forwarding: DdmForwarding, limits: Limits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("server.db");
    let issuer = Arc::new(IdentityIssuer::generate("Test device CA").unwrap());
    Server {
        state: AppState::new(config(&db_path, forwarding, &issuer, limits, None).await),
        _dir: dir,
        db_path,
        issuer,
        identities: Mutex::default(),
    }
}

/// The server's state on a database file, as a fresh start of the process builds it.
pub async fn state_on(
    db_path: &std::path::Path,
    forwarding: DdmForwarding,
    issuer: &IdentityIssuer,
) -> AppState {
    let limits = Limits {
        max_checkin_bytes: 64 * 1024,
        max_status_bytes: 32 * 1024,
        // Tiny, so that the tests with several devices also drop and re-read statuses.
        status_cache_generation: 2,
        ..Limits::default()
    };
    AppState::new(config(db_path, forwarding, issuer, limits, None).await)
}

/// A server behind a TLS proxy that passes the device's certificate in `cert_header`.
pub async fn server_behind_proxy(cert_header: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("server.db");
    let issuer = Arc::new(IdentityIssuer::generate("Test device CA").unwrap());
    let config = config(
        &db_path,
        DdmForwarding::Off,
        &issuer,
        Limits::default(),
        Some(cert_header),
    )
    .await;
    Server {
        state: AppState::new(config),
        _dir: dir,
        db_path,
        issuer,
        identities: Mutex::default(),
    }
}

async fn config(
    db_path: &std::path::Path,
    forwarding: DdmForwarding,
    issuer: &IdentityIssuer,
    limits: Limits,
    cert_header: Option<&str>,
) -> ServerConfig {
    let db = Db::open(db_path).await.unwrap();
    let start: DateTime<Utc> = "2026-04-10T09:00:00Z".parse().unwrap();
    ServerConfig {
        db,
        clock: Arc::new(ManualClock::new(start)),
        pusher: Arc::new(NoPusher),
        sealing_key: SealingKey::from_bytes(&[9; 32]),
        api_key: Some(KEY.into()),
        forwarding,
        device_trust: Some(
            DeviceTrust::from_pem(&[issuer.ca_pem().as_bytes().to_vec()], cert_header).unwrap(),
        ),
        push_certificate: None,
        webhook: None,
        limits,
    }
}

impl Server {
    /// The identity a device enrolls with here, issued on first use.
    pub fn identity(&self, device: &str) -> DeviceIdentity {
        self.identities
            .lock()
            .unwrap()
            .entry(device.to_owned())
            .or_insert_with(|| self.issuer.issue(device).unwrap())
            .clone()
    }

    /// A device request signed with `identity` (none: unsigned).
    pub async fn device_request(
        &self,
        path: &str,
        body: Vec<u8>,
        identity: Option<&DeviceIdentity>,
    ) -> (StatusCode, Vec<u8>) {
        let content_type = if path.ends_with("/connect") {
            "application/x-apple-aspen-mdm"
        } else {
            "application/x-apple-aspen-mdm-checkin"
        };
        let mut request = Request::put(path).header("content-type", content_type);
        if let Some(identity) = identity {
            request = request.header("mdm-signature", identity.sign(&body).unwrap());
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// The device a body speaks for, if it can be read.
    fn sender(body: &[u8]) -> String {
        CheckinMessage::parse(body)
            .ok()
            .and_then(|m| m.enrollment().device_id().map(str::to_owned))
            .or_else(|| {
                CommandReport::parse(body)
                    .ok()
                    .map(|r| r.device_id().to_owned())
            })
            .unwrap_or_else(|| "UNREADABLE".into())
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        (
            status,
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
    }

    /// A check-in signed by the device it names.
    pub async fn checkin(&self, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let identity = self.identity(&Self::sender(&body));
        self.device_request("/mdm/checkin", body, Some(&identity))
            .await
    }

    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Vec<u8>) {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("kmfddm:{KEY}"));
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Basic {auth}"))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        self.send(request).await
    }

    pub async fn ddm(&self, endpoint: &str, data: Option<Vec<u8>>) -> (StatusCode, Vec<u8>) {
        let message = CheckinMessage::DeclarativeManagement(DeclarativeManagementCheckin {
            enrollment: EnrollmentKeys {
                udid: Some(UDID.into()),
                ..Default::default()
            },
            endpoint: endpoint.into(),
            data,
        });
        self.checkin(message.to_xml()).await
    }

    /// A page of the status-changes feed after `after`.
    pub async fn status_changes(&self, after: i64) -> Value {
        let path = format!("/v1/x-updraft/status-changes?after={after}");
        let (status, page) = self.admin("GET", &path, None).await;
        assert_eq!(status, StatusCode::OK);
        json_body(&page)
    }

    /// The Mac's merged status items as the status-changes feed gives them, and the feed's cursor.
    pub async fn merged_status_items(&self) -> (Value, i64) {
        let changes = self.status_changes(0).await;
        let change = changes["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["enrollment"]["id"] == UDID)
            .unwrap();
        (
            change["status"]["StatusItems"].clone(),
            changes["next"].as_i64().unwrap(),
        )
    }

    /// `GET /v1/status-report/<the device>?index=N`.
    pub async fn raw_report(&self, index: usize) -> (StatusCode, Vec<u8>) {
        let path = format!("/v1/status-report/{UDID}?index={index}");
        self.admin("GET", &path, None).await
    }

    /// Raw reports in the database, whoever they belong to.
    pub async fn stored_raw_reports(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM status_reports").await
    }

    /// A connection pool of its own on the database file, behind the server's back.
    pub async fn pool(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!("sqlite://{}", self.db_path.display()))
            .await
            .unwrap()
    }

    /// A count read straight from the database file.
    pub async fn count(&self, sql: &'static str) -> i64 {
        let pool = self.pool().await;
        let count = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        count
    }

    /// `PUT /mdm/connect` with `Idle` or a command's result; the next DeclarativeManagement
    /// command, if one is sent. A DeviceInformation command on the way is answered as the Mac
    /// would (name "Lab Mac", zone Europe/Paris).
    pub async fn connect(
        &self,
        result: Option<(CommandStatus, &str)>,
    ) -> Option<DeclarativeManagementCommand> {
        let mut report = match result {
            Some((status, uuid)) => CommandReport::result(UDID, status, uuid),
            None => CommandReport::idle(UDID),
        };
        loop {
            let identity = self.identity(UDID);
            let (code, command) = self
                .device_request("/mdm/connect", report.to_xml(), Some(&identity))
                .await;
            assert_eq!(code, StatusCode::OK);
            if command.is_empty() {
                return None;
            }
            let incoming = IncomingCommand::parse(&command).unwrap();
            if incoming.command.request_type != "DeviceInformation" {
                return Some(DeclarativeManagementCommand::parse(&command).unwrap());
            }
            report =
                CommandReport::result(UDID, CommandStatus::Acknowledged, &incoming.command_uuid);
            report.query_responses = Some(QueryResponses {
                device_name: Some("Lab Mac".into()),
                time_zone: Some("Europe/Paris".into()),
            });
        }
    }

    /// The declarations token the `tokens` endpoint gives the Mac now.
    pub async fn declarations_token(&self) -> Value {
        let (status, tokens) = self.ddm("tokens", None).await;
        assert_eq!(status, StatusCode::OK);
        json_body(&tokens)["SyncTokens"]["DeclarationsToken"].clone()
    }

    pub async fn enroll(&self) {
        for file in ["Authenticate.2.plist", "TokenUpdate.2.plist"] {
            let (status, body) = self.checkin(fixture(file)).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{file}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/nanomdm")
            .join(name),
    )
    .unwrap()
}

/// Stores a raw report of the device the way the status writer does, behind the server's back.
pub async fn insert_raw_report(pool: &sqlx::SqlitePool, received_at: &str, report: &Value) {
    sqlx::query("INSERT INTO status_reports (enrollment_id, received_at, body) VALUES (?, ?, ?)")
        .bind(UDID)
        .bind(received_at)
        .bind(report.to_string().into_bytes())
        .execute(pool)
        .await
        .unwrap();
}

pub fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}
