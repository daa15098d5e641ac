//! A feed's releases: one per platform, version and supplemental letter, with the builds the feed
//! lists for it. This is the one grouping the console, the wizard and the lab use.
//!
//! Apple lists one release under several builds: iOS 26.4.1 as 23E254 and 23E6254 for the same
//! devices, a BSI once per base build it installs on. Entries with the same build in several
//! sets are one build whose devices are every entry's; its dates follow applicability's rule 5
//! ([`Window::merge`]), and so do the release's over all its builds.

use chrono::NaiveDate;
use std::collections::{BTreeMap, BTreeSet};

use updraft_ddm::{OsVersion, VersionExtra, compare_builds};

use crate::applicability::Platform;
use crate::response::{LookupResponse, SetKind};

/// When a release or build is offered: posted on a day, and perhaps expiring on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `PostingDate`: the earliest of the entries merged.
    pub posting_date: NaiveDate,
    /// `ExpirationDate`: the latest of the entries merged, none when any of them has none.
    pub expiration_date: Option<NaiveDate>,
}

impl Window {
    /// Two entries of one target offer it from the earlier posting to the later expiration
    /// (rule 5): an entry that still offers it keeps it offered.
    pub fn merge(self, other: Window) -> Window {
        Window {
            posting_date: self.posting_date.min(other.posting_date),
            expiration_date: match (self.expiration_date, other.expiration_date) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            },
        }
    }

    /// Whether it is offered on `day` (rule 2).
    pub fn contains(&self, day: NaiveDate) -> bool {
        self.posting_date <= day && self.expiration_date.is_none_or(|end| day < end)
    }
}

/// One build of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedBuild {
    /// `Build`; older responses lacked it.
    pub build: Option<String>,
    /// For a BSI, the base build it installs on.
    pub prerequisite_build: Option<String>,
    /// Lower-cased SoftwareUpdateDeviceIDs of every entry of this build.
    pub supported_devices: BTreeSet<String>,
    /// When this build is offered.
    pub window: Window,
}

/// A release: one (platform, version, supplemental letter), with its builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRelease {
    /// Platform.
    pub platform: Platform,
    /// `ProductVersion` as the feed spells it.
    pub product_version: String,
    /// `(a)` for a BSI (canonical form), else none.
    pub product_version_extra: Option<String>,
    /// Its builds, in build order.
    pub builds: Vec<FeedBuild>,
    /// When any of its builds is offered.
    pub window: Window,
    /// Listed only in `AssetSets` (offered to management, not to users).
    pub management_only: bool,
}

impl FeedRelease {
    /// A Background Security Improvement (or Rapid Security Response).
    pub fn is_bsi(&self) -> bool {
        self.product_version_extra.is_some()
    }

    /// The builds, `25E253` or `23E254, 23E6254`; empty when the feed gave none.
    pub fn build_list(&self) -> String {
        let builds: Vec<&str> = self
            .builds
            .iter()
            .filter_map(|b| b.build.as_deref())
            .collect();
        builds.join(", ")
    }
}

/// Every release of a response, by platform, newest version first, a BSI before its base version.
/// Entries whose version cannot be read are left out (applicability lists them as skipped).
pub fn releases(response: &LookupResponse) -> Vec<FeedRelease> {
    type Key = (Platform, String, Option<String>);
    let mut grouped: BTreeMap<Key, (FeedRelease, BTreeMap<Option<String>, FeedBuild>)> =
        BTreeMap::new();
    for located in response.entries() {
        let Some(platform) = Platform::from_feed_key(located.platform) else {
            continue;
        };
        let entry = located.entry;
        if OsVersion::parse(&entry.product_version).is_err() {
            continue;
        }
        let extra = entry
            .product_version_extra
            .as_deref()
            .map(VersionExtra::parse)
            .filter(|e| !e.is_none())
            .map(|e| e.canonical());
        let window = Window {
            posting_date: entry.posting_date,
            expiration_date: entry.expiration_date,
        };
        let (release, builds) = grouped
            .entry((platform, entry.product_version.clone(), extra.clone()))
            .or_insert_with(|| {
                let release = FeedRelease {
                    platform,
                    product_version: entry.product_version.clone(),
                    product_version_extra: extra,
                    builds: Vec::new(),
                    window,
                    management_only: true,
                };
                (release, BTreeMap::new())
            });
        release.window = release.window.merge(window);
        if located.set.kind != SetKind::All {
            release.management_only = false;
        }
        let build = builds
            .entry(entry.build.clone())
            .or_insert_with(|| FeedBuild {
                build: entry.build.clone(),
                prerequisite_build: entry.prerequisite_build.clone(),
                supported_devices: BTreeSet::new(),
                window,
            });
        build.window = build.window.merge(window);
        build.supported_devices.extend(
            entry
                .supported_devices
                .iter()
                .map(|d| d.to_ascii_lowercase()),
        );
    }
    let mut releases: Vec<FeedRelease> = grouped
        .into_values()
        .map(|(mut release, builds)| {
            release.builds = builds.into_values().collect();
            release.builds.sort_by(|a, b| match (&a.build, &b.build) {
                (Some(a), Some(b)) => compare_builds(a, b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            });
            release
        })
        .collect();
    releases.sort_by(|a, b| {
        let version = |r: &FeedRelease| OsVersion::parse(&r.product_version).ok();
        a.platform
            .as_str()
            .cmp(b.platform.as_str())
            .then_with(|| version(b).cmp(&version(a)))
            .then_with(|| b.is_bsi().cmp(&a.is_bsi()))
            .then_with(|| b.window.posting_date.cmp(&a.window.posting_date))
    });
    releases
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> Vec<FeedRelease> {
        releases(&LookupResponse::parse(crate::BUNDLED_FEED.as_bytes()).expect("bundled feed"))
    }

    fn find<'a>(releases: &'a [FeedRelease], platform: Platform, version: &str) -> &'a FeedRelease {
        releases
            .iter()
            .find(|r| r.platform == platform && r.product_version == version && !r.is_bsi())
            .unwrap_or_else(|| panic!("{platform} {version} in the capture"))
    }

    #[test]
    fn twin_builds_are_one_release_with_both_builds() {
        let releases = bundled();
        let ios = find(&releases, Platform::Ios, "26.4.1");
        assert_eq!(ios.build_list(), "23E254, 23E6254");
        assert_eq!(
            ios.builds[0].supported_devices, ios.builds[1].supported_devices,
            "the capture lists both builds for the same devices"
        );
        let keys: BTreeSet<(Platform, &str, Option<&str>)> = releases
            .iter()
            .map(|r| {
                (
                    r.platform,
                    r.product_version.as_str(),
                    r.product_version_extra.as_deref(),
                )
            })
            .collect();
        assert_eq!(keys.len(), releases.len(), "one release per version");
    }

    /// iOS 18.7.3 (22H217) is in AssetSets twice: expiring 2026-04-26 and 2026-06-30. On
    /// 2026-05-01 the second entry still offers it, as applicability's rule 5 says.
    #[test]
    fn a_release_is_offered_until_its_latest_expiration() {
        let releases = bundled();
        let release = find(&releases, Platform::Ios, "18.7.3");
        let build = release
            .builds
            .iter()
            .find(|b| b.build.as_deref() == Some("22H217"))
            .expect("22H217");
        let day = NaiveDate::from_ymd_opt(2026, 5, 1).expect("date");
        assert_eq!(
            build.window.expiration_date,
            NaiveDate::from_ymd_opt(2026, 6, 30)
        );
        assert!(build.window.contains(day));
        assert!(release.window.contains(day));
        assert_eq!(
            release.window.posting_date,
            NaiveDate::from_ymd_opt(2025, 12, 12).expect("date"),
            "the earliest posting"
        );
    }

    #[test]
    fn windows_merge_as_rule_five_says() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 1, d).expect("date");
        let a = Window {
            posting_date: day(5),
            expiration_date: Some(day(20)),
        };
        let b = Window {
            posting_date: day(2),
            expiration_date: Some(day(10)),
        };
        let open = Window {
            posting_date: day(9),
            expiration_date: None,
        };
        assert_eq!(
            a.merge(b),
            Window {
                posting_date: day(2),
                expiration_date: Some(day(20))
            }
        );
        assert_eq!(a.merge(open).expiration_date, None);
        assert!(!a.contains(day(20)) && a.contains(day(19)) && !a.contains(day(4)));
    }

    #[test]
    fn newest_first_within_a_platform_and_a_bsi_before_its_base() {
        let releases = bundled();
        for pair in releases.windows(2) {
            if pair[0].platform != pair[1].platform {
                continue;
            }
            let (a, b) = (
                OsVersion::parse(&pair[0].product_version).expect("version"),
                OsVersion::parse(&pair[1].product_version).expect("version"),
            );
            assert!(a >= b, "{} before {}", a, b);
            if a == b {
                assert!(pair[0].is_bsi() || !pair[1].is_bsi());
            }
        }
    }
}
