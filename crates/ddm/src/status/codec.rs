//! A status report read and written as a stream: items typed as they are read, bounded in size
//! and depth before they are kept, written back without building a tree.

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;

use super::*;

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

pub(super) fn is_refusal(error: &StatusItemError) -> bool {
    error
        .reasons
        .iter()
        .flatten()
        .any(|reason| reason.code == REFUSED_CODE)
}

pub(super) fn json_len(value: &Value) -> usize {
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
pub(super) fn value_depth(value: &Value) -> usize {
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

pub(super) fn write_key(out: &mut Vec<u8>, key: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    write_json(out, key);
    out.push(b':');
}

pub(super) fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
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
