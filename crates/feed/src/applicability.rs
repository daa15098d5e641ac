//! Which releases of a feed apply to a device, by exactly these rules:
//!
//! 1. Candidates are the entries of all three sets for the device's platform (`xrOS` counts as
//!    `visionOS`) whose `SupportedDevices` holds the device's SoftwareUpdateDeviceID, compared
//!    ASCII case-insensitively.
//! 2. An entry is available on day D when `PostingDate <= D` and, if it has one,
//!    `D < ExpirationDate`.
//! 3. A normal entry applies when its version is newer than the device's (numerically, missing
//!    components count as 0).
//! 4. A BSI entry applies only when its `PrerequisiteBuild` equals the device's current build and
//!    (version, extra) is newer than the device's, where no extra < `(a)` < `(b)`.
//! 5. Entries with the same (version, extra, build) are one target: the earliest posting date and
//!    the latest expiration among the entries that passed (none if any has none).
//! 6. Best first: newest version, then extra, then build.

use chrono::NaiveDate;
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use updraft_ddm::{OsVersion, VersionExtra, compare_builds};

use crate::response::{LookupResponse, SetKind};

/// A device platform as the lookup service groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Platform {
    /// macOS.
    #[serde(rename = "macOS")]
    MacOs,
    /// The `iOS` key, which also carries iPadOS, tvOS and watchOS.
    #[serde(rename = "iOS")]
    Ios,
    /// visionOS (`visionOS`, formerly `xrOS`).
    #[serde(rename = "visionOS")]
    VisionOs,
}

impl Platform {
    /// Every platform.
    pub const ALL: [Platform; 3] = [Platform::MacOs, Platform::Ios, Platform::VisionOs];

    /// The platform a feed key belongs to, if any.
    pub fn from_feed_key(key: &str) -> Option<Self> {
        match key {
            "macOS" => Some(Self::MacOs),
            "iOS" => Some(Self::Ios),
            "visionOS" | "xrOS" => Some(Self::VisionOs),
            _ => None,
        }
    }

    /// The name Apple uses for the platform's key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MacOs => "macOS",
            Self::Ios => "iOS",
            Self::VisionOs => "visionOS",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A platform name that is not one of the service's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a platform; use macOS, iOS (also iPadOS, tvOS, watchOS) or visionOS (xrOS)")]
pub struct UnknownPlatform(pub String);

impl FromStr for Platform {
    type Err = UnknownPlatform;

    /// Accepts the service's keys and the OS names they cover, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "macos" => Ok(Self::MacOs),
            "ios" | "ipados" | "tvos" | "watchos" => Ok(Self::Ios),
            "visionos" | "xros" => Ok(Self::VisionOs),
            _ => Err(UnknownPlatform(text.to_owned())),
        }
    }
}

/// What applicability needs to know of a device.
#[derive(Debug, Clone)]
pub struct DeviceFacts<'a> {
    /// Its platform.
    pub platform: Platform,
    /// Its SoftwareUpdateDeviceID.
    pub device_id: &'a str,
    /// Its OS version (the base version).
    pub os_version: &'a OsVersion,
    /// Its current base build.
    pub build: &'a str,
    /// Its supplemental letter, if a BSI is installed.
    pub extra: &'a VersionExtra,
}

/// A release that applies to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The version as the feed spells it.
    pub product_version: String,
    /// `(a)` for a BSI, else none.
    pub product_version_extra: Option<String>,
    /// The build, if the feed gave one.
    pub build: Option<String>,
    /// The earliest posting date among the entries merged into this target.
    pub posting_date: NaiveDate,
    /// The latest expiration, or none if any merged entry does not expire.
    pub expiration_date: Option<NaiveDate>,
}

impl Target {
    /// Whether this target is a Background Security Improvement.
    pub fn is_bsi(&self) -> bool {
        self.product_version_extra.is_some()
    }
}

/// An entry that could not be indexed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    /// Where: `AssetSets.macOS[3]`.
    pub location: String,
    /// Why.
    pub reason: String,
}

#[derive(Debug)]
struct IndexedEntry {
    version: OsVersion,
    extra: VersionExtra,
    build: Option<String>,
    prerequisite_build: Option<String>,
    posting_date: NaiveDate,
    expiration_date: Option<NaiveDate>,
    bsi: bool,
    extra_text: Option<String>,
}

impl IndexedEntry {
    /// Best first: version, then extra, then build, all descending.
    fn rank(&self, other: &Self) -> Ordering {
        other
            .version
            .cmp(&self.version)
            .then_with(|| other.extra.cmp(&self.extra))
            .then_with(|| match (&other.build, &self.build) {
                (Some(a), Some(b)) => compare_builds(a, b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            })
    }

    fn same_target(&self, other: &Self) -> bool {
        self.version == other.version && self.extra == other.extra && self.build == other.build
    }

    fn available_on(&self, day: NaiveDate) -> bool {
        self.posting_date <= day && self.expiration_date.is_none_or(|expiry| day < expiry)
    }

    fn applies_to(&self, device: &DeviceFacts<'_>) -> bool {
        if self.bsi {
            self.prerequisite_build.as_deref() == Some(device.build)
                && (&self.version, &self.extra) > (device.os_version, device.extra)
        } else {
            &self.version > device.os_version
        }
    }
}

/// A feed prepared for answering applicability fast: entries parsed and ranked once, and
/// per platform a map from lower-cased device id to that device's entries, best first.
#[derive(Debug)]
pub struct FeedIndex {
    entries: Vec<IndexedEntry>,
    by_device: [HashMap<Box<str>, Vec<u32>>; 3],
    skipped: Vec<SkippedEntry>,
}

impl FeedIndex {
    /// Indexes a response. Entries whose version cannot be read are skipped and listed in
    /// [`Self::skipped`], not fatal: one odd entry must not hide every other release.
    pub fn new(response: &LookupResponse) -> Self {
        let mut staged: Vec<(IndexedEntry, Platform, &[String])> = Vec::new();
        let mut skipped = Vec::new();
        for located in response.entries() {
            let Some(platform) = Platform::from_feed_key(located.platform) else {
                continue;
            };
            let entry = located.entry;
            let version = match OsVersion::parse(&entry.product_version) {
                Ok(version) => version,
                Err(error) => {
                    skipped.push(SkippedEntry {
                        location: format!(
                            "{}.{}[{}]",
                            located.set.name, located.platform, located.index
                        ),
                        reason: error.to_string(),
                    });
                    continue;
                }
            };
            let extra = entry
                .product_version_extra
                .as_deref()
                .map(VersionExtra::parse)
                .unwrap_or_default();
            let bsi = located.set.kind == SetKind::BackgroundSecurity || !extra.is_none();
            staged.push((
                IndexedEntry {
                    version,
                    extra_text: (!extra.is_none()).then(|| extra.canonical()),
                    extra,
                    build: entry.build.clone(),
                    prerequisite_build: entry.prerequisite_build.clone(),
                    posting_date: entry.posting_date,
                    expiration_date: entry.expiration_date,
                    bsi,
                },
                platform,
                &entry.supported_devices,
            ));
        }
        staged.sort_by(|a, b| a.0.rank(&b.0));
        let mut by_device: [HashMap<Box<str>, Vec<u32>>; 3] = Default::default();
        let mut entries = Vec::with_capacity(staged.len());
        for (position, (entry, platform, devices)) in staged.into_iter().enumerate() {
            let map = &mut by_device[platform.slot()];
            for device in devices {
                let list = map
                    .entry(device.to_ascii_lowercase().into_boxed_str())
                    .or_default();
                // A device listed twice in one entry still counts once.
                if list.last() != Some(&(position as u32)) {
                    list.push(position as u32);
                }
            }
            entries.push(entry);
        }
        Self {
            entries,
            by_device,
            skipped,
        }
    }

    /// Entries left out, with the reason.
    pub fn skipped(&self) -> &[SkippedEntry] {
        &self.skipped
    }

    /// The targets for a device on a day, best first.
    pub fn targets(&self, device: &DeviceFacts<'_>, day: NaiveDate) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        let mut last: Option<&IndexedEntry> = None;
        for entry in self.candidates(device.platform, device.device_id) {
            if !entry.available_on(day) || !entry.applies_to(device) {
                continue;
            }
            match (last, targets.last_mut()) {
                (Some(previous), Some(target)) if previous.same_target(entry) => {
                    target.posting_date = target.posting_date.min(entry.posting_date);
                    target.expiration_date = match (target.expiration_date, entry.expiration_date) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
                _ => targets.push(Target {
                    product_version: entry.version.as_str().to_owned(),
                    product_version_extra: entry.extra_text.clone(),
                    build: entry.build.clone(),
                    posting_date: entry.posting_date,
                    expiration_date: entry.expiration_date,
                }),
            }
            last = Some(entry);
        }
        targets
    }

    /// The best target for a device on a day, if any.
    pub fn best_target(&self, device: &DeviceFacts<'_>, day: NaiveDate) -> Option<Target> {
        self.targets(device, day).into_iter().next()
    }

    fn candidates(
        &self,
        platform: Platform,
        device_id: &str,
    ) -> impl Iterator<Item = &IndexedEntry> {
        let map = &self.by_device[platform.slot()];
        let found = if device_id.bytes().any(|b| b.is_ascii_uppercase()) {
            map.get(device_id.to_ascii_lowercase().as_str())
        } else {
            map.get(device_id)
        };
        found
            .into_iter()
            .flatten()
            .map(|&position| &self.entries[position as usize])
    }
}
