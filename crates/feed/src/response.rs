//! The lookup service's response, read as it is: sets, platforms and entries in their order.

use chrono::NaiveDate;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::FeedError;

/// Which of the response's lists an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum SetKind {
    /// `PublicAssetSets`: what a user sees offered.
    Public,
    /// `AssetSets`: everything a management service may push (in practice a superset).
    All,
    /// `PublicBackgroundSecurityImprovements`, formerly `PublicRapidSecurityResponses`.
    BackgroundSecurity,
}

impl SetKind {
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "PublicAssetSets" => Some(Self::Public),
            "AssetSets" => Some(Self::All),
            "PublicBackgroundSecurityImprovements" | "PublicRapidSecurityResponses" => {
                Some(Self::BackgroundSecurity)
            }
            _ => None,
        }
    }
}

/// One release entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry {
    /// `ProductVersion`: the base version, `26.3.1`; never carries `(a)`.
    #[serde(rename = "ProductVersion")]
    pub product_version: String,
    /// `ProductVersionExtra`: the supplemental letter of a BSI entry, `(a)`.
    #[serde(rename = "ProductVersionExtra", default)]
    pub product_version_extra: Option<String>,
    /// `Build`; older responses lacked it.
    #[serde(rename = "Build", default)]
    pub build: Option<String>,
    /// `PrerequisiteBuild`: the base build a BSI entry installs on.
    #[serde(rename = "PrerequisiteBuild", default)]
    pub prerequisite_build: Option<String>,
    /// `PostingDate`.
    #[serde(rename = "PostingDate", deserialize_with = "date")]
    pub posting_date: NaiveDate,
    /// `ExpirationDate`; none means not expiring.
    #[serde(rename = "ExpirationDate", default, deserialize_with = "optional_date")]
    pub expiration_date: Option<NaiveDate>,
    /// `SupportedDevices`: gdmf device ids (board ids, bridge ids, product types).
    #[serde(rename = "SupportedDevices", default)]
    pub supported_devices: Vec<String>,
}

/// Parses `YYYY-MM-DD`, the only date form the service uses.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[range];
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)
}

fn date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveDate, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    parse_date(&text).ok_or_else(|| de::Error::custom(format!("{text:?} is not a YYYY-MM-DD date")))
}

fn optional_date<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<NaiveDate>, D::Error> {
    date(deserializer).map(Some)
}

/// The entries of one platform key (`iOS`, `macOS`, `visionOS`, `xrOS`...) of one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformEntries {
    /// The platform key as spelled in the response.
    pub platform: String,
    /// Its entries, in order.
    pub entries: Vec<Entry>,
}

/// One of the response's lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetSet {
    /// Which list.
    pub kind: SetKind,
    /// The key as spelled in the response.
    pub name: String,
    /// Its platforms, in order.
    pub platforms: Vec<PlatformEntries>,
}

/// A whole response. Keys Updraft does not know are skipped, never fatal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupResponse {
    /// The lists, in the order of the response.
    pub sets: Vec<AssetSet>,
}

/// An entry with where it came from.
#[derive(Debug, Clone, Copy)]
pub struct LocatedEntry<'a> {
    /// The set.
    pub set: &'a AssetSet,
    /// The platform key.
    pub platform: &'a str,
    /// The entry's position in its platform list.
    pub index: usize,
    /// The entry.
    pub entry: &'a Entry,
}

impl LookupResponse {
    /// Parses a response body. Errors name the JSON path and what is wrong there.
    pub fn parse(bytes: &[u8]) -> Result<Self, FeedError> {
        parse_with_path::<Self>(bytes)
    }

    /// Parses a saved copy: either a bare response or the cache form
    /// `{"etag": ..., "data": <response>}`, in one pass. Returns the response and the etag.
    pub fn parse_saved(bytes: &[u8]) -> Result<(Self, Option<String>), FeedError> {
        let Saved { response, etag } = parse_with_path::<Saved>(bytes)?;
        Ok((response, etag))
    }

    /// Every entry with its set and platform, in response order.
    pub fn entries(&self) -> impl Iterator<Item = LocatedEntry<'_>> {
        self.sets.iter().flat_map(|set| {
            set.platforms.iter().flat_map(move |platform| {
                platform
                    .entries
                    .iter()
                    .enumerate()
                    .map(move |(index, entry)| LocatedEntry {
                        set,
                        platform: &platform.platform,
                        index,
                        entry,
                    })
            })
        })
    }

    /// How many entries the response holds in all.
    pub fn entry_count(&self) -> usize {
        self.sets
            .iter()
            .flat_map(|set| &set.platforms)
            .map(|platform| platform.entries.len())
            .sum()
    }

    /// The response as it would have read on `day`: only the entries posted by then. A lab
    /// replays one capture as a history of releases appearing one posting date at a time
    /// (expiration dates stay as captured, which only ever makes an old entry last longer).
    pub fn as_of(&self, day: NaiveDate) -> Self {
        let mut earlier = self.clone();
        for platform in earlier.sets.iter_mut().flat_map(|set| &mut set.platforms) {
            platform.entries.retain(|entry| entry.posting_date <= day);
        }
        earlier
    }

    /// Every posting date in the response, oldest first, once each.
    pub fn posting_dates(&self) -> Vec<NaiveDate> {
        let dates: std::collections::BTreeSet<NaiveDate> =
            self.entries().map(|e| e.entry.posting_date).collect();
        dates.into_iter().collect()
    }

    /// Fails when the response holds no entry at all: Apple has answered `200` with empty sets,
    /// and such an answer must never replace a good feed.
    pub fn require_entries(self) -> Result<Self, FeedError> {
        if self.entry_count() == 0 {
            Err(FeedError::Empty)
        } else {
            Ok(self)
        }
    }
}

/// The fast path keeps no path; on failure the bytes are parsed again only to say where.
fn parse_with_path<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T, FeedError> {
    serde_json::from_slice(bytes).or_else(|_| {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| FeedError::Malformed {
            path: error.path().to_string(),
            reason: error.inner().to_string(),
        })
    })
}

/// A saved copy, bare or wrapped.
struct Saved {
    response: LookupResponse,
    etag: Option<String>,
}

/// Reads the top-level object of a response; with `wrapper_keys`, also the cache form's
/// `etag` and `data`, so either shape is read in a single pass.
struct TopLevel {
    wrapper_keys: bool,
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = Saved;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a lookup-service response object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut sets = Vec::new();
        let mut etag = None;
        let mut data = None;
        while let Some(key) = map.next_key::<String>()? {
            if let Some(kind) = SetKind::from_key(&key) {
                let Platforms(platforms) = map.next_value()?;
                sets.push(AssetSet {
                    kind,
                    name: key,
                    platforms,
                });
            } else if self.wrapper_keys && key == "etag" {
                etag = map.next_value()?;
            } else if self.wrapper_keys && key == "data" {
                data = Some(map.next_value::<LookupResponse>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Saved {
            response: data.unwrap_or(LookupResponse { sets }),
            etag,
        })
    }
}

impl<'de> Deserialize<'de> for Saved {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TopLevel { wrapper_keys: true })
    }
}

impl<'de> Deserialize<'de> for LookupResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let saved = deserializer.deserialize_map(TopLevel {
            wrapper_keys: false,
        })?;
        Ok(saved.response)
    }
}

/// A platform map read in order (a `BTreeMap` would sort the keys).
struct Platforms(Vec<PlatformEntries>);

impl<'de> Deserialize<'de> for Platforms {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PlatformsVisitor;
        impl<'de> Visitor<'de> for PlatformsVisitor {
            type Value = Platforms;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of platform keys to entry arrays")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut platforms = Vec::new();
                while let Some(platform) = map.next_key::<String>()? {
                    let entries = map.next_value()?;
                    platforms.push(PlatformEntries { platform, entries });
                }
                Ok(Platforms(platforms))
            }
        }
        deserializer.deserialize_map(PlatformsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_strict() {
        assert_eq!(
            parse_date("2026-04-11"),
            NaiveDate::from_ymd_opt(2026, 4, 11)
        );
        for bad in [
            "2026-4-11",
            "2026-02-30",
            "26-04-11",
            "2026-04-11T00:00:00",
            "",
            "2026/04/11",
            "+026-04-11",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_name_the_path() {
        let body = br#"{"AssetSets": {"macOS": [{"ProductVersion": "26.4", "PostingDate": "2026-13-01", "SupportedDevices": []}]}}"#;
        let error = LookupResponse::parse(body).unwrap_err().to_string();
        assert!(error.contains("AssetSets.macOS[0].PostingDate"), "{error}");
        assert!(error.contains("2026-13-01"), "{error}");
    }

    #[test]
    fn unknown_keys_are_ignored_and_order_is_kept() {
        let body = br#"{"Future": {"x": 1}, "AssetSets": {"macOS": [], "iOS": [{"ProductVersion": "26.4", "PostingDate": "2026-03-24", "NewKey": true}]}, "PublicAssetSets": {}}"#;
        let response = LookupResponse::parse(body).unwrap();
        let names: Vec<_> = response.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["AssetSets", "PublicAssetSets"]);
        let platforms: Vec<_> = response.sets[0]
            .platforms
            .iter()
            .map(|p| p.platform.as_str())
            .collect();
        assert_eq!(platforms, ["macOS", "iOS"]);
        assert_eq!(response.entry_count(), 1);
    }

    #[test]
    fn empty_sets_are_refused() {
        let body =
            br#"{"PublicAssetSets": {}, "AssetSets": {}, "PublicRapidSecurityResponses": {}}"#;
        let response = LookupResponse::parse(body).unwrap();
        assert!(matches!(response.require_entries(), Err(FeedError::Empty)));
    }
}
