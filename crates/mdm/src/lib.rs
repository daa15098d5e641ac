//! The console's port to a DDM server ([`MdmBackend`]) and its first implementation, an HTTP client
//! for the KMFDDM admin API ([`KmfddmClient`]), so Updraft drives its own server and an existing
//! NanoHUB alike. Where the server offers Updraft's `/v1/x-updraft` calls (bulk assignment, the
//! status-changes feed), the client uses them; otherwise it falls back to KMFDDM's own calls.
#![deny(missing_docs)]

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::time::Duration;

use updraft_ddm::Declaration;

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
    /// The server refused the API key.
    #[error("the DDM server at {0} refused the API key (HTTP 401/403): check the key in Settings")]
    Unauthorized(String),
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
}

/// One enrollment-set assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The enrollment.
    pub enrollment_id: String,
    /// The set.
    pub set: String,
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
    /// Device name.
    #[serde(default)]
    pub device_name: Option<String>,
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

/// What the console needs from a DDM server.
#[async_trait]
pub trait MdmBackend: Send + Sync {
    /// Creates or replaces a declaration; true if it changed.
    async fn put_declaration(&self, declaration: &Declaration) -> Result<bool, MdmError>;
    /// Adds a declaration to a set; true if it changed.
    async fn add_to_set(&self, set: &str, declaration_id: &str) -> Result<bool, MdmError>;
    /// Assigns sets to enrollments; the server pushes the ones that changed. Returns how many changed.
    async fn assign(&self, assignments: &[Assignment]) -> Result<u64, MdmError>;
    /// Unassigns; the server pushes the ones that changed.
    async fn unassign(&self, assignments: &[Assignment]) -> Result<u64, MdmError>;
    /// Bumps a declaration's token and pushes its devices, so they fetch it again.
    async fn touch(&self, declaration_id: &str) -> Result<(), MdmError>;
    /// Pushes enrollments to sync.
    async fn push(&self, enrollment_ids: &[String]) -> Result<(), MdmError>;
    /// Enrollments whose status or enrollment changed after `after`.
    async fn status_changes(&self, after: i64, limit: u32) -> Result<ChangesPage, MdmError>;
}

/// A KMFDDM (or NanoHUB, or Updraft server) admin API client.
#[derive(Debug, Clone)]
pub struct KmfddmClient {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

impl KmfddmClient {
    /// A client for the server at `base_url` (`http://host:port`) with its API key.
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, MdmError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|error| MdmError::Unreachable {
                url: base_url.into(),
                reason: error.to_string(),
            })?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), MdmError> {
        let url = self.url(path);
        let request = match method {
            "GET" => self.http.get(&url),
            "PUT" => self.http.put(&url),
            "POST" => self.http.post(&url),
            _ => self.http.delete(&url),
        }
        .basic_auth("kmfddm", Some(&self.api_key));
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(body),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|error| MdmError::Unreachable {
                url: url.clone(),
                reason: error.to_string(),
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| MdmError::Unreachable {
                url: url.clone(),
                reason: error.to_string(),
            })?
            .to_vec();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(MdmError::Unauthorized(self.base.clone()));
        }
        if !(status.is_success()
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::NOT_FOUND)
        {
            return Err(MdmError::Status {
                method,
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            });
        }
        Ok((status, bytes))
    }

    /// 204 means changed, 304 unchanged (KMFDDM's code; its openapi.yaml has them swapped).
    fn changed(
        &self,
        method: &'static str,
        path: &str,
        status: StatusCode,
    ) -> Result<bool, MdmError> {
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_MODIFIED => Ok(false),
            other => Err(MdmError::Status {
                method,
                url: self.url(path),
                status: other.as_u16(),
                body: String::new(),
            }),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        bytes: &[u8],
    ) -> Result<T, MdmError> {
        serde_json::from_slice(bytes).map_err(|error| MdmError::Unexpected {
            url: self.url(path),
            reason: error.to_string(),
        })
    }

    /// The sets of an enrollment.
    pub async fn enrollment_sets(&self, enrollment_id: &str) -> Result<Vec<String>, MdmError> {
        let path = format!("/v1/enrollment-sets/{}", encode(enrollment_id));
        let (_, body) = self.send("GET", &path, None).await?;
        self.json(&path, &body)
    }

    /// A declaration as the server holds it (with its ServerToken), if it exists.
    pub async fn declaration(&self, identifier: &str) -> Result<Option<Declaration>, MdmError> {
        let path = format!("/v1/declarations/{}", encode(identifier));
        let (status, body) = self.send("GET", &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.json(&path, &body).map(Some)
    }

    /// Every enrollment, a page at a time (Updraft's server).
    pub async fn enrollments(&self, after: &str, limit: u32) -> Result<Vec<Enrollment>, MdmError> {
        let path = format!(
            "/v1/x-updraft/enrollments?after={}&limit={limit}",
            encode(after)
        );
        let (status, body) = self.send("GET", &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Err(MdmError::Unsupported("an enrollment listing"));
        }
        self.json(&path, &body)
    }

    /// Every (enrollment, set) assignment, all pages (Updraft's server).
    pub async fn all_assignments(&self) -> Result<Vec<Assignment>, MdmError> {
        let mut all: Vec<Assignment> = Vec::new();
        loop {
            let after = all
                .last()
                .map(|a| a.enrollment_id.clone())
                .unwrap_or_default();
            let path = format!(
                "/v1/x-updraft/assignments?after={}&limit=50000",
                encode(&after)
            );
            let (status, body) = self.send("GET", &path, None).await?;
            if status == StatusCode::NOT_FOUND {
                return Err(MdmError::Unsupported("an assignment listing"));
            }
            let page: Vec<Assignment> = self.json(&path, &body)?;
            // Pages end on an enrollment boundary only when short; re-read the last one whole.
            let full = page.len() == 50_000;
            if let (true, Some(last)) = (full, page.last().map(|a| a.enrollment_id.clone())) {
                all.extend(page.into_iter().filter(|a| a.enrollment_id != last));
                let path = format!("/v1/enrollment-sets/{}", encode(&last));
                let (_, body) = self.send("GET", &path, None).await?;
                let sets: Vec<String> = self.json(&path, &body)?;
                all.extend(sets.into_iter().map(|set| Assignment {
                    enrollment_id: last.clone(),
                    set,
                }));
            } else {
                all.extend(page);
                return Ok(all);
            }
        }
    }

    /// The newest raw status report of an enrollment (KMFDDM `status-report`).
    pub async fn status_report(&self, enrollment_id: &str) -> Result<Option<Value>, MdmError> {
        let path = format!("/v1/status-report/{}", encode(enrollment_id));
        let (status, body) = self.send("GET", &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.json(&path, &body).map(Some)
    }

    async fn bulk(
        &self,
        method: &'static str,
        assignments: &[Assignment],
    ) -> Result<Option<u64>, MdmError> {
        let mut total = 0;
        for chunk in assignments.chunks(5000) {
            let body = serde_json::to_vec(&serde_json::json!({ "assignments": chunk }))
                .unwrap_or_default();
            let path = "/v1/x-updraft/enrollment-sets";
            let (status, bytes) = self.send(method, path, Some(body)).await?;
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let answer: Value = self.json(path, &bytes)?;
            total += answer["changed"].as_u64().unwrap_or(0);
        }
        Ok(Some(total))
    }

    async fn one_by_one(
        &self,
        method: &'static str,
        assignments: &[Assignment],
    ) -> Result<u64, MdmError> {
        let mut changed = 0;
        for assignment in assignments {
            let path = format!(
                "/v1/enrollment-sets/{}?set={}",
                encode(&assignment.enrollment_id),
                encode(&assignment.set)
            );
            let (status, _) = self.send(method, &path, None).await?;
            if self.changed(method, &path, status)? {
                changed += 1;
            }
        }
        Ok(changed)
    }
}

#[async_trait]
impl MdmBackend for KmfddmClient {
    async fn put_declaration(&self, declaration: &Declaration) -> Result<bool, MdmError> {
        let body = serde_json::to_vec(declaration).unwrap_or_default();
        let (status, _) = self.send("PUT", "/v1/declarations", Some(body)).await?;
        self.changed("PUT", "/v1/declarations", status)
    }

    async fn add_to_set(&self, set: &str, declaration_id: &str) -> Result<bool, MdmError> {
        let path = format!(
            "/v1/set-declarations/{}?declaration={}",
            encode(set),
            encode(declaration_id)
        );
        let (status, _) = self.send("PUT", &path, None).await?;
        self.changed("PUT", &path, status)
    }

    async fn assign(&self, assignments: &[Assignment]) -> Result<u64, MdmError> {
        match self.bulk("PUT", assignments).await? {
            Some(changed) => Ok(changed),
            None => self.one_by_one("PUT", assignments).await,
        }
    }

    async fn unassign(&self, assignments: &[Assignment]) -> Result<u64, MdmError> {
        match self.bulk("DELETE", assignments).await? {
            Some(changed) => Ok(changed),
            None => self.one_by_one("DELETE", assignments).await,
        }
    }

    async fn touch(&self, declaration_id: &str) -> Result<(), MdmError> {
        let path = format!("/v1/declarations/{}/touch", encode(declaration_id));
        self.send("POST", &path, None).await.map(|_| ())
    }

    async fn push(&self, enrollment_ids: &[String]) -> Result<(), MdmError> {
        for chunk in enrollment_ids.chunks(200) {
            let query: Vec<String> = chunk
                .iter()
                .map(|id| format!("id={}", encode(id)))
                .collect();
            self.send("POST", &format!("/v1/notify?{}", query.join("&")), None)
                .await?;
        }
        Ok(())
    }

    async fn status_changes(&self, after: i64, limit: u32) -> Result<ChangesPage, MdmError> {
        let path = format!("/v1/x-updraft/status-changes?after={after}&limit={limit}");
        let (status, body) = self.send("GET", &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Err(MdmError::Unsupported(
                "the status-changes feed (GET /v1/x-updraft/status-changes)",
            ));
        }
        self.json(&path, &body)
    }
}

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
