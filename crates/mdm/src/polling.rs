//! [`PollingStatusSource`]: devices' status read back from a stock KMFDDM or NanoHUB, for small
//! fleets without Updraft's webhook companion. KMFDDM has no list of enrollments, so the ids
//! come from a list the admin imports ([`parse_enrollment_list`]); each poll reads every
//! enrollment's newest `status-report`, walks back through older ones the server still numbers,
//! and merges them oldest first as a device's increments are merged.
//!
//! What polling cannot see: NanoHUB's file storage keeps only the newest report, so a state a
//! device passed through between two polls (downloading, say) is not seen, though the state it
//! ended in is; device names and time zones come from the imported list, since NanoMDM's API
//! does not give back command results. The webhook companion has neither limit.

use async_trait::async_trait;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use updraft_clock::SharedClock;
use updraft_ddm::{DeviceStatus, StatusReport};

use crate::client::StoredReport;
use crate::{ChangesPage, Enrollment, KmfddmClient, MdmError, StatusChange, StatusSource};

/// Older reports walked back per poll at most, where the server numbers them.
const WALK_BACK: u32 = 16;

/// Why an enrollment list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("enrollment list, line {line}: {reason}")]
pub struct ListError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Reads an enrollment list: one enrollment a line, `id[,name[,time zone]]` (CSV; a header line
/// naming `id` or `enrollment` is skipped, as are blank lines and lines starting with `#`).
/// Pasted ids alone, one a line, are a list too.
pub fn parse_enrollment_list(text: &str) -> Result<Vec<Enrollment>, ListError> {
    let mut out: Vec<Enrollment> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        let id = fields[0];
        let lower = id.to_ascii_lowercase();
        if index == 0 && (lower == "id" || lower.starts_with("enrollment")) {
            continue;
        }
        let error = |reason: String| ListError {
            line: index + 1,
            reason,
        };
        if id.is_empty() {
            return Err(error("no enrollment id in the first column".into()));
        }
        if id.chars().any(|c| c.is_control() || c == '/' || c == '?') {
            return Err(error(format!("{id:?} is not an enrollment id")));
        }
        if fields.len() > 3 {
            return Err(error(format!(
                "{} columns; expected id, name, time zone",
                fields.len()
            )));
        }
        let time_zone = fields.get(2).filter(|z| !z.is_empty());
        if let Some(zone) = time_zone
            && zone.parse::<chrono_tz::Tz>().is_err()
        {
            return Err(error(format!(
                "{zone:?} is not an IANA time zone (e.g. Europe/Paris)"
            )));
        }
        if !seen.insert(id.to_owned()) {
            return Err(error(format!("{id} is listed twice")));
        }
        out.push(Enrollment {
            id: id.to_owned(),
            device_name: fields
                .get(1)
                .filter(|n| !n.is_empty())
                .map(|n| n.to_string()),
            time_zone: time_zone.map(|z| z.to_string()),
            ..Enrollment::default()
        });
    }
    Ok(out)
}

/// The last report of a device this source merged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    counter: i64,
    last_modified: Option<String>,
    hash: u64,
}

impl Seen {
    fn of(report: &StoredReport) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        report.body.hash(&mut hasher);
        Self {
            counter: report.counter,
            last_modified: report.last_modified.clone(),
            hash: hasher.finish(),
        }
    }
}

#[derive(Debug, Default)]
struct Polled {
    enrollment: Enrollment,
    status: Option<DeviceStatus>,
    seen: Option<Seen>,
    seq: i64,
}

#[derive(Debug, Default)]
struct State {
    devices: BTreeMap<String, Polled>,
    seq: i64,
    last_poll: Option<DateTime<Utc>>,
}

/// Status by polling a KMFDDM server's `status-report` for a list of enrollments.
pub struct PollingStatusSource {
    client: Arc<KmfddmClient>,
    state: tokio::sync::Mutex<State>,
    clock: SharedClock,
    every: Duration,
}

impl PollingStatusSource {
    /// A source over `client` for the listed enrollments, polling at most once per `every` of
    /// `clock`'s time. An enrollment counts as enrolled when first listed, and a report as made
    /// when this source first reads it: the console's clock, whatever the server's says.
    pub fn new(
        client: Arc<KmfddmClient>,
        enrollments: Vec<Enrollment>,
        clock: SharedClock,
        every: Duration,
    ) -> Self {
        let devices = enrollments
            .into_iter()
            .map(|enrollment| {
                (
                    enrollment.id.clone(),
                    Polled {
                        enrollment,
                        ..Polled::default()
                    },
                )
            })
            .collect();
        Self {
            client,
            state: tokio::sync::Mutex::new(State {
                devices,
                ..State::default()
            }),
            clock,
            every,
        }
    }

    /// Adds enrollments to the list (a later import); known ids keep their state.
    pub async fn add_enrollments(&self, enrollments: Vec<Enrollment>) {
        let mut state = self.state.lock().await;
        for enrollment in enrollments {
            state
                .devices
                .entry(enrollment.id.clone())
                .or_insert_with(|| Polled {
                    enrollment,
                    ..Polled::default()
                });
        }
    }

    /// Reads every enrollment's new reports and merges them; returns how many devices changed.
    async fn poll(&self, state: &mut State) -> Result<usize, MdmError> {
        let now = self.clock.now();
        if state.last_poll.is_some_and(|last| now - last < self.every) {
            return Ok(0);
        }
        state.last_poll = Some(now);
        let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let ids: Vec<String> = state.devices.keys().cloned().collect();
        let mut changed = 0;
        for id in ids {
            let Some(device) = state.devices.get(&id) else {
                continue;
            };
            let newest = self.client.status_report(&id, 0).await?;
            let first_sight = device.seq == 0;
            let fresh = self
                .unseen_reports(&id, newest, device.seen.as_ref())
                .await?;
            if fresh.is_empty() && !first_sight {
                continue;
            }
            let device = state.devices.get_mut(&id).ok_or_else(|| {
                MdmError::Setup("an enrollment left the polling list during a poll".into())
            })?;
            for report in fresh.iter().rev() {
                match StatusReport::parse(&report.body) {
                    Ok(parsed) => {
                        device
                            .status
                            .get_or_insert_with(DeviceStatus::default)
                            .absorb(parsed);
                    }
                    Err(error) => {
                        tracing::warn!(enrollment = %id, %error, "a stored status report is not valid; skipped")
                    }
                }
            }
            if let Some(newest) = fresh.first() {
                device.seen = Some(Seen::of(newest));
                device.enrollment.last_seen_at = Some(stamp.clone());
            }
            device
                .enrollment
                .enrolled_at
                .get_or_insert_with(|| stamp.clone());
            state.seq += 1;
            device.seq = state.seq;
            changed += 1;
        }
        Ok(changed)
    }

    /// The reports newer than `seen`, newest first: the newest alone where the server does not
    /// number its reports, else every numbered one back to the last seen (at most
    /// [`WALK_BACK`]), or back to a full report.
    async fn unseen_reports(
        &self,
        id: &str,
        newest: Option<StoredReport>,
        seen: Option<&Seen>,
    ) -> Result<Vec<StoredReport>, MdmError> {
        let Some(newest) = newest else {
            return Ok(Vec::new());
        };
        if seen == Some(&Seen::of(&newest)) {
            return Ok(Vec::new());
        }
        let numbered = newest.counter > 0;
        let mut out = vec![newest];
        if numbered {
            for index in 1..WALK_BACK {
                let last = &out[out.len() - 1];
                if is_full(&last.body) || seen.is_some_and(|s| last.counter <= s.counter + 1) {
                    break;
                }
                match self.client.status_report(id, index).await? {
                    Some(older) if seen.is_none_or(|s| older.counter > s.counter) => {
                        out.push(older)
                    }
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}

fn is_full(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "FullReport", default)]
        full_report: bool,
    }
    serde_json::from_slice::<Head>(body).is_ok_and(|h| h.full_report)
}

#[async_trait]
impl StatusSource for PollingStatusSource {
    /// Polls when the caller has read everything it already has. A cursor ahead of this
    /// source's own (the console restarted, this source did not keep its state) continues from
    /// there, so the first poll after a restart gives every device anew.
    async fn status_changes(&self, after: i64, limit: u32) -> Result<ChangesPage, MdmError> {
        let mut state = self.state.lock().await;
        if after > state.seq {
            state.seq = after;
            state.last_poll = None;
            for device in state.devices.values_mut() {
                device.seq = 0;
                device.seen = None;
                device.status = None;
            }
        }
        if after >= state.seq {
            self.poll(&mut state).await?;
        }
        let mut pending: Vec<&Polled> = state
            .devices
            .values()
            .filter(|device| device.seq > after)
            .collect();
        pending.sort_by_key(|device| device.seq);
        pending.truncate(limit as usize);
        let changes = pending
            .iter()
            .map(|device| {
                let status = device
                    .status
                    .as_ref()
                    .and_then(|status| RawValue::from_string(status.to_full_report_json()).ok());
                StatusChange {
                    enrollment: Enrollment {
                        seq: device.seq,
                        serial_number: device.enrollment.serial_number.clone().or_else(|| {
                            device
                                .status
                                .as_ref()
                                .and_then(|s| s.serial_number().map(str::to_owned))
                        }),
                        ..device.enrollment.clone()
                    },
                    status,
                }
            })
            .collect::<Vec<_>>();
        let next = changes.last().map_or(after, |c| c.enrollment.seq);
        Ok(ChangesPage { changes, next })
    }

    /// NanoMDM's API does not say whether a device escrowed its bootstrap token.
    fn knows_bootstrap_escrow(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_takes_csv_or_bare_ids_and_names_the_bad_line() {
        let list = parse_enrollment_list(
            "id,name,time zone\nA1,Ana's Mac,Europe/Paris\n\n# a comment\nB2\n",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].device_name.as_deref(), Some("Ana's Mac"));
        assert_eq!(list[0].time_zone.as_deref(), Some("Europe/Paris"));
        assert_eq!(list[1].id, "B2");
        let error = parse_enrollment_list("A1\nB2,x,Mars/Olympus\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.reason.contains("Mars/Olympus"), "{error}");
        assert_eq!(parse_enrollment_list("A\nA\n").unwrap_err().line, 2);
    }
}
