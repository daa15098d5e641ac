//! The releases of a lookup-service response, one per platform, version, supplemental letter and
//! build, with the device lists of every set that names them joined.

use chrono::NaiveDate;
use std::collections::BTreeMap;

use updraft_ddm::OsVersion;
use updraft_engine::Release;
use updraft_feed::{LookupResponse, Platform, SetKind};

/// A release the feed offers.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogRelease {
    /// Stable key for the UI: `platform/version/extra/build`.
    pub key: String,
    /// What a rollout of it enforces.
    pub release: Release,
    /// `PostingDate`.
    pub posting_date: NaiveDate,
    /// `ExpirationDate`.
    pub expiration_date: Option<NaiveDate>,
    /// Whether it only appears in `AssetSets` (offered to management, not to users).
    pub management_only: bool,
}

impl CatalogRelease {
    /// A Background Security Improvement (or Rapid Security Response).
    pub fn is_bsi(&self) -> bool {
        self.release.is_bsi()
    }

    /// Whether the feed offers it on `day` (posted, not expired).
    pub fn available_on(&self, day: NaiveDate) -> bool {
        self.posting_date <= day && self.expiration_date.is_none_or(|end| day < end)
    }
}

/// Every release of the feed, newest first within each platform.
pub fn releases(feed: &LookupResponse) -> Vec<CatalogRelease> {
    let mut by_key: BTreeMap<String, CatalogRelease> = BTreeMap::new();
    for located in feed.entries() {
        let Some(platform) = Platform::from_feed_key(located.platform) else {
            continue;
        };
        let entry = located.entry;
        let extra = entry
            .product_version_extra
            .clone()
            .filter(|e| !e.is_empty());
        let build = entry.build.clone().unwrap_or_default();
        let key = format!(
            "{platform}/{}/{}/{build}",
            entry.product_version,
            extra.as_deref().unwrap_or("")
        );
        let release = by_key.entry(key.clone()).or_insert_with(|| CatalogRelease {
            key,
            release: Release {
                platform,
                product_version: entry.product_version.clone(),
                product_version_extra: extra,
                build: entry.build.clone(),
                prerequisite_build: entry.prerequisite_build.clone(),
                supported_devices: Default::default(),
            },
            posting_date: entry.posting_date,
            expiration_date: entry.expiration_date,
            management_only: true,
        });
        release.release.supported_devices.extend(
            entry
                .supported_devices
                .iter()
                .map(|d| d.to_ascii_lowercase()),
        );
        release.posting_date = release.posting_date.min(entry.posting_date);
        if located.set.kind != SetKind::All {
            release.management_only = false;
        }
    }
    let mut releases: Vec<CatalogRelease> = by_key.into_values().collect();
    releases.sort_by(|a, b| {
        (a.release.platform.to_string())
            .cmp(&b.release.platform.to_string())
            .then_with(|| version_of(b).cmp(&version_of(a)))
            .then_with(|| b.is_bsi().cmp(&a.is_bsi()))
            .then_with(|| b.posting_date.cmp(&a.posting_date))
    });
    releases
}

fn version_of(release: &CatalogRelease) -> Option<OsVersion> {
    OsVersion::parse(&release.release.product_version).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> LookupResponse {
        LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes()).expect("bundled feed")
    }

    #[test]
    fn one_release_per_version_and_build_with_every_sets_devices() {
        let releases = releases(&bundled());
        let keys: std::collections::BTreeSet<&str> =
            releases.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys.len(), releases.len(), "keys are unique");
        let macos: Vec<&CatalogRelease> = releases
            .iter()
            .filter(|r| r.release.platform == Platform::MacOs)
            .collect();
        assert!(!macos.is_empty());
        // Newest first: the first macOS entry's version is the highest.
        let first = version_of(macos[0]).expect("version");
        assert!(
            macos
                .iter()
                .all(|r| version_of(r).expect("version") <= first)
        );
        assert!(
            macos
                .iter()
                .all(|r| !r.release.supported_devices.is_empty())
        );
    }

    #[test]
    fn bsi_entries_keep_their_letter_and_prerequisite_build() {
        let releases = releases(&bundled());
        let bsi: Vec<&CatalogRelease> = releases.iter().filter(|r| r.is_bsi()).collect();
        assert!(!bsi.is_empty(), "the bundled capture lists BSIs");
        for release in bsi {
            assert!(release.release.prerequisite_build.is_some(), "{release:?}");
            assert!(
                release.key.contains("(a)")
                    || release.key.contains("(b)")
                    || release.key.contains("(c)")
            );
        }
    }
}
