//! The console's ports to a DDM server, small and role-named so a deployment combines them:
//! [`DeclarationStore`] (declarations and sets), [`AssignmentStore`] (which enrollment has which
//! set), [`StatusSource`] (what devices report) and [`Notifier`] (pushes). [`MdmBackend`] is any
//! one value offering all four; [`Deployment`] builds one from separate parts, for example
//! declarations and assignments on NanoHUB and status from Updraft's webhook companion.
//!
//! Implementations: [`KmfddmClient`] (KMFDDM's admin API, as NanoHUB, KMFDDM and `updraft serve`
//! answer it, with Updraft's `/x-updraft` calls where offered), [`PollingStatusSource`] (status
//! read back from KMFDDM's `status-report` for a list of enrollments), and [`fake::FakeServer`]
//! (in memory, for the console's own tests).
#![deny(missing_docs)]

mod client;
pub mod conformance;
pub mod fake;
mod polling;
mod profile;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;

use updraft_ddm::Declaration;

pub use client::KmfddmClient;
pub use polling::{PollingStatusSource, parse_enrollment_list};
pub use profile::{Preset, ServerProfile};

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum MdmError {
    /// The request did not get an answer.
    #[error("cannot reach the DDM server at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The cause.
        reason: String,
    },
    /// The server refused the user or the API key.
    #[error(
        "the DDM server at {url} refused user {user:?} with this API key (HTTP 401/403): check the key, and the user (NanoHUB: nanohub, KMFDDM and updraft serve: kmfddm)"
    )]
    Unauthorized {
        /// The API root.
        url: String,
        /// The HTTP Basic user sent.
        user: String,
    },
    /// The server answered with an error.
    #[error("{method} {url} answered HTTP {status}: {body}")]
    Status {
        /// The method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The server's error text.
        body: String,
    },
    /// The answer was not what the API documents.
    #[error("{url} answered something unexpected: {reason}")]
    Unexpected {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The server lacks a call Updraft needs.
    #[error("the DDM server does not offer {0}")]
    Unsupported(&'static str),
    /// The client could not be set up (TLS, a bad address).
    #[error("{0}")]
    Setup(String),
}

/// One enrollment-set assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The enrollment.
    pub enrollment_id: String,
    /// The set.
    pub set: String,
}

/// Whether a push left the server for a device, as the server tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "reason", rename_all = "snake_case")]
pub enum PushResult {
    /// The server handed the push to APNs (or its gateway) without an error.
    Sent,
    /// The push did not go out: the server's or APNs's reason ("no push certificate", ...).
    /// The command stays queued for the device's next connection.
    Failed(String),
}

/// What an assignment call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignOutcome {
    /// Assignments that changed on the server.
    pub changed: u64,
    /// Enrollments whose change is stored but whose push failed, with the reason. Every other
    /// changed enrollment was pushed.
    pub push_failed: BTreeMap<String, String>,
}

impl AssignOutcome {
    /// The push result of one enrollment of the call.
    pub fn push_of(&self, enrollment_id: &str) -> PushResult {
        match self.push_failed.get(enrollment_id) {
            Some(reason) => PushResult::Failed(reason.clone()),
            None => PushResult::Sent,
        }
    }
}

/// An enrollment as the server knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The enrollment id.
    pub id: String,
    /// Serial number.
    #[serde(default)]
    pub serial_number: Option<String>,
    /// Model identifier.
    #[serde(default)]
    pub product_name: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Device name (Authenticate's `DeviceName`, or a later `DeviceInformation` answer).
    #[serde(default)]
    pub device_name: Option<String>,
    /// The device's IANA time zone, from a `DeviceInformation` answer.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// OS version at enrollment.
    #[serde(default)]
    pub os_version: Option<String>,
    /// Build at enrollment.
    #[serde(default)]
    pub build_version: Option<String>,
    /// When it enrolled.
    #[serde(default)]
    pub enrolled_at: Option<String>,
    /// Whether it can be pushed.
    #[serde(default)]
    pub push_ready: bool,
    /// When it checked out.
    #[serde(default)]
    pub checked_out_at: Option<String>,
    /// Last contact.
    #[serde(default)]
    pub last_seen_at: Option<String>,
    /// Whether a bootstrap token is escrowed.
    #[serde(default)]
    pub bootstrap_token_escrowed: bool,
    /// When the device last asked for its bootstrap token.
    #[serde(default)]
    pub bootstrap_token_requested_at: Option<String>,
    /// Change cursor.
    #[serde(default)]
    pub seq: i64,
}

/// One entry of the status-changes feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusChange {
    /// The enrollment.
    pub enrollment: Enrollment,
    /// Its merged status as a full report (Apple's JSON), if it has reported: left as text for
    /// the reader to parse once into what it needs.
    pub status: Option<Box<RawValue>>,
}

/// A page of the feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangesPage {
    /// Changes, oldest first.
    pub changes: Vec<StatusChange>,
    /// The cursor for the next call.
    pub next: i64,
}

/// Declarations and the sets that group them.
#[async_trait]
pub trait DeclarationStore: Send + Sync {
    /// Creates or replaces a declaration; true if it changed.
    async fn put_declaration(&self, declaration: &Declaration) -> Result<bool, MdmError>;
    /// Adds a declaration to a set; true if it changed. A change the server stored but could not
    /// push to the set's enrollments counts as made.
    async fn add_to_set(&self, set: &str, declaration_id: &str) -> Result<bool, MdmError>;
    /// Bumps a declaration's token and pushes its devices, so they fetch it again.
    async fn touch(&self, declaration_id: &str) -> Result<(), MdmError>;
}

/// Which enrollment has which set.
#[async_trait]
pub trait AssignmentStore: Send + Sync {
    /// Assigns sets to enrollments; the server pushes the ones that changed.
    async fn assign(&self, assignments: &[Assignment]) -> Result<AssignOutcome, MdmError>;
    /// Unassigns; the server pushes the ones that changed.
    async fn unassign(&self, assignments: &[Assignment]) -> Result<AssignOutcome, MdmError>;
}

/// What devices report: their enrollments and merged statuses, as a feed with a cursor.
#[async_trait]
pub trait StatusSource: Send + Sync {
    /// Enrollments whose status or enrollment changed after `after`.
    async fn status_changes(&self, after: i64, limit: u32) -> Result<ChangesPage, MdmError>;

    /// Whether enrollments carry whether a bootstrap token is escrowed. A source that cannot
    /// know (polling a stock KMFDDM) says no, so the console raises no alert for a token it
    /// only failed to see.
    fn knows_bootstrap_escrow(&self) -> bool {
        true
    }
}

/// The server's APNs push certificate, as far as the console needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushCertificateStatus {
    /// The APNs topic.
    pub topic: String,
    /// When it expires.
    pub not_after: DateTime<Utc>,
}

/// Pushes.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Pushes enrollments to sync; one result per enrollment.
    async fn push(
        &self,
        enrollment_ids: &[String],
    ) -> Result<BTreeMap<String, PushResult>, MdmError>;

    /// The push certificate the server pushes with, if it says (Updraft's server does;
    /// NanoMDM and KMFDDM do not).
    async fn push_certificate(&self) -> Result<Option<PushCertificateStatus>, MdmError> {
        Ok(None)
    }
}

/// Everything the console needs from a DDM server.
pub trait MdmBackend: DeclarationStore + AssignmentStore + StatusSource + Notifier {}

impl<T: DeclarationStore + AssignmentStore + StatusSource + Notifier> MdmBackend for T {}

/// A backend assembled from separate ports.
#[derive(Clone)]
pub struct Deployment {
    /// Declarations and sets.
    pub declarations: Arc<dyn DeclarationStore>,
    /// Assignments.
    pub assignments: Arc<dyn AssignmentStore>,
    /// Status.
    pub status: Arc<dyn StatusSource>,
    /// Pushes.
    pub notifier: Arc<dyn Notifier>,
}

impl Deployment {
    /// One server for everything.
    pub fn single<T: MdmBackend + 'static>(server: Arc<T>) -> Self {
        Self {
            declarations: server.clone(),
            assignments: server.clone(),
            status: server.clone(),
            notifier: server,
        }
    }

    /// One server for declarations, assignments and pushes, another source for status.
    pub fn with_status<T: MdmBackend + 'static>(
        server: Arc<T>,
        status: Arc<dyn StatusSource>,
    ) -> Self {
        Self {
            status,
            ..Self::single(server)
        }
    }
}

#[async_trait]
impl DeclarationStore for Deployment {
    async fn put_declaration(&self, declaration: &Declaration) -> Result<bool, MdmError> {
        self.declarations.put_declaration(declaration).await
    }
    async fn add_to_set(&self, set: &str, declaration_id: &str) -> Result<bool, MdmError> {
        self.declarations.add_to_set(set, declaration_id).await
    }
    async fn touch(&self, declaration_id: &str) -> Result<(), MdmError> {
        self.declarations.touch(declaration_id).await
    }
}

#[async_trait]
impl AssignmentStore for Deployment {
    async fn assign(&self, assignments: &[Assignment]) -> Result<AssignOutcome, MdmError> {
        self.assignments.assign(assignments).await
    }
    async fn unassign(&self, assignments: &[Assignment]) -> Result<AssignOutcome, MdmError> {
        self.assignments.unassign(assignments).await
    }
}

#[async_trait]
impl StatusSource for Deployment {
    async fn status_changes(&self, after: i64, limit: u32) -> Result<ChangesPage, MdmError> {
        self.status.status_changes(after, limit).await
    }

    fn knows_bootstrap_escrow(&self) -> bool {
        self.status.knows_bootstrap_escrow()
    }
}

#[async_trait]
impl Notifier for Deployment {
    async fn push(
        &self,
        enrollment_ids: &[String],
    ) -> Result<BTreeMap<String, PushResult>, MdmError> {
        self.notifier.push(enrollment_ids).await
    }

    async fn push_certificate(&self) -> Result<Option<PushCertificateStatus>, MdmError> {
        self.notifier.push_certificate().await
    }
}
