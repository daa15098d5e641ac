//! [`KmfddmClient`]: KMFDDM's admin API as NanoHUB, KMFDDM and `updraft serve` answer it
//! (measured against NanoHUB: `shared/reference/nanohub.md`), with Updraft's `/x-updraft` bulk
//! calls and status-changes feed where the server offers them.

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use updraft_ddm::Declaration;

use crate::{
    AssignOutcome, Assignment, AssignmentStore, ChangesPage, DeclarationStore, MdmError, Notifier,
    PushResult, ServerProfile, StatusSource,
};

/// A raw status report as the server kept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// The report's JSON, as the device sent it.
    pub body: Vec<u8>,
    /// `X-Status-Report-Index`: the server's counter of the report, when it keeps one (0 when
    /// the server does not number its reports, as NanoHUB's file storage).
    pub counter: i64,
    /// `Last-Modified`, as sent.
    pub last_modified: Option<String>,
}

/// A KMFDDM (or NanoHUB, or Updraft server) admin API client.
#[derive(Debug)]
pub struct KmfddmClient {
    http: reqwest::Client,
    profile: ServerProfile,
    root: String,
    /// Set once the server answered 404 to the bulk call: one-by-one from then on.
    no_bulk: AtomicBool,
}

/// The one HTTP method set the API uses.
#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Post => "POST",
            Self::Delete => "DELETE",
        }
    }
}

/// An answer the caller reads.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

impl KmfddmClient {
    /// A client for the server `profile` describes. TLS trusts the platform's store plus the
    /// profile's extra CA.
    pub fn new(profile: ServerProfile) -> Result<Self, MdmError> {
        let http = updraft_trust::client_builder(
            profile.extra_ca_pem.as_deref(),
            Duration::from_secs(120),
        )
        .map_err(|error| MdmError::Setup(error.to_string()))?
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|error| MdmError::Setup(format!("cannot build the HTTP client: {error}")))?;
        let root = profile.api_root();
        Ok(Self {
            http,
            profile,
            root,
            no_bulk: AtomicBool::new(false),
        })
    }

    /// A client for `updraft serve` (or the lab's server) at `base_url`.
    pub fn updraft(base_url: &str, api_key: &str) -> Result<Self, MdmError> {
        Self::new(ServerProfile::updraft(base_url, api_key))
    }

    /// The profile.
    pub fn profile(&self) -> &ServerProfile {
        &self.profile
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    /// Sends a request. 401/403 is [`MdmError::Unauthorized`]; any other status outside
    /// 2xx and 304 is [`MdmError::Status`], except a 404 when `absent_ok` (the call means
    /// "absent" then, as a missing declaration does).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        absent_ok: bool,
    ) -> Result<Answer, MdmError> {
        let url = self.url(path);
        let request = match method {
            Method::Get => self.http.get(&url),
            Method::Put => self.http.put(&url),
            Method::Post => self.http.post(&url),
            Method::Delete => self.http.delete(&url),
        }
        .basic_auth(&self.profile.api_user, Some(&self.profile.api_key));
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(body),
            None => request,
        };
        let unreachable = |error: reqwest::Error| MdmError::Unreachable {
            url: url.clone(),
            reason: updraft_trust::describe(&error),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(MdmError::Unauthorized {
                url: self.root.clone(),
                user: self.profile.api_user.clone(),
            });
        }
        let absent = status == StatusCode::NOT_FOUND && absent_ok;
        if !(status.is_success() || status == StatusCode::NOT_MODIFIED || absent) {
            return Err(MdmError::Status {
                method: method.name(),
                url,
                status: status.as_u16(),
                body: error_text(&body),
            });
        }
        Ok(Answer {
            status,
            body,
            headers,
        })
    }

    /// 204 (or 200) means changed, 304 unchanged (KMFDDM's code; its openapi.yaml has them
    /// swapped).
    fn changed(status: StatusCode) -> bool {
        status != StatusCode::NOT_MODIFIED
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

    /// A JSON list that KMFDDM writes as `null` when empty.
    fn list(&self, path: &str, bytes: &[u8]) -> Result<Vec<String>, MdmError> {
        parse_list(bytes).map_err(|reason| MdmError::Unexpected {
            url: self.url(path),
            reason,
        })
    }

    /// The sets of an enrollment (none for an unknown one).
    pub async fn enrollment_sets(&self, enrollment_id: &str) -> Result<Vec<String>, MdmError> {
        let path = format!("/enrollment-sets/{}", encode(enrollment_id));
        let answer = self.send(Method::Get, &path, None, true).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        self.list(&path, &answer.body)
    }

    /// The declarations of a set.
    pub async fn set_declarations(&self, set: &str) -> Result<Vec<String>, MdmError> {
        let path = format!("/set-declarations/{}", encode(set));
        let answer = self.send(Method::Get, &path, None, true).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        self.list(&path, &answer.body)
    }

    /// Every declaration's identifier.
    pub async fn declaration_ids(&self) -> Result<Vec<String>, MdmError> {
        let answer = self.send(Method::Get, "/declarations", None, false).await?;
        self.list("/declarations", &answer.body)
    }

    /// A declaration as the server holds it (with its ServerToken), if it exists.
    pub async fn declaration(&self, identifier: &str) -> Result<Option<Declaration>, MdmError> {
        let path = format!("/declarations/{}", encode(identifier));
        let answer = self.send(Method::Get, &path, None, true).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.json(&path, &answer.body).map(Some)
    }

    /// Every enrollment, a page at a time (Updraft's server only).
    pub async fn enrollments(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<crate::Enrollment>, MdmError> {
        let path = format!(
            "/x-updraft/enrollments?after={}&limit={limit}",
            encode(after)
        );
        let answer = self.send(Method::Get, &path, None, true).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(MdmError::Unsupported("an enrollment listing"));
        }
        self.json(&path, &answer.body)
    }

    /// Every (enrollment, set) assignment, all pages (Updraft's server only).
    pub async fn all_assignments(&self) -> Result<Vec<Assignment>, MdmError> {
        const PAGE: usize = 50_000;
        let mut all: Vec<Assignment> = Vec::new();
        loop {
            let after = all
                .last()
                .map(|a| a.enrollment_id.clone())
                .unwrap_or_default();
            let path = format!(
                "/x-updraft/assignments?after={}&limit={PAGE}",
                encode(&after)
            );
            let answer = self.send(Method::Get, &path, None, true).await?;
            if answer.status == StatusCode::NOT_FOUND {
                return Err(MdmError::Unsupported("an assignment listing"));
            }
            let page: Vec<Assignment> = self.json(&path, &answer.body)?;
            // Pages end on an enrollment boundary only when short; re-read the last one whole.
            match page.last().map(|a| a.enrollment_id.clone()) {
                Some(last) if page.len() == PAGE => {
                    all.extend(page.into_iter().filter(|a| a.enrollment_id != last));
                    let sets = self.enrollment_sets(&last).await?;
                    all.extend(sets.into_iter().map(|set| Assignment {
                        enrollment_id: last.clone(),
                        set,
                    }));
                }
                _ => {
                    all.extend(page);
                    return Ok(all);
                }
            }
        }
    }

    /// A raw status report of an enrollment, `index` 0 the newest (KMFDDM's `status-report`,
    /// whose `index` is required). `None` when the server has no such report: KMFDDM answers
    /// 404 (NanoHUB 500 "key not found") for an enrollment that never reported, and 500 for an
    /// index beyond what it keeps.
    pub async fn status_report(
        &self,
        enrollment_id: &str,
        index: u32,
    ) -> Result<Option<StoredReport>, MdmError> {
        let path = format!("/status-report/{}?index={index}", encode(enrollment_id));
        match self.send(Method::Get, &path, None, true).await {
            Ok(answer) if answer.status == StatusCode::NOT_FOUND => Ok(None),
            Ok(answer) => {
                let header = |name: &str| {
                    answer
                        .headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                Ok(Some(StoredReport {
                    counter: header("x-status-report-index")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    last_modified: header("last-modified"),
                    body: answer.body,
                }))
            }
            // NanoHUB: "key not found" for an enrollment with no report yet.
            Err(MdmError::Status {
                status: 500, body, ..
            }) if index > 0 || body.contains("not found") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// KMFDDM's `declaration-status` of one enrollment: per declaration identifier, whether the
    /// device holds it active and valid, and whether it reported the current token.
    pub async fn declaration_status(
        &self,
        enrollment_id: &str,
    ) -> Result<BTreeMap<String, DeclarationState>, MdmError> {
        let path = format!("/declaration-status/{}", encode(enrollment_id));
        let answer = self.send(Method::Get, &path, None, false).await?;
        let mut all: BTreeMap<String, Option<Vec<DeclarationState>>> =
            self.json(&path, &answer.body)?;
        Ok(all
            .remove(enrollment_id)
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .map(|state| (state.identifier.clone(), state))
            .collect())
    }

    async fn bulk(
        &self,
        method: Method,
        assignments: &[Assignment],
    ) -> Result<Option<AssignOutcome>, MdmError> {
        if self.no_bulk.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut outcome = AssignOutcome::default();
        for chunk in assignments.chunks(5000) {
            let body = serde_json::to_vec(&serde_json::json!({ "assignments": chunk }))
                .map_err(|e| MdmError::Setup(e.to_string()))?;
            let path = "/x-updraft/enrollment-sets";
            let answer = self.send(method, path, Some(body), true).await?;
            if answer.status == StatusCode::NOT_FOUND {
                self.no_bulk.store(true, Ordering::Relaxed);
                return Ok(None);
            }
            #[derive(Deserialize)]
            struct Bulk {
                changed: u64,
                #[serde(default)]
                push_failed: BTreeMap<String, String>,
            }
            let bulk: Bulk = self.json(path, &answer.body)?;
            outcome.changed += bulk.changed;
            outcome.push_failed.extend(bulk.push_failed);
        }
        Ok(Some(outcome))
    }

    /// KMFDDM's own calls, one assignment at a time. NanoHUB stores the change, then pushes, and
    /// answers 500 when the push fails: such an answer is read back, and a change that is there
    /// counts as made with its push failed, so it is neither lost nor sent again.
    async fn one_by_one(
        &self,
        method: Method,
        assignments: &[Assignment],
    ) -> Result<AssignOutcome, MdmError> {
        let mut outcome = AssignOutcome::default();
        for assignment in assignments {
            let path = format!(
                "/enrollment-sets/{}?set={}",
                encode(&assignment.enrollment_id),
                encode(&assignment.set)
            );
            match self.send(method, &path, None, false).await {
                Ok(answer) => outcome.changed += u64::from(Self::changed(answer.status)),
                Err(MdmError::Status {
                    status: 500, body, ..
                }) => {
                    let held = self
                        .enrollment_sets(&assignment.enrollment_id)
                        .await?
                        .contains(&assignment.set);
                    let wanted = matches!(method, Method::Put);
                    if held != wanted {
                        return Err(MdmError::Status {
                            method: method.name(),
                            url: self.url(&path),
                            status: 500,
                            body,
                        });
                    }
                    outcome.changed += 1;
                    outcome
                        .push_failed
                        .insert(assignment.enrollment_id.clone(), push_reason(&body));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(outcome)
    }
}

/// One declaration's state in KMFDDM's `declaration-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeclarationState {
    /// The declaration.
    pub identifier: String,
    /// Active on the device.
    #[serde(default)]
    pub active: bool,
    /// `valid`, `invalid` or `unknown`.
    #[serde(default)]
    pub valid: String,
    /// The device reported the server's current token.
    #[serde(default)]
    pub current: bool,
}

#[async_trait]
impl DeclarationStore for KmfddmClient {
    async fn put_declaration(&self, declaration: &Declaration) -> Result<bool, MdmError> {
        let body = serde_json::to_vec(declaration).map_err(|e| MdmError::Setup(e.to_string()))?;
        let answer = self
            .send(Method::Put, "/declarations", Some(body), false)
            .await?;
        Ok(Self::changed(answer.status))
    }

    async fn add_to_set(&self, set: &str, declaration_id: &str) -> Result<bool, MdmError> {
        let path = format!(
            "/set-declarations/{}?declaration={}",
            encode(set),
            encode(declaration_id)
        );
        match self.send(Method::Put, &path, None, false).await {
            Ok(answer) => Ok(Self::changed(answer.status)),
            // Stored, then its notify failed (NanoHUB without a push certificate): read back.
            Err(MdmError::Status {
                status: 500, body, ..
            }) if self
                .set_declarations(set)
                .await?
                .iter()
                .any(|id| id == declaration_id) =>
            {
                tracing::warn!(set, declaration_id, reason = %body, "declaration added to its set, but its devices were not pushed");
                Ok(true)
            }
            Err(error) => Err(error),
        }
    }

    async fn touch(&self, declaration_id: &str) -> Result<(), MdmError> {
        let path = format!("/declarations/{}/touch", encode(declaration_id));
        self.send(Method::Post, &path, None, false)
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl AssignmentStore for KmfddmClient {
    async fn assign(&self, assignments: &[Assignment]) -> Result<AssignOutcome, MdmError> {
        match self.bulk(Method::Put, assignments).await? {
            Some(outcome) => Ok(outcome),
            None => self.one_by_one(Method::Put, assignments).await,
        }
    }

    async fn unassign(&self, assignments: &[Assignment]) -> Result<AssignOutcome, MdmError> {
        match self.bulk(Method::Delete, assignments).await? {
            Some(outcome) => Ok(outcome),
            None => self.one_by_one(Method::Delete, assignments).await,
        }
    }
}

#[async_trait]
impl Notifier for KmfddmClient {
    /// KMFDDM's `notify` queues the command for every id and answers 500 when a push fails
    /// (all of a call's ids then count as failed, since the answer does not say which). Updraft's
    /// server answers 200 with `push_failed` per id instead.
    async fn push(
        &self,
        enrollment_ids: &[String],
    ) -> Result<BTreeMap<String, PushResult>, MdmError> {
        let mut results = BTreeMap::new();
        for chunk in enrollment_ids.chunks(200) {
            let query: Vec<String> = chunk
                .iter()
                .map(|id| format!("id={}", encode(id)))
                .collect();
            let path = format!("/notify?{}", query.join("&"));
            let failed: BTreeMap<String, String> =
                match self.send(Method::Post, &path, None, false).await {
                    Ok(answer) if answer.body.is_empty() => BTreeMap::new(),
                    Ok(answer) => {
                        #[derive(Deserialize)]
                        struct Pushed {
                            #[serde(default)]
                            push_failed: BTreeMap<String, String>,
                        }
                        self.json::<Pushed>(&path, &answer.body)?.push_failed
                    }
                    Err(MdmError::Status {
                        status: 500, body, ..
                    }) => {
                        let reason = push_reason(&body);
                        chunk
                            .iter()
                            .map(|id| (id.clone(), reason.clone()))
                            .collect()
                    }
                    Err(error) => return Err(error),
                };
            for id in chunk {
                let result = match failed.get(id) {
                    Some(reason) => PushResult::Failed(reason.clone()),
                    None => PushResult::Sent,
                };
                results.insert(id.clone(), result);
            }
        }
        Ok(results)
    }

    /// Updraft's `/x-updraft/push-certificate`: a 404 (a KMFDDM, or a server without a
    /// certificate) is "not known".
    async fn push_certificate(&self) -> Result<Option<crate::PushCertificateStatus>, MdmError> {
        let path = "/x-updraft/push-certificate";
        let answer = self.send(Method::Get, path, None, true).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.json(path, &answer.body).map(Some)
    }
}

#[async_trait]
impl StatusSource for KmfddmClient {
    async fn status_changes(&self, after: i64, limit: u32) -> Result<ChangesPage, MdmError> {
        let path = format!("/x-updraft/status-changes?after={after}&limit={limit}");
        let answer = self.send(Method::Get, &path, None, true).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(MdmError::Unsupported(
                "the status-changes feed (Updraft's server or its webhook companion): use the companion or polling",
            ));
        }
        self.json(&path, &answer.body)
    }
}

/// A list of ids, as KMFDDM writes it: a JSON array, or `null` when empty.
fn parse_list(bytes: &[u8]) -> Result<Vec<String>, String> {
    serde_json::from_slice::<Option<Vec<String>>>(bytes)
        .map(Option::unwrap_or_default)
        .map_err(|e| e.to_string())
}

/// The text of an error answer: KMFDDM's `{"error": "..."}` unwrapped, else the body, cut short.
fn error_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct JsonError {
        error: String,
    }
    let text = match serde_json::from_slice::<JsonError>(body) {
        Ok(json) => json.error,
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    text.chars().take(500).collect()
}

/// What a push failure says to an admin: NanoHUB's "retrieving push cert for topic" is a missing
/// push certificate.
fn push_reason(body: &str) -> String {
    if body.contains("push cert") {
        format!("no push certificate on the server ({body})")
    } else {
        body.to_owned()
    }
}

/// Everything but RFC 3986's unreserved characters is escaped, so an id is one path segment
/// or one query value whatever it holds (`/`, `?`, `&`, spaces).
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a path segment or query value.
pub(crate) fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_one_path_segment_whatever_it_holds() {
        assert_eq!(encode("a b/c?d&é~x-y.z_"), "a%20b%2Fc%3Fd%26%C3%A9~x-y.z_");
    }

    #[test]
    fn kmfddm_lists_may_be_null_and_errors_are_unwrapped() {
        assert_eq!(parse_list(b"null"), Ok(Vec::new()));
        assert_eq!(
            parse_list(br#"["a","b"]"#),
            Ok(vec!["a".into(), "b".into()])
        );
        assert!(parse_list(b"{}").is_err());
        assert_eq!(error_text(br#"{"error":"empty index"}"#), "empty index");
        assert!(push_reason("retrieving push cert for topic x").starts_with("no push certificate"));
    }
}
