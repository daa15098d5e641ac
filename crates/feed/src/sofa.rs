//! SOFA's data feeds (macadmins/sofa, `https://sofafeed.macadmins.io/v1|v2/<os>_data_feed.json`):
//! the vulnerabilities each release fixes and which of them are actively exploited.
//!
//! Builds and device lists come from the lookup service, never from SOFA: its data has been
//! wrong (placeholder builds, a watchOS build on an iOS release, a macOS release given an iOS
//! release's CVEs). So a SOFA entry counts only when it names the release's platform and, where
//! both list builds, shares one with the lookup service; otherwise the mismatch is shown, not
//! used.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

use crate::{FeedError, FeedRelease, Platform};

/// The SOFA feeds Updraft ships, for when none has been fetched: macadmins/sofa @ 00b0d8ca
/// (2026-08-22) `v2/macos_data_feed.json` and `v2/ios_data_feed.json`, Apache-2.0.
pub fn bundled() -> Result<Vec<SofaFeed>, FeedError> {
    Ok(vec![
        SofaFeed::parse(
            include_bytes!("../data/sofa_macos_2026-08-22.json"),
            Platform::MacOs,
        )?,
        SofaFeed::parse(
            include_bytes!("../data/sofa_ios_2026-08-22.json"),
            Platform::Ios,
        )?,
    ])
}

/// What the feeds say of a release: the feed of its platform decides.
pub fn vulnerabilities_of(feeds: &[SofaFeed], release: &FeedRelease) -> Vulnerabilities {
    feeds
        .iter()
        .find(|feed| feed.platform == release.platform)
        .map_or(Vulnerabilities::NotListed, |feed| {
            feed.vulnerabilities(release)
        })
}

/// One platform's SOFA feed, as far as vulnerabilities go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SofaFeed {
    /// The platform the feed is for.
    pub platform: Platform,
    /// Every security release it lists, newest major first, as SOFA orders them.
    pub releases: Vec<SecurityRelease>,
}

/// A release as SOFA lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityRelease {
    /// `macOS`, `iOS and iPadOS`...
    pub product_name: String,
    /// `26.6.2`.
    pub version: String,
    /// Its builds, when SOFA gives them (`AllBuilds`, else `Build`).
    pub builds: Vec<String>,
    /// The CVEs it fixes.
    pub cves: BTreeSet<String>,
    /// Those actively exploited (CISA's KEV, as SOFA marks them).
    pub exploited: BTreeSet<String>,
    /// Apple's security note.
    pub security_info: Option<String>,
}

/// What is known of a release's vulnerabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vulnerabilities {
    /// SOFA's entry agrees with the lookup service.
    Known {
        /// How many CVEs it fixes.
        cves: usize,
        /// The actively exploited ones.
        exploited: Vec<String>,
        /// Apple's security note.
        security_info: Option<String>,
    },
    /// SOFA's entry disagrees with the lookup service: shown, never used.
    Mismatch(String),
    /// SOFA does not list it (yet: its security data can take days).
    NotListed,
}

#[derive(Deserialize)]
struct RawFeed {
    #[serde(rename = "OSVersions")]
    os_versions: Vec<RawOsVersion>,
}

#[derive(Deserialize)]
struct RawOsVersion {
    #[serde(rename = "SecurityReleases", default)]
    security_releases: Vec<RawRelease>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRelease {
    #[serde(default)]
    product_name: Option<String>,
    product_version: String,
    #[serde(default)]
    build: Option<String>,
    #[serde(default)]
    all_builds: Option<Vec<String>>,
    /// v1 maps each CVE to "actively exploited"; v2 to an object.
    #[serde(rename = "CVEs", default)]
    cves: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "ActivelyExploitedCVEs", default)]
    actively_exploited_cves: Vec<String>,
    #[serde(default)]
    security_info: Option<String>,
}

impl SofaFeed {
    /// Reads a saved copy, `{"etag": ..., "data": <feed>}`, or a bare feed; returns the etag.
    pub fn parse_saved(
        bytes: &[u8],
        platform: Platform,
    ) -> Result<(Self, Option<String>), FeedError> {
        #[derive(serde::Deserialize)]
        struct Saved {
            etag: Option<String>,
            data: serde_json::Value,
        }
        match serde_json::from_slice::<Saved>(bytes) {
            Ok(saved) => {
                let body = serde_json::to_vec(&saved.data).map_err(|e| FeedError::Malformed {
                    path: "SOFA feed".into(),
                    reason: e.to_string(),
                })?;
                Ok((Self::parse(&body, platform)?, saved.etag))
            }
            Err(_) => Ok((Self::parse(bytes, platform)?, None)),
        }
    }

    /// Reads a v1 or v2 data feed of `platform`. An error names the JSON path at fault.
    pub fn parse(bytes: &[u8], platform: Platform) -> Result<Self, FeedError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let raw: RawFeed = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            FeedError::Malformed {
                path: format!("SOFA feed {}", e.path()),
                reason: e.inner().to_string(),
            }
        })?;
        let releases = raw
            .os_versions
            .into_iter()
            .flat_map(|os| os.security_releases)
            .map(|raw| {
                let exploited: BTreeSet<String> = raw
                    .cves
                    .iter()
                    .filter(|(_, value)| value.as_bool() == Some(true))
                    .map(|(cve, _)| cve.clone())
                    .chain(raw.actively_exploited_cves)
                    .collect();
                SecurityRelease {
                    product_name: raw.product_name.unwrap_or_default(),
                    version: raw.product_version,
                    builds: raw
                        .all_builds
                        .or(raw.build.map(|b| vec![b]))
                        .unwrap_or_default(),
                    cves: raw.cves.into_keys().collect(),
                    exploited,
                    security_info: raw.security_info,
                }
            })
            .collect();
        Ok(Self { platform, releases })
    }

    /// What SOFA says of a release of the lookup service. A supplemental release (BSI) is
    /// matched on its builds only, as SOFA lists those apart.
    pub fn vulnerabilities(&self, release: &FeedRelease) -> Vulnerabilities {
        if release.platform != self.platform || release.is_bsi() {
            return Vulnerabilities::NotListed;
        }
        let Some(entry) = self
            .releases
            .iter()
            .find(|r| r.version == release.product_version)
        else {
            return Vulnerabilities::NotListed;
        };
        let label = format!("{} {}", release.platform, release.product_version);
        if !names_platform(&entry.product_name, release.platform) {
            return Vulnerabilities::Mismatch(format!(
                "SOFA's {} feed gives {label} the product name {:?}; its CVEs are not used",
                self.platform, entry.product_name
            ));
        }
        let feed_builds: BTreeSet<&str> = release
            .builds
            .iter()
            .filter_map(|b| b.build.as_deref())
            .collect();
        if !entry.builds.is_empty()
            && !feed_builds.is_empty()
            && !entry
                .builds
                .iter()
                .any(|b| feed_builds.contains(b.as_str()))
        {
            return Vulnerabilities::Mismatch(format!(
                "SOFA lists {label} as build {}, the lookup service as {}; its CVEs are not used",
                entry.builds.join(", "),
                feed_builds.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        Vulnerabilities::Known {
            cves: entry.cves.len(),
            exploited: entry.exploited.iter().cloned().collect(),
            security_info: entry.security_info.clone(),
        }
    }
}

/// Whether SOFA's product name is the platform's (`iOS and iPadOS` is iOS's; an empty name, as
/// older entries have, is taken as the feed's own).
fn names_platform(product_name: &str, platform: Platform) -> bool {
    let name = product_name.to_ascii_lowercase();
    let mut words = name.split(|c: char| !c.is_ascii_alphanumeric());
    name.is_empty()
        || words.any(|word| match platform {
            Platform::MacOs => word == "macos",
            Platform::Ios => word == "ios" || word == "ipados",
            Platform::VisionOs => word == "visionos",
        })
}
