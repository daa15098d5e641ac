//! A device's known status, merged report by report within bounds.

use serde_json::Value;
use std::collections::BTreeMap;

use crate::version::VersionExtra;

use super::*;

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
