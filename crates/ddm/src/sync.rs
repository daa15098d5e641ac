//! The DDM synchronization protocol's server answers: `tokens` and `declaration-items`.
//!
//! Schema: apple/device-management `declarative/protocol/tokensresponse.yaml`,
//! `declarationitemsresponse.yaml`; Apple "SynchronizationTokens" for the `SyncTokens` keys.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

use crate::declaration::{
    Declaration, DeclarationCategory, DeclarationError, MAX_DECLARATIONS_TOKEN_OCTETS, hex_prefix,
};

/// The answer to the `tokens` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensResponse {
    /// The tokens.
    #[serde(rename = "SyncTokens")]
    pub sync_tokens: SyncTokens,
}

/// `SyncTokens`: the token the device compares with its own, and when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncTokens {
    /// Changes whenever the set of declarations or any of their contents changes.
    #[serde(rename = "DeclarationsToken")]
    pub declarations_token: String,
    /// When the server produced the tokens.
    #[serde(rename = "Timestamp")]
    pub timestamp: SyncTimestamp,
}

/// A UTC time written as `YYYY-mm-ddTHH:MM:SSZ`: whole seconds, always `Z`. Apple's devices
/// reject fractional seconds here, so sub-second precision is dropped on construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncTimestamp(DateTime<Utc>);

impl SyncTimestamp {
    const FORMAT: &'static str = "%Y-%m-%dT%H:%M:%SZ";

    /// The time, truncated to whole seconds.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at))
    }

    /// The time.
    pub fn get(self) -> DateTime<Utc> {
        self.0
    }
}

impl fmt::Display for SyncTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(Self::FORMAT))
    }
}

impl Serialize for SyncTimestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SyncTimestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        NaiveDateTime::parse_from_str(&text, Self::FORMAT)
            .map(|naive| Self(naive.and_utc()))
            .map_err(|error| {
                serde::de::Error::custom(format!(
                    "Timestamp {text:?} is not YYYY-mm-ddTHH:MM:SSZ: {error}"
                ))
            })
    }
}

/// One manifest entry: which declaration, at which revision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ManifestItem {
    /// The declaration's `Identifier`.
    #[serde(rename = "Identifier")]
    pub identifier: String,
    /// The declaration's `ServerToken`.
    #[serde(rename = "ServerToken")]
    pub server_token: String,
}

/// The four manifest arrays. Apple requires all four, even when empty, so none is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDeclarations {
    /// Activations.
    #[serde(rename = "Activations")]
    pub activations: Vec<ManifestItem>,
    /// Configurations.
    #[serde(rename = "Configurations")]
    pub configurations: Vec<ManifestItem>,
    /// Assets.
    #[serde(rename = "Assets")]
    pub assets: Vec<ManifestItem>,
    /// Management declarations.
    #[serde(rename = "Management")]
    pub management: Vec<ManifestItem>,
}

impl ManifestDeclarations {
    fn list_mut(&mut self, category: DeclarationCategory) -> &mut Vec<ManifestItem> {
        match category {
            DeclarationCategory::Activation => &mut self.activations,
            DeclarationCategory::Configuration => &mut self.configurations,
            DeclarationCategory::Asset => &mut self.assets,
            DeclarationCategory::Management => &mut self.management,
        }
    }

    /// Every item with its category, in manifest order.
    pub fn iter(&self) -> impl Iterator<Item = (DeclarationCategory, &ManifestItem)> {
        [
            (DeclarationCategory::Activation, &self.activations),
            (DeclarationCategory::Configuration, &self.configurations),
            (DeclarationCategory::Asset, &self.assets),
            (DeclarationCategory::Management, &self.management),
        ]
        .into_iter()
        .flat_map(|(category, items)| items.iter().map(move |item| (category, item)))
    }
}

/// The answer to the `declaration-items` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclarationItemsResponse {
    /// The manifest.
    #[serde(rename = "Declarations")]
    pub declarations: ManifestDeclarations,
    /// The same token the `tokens` endpoint gives for this manifest.
    #[serde(rename = "DeclarationsToken")]
    pub declarations_token: String,
}

impl DeclarationItemsResponse {
    /// The manifest of the declarations assigned to a device, sorted by identifier so that the
    /// same declarations give the same manifest and the same token in any order of storage.
    pub fn from_declarations<'a>(
        declarations: impl IntoIterator<Item = &'a Declaration>,
    ) -> Result<Self, DeclarationError> {
        let mut manifest = ManifestDeclarations::default();
        for declaration in declarations {
            declaration.validate()?;
            manifest
                .list_mut(declaration.category()?)
                .push(ManifestItem {
                    identifier: declaration.identifier.clone(),
                    server_token: declaration.server_token.clone(),
                });
        }
        for category in [
            DeclarationCategory::Activation,
            DeclarationCategory::Configuration,
            DeclarationCategory::Asset,
            DeclarationCategory::Management,
        ] {
            let list = manifest.list_mut(category);
            list.sort();
            list.dedup();
        }
        let declarations_token = declarations_token(&manifest);
        Ok(Self {
            declarations: manifest,
            declarations_token,
        })
    }

    /// The `tokens` answer that matches this manifest.
    pub fn tokens_response(&self, now: DateTime<Utc>) -> TokensResponse {
        TokensResponse {
            sync_tokens: SyncTokens {
                declarations_token: self.declarations_token.clone(),
                timestamp: SyncTimestamp::new(now),
            },
        }
    }
}

/// SHA-256 over every (category, identifier, server token) of a sorted manifest, as hex. The
/// separators cannot occur in identifiers' UTF-8 text, so distinct manifests do not collide by
/// concatenation.
fn declarations_token(manifest: &ManifestDeclarations) -> String {
    let mut hasher = Sha256::new();
    for (category, item) in manifest.iter() {
        hasher.update(category.path_segment().as_bytes());
        hasher.update([0x1f]);
        hasher.update(item.identifier.as_bytes());
        hasher.update([0x1f]);
        hasher.update(item.server_token.as_bytes());
        hasher.update([0x1e]);
    }
    let token = hex_prefix(&hasher.finalize(), 32);
    debug_assert!(token.len() <= MAX_DECLARATIONS_TOKEN_OCTETS);
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declaration::{ActivationSimple, StatusSubscriptions};

    fn declarations() -> Vec<Declaration> {
        vec![
            Declaration::new(
                "subs",
                &StatusSubscriptions::to_items(["softwareupdate.install-state"]),
            )
            .unwrap(),
            Declaration::new(
                "act",
                &ActivationSimple {
                    standard_configurations: vec!["subs".into()],
                    predicate: None,
                },
            )
            .unwrap(),
        ]
    }

    #[test]
    fn all_four_arrays_are_always_present() {
        let empty = DeclarationItemsResponse::from_declarations([]).unwrap();
        let json = serde_json::to_value(&empty).unwrap();
        for key in ["Activations", "Configurations", "Assets", "Management"] {
            assert_eq!(json["Declarations"][key], serde_json::json!([]), "{key}");
        }
        assert!(!empty.declarations_token.is_empty());
    }

    #[test]
    fn timestamp_has_no_fraction_and_ends_in_z() {
        let at = DateTime::parse_from_rfc3339("2026-04-11T08:30:15.987654+02:00")
            .unwrap()
            .with_timezone(&Utc);
        let items = DeclarationItemsResponse::from_declarations(&declarations()).unwrap();
        let json = serde_json::to_string(&items.tokens_response(at)).unwrap();
        assert!(
            json.contains(r#""Timestamp":"2026-04-11T06:30:15Z""#),
            "{json}"
        );
        let back: TokensResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.sync_tokens.declarations_token,
            items.declarations_token
        );
    }

    #[test]
    fn tokens_change_when_a_declaration_changes_or_goes() {
        let mut set = declarations();
        let before = DeclarationItemsResponse::from_declarations(&set).unwrap();
        set.pop();
        let fewer = DeclarationItemsResponse::from_declarations(&set).unwrap();
        assert_ne!(before.declarations_token, fewer.declarations_token);
        let mut changed = declarations();
        changed[0] = Declaration::new(
            "subs",
            &StatusSubscriptions::to_items(["softwareupdate.failure-reason"]),
        )
        .unwrap();
        let changed = DeclarationItemsResponse::from_declarations(&changed).unwrap();
        assert_ne!(before.declarations_token, changed.declarations_token);
    }
}
