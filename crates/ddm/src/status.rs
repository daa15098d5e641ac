//! Status reports (`StatusReport`) and a device's known status, merged report by report.
//!
//! Schema: apple/device-management `declarative/protocol/statusreport.yaml` and
//! `declarative/status/*.yaml`. A status item's dotted name is a path into the nested
//! `StatusItems` object: `softwareupdate.install-state` arrives as
//! `{"softwareupdate": {"install-state": "..."}}`.

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

use crate::version::VersionExtra;

/// Why a status report cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusReportError {
    /// The body is not JSON, or not of the report's shape.
    #[error("status report is not valid JSON of the StatusReport shape: {0}")]
    Malformed(String),
    /// `StatusItems` is absent or not an object.
    #[error("status report has no StatusItems object")]
    MissingStatusItems,
    /// A known status item does not have the shape Apple's schema gives it.
    #[error("status item {item} is malformed: {reason}")]
    InvalidItem {
        /// The item's dotted name.
        item: String,
        /// What is wrong.
        reason: String,
    },
}

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
const KNOWN_ITEMS: &[&str] = &[
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
    fn read_known<'de, D: Deserializer<'de>>(name: &str, value: D) -> Result<Self, D::Error> {
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
struct ItemValue<'a>(&'a StatusItem);

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

/// A status report, its `StatusItems` tree read into items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusReport {
    /// The items carried, in the order the device sent them.
    pub items: Vec<StatusItem>,
    /// Items the device could not return.
    pub errors: Vec<StatusItemError>,
    /// True for a full ("safety sync") report that replaces everything known.
    pub full_report: bool,
}

#[derive(Deserialize)]
struct WireReport<'a> {
    #[serde(rename = "StatusItems", borrow)]
    status_items: Option<&'a RawValue>,
    #[serde(rename = "Errors", default)]
    errors: Vec<StatusItemError>,
    #[serde(rename = "FullReport", default)]
    full_report: bool,
}

impl StatusReport {
    /// Parses a report's JSON bytes. Unknown items are kept; a known item of the wrong shape is
    /// an error naming the item.
    pub fn parse(bytes: &[u8]) -> Result<Self, StatusReportError> {
        let wire: WireReport = serde_json::from_slice(bytes)
            .map_err(|error| StatusReportError::Malformed(error.to_string()))?;
        let Some(tree) = wire.status_items.filter(|raw| raw.get().starts_with('{')) else {
            return Err(StatusReportError::MissingStatusItems);
        };
        let mut items = Vec::new();
        let mut failed_item = None;
        let mut unnameable = Vec::new();
        let namespace = Namespace {
            prefix: String::new(),
            items: &mut items,
            failed_item: &mut failed_item,
            unnameable: &mut unnameable,
        };
        let mut reader = serde_json::Deserializer::from_str(tree.get());
        (&mut reader)
            .deserialize_map(namespace)
            .map_err(|error| match failed_item.take() {
                Some(item) => StatusReportError::InvalidItem {
                    item,
                    reason: error.to_string(),
                },
                None => StatusReportError::Malformed(error.to_string()),
            })?;
        let mut errors = wire.errors;
        // Apple's names are paths of non-empty, dot-free keys; any other key cannot be written
        // back into the tree and read as the same item (a trailing dot read back as part of a
        // known item, say), so it is refused and named, never kept half-right.
        errors.extend(unnameable.into_iter().map(|name| StatusItemError {
            status_item: name,
            reasons: Some(vec![StatusReason {
                code: REFUSED_CODE.to_owned(),
                description: Some(
                    "not kept by the server: a key of a status item's path is empty or holds a dot"
                        .to_owned(),
                ),
                details: None,
            }]),
        }));
        Ok(Self {
            items,
            errors,
            full_report: wire.full_report,
        })
    }

    /// The report as Apple's JSON: items nested back into the `StatusItems` tree.
    pub fn to_json(&self) -> Value {
        report_json(&self.items, &self.errors, self.full_report)
    }
}

fn report_json<'a>(
    items: impl IntoIterator<Item = &'a StatusItem>,
    errors: impl IntoIterator<Item = &'a StatusItemError>,
    full_report: bool,
) -> Value {
    let mut tree = Map::new();
    for item in items {
        insert_path(&mut tree, item.name(), item.to_value());
    }
    let errors: Vec<&StatusItemError> = errors.into_iter().collect();
    let mut report = Map::new();
    report.insert("StatusItems".into(), Value::Object(tree));
    report.insert(
        "Errors".into(),
        serde_json::to_value(errors).unwrap_or_default(),
    );
    if full_report {
        report.insert("FullReport".into(), Value::Bool(true));
    }
    Value::Object(report)
}

/// An object of the `StatusItems` tree, read straight from the report's bytes: a known dotted
/// name is one typed item; an object under an unknown name is a namespace to descend into; any
/// other value (and an empty object) is an unknown item kept under its path.
struct Namespace<'s> {
    prefix: String,
    items: &'s mut Vec<StatusItem>,
    /// The known item that failed to read, so the error can name it.
    failed_item: &'s mut Option<String>,
    /// Paths with an empty or dotted key, skipped.
    unnameable: &'s mut Vec<String>,
}

impl<'de> Visitor<'de> for Namespace<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of status items")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let nameable = !key.is_empty() && !key.contains('.');
            let name = if self.prefix.is_empty() {
                key.into_owned()
            } else {
                format!("{}.{key}", self.prefix)
            };
            if !nameable {
                map.next_value::<de::IgnoredAny>()?;
                self.unnameable.push(name);
            } else if KNOWN_ITEMS.contains(&name.as_str()) {
                let known = KnownItem {
                    name: &name,
                    failed_item: self.failed_item,
                };
                let item = map.next_value_seed(known)?;
                self.items.push(item);
            } else {
                map.next_value_seed(UnknownItem {
                    name,
                    items: self.items,
                    failed_item: self.failed_item,
                    unnameable: self.unnameable,
                })?;
            }
        }
        Ok(())
    }
}

struct KnownItem<'s> {
    name: &'s str,
    failed_item: &'s mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for KnownItem<'_> {
    type Value = StatusItem;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<StatusItem, D::Error> {
        StatusItem::read_known(self.name, deserializer).inspect_err(|_| {
            *self.failed_item = Some(self.name.to_owned());
        })
    }
}

/// A value under a name Updraft does not type: a namespace if it is a non-empty object.
struct UnknownItem<'s> {
    name: String,
    items: &'s mut Vec<StatusItem>,
    failed_item: &'s mut Option<String>,
    unnameable: &'s mut Vec<String>,
}

impl UnknownItem<'_> {
    fn keep(self, value: Value) {
        self.items.push(StatusItem::Other {
            name: self.name,
            value,
        });
    }
}

impl<'de> DeserializeSeed<'de> for UnknownItem<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UnknownItem<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a status item or a namespace of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let (before, refused_before) = (self.items.len(), self.unnameable.len());
        Namespace {
            prefix: self.name.clone(),
            items: &mut *self.items,
            failed_item: &mut *self.failed_item,
            unnameable: &mut *self.unnameable,
        }
        .visit_map(map)?;
        // Every entry of a namespace adds at least one item, so none added means it was empty
        // (unless its entries were refused: then nothing of it is kept).
        if self.items.len() == before && self.unnameable.len() == refused_before {
            self.keep(Value::Object(Map::new()));
        }
        Ok(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        self.keep(value);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.keep(Value::Bool(value));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.keep(Value::from(value));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.keep(Value::from(value));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.keep(Value::from(value));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.keep(Value::String(value.to_owned()));
        Ok(())
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<(), E> {
        self.keep(Value::String(value));
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.keep(Value::Null);
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.keep(Value::Null);
        Ok(())
    }
}

fn is_refusal(error: &StatusItemError) -> bool {
    error
        .reasons
        .iter()
        .flatten()
        .any(|reason| reason.code == REFUSED_CODE)
}

fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Levels of arrays and objects in `value`, counted without recursion.
fn value_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

fn write_key(out: &mut Vec<u8>, key: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    write_json(out, key);
    out.push(b':');
}

fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    // Writing into a Vec fails only if a map key is not a string, which none of these has.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn insert_path(tree: &mut Map<String, Value>, name: &str, value: Value) {
    let mut node = tree;
    let mut segments = name.split('.').peekable();
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            node.insert(segment.to_owned(), value);
            return;
        }
        let child = node
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        let Value::Object(map) = child else { return };
        node = map;
    }
}

/// What a server keeps of one device's status at most. Items Updraft reads (install state, OS
/// version, declarations…) are always kept; the bounds hold back what a device, or someone
/// posing as one, could grow without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusBounds {
    /// Dotted parts of an item's name (`device.operating-system.version` has three), counting
    /// the nesting of its value: the merged status is written back as nested JSON, which a
    /// reader takes only 128 levels deep.
    pub max_name_parts: usize,
    /// Items of names Updraft does not type.
    pub max_unknown_items: usize,
    /// Their total size, as JSON.
    pub max_unknown_bytes: usize,
    /// Entries of `Errors` kept.
    pub max_errors: usize,
}

impl Default for StatusBounds {
    fn default() -> Self {
        Self {
            max_name_parts: 32,
            max_unknown_items: 4_096,
            max_unknown_bytes: 1024 * 1024,
            max_errors: 256,
        }
    }
}

/// The `Code` of an `Errors` entry a server writes for items it refused to keep.
pub const REFUSED_CODE: &str = "Updraft.StatusBound";

/// Refused items are named one by one up to this many per report; the rest are counted.
const REFUSALS_NAMED: usize = 10;

/// What [`DeviceStatus::absorb_within`] did with a report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Absorbed {
    /// Whether the status changed.
    pub changed: bool,
    /// Items and errors of the report that were not kept, each recorded in `Errors`.
    pub refused: usize,
}

/// What is known of a device's status: the merge of every report received.
///
/// Merge rule: a `FullReport: true` report replaces everything; any other report replaces only
/// the items it carries. An item is replaced whole (a `failure-reason` without `reason` means the
/// reason is gone), except unknown array items whose elements carry an `identifier`: those are
/// incremental per Apple, updated element by element, and `"_removed": true` removes one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceStatus {
    items: BTreeMap<String, StatusItem>,
    errors: BTreeMap<String, StatusItemError>,
}

impl DeviceStatus {
    /// Applies one report.
    pub fn apply(&mut self, report: &StatusReport) {
        self.absorb(report.clone());
    }

    /// Applies one report, taking its items rather than copying them. Returns whether the
    /// status changed: most reports (a daily full report above all) repeat what is known, and a
    /// server need not write again what did not change.
    pub fn absorb(&mut self, report: StatusReport) -> bool {
        if report.full_report {
            let items = std::mem::take(&mut self.items);
            let errors = std::mem::take(&mut self.errors);
            self.merge(report);
            return self.items != items || self.errors != errors;
        }
        self.merge(report)
    }

    /// Applies one report within `bounds`: items over them are not kept, and each refusal is
    /// recorded in this status's `Errors` under the item's name with [`REFUSED_CODE`] and the
    /// reason (the first few by name, the rest counted), so nothing is dropped silently.
    pub fn absorb_within(&mut self, mut report: StatusReport, bounds: &StatusBounds) -> Absorbed {
        let (mut items_used, mut bytes_used) = if report.full_report {
            (0, 0)
        } else {
            self.unknown_usage()
        };
        let mut refusals: Vec<(String, String)> = Vec::new();
        report.items.retain(|item| {
            let depth = item.name().split('.').count()
                + match item {
                    StatusItem::Other { value, .. } => value_depth(value),
                    _ => 0,
                };
            if depth > bounds.max_name_parts {
                refusals.push((
                    item.name().to_owned(),
                    format!(
                        "nested {depth} levels deep (dotted name and value), more than the {} kept",
                        bounds.max_name_parts
                    ),
                ));
                return false;
            }
            let StatusItem::Other { name, value } = item else {
                return true;
            };
            let size = name.len() + json_len(value);
            let replaced = (!report.full_report)
                .then(|| self.items.get(name))
                .flatten()
                .map(|old| match old {
                    StatusItem::Other { name, value } => name.len() + json_len(value),
                    _ => 0,
                });
            let items = items_used + usize::from(replaced.is_none());
            let bytes = (bytes_used + size).saturating_sub(replaced.unwrap_or(0));
            if items > bounds.max_unknown_items || bytes > bounds.max_unknown_bytes {
                refusals.push((
                    name.clone(),
                    format!(
                        "this device's status already holds {items_used} unknown items \
                         ({bytes_used} bytes); at most {} items and {} bytes are kept",
                        bounds.max_unknown_items, bounds.max_unknown_bytes
                    ),
                ));
                return false;
            }
            (items_used, bytes_used) = (items, bytes);
            true
        });
        let errors_room = bounds.max_errors.saturating_sub(if report.full_report {
            0
        } else {
            self.errors.len()
        });
        if report.errors.len() > errors_room {
            for error in report.errors.drain(errors_room..) {
                refusals.push((
                    error.status_item,
                    format!(
                        "the device's error for it was not kept: at most {} errors are",
                        bounds.max_errors
                    ),
                ));
            }
        }
        let refused = refusals.len();
        let mut changed = self.absorb(report);
        if refused > 0 {
            changed = true;
            let named = refusals.len().min(REFUSALS_NAMED);
            let rest = refusals.split_off(named);
            let mut record = |name: String, description: String| {
                // The bound on errors holds for refusals too: the oldest refusal makes room.
                if self.errors.len() >= bounds.max_errors && !self.errors.contains_key(&name) {
                    let oldest = self
                        .errors
                        .iter()
                        .find(|(_, error)| is_refusal(error))
                        .map(|(key, _)| key.clone());
                    match oldest {
                        Some(key) => self.errors.remove(&key),
                        None => return,
                    };
                }
                let reasons = vec![StatusReason {
                    code: REFUSED_CODE.to_owned(),
                    description: Some(description),
                    details: None,
                }];
                self.errors.insert(
                    name.clone(),
                    StatusItemError {
                        status_item: name,
                        reasons: Some(reasons),
                    },
                );
            };
            for (name, reason) in refusals {
                record(name, format!("not kept by the server: {reason}"));
            }
            if let Some((first, reason)) = rest.first() {
                record(
                    first.clone(),
                    format!(
                        "not kept by the server, with {} more items of the same report: {reason}",
                        rest.len() - 1
                    ),
                );
            }
        }
        Absorbed { changed, refused }
    }

    /// Unknown items held, and their size as JSON.
    fn unknown_usage(&self) -> (usize, usize) {
        self.items
            .values()
            .filter_map(|item| match item {
                StatusItem::Other { name, value } => Some(name.len() + json_len(value)),
                _ => None,
            })
            .fold((0, 0), |(items, bytes), size| (items + 1, bytes + size))
    }

    /// Merges a report's items and errors into this status; whether any differed.
    fn merge(&mut self, report: StatusReport) -> bool {
        let mut changed = false;
        for item in report.items {
            changed |= self.errors.remove(item.name()).is_some();
            let merged = match (self.items.get(item.name()), item, report.full_report) {
                (
                    Some(StatusItem::Other {
                        value: Value::Array(old),
                        ..
                    }),
                    StatusItem::Other {
                        name,
                        value: Value::Array(new),
                    },
                    false,
                ) if is_identified_list(&new) => StatusItem::Other {
                    value: Value::Array(merge_identified(old, &new)),
                    name,
                },
                (_, item, _) => item,
            };
            // Most reports repeat the items already known: replace in place, no new key.
            match self.items.get_mut(merged.name()) {
                Some(slot) => {
                    changed |= *slot != merged;
                    *slot = merged;
                }
                None => {
                    changed = true;
                    self.items.insert(merged.name().to_owned(), merged);
                }
            }
        }
        for error in report.errors {
            changed |= self.errors.get(&error.status_item) != Some(&error);
            self.errors.insert(error.status_item.clone(), error);
        }
        changed
    }

    /// Every item known, by dotted name.
    pub fn items(&self) -> impl Iterator<Item = &StatusItem> {
        self.items.values()
    }

    /// The item called `name`, if known.
    pub fn get(&self, name: &str) -> Option<&StatusItem> {
        self.items.get(name)
    }

    /// Items the device said it could not return, and why.
    pub fn errors(&self) -> impl Iterator<Item = &StatusItemError> {
        self.errors.values()
    }

    /// Everything known as one full report, so that applying it to an empty status gives this
    /// status back.
    pub fn to_full_report(&self) -> StatusReport {
        StatusReport {
            items: self.items.values().cloned().collect(),
            errors: self.errors.values().cloned().collect(),
            full_report: true,
        }
    }

    /// [`Self::to_full_report`] as Apple's JSON text, written straight from the items: this is
    /// what a DDM server stores and serves for every report it merges.
    pub fn to_full_report_json(&self) -> String {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(b"{\"StatusItems\":{");
        // The items are sorted by dotted name, so the items of one namespace are adjacent and
        // the tree is written in one pass, opening and closing namespaces as the names change.
        let mut open: Vec<&str> = Vec::new();
        let mut first = true;
        for item in self.items.values() {
            let mut segments: Vec<&str> = item.name().split('.').collect();
            let leaf = segments.pop().unwrap_or_default();
            let common = open
                .iter()
                .zip(&segments)
                .take_while(|(a, b)| a == b)
                .count();
            while open.len() > common {
                open.pop();
                out.push(b'}');
                first = false;
            }
            for segment in &segments[common..] {
                write_key(&mut out, segment, first);
                out.push(b'{');
                open.push(segment);
                first = true;
            }
            write_key(&mut out, leaf, first);
            write_json(&mut out, &ItemValue(item));
            first = false;
        }
        out.extend(std::iter::repeat_n(b'}', open.len() + 1));
        out.extend_from_slice(b",\"Errors\":");
        write_json(&mut out, &self.errors.values().collect::<Vec<_>>());
        out.extend_from_slice(b",\"FullReport\":true}");
        // Only JSON was written into it, and serde_json writes valid UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }

    fn text(&self, name: &str) -> Option<&str> {
        match self.items.get(name)? {
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
            | StatusItem::Udid(text) => Some(text),
            _ => None,
        }
    }

    /// `softwareupdate.install-state`
    pub fn install_state(&self) -> Option<&InstallState> {
        match self.items.get("softwareupdate.install-state")? {
            StatusItem::InstallState(state) => Some(state),
            _ => None,
        }
    }

    /// `softwareupdate.pending-version`
    pub fn pending_version(&self) -> Option<&PendingVersion> {
        match self.items.get("softwareupdate.pending-version")? {
            StatusItem::PendingVersion(value) => Some(value),
            _ => None,
        }
    }

    /// `softwareupdate.failure-reason`
    pub fn failure_reason(&self) -> Option<&FailureReason> {
        match self.items.get("softwareupdate.failure-reason")? {
            StatusItem::FailureReason(value) => Some(value),
            _ => None,
        }
    }

    /// `softwareupdate.install-reason`
    pub fn install_reason(&self) -> Option<&InstallReason> {
        match self.items.get("softwareupdate.install-reason")? {
            StatusItem::InstallReason(value) => Some(value),
            _ => None,
        }
    }

    /// `softwareupdate.device-id`
    pub fn device_id(&self) -> Option<&str> {
        self.text("softwareupdate.device-id")
    }

    /// `device.operating-system.version`
    pub fn os_version(&self) -> Option<&str> {
        self.text("device.operating-system.version")
    }

    /// `device.operating-system.build-version`
    pub fn os_build_version(&self) -> Option<&str> {
        self.text("device.operating-system.build-version")
    }

    /// `device.operating-system.supplemental.build-version`
    pub fn os_supplemental_build_version(&self) -> Option<&str> {
        self.text("device.operating-system.supplemental.build-version")
    }

    /// `device.operating-system.supplemental.extra-version`
    pub fn os_supplemental_extra_version(&self) -> Option<&VersionExtra> {
        match self
            .items
            .get("device.operating-system.supplemental.extra-version")?
        {
            StatusItem::OsSupplementalExtraVersion(extra) => Some(extra),
            _ => None,
        }
    }

    /// `device.model.family`
    pub fn model_family(&self) -> Option<&str> {
        self.text("device.model.family")
    }

    /// `device.model.identifier`
    pub fn model_identifier(&self) -> Option<&str> {
        self.text("device.model.identifier")
    }

    /// `device.identifier.serial-number`
    pub fn serial_number(&self) -> Option<&str> {
        self.text("device.identifier.serial-number")
    }

    /// `management.declarations`
    pub fn declarations(&self) -> Option<&ManagementDeclarations> {
        match self.items.get("management.declarations")? {
            StatusItem::Declarations(value) => Some(value),
            _ => None,
        }
    }

    /// `management.client-capabilities`
    pub fn client_capabilities(&self) -> Option<&ClientCapabilities> {
        match self.items.get("management.client-capabilities")? {
            StatusItem::ClientCapabilities(value) => Some(value),
            _ => None,
        }
    }
}

fn is_identified_list(values: &[Value]) -> bool {
    !values.is_empty() && values.iter().all(|value| value.get("identifier").is_some())
}

fn merge_identified(old: &[Value], new: &[Value]) -> Vec<Value> {
    let mut merged: Vec<Value> = old.to_vec();
    for element in new {
        let identifier = element.get("identifier");
        merged.retain(|existing| existing.get("identifier") != identifier);
        if element.get("_removed") != Some(&Value::Bool(true)) {
            merged.push(element.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(value: Value) -> StatusReport {
        StatusReport::parse(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn nested_tree_becomes_typed_items() {
        let parsed = report(json!({
            "StatusItems": {
                "softwareupdate": {
                    "install-state": "downloading",
                    "pending-version": {"os-version": "26.4", "build-version": "25E246",
                                        "target-local-date-time": "2026-05-01T09:00:00"},
                    "failure-reason": {"count": 0},
                    "device-id": "J314sAP"
                },
                "device": {"operating-system": {"supplemental": {"extra-version": "a"}}},
                "future": {"thing": {"deep": 3}}
            },
            "Errors": []
        }));
        let mut status = DeviceStatus::default();
        status.apply(&parsed);
        assert_eq!(status.install_state(), Some(&InstallState::Downloading));
        assert_eq!(
            status
                .pending_version()
                .unwrap()
                .target_local_date_time
                .as_deref(),
            Some("2026-05-01T09:00:00")
        );
        assert_eq!(status.device_id(), Some("J314sAP"));
        assert_eq!(
            status.os_supplemental_extra_version(),
            Some(&VersionExtra::parse("(a)"))
        );
        assert_eq!(
            status.get("future.thing.deep").map(StatusItem::to_value),
            Some(json!(3))
        );
    }

    #[test]
    fn empty_objects_are_items_and_non_empty_ones_namespaces() {
        let parsed = report(json!({"StatusItems": {
            "future": {"empty": {}, "list": [1, {"a": null}], "flag": false},
            "bare": {}}}));
        let mut items: Vec<(String, Value)> = parsed
            .items
            .iter()
            .map(|item| (item.name().to_owned(), item.to_value()))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            items,
            [
                ("bare".to_owned(), json!({})),
                ("future.empty".to_owned(), json!({})),
                ("future.flag".to_owned(), json!(false)),
                ("future.list".to_owned(), json!([1, {"a": null}])),
            ]
        );
    }

    #[test]
    fn unknown_install_state_is_kept_verbatim() {
        let parsed =
            report(json!({"StatusItems": {"softwareupdate": {"install-state": "paused"}}}));
        assert_eq!(
            parsed.items,
            vec![StatusItem::InstallState(InstallState::Other(
                "paused".into()
            ))]
        );
        assert_eq!(
            parsed.to_json()["StatusItems"]["softwareupdate"]["install-state"],
            json!("paused")
        );
    }

    #[test]
    fn known_item_of_the_wrong_shape_names_the_item() {
        let error = StatusReport::parse(
            br#"{"StatusItems":{"softwareupdate":{"failure-reason":{"reason":"x"}}},"Errors":[]}"#,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("softwareupdate.failure-reason"),
            "{error}"
        );
        assert!(error.to_string().contains("count"), "{error}");
    }

    #[test]
    fn incremental_reports_update_only_what_they_carry() {
        let mut status = DeviceStatus::default();
        status.apply(&report(json!({"StatusItems": {
            "softwareupdate": {"install-state": "downloading", "failure-reason": {"count": 1, "reason": "disk"}},
            "device": {"operating-system": {"version": "26.3"}}}})));
        status.apply(&report(json!({"StatusItems": {
            "softwareupdate": {"install-state": "prepared", "failure-reason": {"count": 0}}}})));
        assert_eq!(status.install_state(), Some(&InstallState::Prepared));
        assert_eq!(status.os_version(), Some("26.3"));
        assert_eq!(status.failure_reason().unwrap().reason, None);
        status.apply(&report(json!({"FullReport": true, "StatusItems": {
            "softwareupdate": {"install-state": "none"}}})));
        assert_eq!(status.os_version(), None);
        assert_eq!(status.install_state(), Some(&InstallState::None));
    }

    #[test]
    fn absorbing_tells_whether_anything_changed() {
        let full = json!({"FullReport": true, "StatusItems": {
            "softwareupdate": {"install-state": "none"},
            "device": {"operating-system": {"version": "26.3", "build-version": "25D125"}}}});
        let mut status = DeviceStatus::default();
        assert!(status.absorb(report(full.clone())), "a first report");
        assert!(
            !status.absorb(report(full.clone())),
            "the daily full report, unchanged"
        );
        assert!(!status.absorb(report(
            json!({"StatusItems": {"softwareupdate": {"install-state": "none"}}})
        )));
        assert!(status.absorb(report(
            json!({"StatusItems": {"softwareupdate": {"install-state": "waiting"}}})
        )));
        // A full report that leaves an item out removes it.
        let mut fewer = full.clone();
        fewer["StatusItems"]["device"]["operating-system"]
            .as_object_mut()
            .unwrap()
            .remove("build-version");
        assert!(status.absorb(report(fewer.clone())));
        assert!(!status.absorb(report(fewer)));
        let error = json!({"StatusItems": {}, "Errors": [
            {"StatusItem": "softwareupdate.device-id", "Reasons": [{"Code": "Error.NotSupported"}]}]});
        assert!(status.absorb(report(error.clone())), "a new error");
        assert!(!status.absorb(report(error)), "the same error again");
    }

    #[test]
    fn incremental_array_items_merge_by_identifier() {
        let mut status = DeviceStatus::default();
        status.apply(&report(json!({"StatusItems": {"app": {"managed": {"list": [
            {"identifier": "a", "state": "installed"}, {"identifier": "b", "state": "installed"}]}}}})));
        status.apply(&report(
            json!({"StatusItems": {"app": {"managed": {"list": [
            {"identifier": "a", "_removed": true}, {"identifier": "c", "state": "queued"}]}}}}),
        ));
        let list = status.get("app.managed.list").unwrap().to_value();
        let ids: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["identifier"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn errors_clear_when_the_item_arrives() {
        let mut status = DeviceStatus::default();
        status.apply(&report(json!({"StatusItems": {}, "Errors": [
            {"StatusItem": "softwareupdate.device-id", "Reasons": [{"Code": "Error.NotSupported"}]}]})));
        assert_eq!(status.errors().count(), 1);
        status.apply(&report(
            json!({"StatusItems": {"softwareupdate": {"device-id": "J413AP"}}}),
        ));
        assert_eq!(status.errors().count(), 0);
    }

    #[test]
    fn missing_status_items_is_an_error() {
        assert_eq!(
            StatusReport::parse(br#"{"Errors":[]}"#),
            Err(StatusReportError::MissingStatusItems)
        );
        assert!(matches!(
            StatusReport::parse(b"{not json"),
            Err(StatusReportError::Malformed(_))
        ));
    }
}
