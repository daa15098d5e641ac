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
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use updraft_ddm::{OsVersion, VersionExtra, compare_builds};

use crate::releases::Window;
use crate::response::{LookupResponse, SetKind};

/// A device platform as the lookup service groups them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
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

/// A release that applies to a device, borrowed from the index it was found in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target<'a> {
    /// The version as the feed spells it.
    pub product_version: &'a str,
    /// `(a)` for a BSI, else none.
    pub product_version_extra: Option<&'a str>,
    /// The build, if the feed gave one.
    pub build: Option<&'a str>,
    /// The earliest posting date among the entries merged into this target.
    pub posting_date: NaiveDate,
    /// The latest expiration, or none if any merged entry does not expire.
    pub expiration_date: Option<NaiveDate>,
}

impl Target<'_> {
    fn window(&self) -> Window {
        Window {
            posting_date: self.posting_date,
            expiration_date: self.expiration_date,
        }
    }

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
    build: Option<Box<str>>,
    prerequisite_build: Option<Box<str>>,
    posting_date: NaiveDate,
    expiration_date: Option<NaiveDate>,
    bsi: bool,
    extra_text: Option<Box<str>>,
    /// Entries with equal (version, extra, build) share a group: one target (rule 5).
    group: u32,
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

    fn window(&self) -> Window {
        Window {
            posting_date: self.posting_date,
            expiration_date: self.expiration_date,
        }
    }

    fn available_on(&self, day: NaiveDate) -> bool {
        self.window().contains(day)
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
    // Keys come from Apple's (pinned) feed, so a fast non-keyed hash is safe here.
    by_device: [FxHashMap<Box<str>, Vec<u32>>; 3],
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
                    extra_text: (!extra.is_none()).then(|| extra.canonical().into()),
                    extra,
                    build: entry.build.as_deref().map(Box::from),
                    prerequisite_build: entry.prerequisite_build.as_deref().map(Box::from),
                    posting_date: entry.posting_date,
                    expiration_date: entry.expiration_date,
                    bsi,
                    group: 0,
                },
                platform,
                &entry.supported_devices,
            ));
        }
        staged.sort_by(|a, b| a.0.rank(&b.0));
        let mut by_device: [FxHashMap<Box<str>, Vec<u32>>; 3] = Default::default();
        let mut entries = Vec::with_capacity(staged.len());
        for (position, (mut entry, platform, devices)) in staged.into_iter().enumerate() {
            entry.group = match entries.last() {
                Some(previous) if IndexedEntry::same_target(previous, &entry) => previous.group,
                Some(previous) => previous.group + 1,
                None => 0,
            };
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
    pub fn targets(&self, device: &DeviceFacts<'_>, day: NaiveDate) -> Vec<Target<'_>> {
        let candidates = self.candidates(device.platform, device.device_id);
        let mut targets: Vec<Target<'_>> = Vec::new();
        let mut last_group = None;
        for entry in candidates
            .iter()
            .map(|&position| &self.entries[position as usize])
        {
            // Candidates run newest first, and nothing older than the device can apply (a BSI
            // needs at least the device's version), so the rest can be skipped.
            if &entry.version < device.os_version {
                break;
            }
            if !entry.available_on(day) || !entry.applies_to(device) {
                continue;
            }
            match targets.last_mut() {
                Some(target) if last_group == Some(entry.group) => {
                    let merged = target.window().merge(entry.window());
                    target.posting_date = merged.posting_date;
                    target.expiration_date = merged.expiration_date;
                }
                _ => targets.push(Target {
                    product_version: entry.version.as_str(),
                    product_version_extra: entry.extra_text.as_deref(),
                    build: entry.build.as_deref(),
                    posting_date: entry.posting_date,
                    expiration_date: entry.expiration_date,
                }),
            }
            last_group = Some(entry.group);
        }
        targets
    }

    /// The best target for a device on a day, if any.
    pub fn best_target(&self, device: &DeviceFacts<'_>, day: NaiveDate) -> Option<Target<'_>> {
        self.targets(device, day).into_iter().next()
    }

    /// Positions of the device's entries, best first.
    fn candidates(&self, platform: Platform, device_id: &str) -> &[u32] {
        let map = &self.by_device[platform.slot()];
        // Device ids are short: lower-case them on the stack, not in a new String per device.
        let mut buffer = [0u8; 64];
        let found = if !device_id.bytes().any(|b| b.is_ascii_uppercase()) {
            map.get(device_id)
        } else if device_id.len() <= buffer.len() {
            let lowered = &mut buffer[..device_id.len()];
            lowered.copy_from_slice(device_id.as_bytes());
            lowered.make_ascii_lowercase();
            std::str::from_utf8(lowered)
                .ok()
                .and_then(|key| map.get(key))
        } else {
            map.get(device_id.to_ascii_lowercase().as_str())
        };
        found.map_or(&[][..], Vec::as_slice)
    }
}
