//! Planning: what Updraft knows of a device, where its SoftwareUpdateDeviceID comes from, whether a
//! release applies to it, and the declarations that enforce it.

use chrono::NaiveDateTime;
use std::collections::BTreeSet;

use updraft_ddm::declaration::SOFTWARE_UPDATE_STATUS_ITEMS;
use updraft_ddm::{
    ActivationSimple, Declaration, DeclarationError, DeclarationPayload, DeviceStatus, OsVersion,
    SoftwareUpdateEnforcementSpecific, StatusSubscriptions, TargetLocalDateTime, VersionExtra,
};
use updraft_feed::Platform;
use updraft_feed::models::mac_ids;

/// Where a device's SoftwareUpdateDeviceID came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceIdSource {
    /// The device reported it (`softwareupdate.device-id`, iOS 18 / macOS 15 and later).
    Reported,
    /// Derived from the model identifier through the model maps (older systems).
    Derived,
}

/// What Updraft knows of a device: from its enrollment and its merged status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceFacts {
    /// The enrollment id.
    pub enrollment_id: String,
    /// Model identifier (`MacBookPro18,3`, `iPhone15,2`).
    pub model: Option<String>,
    /// `Mac`, `iPhone`, `iPad`... when reported.
    pub model_family: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
    /// When it enrolled (RFC 3339).
    pub enrolled_at: Option<String>,
    /// Base OS version.
    pub os_version: Option<String>,
    /// Base build.
    pub build: Option<String>,
    /// Build including a BSI, when one is installed.
    pub supplemental_build: Option<String>,
    /// Supplemental letter, normalised (`(a)`), empty for none.
    pub extra: String,
    /// The reported `softwareupdate.device-id`.
    pub reported_device_id: Option<String>,
    /// Declaration types the device's DDM client supports, once reported.
    pub supported_configurations: Option<Vec<String>>,
    /// Whether a bootstrap token is escrowed.
    pub bootstrap_token_escrowed: bool,
}

impl DeviceFacts {
    /// Facts from an enrollment's identity and its merged status (status wins where both speak).
    pub fn from_status(base: DeviceFacts, status: &DeviceStatus) -> DeviceFacts {
        let mut facts = base;
        let text = |value: Option<&str>| value.map(str::to_owned);
        if let Some(model) = status.model_identifier() {
            facts.model = Some(model.to_owned());
        }
        if let Some(family) = status.model_family() {
            facts.model_family = Some(family.to_owned());
        }
        if let Some(serial) = status.serial_number() {
            facts.serial_number = Some(serial.to_owned());
        }
        if let Some(version) = status.os_version() {
            facts.os_version = Some(version.to_owned());
        }
        if let Some(build) = status.os_build_version() {
            facts.build = Some(build.to_owned());
        }
        if status.os_supplemental_build_version().is_some() {
            facts.supplemental_build = text(status.os_supplemental_build_version());
        }
        if let Some(extra) = status.os_supplemental_extra_version() {
            facts.extra = extra.canonical();
        }
        if let Some(id) = status.device_id() {
            facts.reported_device_id = Some(id.to_owned());
        }
        if let Some(capabilities) = status.client_capabilities() {
            facts.supported_configurations = Some(
                capabilities
                    .supported_payloads
                    .declarations
                    .configurations
                    .clone(),
            );
        }
        facts
    }

    /// A Mac with Apple silicon: it needs the bootstrap token (or its user) to install an
    /// update. Intel Macs report `Mac-` board ids or a VMM id; the model names the rest.
    pub fn is_apple_silicon(&self) -> bool {
        self.device_ids().is_some_and(|(ids, _)| {
            ids.iter()
                .all(|id| !id.starts_with("Mac-") && !id.starts_with("VMM"))
        }) && self.model.as_deref().is_some_and(|m| {
            m.starts_with("Mac1")
                || m.starts_with("MacBookPro17")
                || m.starts_with("MacBookPro18")
                || m.starts_with("MacBookAir10")
                || m.starts_with("Macmini9")
                || m.starts_with("iMac21")
        })
    }

    /// The platform, from the model family or identifier.
    pub fn platform(&self) -> Option<Platform> {
        let hint = self.model_family.as_deref().or(self.model.as_deref())?;
        platform_of_model(hint)
    }

    /// The SoftwareUpdateDeviceID candidates and where they came from.
    pub fn device_ids(&self) -> Option<(Vec<String>, DeviceIdSource)> {
        if let Some(id) = self
            .reported_device_id
            .as_deref()
            .filter(|id| !id.is_empty())
        {
            return Some((vec![id.to_owned()], DeviceIdSource::Reported));
        }
        let model = self.model.as_deref()?;
        match self.platform()? {
            // For the iOS family the gdmf id is the model identifier itself.
            Platform::Ios | Platform::VisionOs => {
                Some((vec![model.to_owned()], DeviceIdSource::Derived))
            }
            Platform::MacOs => mac_ids(model).map(|ids| (ids.to_vec(), DeviceIdSource::Derived)),
        }
    }
}

/// The platform a model identifier or family belongs to.
pub fn platform_of_model(model: &str) -> Option<Platform> {
    let lower = model.to_ascii_lowercase();
    if [
        "iphone",
        "ipad",
        "ipod",
        "appletv",
        "watch",
        "audioaccessory",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
    {
        Some(Platform::Ios)
    } else if lower.starts_with("realitydevice") || lower.starts_with("vision") {
        Some(Platform::VisionOs)
    } else if lower.starts_with("mac")
        || lower.starts_with("imac")
        || lower.starts_with("virtualmac")
    {
        Some(Platform::MacOs)
    } else {
        None
    }
}

/// The release a rollout enforces: one version (and supplemental letter) with the builds the
/// feed lists for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Platform.
    pub platform: Platform,
    /// The version as the feed spells it.
    pub product_version: String,
    /// `(a)` for a BSI.
    pub product_version_extra: Option<String>,
    /// Its builds, in build order.
    pub builds: Vec<ReleaseBuild>,
}

/// One build of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseBuild {
    /// The build (for a BSI, the supplemental build), when the feed gives one.
    pub build: Option<String>,
    /// For a BSI, the base build it installs on.
    pub prerequisite_build: Option<String>,
    /// Lower-cased ids of every device this build supports.
    pub supported_devices: BTreeSet<String>,
}

impl From<&updraft_feed::FeedRelease> for Release {
    fn from(release: &updraft_feed::FeedRelease) -> Self {
        Self {
            platform: release.platform,
            product_version: release.product_version.clone(),
            product_version_extra: release.product_version_extra.clone(),
            builds: release
                .builds
                .iter()
                .map(|b| ReleaseBuild {
                    build: b.build.clone(),
                    prerequisite_build: b.prerequisite_build.clone(),
                    supported_devices: b.supported_devices.clone(),
                })
                .collect(),
        }
    }
}

impl Release {
    /// Whether it is a Background Security Improvement.
    pub fn is_bsi(&self) -> bool {
        self.product_version_extra.is_some()
    }

    /// `26.4.1 (25E253)`, `26.4.1 (23E254, 23E6254)`, `26.3.1 (a) (25D771280a)`.
    pub fn label(&self) -> String {
        let extra = self
            .product_version_extra
            .as_deref()
            .map(|e| format!(" {e}"))
            .unwrap_or_default();
        let builds: Vec<&str> = self
            .builds
            .iter()
            .filter_map(|b| b.build.as_deref())
            .collect();
        let builds = if builds.is_empty() {
            String::new()
        } else {
            format!(" ({})", builds.join(", "))
        };
        format!("{}{extra}{builds}", self.product_version)
    }

    /// Whether any build lists `device_id` (lower-cased).
    pub fn supports(&self, device_id: &str) -> bool {
        self.builds
            .iter()
            .any(|b| b.supported_devices.contains(device_id))
    }

    /// The variant of a wave's enforcement a device with this target build gets: its own
    /// declaration when the release has several builds, the wave's one declaration otherwise.
    pub fn variant<'a>(&self, target_build: Option<&'a str>) -> Option<&'a str> {
        if self.builds.len() > 1 {
            target_build
        } else {
            None
        }
    }

    /// The builds that name their own variant (a release of several builds).
    fn variants(&self) -> Vec<Option<&str>> {
        let mut variants = vec![None];
        if self.builds.len() > 1 {
            variants.extend(
                self.builds
                    .iter()
                    .filter_map(|b| b.build.as_deref())
                    .map(Some),
            );
        }
        variants
    }

    /// What `TargetBuildVersion` says in a variant's declaration: the variant's build, or the one
    /// build of a single-build release, or none (the version alone).
    pub(crate) fn declared_build(&self, variant: Option<&str>) -> Option<String> {
        match (variant, self.builds.as_slice()) {
            (Some(build), _) => Some(build.to_owned()),
            (None, [only]) => only.build.clone(),
            (None, _) => None,
        }
    }
}

/// The lowest OS on which the enforcement declaration exists.
fn minimum_os(platform: Platform, family: Option<&str>) -> (&'static str, &'static str) {
    match platform {
        Platform::MacOs => ("macOS", "14.0"),
        Platform::VisionOs => ("visionOS", "26.0"),
        Platform::Ios if family.is_some_and(|f| f.eq_ignore_ascii_case("AppleTV")) => {
            ("tvOS", "18.4")
        }
        Platform::Ios => ("iOS", "17.0"),
    }
}

/// Why a device is not part of a rollout; its `Display` says it in words an admin can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// The model is not one of Apple's platforms Updraft knows.
    UnknownModel {
        /// The model identifier.
        model: String,
    },
    /// The device is of another platform than the release.
    OtherPlatform {
        /// The device's.
        device: Platform,
        /// The release's.
        release: Platform,
    },
    /// The reported OS version cannot be read.
    UnreadableOsVersion {
        /// As reported.
        reported: String,
    },
    /// No SoftwareUpdateDeviceID: not reported, and the model is not in the maps.
    NoDeviceId {
        /// The model identifier, if known.
        model: Option<String>,
    },
    /// The OS predates the enforcement declaration.
    OsTooOld {
        /// `macOS`, `iOS`, `tvOS`, `visionOS`.
        os: &'static str,
        /// The device's version.
        version: String,
        /// Where enforcement starts.
        minimum: &'static str,
    },
    /// A Mac that does not offer the declaration (Apple allows it only on supervised Macs).
    NotSupervised,
    /// Already at or above the target.
    AlreadyCurrent {
        /// What it runs, with its supplemental letter.
        runs: String,
        /// The release's label.
        target: String,
    },
    /// None of the release's builds lists the device.
    NotSupported {
        /// The device's ids.
        ids: Vec<String>,
        /// The release's label.
        release: String,
    },
    /// A BSI whose base builds the device does not run.
    WrongBaseBuild {
        /// The release's label.
        release: String,
        /// The base builds it installs on.
        prerequisites: Vec<String>,
        /// What the device runs, if known.
        device_build: Option<String>,
    },
    /// An admin holds the device back (see [`crate::rings::Hold`]).
    OnHold {
        /// Their reason.
        reason: String,
        /// When the hold ends by itself.
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The device's group is pinned below the release's major (see [`crate::rings::Pin`]).
    Pinned {
        /// The group.
        group: String,
        /// The highest major it may take.
        highest_major: u32,
    },
    /// No ring of the plan takes the device.
    InNoRing,
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownModel { model } => {
                write!(f, "model {model} is not an Apple platform Updraft knows")
            }
            Self::OtherPlatform { device, release } => {
                write!(f, "the device runs {device}, the release is for {release}")
            }
            Self::UnreadableOsVersion { reported } => write!(
                f,
                "the device reports OS version {reported:?}, which Updraft cannot read"
            ),
            Self::NoDeviceId { model } => write!(
                f,
                "no SoftwareUpdateDeviceID known: the device does not report softwareupdate.device-id and model {} is not in the model maps",
                model.as_deref().unwrap_or("(unknown)")
            ),
            Self::OsTooOld {
                os,
                version,
                minimum,
            } => write!(
                f,
                "OS too old for the declaration: {os} {version} is below {minimum}, where software-update enforcement starts"
            ),
            Self::NotSupervised => f.write_str(
                "macOS not supervised: the device does not offer the software-update enforcement declaration (Apple allows it only on supervised Macs)",
            ),
            Self::AlreadyCurrent { runs, target } => write!(
                f,
                "already at or above the target: runs {runs}, target {target}"
            ),
            Self::NotSupported { ids, release } => write!(
                f,
                "device id {} is not in the SupportedDevices of {release}",
                ids.join(" / ")
            ),
            Self::WrongBaseBuild {
                release,
                prerequisites,
                device_build,
            } => write!(
                f,
                "the BSI {release} installs only on build {}; the device runs {}",
                prerequisites.join(" or "),
                device_build.as_deref().unwrap_or("an unknown build")
            ),
            Self::OnHold { reason, until } => match until {
                Some(until) => write!(
                    f,
                    "on hold until {}: {reason}",
                    until.format("%Y-%m-%d %H:%M UTC")
                ),
                None => write!(f, "on hold: {reason}"),
            },
            Self::Pinned {
                group,
                highest_major,
            } => write!(
                f,
                "pinned: {group} stays on major version {highest_major} or below"
            ),
            Self::InNoRing => f.write_str("no ring of the plan takes the device"),
        }
    }
}

/// The decision for one device: enforce, exclude, or wait for more facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Enforce the release on this device.
    Enforce {
        /// Where the device id came from.
        device_id_source: DeviceIdSource,
        /// The matching device id.
        device_id: String,
        /// The build to name in `TargetBuildVersion`: the release's one build for this device,
        /// none when several of its builds are (the version alone then decides).
        target_build: Option<String>,
    },
    /// Leave it out, with the reason.
    Exclude(Exclusion),
    /// Not enough known yet (no OS version or capabilities reported).
    Wait(&'static str),
}

/// Decides whether a release applies to a device.
pub fn decide(facts: &DeviceFacts, release: &Release) -> Decision {
    let Some(platform) = facts.platform() else {
        return match &facts.model {
            Some(model) => Decision::Exclude(Exclusion::UnknownModel {
                model: model.clone(),
            }),
            None => Decision::Wait("the device's model is not known yet"),
        };
    };
    if platform != release.platform {
        return Decision::Exclude(Exclusion::OtherPlatform {
            device: platform,
            release: release.platform,
        });
    }
    let Some(os_text) = facts.os_version.as_deref() else {
        return Decision::Wait("the device's OS version is not known yet");
    };
    let Ok(os) = OsVersion::parse(os_text) else {
        return Decision::Exclude(Exclusion::UnreadableOsVersion {
            reported: os_text.to_owned(),
        });
    };
    let Some((ids, source)) = facts.device_ids() else {
        return Decision::Exclude(Exclusion::NoDeviceId {
            model: facts.model.clone(),
        });
    };
    let (os_name, minimum) = minimum_os(platform, facts.model_family.as_deref());
    if os < OsVersion::parse(minimum).unwrap_or_else(|_| os.clone()) {
        return Decision::Exclude(Exclusion::OsTooOld {
            os: os_name,
            version: os_text.to_owned(),
            minimum,
        });
    }
    let enforcement_type = SoftwareUpdateEnforcementSpecific::TYPE;
    match (&facts.supported_configurations, platform) {
        (Some(types), Platform::MacOs) if !types.iter().any(|t| t == enforcement_type) => {
            return Decision::Exclude(Exclusion::NotSupervised);
        }
        (None, Platform::MacOs) => {
            return Decision::Wait("the device's DDM capabilities are not known yet");
        }
        _ => {}
    }
    let target = OsVersion::parse(&release.product_version).unwrap_or_else(|_| os.clone());
    let device_extra = VersionExtra::parse(&facts.extra);
    let release_extra = VersionExtra::parse(release.product_version_extra.as_deref().unwrap_or(""));
    if (&os, &device_extra) >= (&target, &release_extra) {
        return Decision::Exclude(Exclusion::AlreadyCurrent {
            runs: if device_extra.is_none() {
                os_text.to_owned()
            } else {
                format!("{os_text} {device_extra}")
            },
            target: release.label(),
        });
    }
    let Some(device_id) = ids
        .iter()
        .find(|id| release.supports(&id.to_ascii_lowercase()))
    else {
        return Decision::Exclude(Exclusion::NotSupported {
            ids,
            release: release.label(),
        });
    };
    let lowered = device_id.to_ascii_lowercase();
    let listing: Vec<&ReleaseBuild> = release
        .builds
        .iter()
        .filter(|b| b.supported_devices.contains(&lowered))
        .collect();
    let applicable: Vec<&ReleaseBuild> = listing
        .iter()
        .copied()
        .filter(|b| {
            !release.is_bsi()
                || b.prerequisite_build.is_none()
                || b.prerequisite_build.as_deref() == facts.build.as_deref()
        })
        .collect();
    if applicable.is_empty() {
        return Decision::Exclude(Exclusion::WrongBaseBuild {
            release: release.label(),
            prerequisites: listing
                .iter()
                .filter_map(|b| b.prerequisite_build.clone())
                .collect(),
            device_build: facts.build.clone(),
        });
    }
    // Apple: a TargetBuildVersion that does not fit the device yields to the version. Name the
    // build only when exactly one of the release's builds is the device's.
    let target_build = match applicable.as_slice() {
        [only] => only.build.clone(),
        _ => None,
    };
    Decision::Enforce {
        device_id_source: source,
        device_id: device_id.clone(),
        target_build,
    }
}

/// Identifier and set names Updraft uses on the DDM server.
pub mod names {
    /// The set every device gets: the status subscriptions and their activation.
    pub const BASE_SET: &str = "com.updraft.base";
    /// The status-subscriptions configuration.
    pub const SUBSCRIPTIONS: &str = "com.updraft.status-subscriptions";
    /// Its activation.
    pub const SUBSCRIPTIONS_ACTIVATION: &str = "com.updraft.status-subscriptions.activation";

    /// A wave's enforcement configuration, shared by the wave's devices (the deadline is a
    /// local time, the same string everywhere). A release of several builds has one more per
    /// build, its `variant`, for the devices only that build is for.
    pub fn enforcement(rollout: i64, wave: u32, variant: Option<&str>) -> String {
        match variant {
            None => format!("com.updraft.su.r{rollout}.w{wave}"),
            Some(build) => format!("com.updraft.su.r{rollout}.w{wave}.b{build}"),
        }
    }

    /// Its activation.
    pub fn enforcement_activation(rollout: i64, wave: u32, variant: Option<&str>) -> String {
        format!("{}.activation", enforcement(rollout, wave, variant))
    }

    /// The set holding both.
    pub fn enforcement_set(rollout: i64, wave: u32, variant: Option<&str>) -> String {
        format!("{}.set", enforcement(rollout, wave, variant))
    }
}

/// The base declarations: status subscriptions for every device, and their activation.
pub fn base_declarations() -> Result<Vec<Declaration>, DeclarationError> {
    Ok(vec![
        Declaration::new(
            names::SUBSCRIPTIONS,
            &StatusSubscriptions::to_items(SOFTWARE_UPDATE_STATUS_ITEMS.iter().copied()),
        )?,
        Declaration::new(
            names::SUBSCRIPTIONS_ACTIVATION,
            &ActivationSimple {
                standard_configurations: vec![names::SUBSCRIPTIONS.into()],
                predicate: None,
            },
        )?,
    ])
}

/// A wave's declarations, each with the set that carries it: per variant (see
/// [`Release::variant`]) the enforcement configuration (full three-part version; for a BSI the
/// base version plus the supplemental build) and its own activation.
pub fn enforcement_declarations(
    rollout: i64,
    wave: u32,
    release: &Release,
    deadline: NaiveDateTime,
    details_url: Option<&str>,
) -> Result<Vec<(String, Declaration)>, DeclarationError> {
    let version = OsVersion::parse(&release.product_version).map_err(|error| {
        DeclarationError::InvalidValue {
            key: "TargetOSVersion",
            value: release.product_version.clone(),
            reason: error.reason.into(),
        }
    })?;
    let mut declarations = Vec::new();
    for variant in release.variants() {
        let payload = SoftwareUpdateEnforcementSpecific {
            target_os_version: version.three_part(),
            target_build_version: release.declared_build(variant),
            target_local_date_time: TargetLocalDateTime(deadline),
            details_url: details_url.map(str::to_owned),
        };
        let configuration = names::enforcement(rollout, wave, variant);
        let set = names::enforcement_set(rollout, wave, variant);
        declarations.push((
            set.clone(),
            Declaration::new(configuration.clone(), &payload)?,
        ));
        declarations.push((
            set,
            Declaration::new(
                names::enforcement_activation(rollout, wave, variant),
                &ActivationSimple {
                    standard_configurations: vec![configuration],
                    predicate: None,
                },
            )?,
        ));
    }
    Ok(declarations)
}
