//! The Apple Software Lookup Service (`https://gdmf.apple.com/v2/pmv`): reading its responses
//! exactly, deciding which releases apply to a device, and fetching it safely.
//!
//! - [`response`]: the response as it is, sets and platforms in order, unknown keys ignored.
//! - [`applicability`]: the six rules that turn a feed and a device into targets.
//! - [`releases`]: the feed's releases, each with its builds, for the console and the lab.
//! - [`sofa`]: the CVEs SOFA says each release fixes, used only where SOFA agrees with Apple.
//! - [`client`]: the HTTP client (rustls, Apple's root only) and the saved copy that a broken or
//!   empty answer never replaces.
//!
//! Parsing and applicability read no clock: the day is always a parameter.
#![deny(missing_docs)]

pub mod applicability;
#[cfg(feature = "client")]
pub mod client;
pub mod models;
pub mod releases;
pub mod response;
pub mod sofa;

pub use applicability::{DeviceFacts, FeedIndex, Platform, Target};
#[cfg(feature = "client")]
pub use client::{ClientOptions, FeedClient, FetchOutcome, RefreshOutcome};
pub use releases::{FeedBuild, FeedRelease, Window};
pub use response::{Entry, LookupResponse, SetKind};

/// The capture Updraft ships: Apple's response of 2026-04-11 as gathered by SOFA
/// (macadmins/sofa `data/resources/history/gdmf_data_20260411_005852.json`, Apache-2.0).
pub const BUNDLED_FEED: &str = include_str!("../data/pmv_2026-04-11.json");

/// Why a feed could not be read or fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The body is not a lookup-service response.
    #[error("malformed lookup-service response at {path}: {reason}")]
    Malformed {
        /// The JSON path of the problem (`AssetSets.macOS[3].PostingDate`).
        path: String,
        /// What is wrong there.
        reason: String,
    },
    /// The response holds no release at all.
    #[error(
        "the lookup-service response holds no release in any set (Apple has been seen answering 200 with empty sets), so it is not used"
    )]
    Empty,
    /// A SOFA feed lists no security release.
    #[error("the SOFA feed {0} lists no security release, so it is not used")]
    SofaEmpty(String),
    /// The request failed before an answer.
    #[error("cannot fetch {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// The cause chain.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status} {detail}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The reason phrase or what was asked.
        detail: String,
    },
    /// The body is larger than the cap.
    #[error("{url} sent more than {limit} bytes; a lookup-service response is about 150 KB")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap in bytes.
        limit: usize,
    },
    /// The client could not be built.
    #[error("cannot set up the lookup-service client: {0}")]
    Client(String),
    /// A saved copy could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
}
