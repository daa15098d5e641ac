//! Declarations (`DeclarationBase`) and the typed payloads Updraft builds.
//!
//! Schema: apple/device-management `declarative/declarations/declarationbase.yaml`,
//! `configurations/softwareupdate.enforcement.specific.yaml`, `activations/simple.yaml`,
//! `configurations/management.status-subscriptions.yaml`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;

use crate::version::OsVersion;

/// Apple: an `Identifier` "should not exceed 64 octets".
pub const MAX_IDENTIFIER_OCTETS: usize = 64;
/// Apple: a `ServerToken` "should not exceed 64 octets".
pub const MAX_SERVER_TOKEN_OCTETS: usize = 64;
/// Apple: the `DeclarationsToken` is limited "to no more than 256 octets".
pub const MAX_DECLARATIONS_TOKEN_OCTETS: usize = 256;

/// Why a declaration or one of its payloads is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeclarationError {
    /// An identifier is empty or longer than Apple allows.
    #[error(
        "declaration identifier {identifier:?} is {octets} octets; Apple allows 1 to {MAX_IDENTIFIER_OCTETS}"
    )]
    IdentifierLength {
        /// The identifier.
        identifier: String,
        /// Its length in octets.
        octets: usize,
    },
    /// A server token is empty or longer than Apple allows.
    #[error(
        "server token of declaration {identifier:?} is {octets} octets; Apple allows 1 to {MAX_SERVER_TOKEN_OCTETS}"
    )]
    ServerTokenLength {
        /// The declaration's identifier.
        identifier: String,
        /// The token's length in octets.
        octets: usize,
    },
    /// The `Type` does not name one of Apple's four declaration categories.
    #[error(
        "declaration {identifier:?} has type {declaration_type:?}, which is not com.apple.activation.*, com.apple.configuration.*, com.apple.asset.* or com.apple.management.*"
    )]
    UnknownCategory {
        /// The declaration's identifier.
        identifier: String,
        /// The rejected type.
        declaration_type: String,
    },
    /// A typed payload was requested from a declaration of another type.
    #[error("declaration {identifier:?} is a {actual:?}, not a {expected:?}")]
    WrongType {
        /// The declaration's identifier.
        identifier: String,
        /// The type asked for.
        expected: &'static str,
        /// The type it has.
        actual: String,
    },
    /// A payload does not have the shape of its type.
    #[error("payload of {declaration_type} is malformed: {reason}")]
    MalformedPayload {
        /// The declaration type.
        declaration_type: &'static str,
        /// What serde reported.
        reason: String,
    },
    /// A payload key has a value Apple would reject.
    #[error("{key} {value:?} is invalid: {reason}")]
    InvalidValue {
        /// The payload key, as Apple spells it.
        key: &'static str,
        /// The rejected value.
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },
}

/// A declaration as it travels: `{"Type","Identifier","ServerToken","Payload"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Declaration {
    /// `Type`, for example `com.apple.configuration.softwareupdate.enforcement.specific`.
    #[serde(rename = "Type")]
    pub declaration_type: String,
    /// `Identifier`: unique per declaration, at most 64 octets.
    #[serde(rename = "Identifier")]
    pub identifier: String,
    /// `ServerToken`: changes whenever the content changes, at most 64 octets.
    #[serde(rename = "ServerToken")]
    pub server_token: String,
    /// `Payload`: the type's keys.
    #[serde(rename = "Payload")]
    pub payload: Map<String, Value>,
}

/// The four kinds of declaration in a declaration-items manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeclarationCategory {
    /// `com.apple.activation.*`
    Activation,
    /// `com.apple.configuration.*`
    Configuration,
    /// `com.apple.asset.*`
    Asset,
    /// `com.apple.management.*`
    Management,
}

impl DeclarationCategory {
    /// The category of a declaration type, from its prefix.
    pub fn of_type(declaration_type: &str) -> Option<Self> {
        [
            ("com.apple.activation.", Self::Activation),
            ("com.apple.configuration.", Self::Configuration),
            ("com.apple.asset.", Self::Asset),
            ("com.apple.management.", Self::Management),
        ]
        .into_iter()
        .find(|(prefix, _)| declaration_type.starts_with(prefix))
        .map(|(_, category)| category)
    }

    /// The middle segment of the device's `declaration/<segment>/<Identifier>` request.
    pub fn path_segment(self) -> &'static str {
        match self {
            Self::Activation => "activation",
            Self::Configuration => "configuration",
            Self::Asset => "asset",
            Self::Management => "management",
        }
    }

    /// The inverse of [`Self::path_segment`].
    pub fn from_path_segment(segment: &str) -> Option<Self> {
        [
            Self::Activation,
            Self::Configuration,
            Self::Asset,
            Self::Management,
        ]
        .into_iter()
        .find(|category| category.path_segment() == segment)
    }
}

/// A payload type Updraft knows: its `Type` string and its own validity rules.
pub trait DeclarationPayload: Serialize + DeserializeOwned {
    /// The declaration `Type`.
    const TYPE: &'static str;
    /// Apple's rules for the payload's values beyond their JSON shape.
    fn validate(&self) -> Result<(), DeclarationError> {
        Ok(())
    }
}

impl Declaration {
    /// Builds a declaration of a typed payload, validated, with a deterministic `ServerToken`
    /// computed over the whole content (type, identifier and payload).
    pub fn new<P: DeclarationPayload>(
        identifier: impl Into<String>,
        payload: &P,
    ) -> Result<Self, DeclarationError> {
        payload.validate()?;
        let payload = match serde_json::to_value(payload) {
            Ok(Value::Object(map)) => map,
            Ok(_) | Err(_) => {
                return Err(DeclarationError::MalformedPayload {
                    declaration_type: P::TYPE,
                    reason: "it does not serialize to a JSON object".into(),
                });
            }
        };
        Self::from_parts(P::TYPE, identifier, payload)
    }

    /// Builds a declaration of any type from its parts, computing the `ServerToken`.
    pub fn from_parts(
        declaration_type: impl Into<String>,
        identifier: impl Into<String>,
        payload: Map<String, Value>,
    ) -> Result<Self, DeclarationError> {
        let mut declaration = Self {
            declaration_type: declaration_type.into(),
            identifier: identifier.into(),
            server_token: String::new(),
            payload,
        };
        declaration.server_token = declaration.content_token();
        declaration.validate()?;
        Ok(declaration)
    }

    /// A token over the content: SHA-256 of the canonical JSON of type, identifier and payload
    /// (object keys sorted), as 40 hex digits. Equal content gives equal tokens on every machine.
    pub fn content_token(&self) -> String {
        let canonical = serde_json::json!({
            "Identifier": self.identifier,
            "Payload": self.payload,
            "Type": self.declaration_type,
        });
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        hex_prefix(&Sha256::digest(bytes), 20)
    }

    /// Checks Apple's limits: identifier and server token of 1 to 64 octets, a known category.
    pub fn validate(&self) -> Result<(), DeclarationError> {
        let octets = self.identifier.len();
        if octets == 0 || octets > MAX_IDENTIFIER_OCTETS {
            return Err(DeclarationError::IdentifierLength {
                identifier: self.identifier.clone(),
                octets,
            });
        }
        let octets = self.server_token.len();
        if octets == 0 || octets > MAX_SERVER_TOKEN_OCTETS {
            return Err(DeclarationError::ServerTokenLength {
                identifier: self.identifier.clone(),
                octets,
            });
        }
        self.category().map(|_| ())
    }

    /// The manifest category, from the type prefix.
    pub fn category(&self) -> Result<DeclarationCategory, DeclarationError> {
        DeclarationCategory::of_type(&self.declaration_type).ok_or_else(|| {
            DeclarationError::UnknownCategory {
                identifier: self.identifier.clone(),
                declaration_type: self.declaration_type.clone(),
            }
        })
    }

    /// The payload as a typed, validated value, if the declaration is of that type.
    pub fn payload_as<P: DeclarationPayload>(&self) -> Result<P, DeclarationError> {
        if self.declaration_type != P::TYPE {
            return Err(DeclarationError::WrongType {
                identifier: self.identifier.clone(),
                expected: P::TYPE,
                actual: self.declaration_type.clone(),
            });
        }
        let payload: P =
            serde_json::from_value(Value::Object(self.payload.clone())).map_err(|error| {
                DeclarationError::MalformedPayload {
                    declaration_type: P::TYPE,
                    reason: error.to_string(),
                }
            })?;
        payload.validate()?;
        Ok(payload)
    }
}

pub(crate) fn hex_prefix(bytes: &[u8], take: usize) -> String {
    bytes.iter().take(take).fold(String::new(), |mut out, b| {
        use fmt::Write;
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// `com.apple.configuration.softwareupdate.enforcement.specific`: install this OS version by
/// this local date and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftwareUpdateEnforcementSpecific {
    /// The version to install. Send the exact three-part version from the lookup service: the
    /// device does not pick a patch release for a two-part one. Never includes `(a)`.
    #[serde(rename = "TargetOSVersion")]
    pub target_os_version: String,
    /// The build, including a supplemental (BSI) build such as `25D771280a`.
    #[serde(
        rename = "TargetBuildVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target_build_version: Option<String>,
    /// The deadline, in the device's own local time.
    #[serde(rename = "TargetLocalDateTime")]
    pub target_local_date_time: TargetLocalDateTime,
    /// An https page with the organisation's details about the update.
    #[serde(
        rename = "DetailsURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub details_url: Option<String>,
}

impl DeclarationPayload for SoftwareUpdateEnforcementSpecific {
    const TYPE: &'static str = "com.apple.configuration.softwareupdate.enforcement.specific";

    fn validate(&self) -> Result<(), DeclarationError> {
        OsVersion::parse(&self.target_os_version).map_err(|error| {
            DeclarationError::InvalidValue {
                key: "TargetOSVersion",
                value: self.target_os_version.clone(),
                reason: format!(
                    "{}; a supplemental version goes in TargetBuildVersion",
                    error.reason
                ),
            }
        })?;
        if let Some(build) = &self.target_build_version
            && (build.is_empty() || !build.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(DeclarationError::InvalidValue {
                key: "TargetBuildVersion",
                value: build.clone(),
                reason: "a build is letters and digits only, such as \"25D125\"".into(),
            });
        }
        if let Some(url) = &self.details_url {
            validate_details_url(url)?;
        }
        Ok(())
    }
}

/// Checks that a `DetailsURL` is an absolute https URL with a host.
pub fn validate_details_url(text: &str) -> Result<(), DeclarationError> {
    let invalid = |reason: &str| DeclarationError::InvalidValue {
        key: "DetailsURL",
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(text)
        .map_err(|error| invalid(&format!("{error}; expected an absolute https URL")))?;
    if url.scheme() != "https" {
        return Err(invalid("only https URLs are allowed"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("the URL must not carry credentials"));
    }
    Ok(())
}

/// A device-local date and time, `yyyy-mm-ddThh:mm:ss`: no offset, no fraction, no `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetLocalDateTime(pub chrono::NaiveDateTime);

impl TargetLocalDateTime {
    const FORMAT: &'static str = "%Y-%m-%dT%H:%M:%S";

    /// Parses exactly `yyyy-mm-ddThh:mm:ss`; anything else (an offset, `Z`, fractional
    /// seconds, a space instead of `T`, unpadded fields) is an error that names the input.
    pub fn parse(text: &str) -> Result<Self, DeclarationError> {
        let invalid = |reason: &str| DeclarationError::InvalidValue {
            key: "TargetLocalDateTime",
            value: text.to_owned(),
            reason: format!(
                "{reason}; expected yyyy-mm-ddThh:mm:ss in the device's local time, with no offset"
            ),
        };
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 19
            && bytes.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                10 => *b == b'T',
                13 | 16 => *b == b':',
                _ => b.is_ascii_digit(),
            });
        if !shape_ok {
            return Err(invalid("wrong shape"));
        }
        chrono::NaiveDateTime::parse_from_str(text, Self::FORMAT)
            .map(Self)
            .map_err(|error| invalid(&format!("not a real date and time ({error})")))
    }
}

impl fmt::Display for TargetLocalDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(Self::FORMAT))
    }
}

impl Serialize for TargetLocalDateTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TargetLocalDateTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `com.apple.activation.simple`: activate these configurations (when the predicate holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationSimple {
    /// Identifiers of the configurations to activate.
    #[serde(rename = "StandardConfigurations")]
    pub standard_configurations: Vec<String>,
    /// An NSPredicate; the activation applies only when it is true.
    #[serde(rename = "Predicate", default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
}

impl DeclarationPayload for ActivationSimple {
    const TYPE: &'static str = "com.apple.activation.simple";

    fn validate(&self) -> Result<(), DeclarationError> {
        for identifier in &self.standard_configurations {
            let octets = identifier.len();
            if octets == 0 || octets > MAX_IDENTIFIER_OCTETS {
                return Err(DeclarationError::IdentifierLength {
                    identifier: identifier.clone(),
                    octets,
                });
            }
        }
        Ok(())
    }
}

/// `com.apple.configuration.management.status-subscriptions`: the status items the device
/// reports when they change (and every 24 hours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusSubscriptions {
    /// The subscribed items.
    #[serde(rename = "StatusItems")]
    pub status_items: Vec<StatusSubscriptionItem>,
}

/// One subscribed status item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusSubscriptionItem {
    /// The item's dotted name, such as `softwareupdate.install-state`.
    #[serde(rename = "Name")]
    pub name: String,
}

impl StatusSubscriptions {
    /// A subscription to the named items, in the order given.
    pub fn to_items<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            status_items: names
                .into_iter()
                .map(|name| StatusSubscriptionItem { name: name.into() })
                .collect(),
        }
    }
}

impl DeclarationPayload for StatusSubscriptions {
    const TYPE: &'static str = "com.apple.configuration.management.status-subscriptions";
}

/// The status items an update-enforcing server subscribes to (ddm-protocol.md §2.1). Items
/// starting with `management.` are reported without a subscription.
pub const SOFTWARE_UPDATE_STATUS_ITEMS: &[&str] = &[
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
    "device.model.identifier",
    "device.model.family",
    "device.identifier.serial-number",
    "device.identifier.udid",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn enforcement(local: &str) -> SoftwareUpdateEnforcementSpecific {
        SoftwareUpdateEnforcementSpecific {
            target_os_version: "26.3.1".into(),
            target_build_version: Some("25D2128".into()),
            target_local_date_time: TargetLocalDateTime::parse(local).unwrap(),
            details_url: Some("https://it.example.com/updates".into()),
        }
    }

    #[test]
    fn target_local_date_time_accepts_only_the_offsetless_form() {
        let ok = TargetLocalDateTime::parse("2025-09-21T01:00:00").unwrap();
        assert_eq!(ok.to_string(), "2025-09-21T01:00:00");
        for bad in [
            "2025-09-21T01:00:00Z",
            "2025-09-21T01:00:00+02:00",
            "2025-09-21T01:00:00.5",
            "2025-09-21 01:00:00",
            "2025-9-21T01:00:00",
            "2025-02-30T01:00:00",
            "2025-09-21T24:00:00",
            "",
        ] {
            let error = TargetLocalDateTime::parse(bad).unwrap_err().to_string();
            assert!(error.contains("TargetLocalDateTime"), "{error}");
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn details_url_must_be_absolute_https() {
        assert!(validate_details_url("https://it.example.com/x?y=1").is_ok());
        for bad in [
            "http://it.example.com",
            "javascript:alert(1)",
            "/relative",
            "https://user:pw@example.com/",
            "file:///etc/passwd",
        ] {
            assert!(validate_details_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enforcement_rejects_an_extra_in_the_version() {
        let mut payload = enforcement("2026-05-01T09:00:00");
        payload.target_os_version = "26.3.1 (a)".into();
        let error = Declaration::new("su", &payload).unwrap_err().to_string();
        assert!(error.contains("TargetBuildVersion"), "{error}");
    }

    #[test]
    fn server_token_follows_content_and_nothing_else() {
        let a = Declaration::new("su", &enforcement("2026-05-01T09:00:00")).unwrap();
        let b = Declaration::new("su", &enforcement("2026-05-01T09:00:00")).unwrap();
        let c = Declaration::new("su", &enforcement("2026-05-02T09:00:00")).unwrap();
        assert_eq!(a.server_token, b.server_token);
        assert_ne!(a.server_token, c.server_token);
        assert!(a.server_token.len() <= MAX_SERVER_TOKEN_OCTETS);
    }

    #[test]
    fn identifier_limit_is_64_octets() {
        let payload = enforcement("2026-05-01T09:00:00");
        assert!(Declaration::new("x".repeat(64), &payload).is_ok());
        // 22 three-octet characters: 22 characters but 66 octets.
        assert!(matches!(
            Declaration::new("€".repeat(22), &payload),
            Err(DeclarationError::IdentifierLength { octets: 66, .. })
        ));
        assert!(Declaration::new("", &payload).is_err());
    }

    #[test]
    fn typed_payload_round_trips_and_checks_its_type() {
        let declaration = Declaration::new("su", &enforcement("2026-05-01T09:00:00")).unwrap();
        let back: SoftwareUpdateEnforcementSpecific = declaration.payload_as().unwrap();
        assert_eq!(back, enforcement("2026-05-01T09:00:00"));
        assert!(matches!(
            declaration.payload_as::<ActivationSimple>(),
            Err(DeclarationError::WrongType { .. })
        ));
    }
}
