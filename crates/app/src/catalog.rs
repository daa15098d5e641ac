//! The releases the console offers: the feed's releases (one per platform, version and
//! supplemental letter, with their builds: `updraft_feed::releases`), keyed for the UI.

use chrono::NaiveDate;

use updraft_engine::Release;
use updraft_feed::sofa::{SofaFeed, Vulnerabilities, vulnerabilities_of};
use updraft_feed::{FeedRelease, Window};

/// A release the feed offers.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogRelease {
    /// Stable key for the UI: `platform/version/extra`.
    pub key: String,
    /// What a rollout of it enforces.
    pub release: Release,
    /// When the feed offers it: the earliest posting and latest expiration of its entries.
    pub window: Window,
    /// Whether it only appears in `AssetSets` (offered to management, not to users).
    pub management_only: bool,
    /// The vulnerabilities it fixes, as SOFA says where SOFA agrees with the feed.
    pub vulnerabilities: Vulnerabilities,
}

impl CatalogRelease {
    /// A Background Security Improvement (or Rapid Security Response).
    pub fn is_bsi(&self) -> bool {
        self.release.is_bsi()
    }

    /// Whether the feed offers it on `day` (posted, not expired).
    pub fn available_on(&self, day: NaiveDate) -> bool {
        self.window.contains(day)
    }
}

/// Every release of the feed (`updraft_feed::releases::releases`, newest first within each
/// platform), with what `sofa` says of it.
pub fn releases(feed: &[FeedRelease], sofa: &[SofaFeed]) -> Vec<CatalogRelease> {
    feed.iter()
        .map(|release| CatalogRelease {
            vulnerabilities: vulnerabilities_of(sofa, release),
            key: format!(
                "{}/{}/{}",
                release.platform,
                release.product_version,
                release.product_version_extra.as_deref().unwrap_or("")
            ),
            release: Release::from(release),
            window: release.window,
            management_only: release.management_only,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use updraft_ddm::OsVersion;
    use updraft_feed::{LookupResponse, Platform};

    fn version_of(release: &CatalogRelease) -> Option<OsVersion> {
        OsVersion::parse(&release.release.product_version).ok()
    }

    fn bundled() -> LookupResponse {
        LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes()).expect("bundled feed")
    }

    #[test]
    fn one_release_per_version_with_every_sets_devices() {
        let releases = releases(&updraft_feed::releases::releases(&bundled()), &[]);
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
        assert!(macos.iter().all(|r| {
            r.release
                .builds
                .iter()
                .all(|b| !b.supported_devices.is_empty())
        }));
    }

    #[test]
    fn bsi_entries_keep_their_letter_and_prerequisite_build() {
        let releases = releases(&updraft_feed::releases::releases(&bundled()), &[]);
        let bsi: Vec<&CatalogRelease> = releases.iter().filter(|r| r.is_bsi()).collect();
        assert!(!bsi.is_empty(), "the bundled capture lists BSIs");
        for release in bsi {
            assert!(
                release
                    .release
                    .builds
                    .iter()
                    .all(|b| b.prerequisite_build.is_some()),
                "{release:?}"
            );
            assert!(
                release.key.contains("(a)")
                    || release.key.contains("(b)")
                    || release.key.contains("(c)")
            );
        }
    }
}
