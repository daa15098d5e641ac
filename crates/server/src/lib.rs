//! A DDM server: what an Apple device talks to (MDM check-in, the command connection, the DDM
//! sync endpoints) and what a console talks to (a KMFDDM-compatible admin API, plus bulk calls).
//!
//! - Device side: `PUT /mdm/checkin`, `PUT /mdm/connect`, and `/ddm/{tokens, declaration-items,
//!   declaration/<type>/<id>, status}` with `X-Enrollment-ID` as NanoMDM's DDM forwarding sends
//!   them. Bad input is a 400 with the reason; a declaration not assigned is a 404; status is an
//!   empty 200 sent only after the report is committed. Never a 401 to a device.
//! - Admin side: `/v1/...` as KMFDDM, HTTP Basic `kmfddm:<api key>`, and `/v1/x-updraft/...`.
//! - Changes that affect enrollments queue a `DeclarativeManagement` command and push them.
#![deny(missing_docs)]

mod admin;
mod assignments;
pub mod db;
mod device;
pub mod identity;
pub mod listen;
pub mod profile;
pub mod push;
pub mod push_certificate;
pub mod secrets;
pub mod webhook;
pub mod writer;
mod writes;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use std::sync::Arc;
use std::time::Duration;
use updraft_ddm::StatusBounds;

pub use admin::updraft::StatusChange;
pub use assignments::Assignment;
pub use db::{Db, DbError, EnrollmentRecord, PushInfo};
pub use identity::DeviceTrust;
pub use push::{ApnsPusher, NoPusher, PushOutcome, Pusher};
pub use secrets::SealingKey;
use updraft_clock::SharedClock;
pub use webhook::{Enqueuer, WebhookConfig};

/// What the server accepts at most, and how long it waits. Over a limit a request is answered
/// 413, 400 or 408 with the reason, nothing of it is stored, and the server keeps serving.
/// Fixed limits beside these: property lists nest at most
/// [`updraft_ddm::checkin::MAX_PLIST_DEPTH`] levels, JSON at most 128 (serde_json's).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest check-in or command body.
    pub max_checkin_bytes: usize,
    /// Largest status report.
    pub max_status_bytes: usize,
    /// Largest admin API body.
    pub max_admin_bytes: usize,
    /// What one device's merged status keeps at most.
    pub status: StatusBounds,
    /// Merged statuses kept in memory, per generation of the writer's cache (two are
    /// kept): a larger fleet reporting at once costs reads of stored statuses beyond it.
    pub status_cache_generation: usize,
    /// A request's head must arrive within this; it is also how long an idle kept-alive
    /// connection stays open.
    pub header_timeout: Duration,
    /// A whole request, body and answer, must be done within this (408 after).
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen queue. Kept below the process's
    /// file-descriptor limit, so the database and the push client always find descriptors.
    pub max_connections: usize,
}

/// Descriptors kept for everything but client connections (database, logs, APNs, DNS).
const RESERVED_DESCRIPTORS: u64 = 128;

impl Limits {
    /// The connection cap that fits this process's descriptor limit: at most 4,096, and
    /// 128 below the limit.
    pub fn connections_for_descriptor_limit() -> usize {
        #[cfg(unix)]
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        #[cfg(not(unix))]
        let limit = 8192u64;
        let room = limit.saturating_sub(RESERVED_DESCRIPTORS).max(16);
        usize::try_from(room.min(4096)).unwrap_or(4096)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_checkin_bytes: 2 * 1024 * 1024,
            max_status_bytes: 1024 * 1024,
            max_admin_bytes: 16 * 1024 * 1024,
            status: StatusBounds::default(),
            status_cache_generation: 16_384,
            header_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(60),
            max_connections: Self::connections_for_descriptor_limit(),
        }
    }
}

/// How the DDM endpoints are reached by a NanoMDM in front (`/ddm/*` with `X-Enrollment-ID`).
#[derive(Debug, Clone, Default)]
pub enum DdmForwarding {
    /// Not served: devices reach DDM through their `DeclarativeManagement` check-ins.
    #[default]
    Off,
    /// Served to requests signed with NanoMDM's `-dm` HMAC key (`X-Hmac-Signature`).
    Signed(Vec<u8>),
    /// Served unsigned (`--insecure-ddm-forwarding`): anyone who reaches it is any device.
    Unsigned,
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) db: Db,
    pub(crate) writer: writer::Writer,
    pub(crate) clock: SharedClock,
    pub(crate) pusher: Arc<dyn Pusher>,
    pub(crate) sealing_key: SealingKey,
    pub(crate) api_key: Option<String>,
    pub(crate) forwarding: DdmForwarding,
    pub(crate) device_trust: Option<identity::DeviceTrust>,
    pub(crate) push_certificate: Option<push_certificate::PushCertificateInfo>,
    pub(crate) webhook: Option<WebhookConfig>,
    pub(crate) limits: Limits,
    /// For calls this server makes to others (NanoMDM's enqueue API, as a webhook companion).
    pub(crate) http: reqwest::Client,
}

/// How to build the server.
pub struct ServerConfig {
    /// The database.
    pub db: Db,
    /// The clock.
    pub clock: SharedClock,
    /// How devices are woken.
    pub pusher: Arc<dyn Pusher>,
    /// The key sealing bootstrap tokens.
    pub sealing_key: SealingKey,
    /// The admin API key; without one the admin API answers 403.
    pub api_key: Option<String>,
    /// Whether and how `/ddm/*` is served to a NanoMDM in front.
    pub forwarding: DdmForwarding,
    /// The device CAs; without them every device request is refused (400).
    pub device_trust: Option<identity::DeviceTrust>,
    /// The push certificate's topic and expiry, offered on the admin API.
    pub push_certificate: Option<push_certificate::PushCertificateInfo>,
    /// Take NanoMDM's webhook events at `POST /webhook` (the companion of a NanoHUB).
    pub webhook: Option<WebhookConfig>,
    /// Body limits.
    pub limits: Limits,
}

impl AppState {
    /// Builds the state and starts the writer (needs a Tokio runtime).
    pub fn new(config: ServerConfig) -> Self {
        Self {
            writer: writer::Writer::start(
                config.db.clone(),
                config.clock.clone(),
                config.limits.status_cache_generation,
                config.limits.status,
            ),
            db: config.db,
            clock: config.clock,
            pusher: config.pusher,
            sealing_key: config.sealing_key,
            api_key: config.api_key,
            forwarding: config.forwarding,
            device_trust: config.device_trust,
            push_certificate: config.push_certificate,
            webhook: config.webhook,
            limits: config.limits,
            http: updraft_trust::client(None, std::time::Duration::from_secs(30))
                .unwrap_or_default(),
        }
    }

    /// Commits and folds everything the writer holds, then stops it: call once the listener has
    /// stopped, before the process exits.
    pub async fn shut_down(&self) -> Result<(), String> {
        self.writer.stop().await
    }

    /// Records an Authenticate and binds the device to the certificate it enrolled with (none
    /// when a NanoMDM in front verified it, as for the webhook companion): a
    /// (re-)enrollment starts clean, and the writer forgets any status it held for it (it must
    /// not merge into the old one). If another device holds the certificate, nothing is
    /// written and that device's id is returned.
    pub(crate) async fn record_authenticate(
        &self,
        message: updraft_ddm::checkin::Authenticate,
        id: String,
        binding: Option<(String, identity::Identity)>,
    ) -> Result<Option<String>, DbError> {
        let (key, now) = (id.clone(), db::timestamp(self.clock.now()));
        let holder = self
            .writer
            .write("recording Authenticate", move |c| {
                if let Some((device_id, identity)) = &binding
                    && let Some(holder) = writes::bind_identity(c, device_id, identity, &now)?
                {
                    return Ok(Some(holder));
                }
                writes::authenticate(c, &message, &key, &now)?;
                Ok(None)
            })
            .await?;
        if holder.is_none() {
            self.writer.forget(id).await;
        }
        Ok(holder)
    }

    /// Records a TokenUpdate; whether it was the enrollment's first.
    pub(crate) async fn record_token_update(
        &self,
        message: updraft_ddm::checkin::TokenUpdate,
        id: String,
    ) -> Result<bool, DbError> {
        let now = db::timestamp(self.clock.now());
        self.writer
            .write("recording TokenUpdate", move |c| {
                writes::token_update(c, &message, &id, &now)
            })
            .await
    }

    /// Records a CheckOut.
    pub(crate) async fn record_check_out(&self, id: String) -> Result<(), DbError> {
        let now = db::timestamp(self.clock.now());
        self.writer
            .write("recording CheckOut", move |c| {
                writes::check_out(c, &id, &now)
            })
            .await
    }

    /// Queues a DeclarativeManagement command for each enrollment and pushes it. Returns the
    /// enrollments whose push failed, with the reason (APNs is best effort; the command waits for
    /// the device's next connection); a failure to queue is an error, so the caller answers with
    /// an error and nothing is lost.
    pub(crate) async fn notify(
        &self,
        ids: Vec<String>,
    ) -> Result<std::collections::BTreeMap<String, String>, DbError> {
        let mut failed = std::collections::BTreeMap::new();
        if ids.is_empty() {
            return Ok(failed);
        }
        let now = db::timestamp(self.clock.now());
        // In chunks, so reports and check-ins wait for no more than one of them.
        for chunk in ids.chunks(400) {
            let (chunk, now) = (chunk.to_vec(), now.clone());
            self.writer
                .write("queueing commands", move |connection| {
                    writes::queue_declarative_management(connection, &chunk, &now)
                })
                .await?;
        }
        let targets = self.db.push_info(&ids).await?;
        let mut unreachable: std::collections::BTreeSet<&String> = ids.iter().collect();
        for outcome in self.pusher.push(targets).await {
            unreachable.remove(&outcome.enrollment_id);
            if let Some(error) = outcome.error {
                tracing::warn!(enrollment = %outcome.enrollment_id, %error, "push failed");
                failed.insert(outcome.enrollment_id, error);
            }
        }
        // Enrolled without a push token yet (no TokenUpdate), or not enrolled at all.
        for id in unreachable {
            failed.insert(id.clone(), "the device has no push token yet".into());
        }
        Ok(failed)
    }
}

/// The whole server as a router, testable without a socket.
pub fn app(state: AppState) -> Router {
    let limits = state.limits;
    let device = Router::new()
        .route(
            "/mdm",
            put(device::single_endpoint).post(device::single_endpoint),
        )
        .route("/mdm/checkin", put(device::checkin).post(device::checkin))
        .route("/mdm/connect", put(device::connect).post(device::connect))
        .route(
            "/ddm/{*endpoint}",
            get(device::forwarded).put(device::forwarded),
        )
        .layer(DefaultBodyLimit::max(limits.max_checkin_bytes));
    let admin = Router::new()
        .route(
            "/v1/declarations",
            get(admin::declarations::list_declarations).put(admin::declarations::put_declaration),
        )
        .route(
            "/v1/declarations/{id}",
            get(admin::declarations::get_declaration)
                .delete(admin::declarations::delete_declaration),
        )
        .route(
            "/v1/declarations/{id}/touch",
            post(admin::declarations::touch_declaration)
                .put(admin::declarations::touch_declaration),
        )
        .route("/v1/sets", get(admin::declarations::list_sets))
        .route(
            "/v1/set-declarations/{set}",
            get(admin::declarations::get_set_declarations)
                .put(admin::declarations::put_set_declaration)
                .delete(admin::declarations::delete_set_declaration),
        )
        .route(
            "/v1/enrollment-sets/{id}",
            get(admin::declarations::get_enrollment_sets)
                .put(admin::declarations::put_enrollment_set)
                .delete(admin::declarations::delete_enrollment_set),
        )
        .route(
            "/v1/enrollment-sets-all/sets/{id}",
            delete(admin::declarations::delete_all_enrollment_sets),
        )
        .route(
            "/v1/enrollment-sets-all/{id}",
            delete(admin::declarations::delete_all_enrollment_sets),
        )
        .route(
            "/v1/declaration-status/{ids}",
            get(admin::status::declaration_status),
        )
        .route("/v1/status-report/{id}", get(admin::status::status_report))
        .route("/v1/status-errors/{ids}", get(admin::status::status_errors))
        .route("/v1/status-values/{ids}", get(admin::status::status_values))
        .route(
            "/v1/declaration-sets/{id}",
            get(admin::declarations::declaration_sets),
        )
        .route("/v1/notify", post(admin::notify::notify))
        .route(
            "/v1/x-updraft/enrollments",
            get(admin::updraft::enrollments),
        )
        .route(
            "/v1/x-updraft/status-changes",
            get(admin::updraft::status_changes),
        )
        .route(
            "/v1/x-updraft/assignments",
            get(admin::updraft::assignments),
        )
        .route(
            "/v1/x-updraft/push-certificate",
            get(admin::push_certificate),
        )
        .route(
            "/v1/x-updraft/enrollment-sets",
            put(admin::updraft::bulk_assign).delete(admin::updraft::bulk_unassign),
        )
        .layer(DefaultBodyLimit::max(limits.max_admin_bytes))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_api_key,
        ))
        .layer(axum::middleware::from_fn(admin::json_errors));
    let webhook = Router::new()
        .route("/webhook", post(webhook::receive))
        .layer(DefaultBodyLimit::max(limits.max_checkin_bytes * 2));
    Router::new()
        .route("/version", get(admin::version))
        .merge(webhook)
        .merge(device)
        .merge(admin)
        .fallback(admin::no_such_endpoint)
        .layer(axum::middleware::from_fn_with_state(
            limits.request_timeout,
            within_request_timeout,
        ))
        .with_state(state)
}

/// Answers 408 with the reason when a request (its body, above all) takes longer than the
/// limit: a slow client holds a connection, never a worker for ever.
async fn within_request_timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            axum::http::StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request was not done within {} s (a body sent too slowly?)",
                limit.as_secs()
            ),
        )
            .into_response(),
    }
}
