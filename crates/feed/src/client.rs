//! Fetching the lookup service (rustls trusting only Apple's root) and SOFA's feeds (public
//! roots): timeouts, a size cap, `If-None-Match`, retries that honour `Retry-After`, and saved
//! copies replaced only by a good answer.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH, RETRY_AFTER};

use crate::sofa::SofaFeed;
use crate::{FeedError, LookupResponse, Platform};

/// Apple's Software Lookup Service.
pub const DEFAULT_URL: &str = "https://gdmf.apple.com/v2/pmv";

/// Apple Root CA (2006), the only anchor gdmf.apple.com chains to. Public trust stores do not
/// carry it, and trusting them as well would let any public CA vouch for Apple's feed.
pub const APPLE_ROOT_CA_PEM: &[u8] = include_bytes!("../certs/AppleRootCA_2006.pem");

/// How the client behaves; the defaults suit gdmf.apple.com.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Where to fetch from.
    pub url: String,
    /// PEM trust anchors; the only roots the client accepts.
    pub trust_anchors_pem: Vec<u8>,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Largest body accepted. Real responses are about 150 KB.
    pub max_body_bytes: usize,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Pause before retrying a server error or a failed connection.
    pub retry_delay: Duration,
    /// The longest `Retry-After` honoured; a longer one ends the fetch with an error.
    pub max_retry_after: Duration,
    /// Trust the platform's roots as well as `trust_anchors_pem` (SOFA, on a public CA); the
    /// lookup service trusts Apple's root alone.
    pub platform_roots: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            trust_anchors_pem: APPLE_ROOT_CA_PEM.to_vec(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 8 * 1024 * 1024,
            max_attempts: 3,
            retry_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
            platform_roots: false,
        }
    }
}

impl ClientOptions {
    /// For one of SOFA's feeds at `url`: public roots, a larger body (macOS' is about 500 KB).
    pub fn sofa(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            trust_anchors_pem: Vec::new(),
            platform_roots: true,
            max_body_bytes: 32 * 1024 * 1024,
            ..Self::default()
        }
    }
}

/// SOFA's feeds Updraft reads, and the file each is saved in beside the console's cache.
pub const SOFA_FEEDS: [(Platform, &str, &str); 2] = [
    (
        Platform::MacOs,
        "https://sofafeed.macadmins.io/v2/macos_data_feed.json",
        "sofa-macos.json",
    ),
    (
        Platform::Ios,
        "https://sofafeed.macadmins.io/v2/ios_data_feed.json",
        "sofa-ios.json",
    ),
];

/// What a fetch brought, before it is read.
#[derive(Debug)]
pub enum RawOutcome {
    /// `304 Not Modified`.
    NotModified,
    /// A body.
    Fetched {
        /// The body as received.
        body: Vec<u8>,
        /// The `ETag`, if the server sent one.
        etag: Option<String>,
    },
}

/// What a fetch brought.
#[derive(Debug)]
pub enum FetchOutcome {
    /// `304 Not Modified`: the copy whose etag was sent is current.
    NotModified,
    /// A new, non-empty, parsed response.
    Fetched {
        /// The parsed response.
        response: LookupResponse,
        /// The body as received.
        body: Vec<u8>,
        /// The `ETag`, if the server sent one.
        etag: Option<String>,
    },
}

/// A lookup-service client.
#[derive(Debug, Clone)]
pub struct FeedClient {
    http: reqwest::Client,
    options: ClientOptions,
}

impl FeedClient {
    /// A client for gdmf.apple.com.
    pub fn new() -> Result<Self, FeedError> {
        Self::with_options(ClientOptions::default())
    }

    /// A client with its own options (another URL, other anchors, other limits).
    pub fn with_options(options: ClientOptions) -> Result<Self, FeedError> {
        if options.platform_roots {
            let extra = (!options.trust_anchors_pem.is_empty())
                .then_some(options.trust_anchors_pem.as_slice());
            let http = updraft_trust::client_builder(extra, options.request_timeout)
                .map_err(|error| FeedError::Client(error.to_string()))?
                .connect_timeout(options.connect_timeout)
                .redirect(reqwest::redirect::Policy::limited(3))
                .build()
                .map_err(|error| FeedError::Client(error.to_string()))?;
            return Ok(Self { http, options });
        }
        let anchors =
            reqwest::Certificate::from_pem_bundle(&options.trust_anchors_pem).map_err(|error| {
                FeedError::Client(format!("trust anchors are not PEM certificates: {error}"))
            })?;
        if anchors.is_empty() {
            return Err(FeedError::Client("no trust anchor given".into()));
        }
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .user_agent(concat!("updraft/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .redirect(reqwest::redirect::Policy::limited(3));
        for anchor in anchors {
            builder = builder.add_root_certificate(anchor);
        }
        let http = builder
            .build()
            .map_err(|error| FeedError::Client(error.to_string()))?;
        Ok(Self { http, options })
    }

    /// The URL fetched.
    pub fn url(&self) -> &str {
        &self.options.url
    }

    /// Fetches the feed. With `etag`, a `304` gives [`FetchOutcome::NotModified`]. An empty or
    /// unparsable body is an error, so that a caller never replaces a good copy with it.
    pub async fn fetch(&self, etag: Option<&str>) -> Result<FetchOutcome, FeedError> {
        match self.fetch_raw(etag).await? {
            RawOutcome::NotModified => Ok(FetchOutcome::NotModified),
            RawOutcome::Fetched { body, etag } => Ok(FetchOutcome::Fetched {
                response: LookupResponse::parse(&body).and_then(LookupResponse::require_entries)?,
                body,
                etag,
            }),
        }
    }

    /// Fetches the body as it is, with the retries of [`Self::fetch`].
    pub async fn fetch_raw(&self, etag: Option<&str>) -> Result<RawOutcome, FeedError> {
        let mut attempt = 1;
        loop {
            match self.fetch_once(etag).await {
                Err(Retry::After(delay, _)) if attempt < self.options.max_attempts => {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
                Err(Retry::After(_, error)) | Err(Retry::Never(error)) => return Err(error),
                Ok(outcome) => return Ok(outcome),
            }
        }
    }

    async fn fetch_once(&self, etag: Option<&str>) -> Result<RawOutcome, Retry> {
        let url = &self.options.url;
        let mut request = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(|error| {
            let failure = FeedError::Http {
                url: url.clone(),
                reason: updraft_trust::describe(&error),
            };
            if error.is_connect() || error.is_timeout() {
                Retry::After(self.options.retry_delay, failure)
            } else {
                Retry::Never(failure)
            }
        })?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(RawOutcome::NotModified);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(self.options.retry_delay);
            let failure = FeedError::Status {
                url: url.clone(),
                status: status.as_u16(),
                detail: format!("rate limited; asked to wait {} s", wait.as_secs()),
            };
            return Err(if wait <= self.options.max_retry_after {
                Retry::After(wait, failure)
            } else {
                Retry::Never(failure)
            });
        }
        if !status.is_success() {
            let failure = FeedError::Status {
                url: url.clone(),
                status: status.as_u16(),
                detail: status.canonical_reason().unwrap_or("").to_owned(),
            };
            return Err(if status.is_server_error() {
                Retry::After(self.options.retry_delay, failure)
            } else {
                Retry::Never(failure)
            });
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = self.read_capped(response).await.map_err(Retry::Never)?;
        Ok(RawOutcome::Fetched { body, etag })
    }

    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Vec<u8>, FeedError> {
        let limit = self.options.max_body_bytes;
        let too_large = || FeedError::TooLarge {
            url: self.options.url.clone(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| FeedError::Http {
            url: self.options.url.clone(),
            reason: updraft_trust::describe(&error),
        })? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

enum Retry {
    After(Duration, FeedError),
    Never(FeedError),
}

/// What refreshing a saved copy did.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// The service said the saved copy is current.
    Unchanged,
    /// A new copy was written.
    Updated {
        /// The new response.
        response: LookupResponse,
        /// Its etag.
        etag: Option<String>,
    },
}

/// Refreshes the saved copy at `path` (the `{"etag", "data"}` form): sends its etag, and on a
/// new good answer replaces it atomically. On any error the saved copy is left as it was.
pub async fn refresh_saved(client: &FeedClient, path: &Path) -> Result<RefreshOutcome, FeedError> {
    let saved_etag = match tokio::fs::read(path).await {
        Ok(bytes) => LookupResponse::parse_saved(&bytes)
            .ok()
            .and_then(|(_, etag)| etag),
        Err(_) => None,
    };
    match client.fetch(saved_etag.as_deref()).await? {
        FetchOutcome::NotModified => Ok(RefreshOutcome::Unchanged),
        FetchOutcome::Fetched {
            response,
            body,
            etag,
        } => {
            write_saved(path, etag.as_deref(), &body).await?;
            Ok(RefreshOutcome::Updated { response, etag })
        }
    }
}

/// Writes `{"etag": ..., "data": <body>}` next to `path` and renames it into place, so a reader
/// sees either the old copy or the new one, never half of one.
pub async fn write_saved(path: &Path, etag: Option<&str>, body: &[u8]) -> Result<(), FeedError> {
    let io = |error: std::io::Error| FeedError::Io {
        path: path.display().to_string(),
        reason: error.to_string(),
    };
    let mut document = Vec::with_capacity(body.len() + 96);
    document.extend_from_slice(b"{\"etag\": ");
    document.extend_from_slice(
        serde_json::to_string(&etag)
            .unwrap_or_else(|_| "null".into())
            .as_bytes(),
    );
    document.extend_from_slice(b", \"data\": ");
    document.extend_from_slice(body);
    document.extend_from_slice(b"}\n");
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    tokio::fs::write(&temporary, &document).await.map_err(io)?;
    tokio::fs::rename(&temporary, path).await.map_err(io)
}

/// Refreshes the saved copy of one SOFA feed at `path` as [`refresh_saved`] does the lookup
/// service's: the etag sent back, a new good feed written atomically, and an empty or broken
/// one refused with the saved copy left as it was. Returns the new feed, if there is one.
pub async fn refresh_sofa(
    client: &FeedClient,
    path: &Path,
    platform: Platform,
) -> Result<Option<SofaFeed>, FeedError> {
    let saved_etag = match tokio::fs::read(path).await {
        Ok(bytes) => SofaFeed::parse_saved(&bytes, platform)
            .ok()
            .and_then(|(_, etag)| etag),
        Err(_) => None,
    };
    match client.fetch_raw(saved_etag.as_deref()).await? {
        RawOutcome::NotModified => Ok(None),
        RawOutcome::Fetched { body, etag } => {
            let feed = SofaFeed::parse(&body, platform)?;
            if feed.releases.is_empty() {
                return Err(FeedError::SofaEmpty(client.url().to_owned()));
            }
            write_saved(path, etag.as_deref(), &body).await?;
            Ok(Some(feed))
        }
    }
}

/// SOFA's feeds as the console starts with them: each platform's saved copy in `dir` when it
/// reads, else the copy Updraft ships. A saved copy that does not read is named in the second
/// list, for the log; it is never fatal.
pub fn saved_or_bundled_sofa(dir: &Path) -> Result<(Vec<SofaFeed>, Vec<String>), FeedError> {
    let bundled = crate::sofa::bundled()?;
    let mut feeds = Vec::new();
    let mut unreadable = Vec::new();
    for (platform, _, file) in SOFA_FEEDS {
        let path = dir.join(file);
        let saved = match std::fs::read(&path) {
            Ok(bytes) => match SofaFeed::parse_saved(&bytes, platform) {
                Ok((feed, _)) => Some(feed),
                Err(error) => {
                    unreadable.push(format!("{}: {error}", path.display()));
                    None
                }
            },
            Err(_) => None,
        };
        feeds.extend(saved.or_else(|| bundled.iter().find(|f| f.platform == platform).cloned()));
    }
    Ok((feeds, unreadable))
}
