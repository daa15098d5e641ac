//! Waking devices: the `Pusher` port, and APNs over HTTP/2 (`{"mdm": PushMagic}`).

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use crate::db::PushInfo;

/// APNs production host.
pub const APNS_PRODUCTION: &str = "https://api.push.apple.com";
/// APNs sandbox host.
pub const APNS_SANDBOX: &str = "https://api.sandbox.push.apple.com";

/// The outcome of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The enrollment pushed.
    pub enrollment_id: String,
    /// None on success, else why it failed (APNs `reason`, or the transport error).
    pub error: Option<String>,
}

/// Sends wake-ups to enrollments.
#[async_trait]
pub trait Pusher: Send + Sync + 'static {
    /// Pushes every target; one outcome per target.
    async fn push(&self, targets: Vec<PushInfo>) -> Vec<PushOutcome>;
}

/// APNs over HTTP: `POST {base}/3/device/<hex token>` with the MDM push certificate as the TLS
/// client identity. The same code serves the lab, pointed at the simulator's push gateway.
#[derive(Clone, Debug)]
pub struct ApnsPusher {
    http: reqwest::Client,
    base_url: String,
    concurrency: usize,
    failures: Arc<std::sync::atomic::AtomicU64>,
}

/// Why a pusher could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up APNs: {0}")]
pub struct PushSetupError(String);

impl ApnsPusher {
    /// A pusher for Apple's APNs: `identity_pem` holds the MDM push certificate and its
    /// private key (PEM); `base_url` is [`APNS_PRODUCTION`] or [`APNS_SANDBOX`].
    pub fn apple(base_url: &str, identity_pem: &[u8]) -> Result<Self, PushSetupError> {
        let identity = reqwest::Identity::from_pem(identity_pem)
            .map_err(|e| PushSetupError(format!("push certificate: {e}")))?;
        // APNs is reached with the platform's trust store, as any server an admin runs.
        let builder = updraft_trust::client_builder(None, Duration::from_secs(30))
            .map_err(|e| PushSetupError(e.to_string()))?;
        Self::build(builder.identity(identity).http2_prior_knowledge(), base_url)
    }

    /// A pusher for a plain-HTTP gateway that speaks APNs' request shape (the lab's devices).
    pub fn gateway(base_url: &str) -> Result<Self, PushSetupError> {
        Self::build(reqwest::Client::builder(), base_url)
    }

    fn build(builder: reqwest::ClientBuilder, base_url: &str) -> Result<Self, PushSetupError> {
        let http = builder
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| PushSetupError(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            concurrency: 64,
            failures: Arc::default(),
        })
    }

    /// Pushes that failed after their retries.
    pub fn failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn push_one(&self, target: &PushInfo) -> Option<String> {
        // A pooled connection the peer has just closed fails at once; a new one usually works.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_push(target).await {
                Err(error) if attempt < 3 => tracing::debug!(%error, attempt, "push retried"),
                Err(error) => {
                    self.failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Some(error);
                }
                Ok(None) => return None,
                Ok(Some(refused)) => {
                    self.failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Some(refused);
                }
            }
        }
    }

    /// Err: the request did not complete (worth a retry). Ok(Some): APNs refused it.
    async fn try_push(&self, target: &PushInfo) -> Result<Option<String>, String> {
        let token: String = target.token.iter().map(|b| format!("{b:02x}")).collect();
        let body = serde_json::json!({ "mdm": target.push_magic }).to_string();
        let result = self
            .http
            .post(format!("{}/3/device/{token}", self.base_url))
            .header("content-type", "application/json")
            .header("apns-topic", &target.topic)
            .header("apns-push-type", "mdm")
            .header("apns-priority", "10")
            .body(body)
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => Ok(None),
            Ok(response) => {
                let status = response.status();
                let reason = response
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|body| body["reason"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                Ok(Some(format!("APNs answered {status} {reason}")))
            }
            Err(error) => Err(error.to_string()),
        }
    }
}

#[async_trait]
impl Pusher for ApnsPusher {
    async fn push(&self, targets: Vec<PushInfo>) -> Vec<PushOutcome> {
        let gate = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for target in targets {
            let pusher = self.clone();
            let gate = gate.clone();
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                let error = pusher.push_one(&target).await;
                PushOutcome {
                    enrollment_id: target.enrollment_id,
                    error,
                }
            });
        }
        let mut outcomes = Vec::new();
        while let Some(outcome) = tasks.join_next().await {
            if let Ok(outcome) = outcome {
                outcomes.push(outcome);
            }
        }
        outcomes
    }
}

/// A pusher that sends nothing: for a server whose devices poll.
#[derive(Debug, Default, Clone)]
pub struct NoPusher;

#[async_trait]
impl Pusher for NoPusher {
    async fn push(&self, targets: Vec<PushInfo>) -> Vec<PushOutcome> {
        targets
            .into_iter()
            .map(|t| PushOutcome {
                enrollment_id: t.enrollment_id,
                error: Some(
                    "no push certificate: the server was started without --apns-identity".into(),
                ),
            })
            .collect()
    }
}
