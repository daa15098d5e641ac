//! Apple OS versions, supplemental ("extra") versions and build numbers, with Apple's ordering.
//!
//! The lookup service, status reports and declarations all spell these as strings; comparing them
//! as strings is wrong (`26.10` > `26.9`, `26.0` == `26.0.0`), so they are parsed once here.

use std::cmp::Ordering;
use std::fmt;

/// The most dotted components an OS version may have. Apple uses at most three; four leaves room
/// for a future scheme without accepting arbitrary garbage.
const MAX_COMPONENTS: usize = 4;

/// A dotted numeric OS version such as `26.3.1`. Missing components count as 0, so `26.0`,
/// `26` and `26.0.0` are equal; [`fmt::Display`] gives back the text it was parsed from.
#[derive(Clone, Debug)]
pub struct OsVersion {
    components: [u32; MAX_COMPONENTS],
    text: String,
}

/// Why a string is not an OS version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an OS version: {reason} (expected dotted numbers such as \"26.3.1\")")]
pub struct VersionError {
    /// The rejected input.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl OsVersion {
    /// Parses `major[.minor[.patch[.more]]]`, each component decimal digits only.
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let error = |reason| VersionError {
            text: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(error("it is empty"));
        }
        let mut components = [0u32; MAX_COMPONENTS];
        for (index, part) in text.split('.').enumerate() {
            if index == MAX_COMPONENTS {
                return Err(error("it has more than four components"));
            }
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error("a component is not a decimal number"));
            }
            components[index] = part
                .parse()
                .map_err(|_| error("a component is too large"))?;
        }
        Ok(Self {
            components,
            text: text.to_owned(),
        })
    }

    /// The numeric components, zero-padded.
    pub fn components(&self) -> [u32; MAX_COMPONENTS] {
        self.components
    }

    /// The major version (`26` in `26.3.1`).
    pub fn major(&self) -> u32 {
        self.components[0]
    }

    /// The version as text, exactly as parsed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The version with exactly three components (`26.0` becomes `26.0.0`), the form Apple's
    /// enforcement declaration installs exactly.
    pub fn three_part(&self) -> String {
        let [major, minor, patch, extra] = self.components;
        if extra == 0 {
            format!("{major}.{minor}.{patch}")
        } else {
            format!("{major}.{minor}.{patch}.{extra}")
        }
    }
}

impl PartialEq for OsVersion {
    fn eq(&self, other: &Self) -> bool {
        self.components == other.components
    }
}
impl Eq for OsVersion {}
impl PartialOrd for OsVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OsVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.components.cmp(&other.components)
    }
}
impl std::hash::Hash for OsVersion {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.components.hash(state);
    }
}
impl fmt::Display for OsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A supplemental (Background Security Improvement, formerly Rapid Security Response) version
/// letter. Devices spell it `a` or `(a)`, the lookup service `(a)`; all normalise to one value.
/// The empty value means "no supplemental version" and sorts before every letter.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionExtra(String);

impl VersionExtra {
    /// No supplemental version.
    pub const NONE: VersionExtra = VersionExtra(String::new());

    /// Normalises `a`, `(a)`, ` (a) ` and `(A)` to the same value. Empty input means none.
    pub fn parse(text: &str) -> Self {
        let trimmed = text.trim();
        let inner = trimmed
            .strip_prefix('(')
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or(trimmed)
            .trim();
        Self(inner.to_ascii_lowercase())
    }

    /// Whether there is a supplemental version.
    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }

    /// The letter without parentheses (`a`), or the empty string.
    pub fn letter(&self) -> &str {
        &self.0
    }

    /// The canonical display form, `(a)`, as the lookup service spells it; empty for none.
    pub fn canonical(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            format!("({})", self.0)
        }
    }
}

impl fmt::Display for VersionExtra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl serde::Serialize for VersionExtra {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical())
    }
}

impl<'de> serde::Deserialize<'de> for VersionExtra {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::parse(&text))
    }
}

/// Compares two Apple build numbers (`25D125`, `25D2128`, `25D771280a`, `23G6083`) by their
/// parts: leading number, train letters, number, then suffix letters; text that does not fit
/// that shape falls back to byte order so every pair still has a total order.
pub fn compare_builds(a: &str, b: &str) -> Ordering {
    match (BuildParts::parse(a), BuildParts::parse(b)) {
        (Some(pa), Some(pb)) => pa.cmp(&pb).then_with(|| a.cmp(b)),
        _ => a.cmp(b),
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct BuildParts<'a> {
    major: u64,
    train: &'a str,
    number: u64,
    suffix: &'a str,
}

impl<'a> BuildParts<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (major, rest) = split_digits(text)?;
        let train_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if train_len == 0 {
            return None;
        }
        let (train, rest) = rest.split_at(train_len);
        let (number, suffix) = split_digits(rest)?;
        if !suffix.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        Some(Self {
            major,
            train,
            number,
            suffix,
        })
    }
}

fn split_digits(text: &str) -> Option<(u64, &str)> {
    let len = text.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 || len > 18 {
        return None;
    }
    let (digits, rest) = text.split_at(len);
    Some((digits.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> OsVersion {
        OsVersion::parse(text).unwrap()
    }

    #[test]
    fn missing_components_count_as_zero() {
        assert_eq!(v("26.0"), v("26.0.0"));
        assert_eq!(v("26"), v("26.0"));
        assert!(v("26.10") > v("26.9"));
        assert!(v("26.0.1") > v("26"));
        assert_eq!(v("26.0").three_part(), "26.0.0");
        assert_eq!(v("26.3.1").three_part(), "26.3.1");
        assert_eq!(v("26.0").to_string(), "26.0");
    }

    #[test]
    fn malformed_versions_are_rejected_with_the_input_named() {
        for bad in [
            "",
            "26.",
            ".1",
            "26.3.1 (a)",
            "26.a",
            "1.2.3.4.5",
            "99999999999",
        ] {
            let error = OsVersion::parse(bad).unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn extra_versions_normalise_parentheses_and_case() {
        assert_eq!(VersionExtra::parse("a"), VersionExtra::parse("(a)"));
        assert_eq!(VersionExtra::parse(" (A) "), VersionExtra::parse("a"));
        assert_eq!(VersionExtra::parse("(a)").canonical(), "(a)");
        assert!(VersionExtra::parse("").is_none());
        assert!(VersionExtra::NONE < VersionExtra::parse("(a)"));
        assert!(VersionExtra::parse("a") < VersionExtra::parse("(b)"));
    }

    #[test]
    fn builds_order_by_their_numeric_parts() {
        assert_eq!(compare_builds("25D125", "25D2128"), Ordering::Less);
        assert_eq!(compare_builds("25D2128", "25D771280a"), Ordering::Less);
        assert_eq!(compare_builds("23G83", "23G6083"), Ordering::Less);
        assert_eq!(compare_builds("24A335", "25A5"), Ordering::Less);
        assert_eq!(
            compare_builds("20F770750b", "20F770750a"),
            Ordering::Greater
        );
        assert_eq!(compare_builds("22E261", "22E261"), Ordering::Equal);
        assert_eq!(compare_builds("weird", "25A1"), "weird".cmp("25A1"));
    }
}
