//! The status items Updraft reads, typed, and the rest kept as JSON.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;

use crate::version::VersionExtra;

use super::*;

/// `softwareupdate.install-state`. Open: a value Apple adds later is kept as it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstallState {
    /// No update pending; any previous update succeeded.
    None,
    /// The request to update has started (documented in prose, not in the schema's range list).
    Waiting,
    /// Downloading the update.
    Downloading,
    /// Downloaded and prepared, ready to install.
    Prepared,
    /// Installing.
    Installing,
    /// The update failed; see `softwareupdate.failure-reason`.
    Failed,
    /// A value this version does not know, kept verbatim.
    Other(String),
}

impl InstallState {
    /// Reads Apple's string.
    pub fn parse(text: &str) -> Self {
        match text {
            "none" => Self::None,
            "waiting" => Self::Waiting,
            "downloading" => Self::Downloading,
            "prepared" => Self::Prepared,
            "installing" => Self::Installing,
            "failed" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Apple's string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::None => "none",
            Self::Waiting => "waiting",
            Self::Downloading => "downloading",
            Self::Prepared => "prepared",
            Self::Installing => "installing",
            Self::Failed => "failed",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for InstallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for InstallState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for InstallState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::parse(&text))
    }
}

/// `softwareupdate.pending-version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingVersion {
    /// The pending OS version, including any supplemental version; empty if none is pending.
    #[serde(rename = "os-version")]
    pub os_version: String,
    /// The pending build; empty if none is pending.
    #[serde(rename = "build-version")]
    pub build_version: String,
    /// When the pending update will be installed (only while it is being enforced). Apple's
    /// schemas disagree on its type, so it is kept as the text the device sent.
    #[serde(
        rename = "target-local-date-time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target_local_date_time: Option<String>,
}

/// `softwareupdate.failure-reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReason {
    /// How many times the current update failed; 0 when none did.
    pub count: u64,
    /// Why the last attempt failed, in Apple's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339 time of the last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// `softwareupdate.install-reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallReason {
    /// What triggered the pending update (`declaration`, `mdm`, `system-settings`...); empty if
    /// none is pending.
    pub reason: Vec<String>,
    /// The declaration that triggered it, when `reason` contains `declaration`.
    #[serde(
        rename = "declaration-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub declaration_id: Option<String>,
}

/// Whether the device judged a declaration valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Validity {
    /// `valid`
    Valid,
    /// `invalid`: see the reasons.
    Invalid,
    /// `unknown`: not yet evaluated, or not referenced by an activation.
    Unknown,
    /// A value this version does not know, kept verbatim.
    Other(String),
}

impl Validity {
    fn as_str(&self) -> &str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Unknown => "unknown",
            Self::Other(other) => other,
        }
    }
}

impl Serialize for Validity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Validity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(match text.as_ref() {
            "valid" => Self::Valid,
            "invalid" => Self::Invalid,
            "unknown" => Self::Unknown,
            other => Self::Other(other.to_owned()),
        })
    }
}

/// A reason attached to a declaration's status (lower-case keys, unlike report `Errors`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeclarationReason {
    /// For example `Error.ConfigurationCannotBeApplied`.
    pub code: String,
    /// Apple's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Extra keys Apple attaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// One declaration's state on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeclarationStatus {
    /// The declaration's identifier.
    pub identifier: String,
    /// The revision the device holds.
    #[serde(rename = "server-token")]
    pub server_token: String,
    /// Whether it is active.
    pub active: bool,
    /// Whether the device found it valid.
    pub valid: Validity,
    /// Why it is invalid or inactive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<DeclarationReason>>,
}

/// `management.declarations`: every declaration the device holds, by category.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagementDeclarations {
    /// Activations.
    #[serde(default)]
    pub activations: Vec<DeclarationStatus>,
    /// Configurations.
    #[serde(default)]
    pub configurations: Vec<DeclarationStatus>,
    /// Assets.
    #[serde(default)]
    pub assets: Vec<DeclarationStatus>,
    /// Management declarations.
    #[serde(default)]
    pub management: Vec<DeclarationStatus>,
}

impl ManagementDeclarations {
    /// Every declaration the device holds, in any category.
    pub fn all(&self) -> impl Iterator<Item = &DeclarationStatus> {
        self.activations
            .iter()
            .chain(&self.configurations)
            .chain(&self.assets)
            .chain(&self.management)
    }

    /// The device's state of one declaration, if it holds it.
    pub fn find(&self, identifier: &str) -> Option<&DeclarationStatus> {
        self.all().find(|status| status.identifier == identifier)
    }
}

/// `management.client-capabilities`: what the device's DDM client supports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCapabilities {
    /// Protocol versions, such as `1.0.0`.
    #[serde(rename = "supported-versions", default)]
    pub supported_versions: Vec<String>,
    /// Optional features.
    #[serde(
        rename = "supported-features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub supported_features: Option<Value>,
    /// Declaration types and status items the device supports.
    #[serde(rename = "supported-payloads", default)]
    pub supported_payloads: SupportedPayloads,
}

/// `supported-payloads` of the client capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportedPayloads {
    /// Declaration types by category.
    #[serde(default)]
    pub declarations: SupportedDeclarations,
    /// Status item names.
    #[serde(rename = "status-items", default)]
    pub status_items: Vec<String>,
}

/// Declaration types the device supports, by category.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportedDeclarations {
    /// Activation types.
    #[serde(default)]
    pub activations: Vec<String>,
    /// Asset types.
    #[serde(default)]
    pub assets: Vec<String>,
    /// Configuration types.
    #[serde(default)]
    pub configurations: Vec<String>,
    /// Management types.
    #[serde(default)]
    pub management: Vec<String>,
}

/// One status item, typed where Updraft reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusItem {
    /// `softwareupdate.install-state`
    InstallState(InstallState),
    /// `softwareupdate.pending-version`
    PendingVersion(PendingVersion),
    /// `softwareupdate.failure-reason`
    FailureReason(FailureReason),
    /// `softwareupdate.install-reason`
    InstallReason(InstallReason),
    /// `softwareupdate.device-id`: the id to match against the lookup service.
    DeviceId(String),
    /// `softwareupdate.beta-enrollment`: the beta program, or empty.
    BetaEnrollment(String),
    /// `device.operating-system.version`: the base version, without supplemental letter.
    OsVersion(String),
    /// `device.operating-system.build-version`: the base build.
    OsBuildVersion(String),
    /// `device.operating-system.supplemental.build-version`: the build including any BSI.
    OsSupplementalBuildVersion(String),
    /// `device.operating-system.supplemental.extra-version`, normalised (`a` and `(a)` agree).
    OsSupplementalExtraVersion(VersionExtra),
    /// `device.operating-system.family`
    OsFamily(String),
    /// `device.operating-system.marketing-name`
    OsMarketingName(String),
    /// `device.model.family`: `Mac`, `iPhone`, `iPad`...
    ModelFamily(String),
    /// `device.model.identifier`: `MacBookPro18,3`, `iPhone15,2`...
    ModelIdentifier(String),
    /// `device.model.marketing-name`
    ModelMarketingName(String),
    /// `device.model.number`
    ModelNumber(String),
    /// `device.identifier.serial-number`
    SerialNumber(String),
    /// `device.identifier.udid`
    Udid(String),
    /// `management.declarations`
    Declarations(ManagementDeclarations),
    /// `management.client-capabilities`
    ClientCapabilities(ClientCapabilities),
    /// Any other item, kept as sent, under its dotted name.
    Other {
        /// The dotted name.
        name: String,
        /// The value.
        value: Value,
    },
}

/// The typed status items, by dotted name.
pub(super) const KNOWN_ITEMS: &[&str] = &[
    "softwareupdate.install-state",
    "softwareupdate.pending-version",
    "softwareupdate.failure-reason",
    "softwareupdate.install-reason",
    "softwareupdate.device-id",
    "softwareupdate.beta-enrollment",
    "device.operating-system.version",
    "device.operating-system.build-version",
    "device.operating-system.supplemental.build-version",
    "device.operating-system.supplemental.extra-version",
    "device.operating-system.family",
    "device.operating-system.marketing-name",
    "device.model.family",
    "device.model.identifier",
    "device.model.marketing-name",
    "device.model.number",
    "device.identifier.serial-number",
    "device.identifier.udid",
    "management.declarations",
    "management.client-capabilities",
];

impl StatusItem {
    /// The item's dotted name.
    pub fn name(&self) -> &str {
        match self {
            Self::InstallState(_) => KNOWN_ITEMS[0],
            Self::PendingVersion(_) => KNOWN_ITEMS[1],
            Self::FailureReason(_) => KNOWN_ITEMS[2],
            Self::InstallReason(_) => KNOWN_ITEMS[3],
            Self::DeviceId(_) => KNOWN_ITEMS[4],
            Self::BetaEnrollment(_) => KNOWN_ITEMS[5],
            Self::OsVersion(_) => KNOWN_ITEMS[6],
            Self::OsBuildVersion(_) => KNOWN_ITEMS[7],
            Self::OsSupplementalBuildVersion(_) => KNOWN_ITEMS[8],
            Self::OsSupplementalExtraVersion(_) => KNOWN_ITEMS[9],
            Self::OsFamily(_) => KNOWN_ITEMS[10],
            Self::OsMarketingName(_) => KNOWN_ITEMS[11],
            Self::ModelFamily(_) => KNOWN_ITEMS[12],
            Self::ModelIdentifier(_) => KNOWN_ITEMS[13],
            Self::ModelMarketingName(_) => KNOWN_ITEMS[14],
            Self::ModelNumber(_) => KNOWN_ITEMS[15],
            Self::SerialNumber(_) => KNOWN_ITEMS[16],
            Self::Udid(_) => KNOWN_ITEMS[17],
            Self::Declarations(_) => KNOWN_ITEMS[18],
            Self::ClientCapabilities(_) => KNOWN_ITEMS[19],
            Self::Other { name, .. } => name,
        }
    }

    /// Reads the value of the item called `name`.
    pub fn from_value(name: &str, value: Value) -> Result<Self, StatusReportError> {
        if !KNOWN_ITEMS.contains(&name) {
            return Ok(Self::Other {
                name: name.to_owned(),
                value,
            });
        }
        Self::read_known(name, value).map_err(|error| StatusReportError::InvalidItem {
            item: name.to_owned(),
            reason: error.to_string(),
        })
    }

    /// Reads a known item's value straight from a deserializer (a report's bytes or a `Value`).
    pub(super) fn read_known<'de, D: Deserializer<'de>>(
        name: &str,
        value: D,
    ) -> Result<Self, D::Error> {
        let string = |value: D| String::deserialize(value);
        Ok(match name {
            "softwareupdate.install-state" => Self::InstallState(Deserialize::deserialize(value)?),
            "softwareupdate.pending-version" => {
                Self::PendingVersion(Deserialize::deserialize(value)?)
            }
            "softwareupdate.failure-reason" => {
                Self::FailureReason(Deserialize::deserialize(value)?)
            }
            "softwareupdate.install-reason" => {
                Self::InstallReason(Deserialize::deserialize(value)?)
            }
            "softwareupdate.device-id" => Self::DeviceId(string(value)?),
            "softwareupdate.beta-enrollment" => Self::BetaEnrollment(string(value)?),
            "device.operating-system.version" => Self::OsVersion(string(value)?),
            "device.operating-system.build-version" => Self::OsBuildVersion(string(value)?),
            "device.operating-system.supplemental.build-version" => {
                Self::OsSupplementalBuildVersion(string(value)?)
            }
            "device.operating-system.supplemental.extra-version" => {
                Self::OsSupplementalExtraVersion(VersionExtra::parse(&string(value)?))
            }
            "device.operating-system.family" => Self::OsFamily(string(value)?),
            "device.operating-system.marketing-name" => Self::OsMarketingName(string(value)?),
            "device.model.family" => Self::ModelFamily(string(value)?),
            "device.model.identifier" => Self::ModelIdentifier(string(value)?),
            "device.model.marketing-name" => Self::ModelMarketingName(string(value)?),
            "device.model.number" => Self::ModelNumber(string(value)?),
            "device.identifier.serial-number" => Self::SerialNumber(string(value)?),
            "device.identifier.udid" => Self::Udid(string(value)?),
            "management.declarations" => Self::Declarations(Deserialize::deserialize(value)?),
            "management.client-capabilities" => {
                Self::ClientCapabilities(Deserialize::deserialize(value)?)
            }
            other => Self::Other {
                name: other.to_owned(),
                value: Value::deserialize(value)?,
            },
        })
    }

    /// The item's value as Apple spells it.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(ItemValue(self)).unwrap_or_default()
    }
}

/// An item's value as Apple spells it, serialized without building a `Value` first.
pub(super) struct ItemValue<'a>(pub(super) &'a StatusItem);

impl Serialize for ItemValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            StatusItem::InstallState(state) => serializer.serialize_str(state.as_str()),
            StatusItem::PendingVersion(value) => value.serialize(serializer),
            StatusItem::FailureReason(value) => value.serialize(serializer),
            StatusItem::InstallReason(value) => value.serialize(serializer),
            StatusItem::Declarations(value) => value.serialize(serializer),
            StatusItem::ClientCapabilities(value) => value.serialize(serializer),
            StatusItem::OsSupplementalExtraVersion(extra) => {
                serializer.serialize_str(&extra.canonical())
            }
            StatusItem::DeviceId(text)
            | StatusItem::BetaEnrollment(text)
            | StatusItem::OsVersion(text)
            | StatusItem::OsBuildVersion(text)
            | StatusItem::OsSupplementalBuildVersion(text)
            | StatusItem::OsFamily(text)
            | StatusItem::OsMarketingName(text)
            | StatusItem::ModelFamily(text)
            | StatusItem::ModelIdentifier(text)
            | StatusItem::ModelMarketingName(text)
            | StatusItem::ModelNumber(text)
            | StatusItem::SerialNumber(text)
            | StatusItem::Udid(text) => serializer.serialize_str(text),
            StatusItem::Other { value, .. } => value.serialize(serializer),
        }
    }
}

/// An entry of the report's `Errors`: a status item the device could not return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusItemError {
    /// The item's dotted name.
    #[serde(rename = "StatusItem")]
    pub status_item: String,
    /// Why.
    #[serde(rename = "Reasons", default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<StatusReason>>,
}

/// A reason in the report's `Errors` (upper-case keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReason {
    /// The error code.
    #[serde(rename = "Code")]
    pub code: String,
    /// Apple's description.
    #[serde(
        rename = "Description",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    /// Extra keys.
    #[serde(rename = "Details", default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}
