//! Compliance: who runs a release (or newer) how soon after Apple posted it, per ring, day by
//! day; and, for every device that does not, why.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use std::collections::BTreeMap;

use crate::Phase;
pub use crate::kinds::Lag;
use crate::machine::Enforcement;

/// One device as the report reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing<'a> {
    /// The ring it is in (`not in a rollout` for none).
    pub ring: &'a str,
    /// When it reached the release or newer, if it has.
    pub reached: Option<DateTime<Utc>>,
}

/// One ring's curve: how many of its devices ran the release by the end of each day after
/// posting (day 0 is the posting date, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The ring; `All` for the whole platform, first.
    pub ring: String,
    /// Its devices.
    pub devices: usize,
    /// Compliant devices by the end of day 0, 1, 2...
    pub compliant: Vec<usize>,
}

impl Series {
    /// The share compliant on `day`, in percent (0 for an empty ring).
    pub fn percent(&self, day: usize) -> f64 {
        match (self.devices, self.compliant.get(day)) {
            (0, _) | (_, None) => 0.0,
            (devices, Some(done)) => *done as f64 * 100.0 / devices as f64,
        }
    }
}

/// The curves of the whole platform and of each ring, over `days + 1` days from `posted`; rings
/// in the order of `rings`, then any other in name order.
pub fn series(devices: &[Standing], posted: NaiveDate, days: u32, rings: &[&str]) -> Vec<Series> {
    let ends: Vec<DateTime<Utc>> = (0..=days)
        .map(|day| {
            (posted + Duration::days(i64::from(day) + 1))
                .and_time(NaiveTime::MIN)
                .and_utc()
        })
        .collect();
    let curve = |members: &[&Standing]| -> Vec<usize> {
        ends.iter()
            .map(|end| {
                members
                    .iter()
                    .filter(|d| d.reached.is_some_and(|at| at < *end))
                    .count()
            })
            .collect()
    };
    let all: Vec<&Standing> = devices.iter().collect();
    let mut members: BTreeMap<(usize, &str), Vec<&Standing>> = BTreeMap::new();
    for device in devices {
        let position = rings
            .iter()
            .position(|r| *r == device.ring)
            .unwrap_or(rings.len());
        members
            .entry((position, device.ring))
            .or_default()
            .push(device);
    }
    let mut out = vec![Series {
        ring: "All".into(),
        devices: all.len(),
        compliant: curve(&all),
    }];
    out.extend(members.into_iter().map(|((_, ring), members)| Series {
        ring: ring.to_owned(),
        devices: members.len(),
        compliant: curve(&members),
    }));
    out
}

/// Why a device does not run the release yet: its record in the release's rollout (if any),
/// whether it is held, and whether it has gone silent.
pub fn lag_of(record: Option<&Enforcement>, on_hold: bool) -> Lag {
    if on_hold {
        return Lag::OnHold;
    }
    let Some(record) = record else {
        return Lag::NotInRollout;
    };
    if record.stale {
        return Lag::Silent;
    }
    match record.phase {
        Phase::Failed | Phase::Invalid => Lag::Failed,
        Phase::Excluded => Lag::Excluded,
        Phase::Cancelled => Lag::NotInRollout,
        _ if record.past_deadline => Lag::PastDeadline,
        _ => Lag::InProgress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Release;
    use chrono::NaiveDateTime;

    fn at(text: &str) -> Option<DateTime<Utc>> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_device_counts_from_the_day_it_reached_the_release_in_its_ring_and_in_all() {
        let posted = NaiveDate::from_ymd_opt(2026, 4, 9).unwrap();
        let devices = [
            Standing {
                ring: "IT",
                reached: at("2026-04-09T18:00:00Z"),
            },
            Standing {
                ring: "IT",
                reached: at("2026-04-10T23:59:59Z"),
            },
            Standing {
                ring: "Pilot",
                reached: at("2026-04-11T00:00:00Z"),
            },
            Standing {
                ring: "Pilot",
                reached: None,
            },
        ];
        let series = series(&devices, posted, 3, &["Pilot"]);
        let by_ring: Vec<(&str, usize, &[usize])> = series
            .iter()
            .map(|s| (s.ring.as_str(), s.devices, s.compliant.as_slice()))
            .collect();
        assert_eq!(
            by_ring,
            [
                ("All", 4, &[1, 2, 3, 3][..]),
                ("Pilot", 2, &[0, 0, 1, 1][..]),
                ("IT", 2, &[1, 2, 2, 2][..]),
            ]
        );
        assert_eq!(series[0].percent(2), 75.0);
        assert_eq!(
            Series {
                ring: "x".into(),
                devices: 0,
                compliant: vec![0]
            }
            .percent(0),
            0.0
        );
    }

    #[test]
    fn the_reason_a_device_lags_is_the_most_telling_one() {
        let release = Release {
            platform: updraft_feed::Platform::MacOs,
            product_version: "26.4.1".into(),
            product_version_extra: None,
            builds: Vec::new(),
        };
        let record = |phase: Phase| Enforcement {
            phase,
            ..Enforcement::planned(
                1,
                1,
                "E1",
                &release,
                None,
                NaiveDateTime::default(),
                None,
                DateTime::UNIX_EPOCH,
            )
        };
        assert_eq!(lag_of(None, false), Lag::NotInRollout);
        assert_eq!(lag_of(Some(&record(Phase::Failed)), true), Lag::OnHold);
        assert_eq!(lag_of(Some(&record(Phase::Failed)), false), Lag::Failed);
        assert_eq!(lag_of(Some(&record(Phase::Excluded)), false), Lag::Excluded);
        assert_eq!(
            lag_of(Some(&record(Phase::Downloading)), false),
            Lag::InProgress
        );
        let late = Enforcement {
            past_deadline: true,
            ..record(Phase::Waiting)
        };
        assert_eq!(lag_of(Some(&late), false), Lag::PastDeadline);
        let silent = Enforcement {
            stale: true,
            ..late
        };
        assert_eq!(lag_of(Some(&silent), false), Lag::Silent);
    }
}
