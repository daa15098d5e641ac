//! Rings: the fleet cut once into the groups a rollout reaches in turn. Each ring's deadline is an
//! offset in days from the rollout's base date, at a time of day on the device's own clock; the
//! next ring starts when the one before it passes its gate. Holds and pins keep devices out of a
//! release with a reason the preview shows.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use std::collections::BTreeSet;

use updraft_ddm::OsVersion;
use updraft_feed::Platform;

pub use crate::kinds::Weekends;
use crate::plan::{DeviceFacts, Exclusion, Release};

/// What a ring needs to know of a device to place it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The enrollment id: what a share of the fleet is drawn on.
    pub enrollment_id: &'a str,
    /// The display name.
    pub name: Option<&'a str>,
    /// The serial number.
    pub serial: Option<&'a str>,
    /// The model identifier.
    pub model: Option<&'a str>,
    /// The platform, when known.
    pub platform: Option<Platform>,
    /// The OS version.
    pub os_version: Option<&'a str>,
}

impl<'a> Candidate<'a> {
    /// A device as the console knows it.
    pub fn of(facts: &'a DeviceFacts, name: Option<&'a str>) -> Self {
        Self {
            enrollment_id: &facts.enrollment_id,
            name,
            serial: facts.serial_number.as_deref(),
            model: facts.model.as_deref(),
            platform: facts.platform(),
            os_version: facts.os_version.as_deref(),
        }
    }
}

/// A shell-style pattern (`*` any run, `?` one character), compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    typed: String,
    lower: String,
}

impl Pattern {
    /// The pattern as the admin typed it.
    pub fn new(pattern: &str) -> Self {
        let typed = pattern.trim().to_owned();
        Self {
            lower: typed.to_lowercase(),
            typed,
        }
    }

    /// As typed (trimmed), to show and store.
    pub fn as_str(&self) -> &str {
        &self.typed
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let pattern: Vec<char> = self.lower.chars().collect();
        let text: Vec<char> = text.to_lowercase().chars().collect();
        // The classic two-pointer walk: on a mismatch, let the last `*` take one more character.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(c) if *c == '?' || *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|c| *c == '*')
    }
}

/// Devices by what they are; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// The platform.
    pub platform: Option<Platform>,
    /// The model identifier (`MacBookPro18,*`).
    pub model: Option<Pattern>,
    /// The OS version (`15.*`).
    pub os: Option<Pattern>,
    /// The display name (`IT-*`).
    pub name: Option<Pattern>,
    /// The serial number.
    pub serial: Option<Pattern>,
}

impl DeviceFilter {
    /// Whether the device matches. A pattern on a value the device has not reported does not.
    pub fn matches(&self, device: &Candidate) -> bool {
        let text = |pattern: &Option<Pattern>, value: Option<&str>| match pattern {
            None => true,
            Some(pattern) => value.is_some_and(|v| pattern.matches(v)),
        };
        self.platform.is_none_or(|p| device.platform == Some(p))
            && text(&self.model, device.model)
            && text(&self.os, device.os_version)
            && text(&self.name, device.name)
            && text(&self.serial, device.serial)
    }
}

/// How a ring takes its devices. Rings take devices in order: a device is in the first ring that
/// takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// These devices, by enrollment id.
    Devices(BTreeSet<String>),
    /// The devices a filter matches.
    Filter(DeviceFilter),
    /// A share of the fleet, in percent, drawn on a hash of the enrollment id: a device stays in
    /// its ring from one release to the next. Share rings take consecutive bands in plan order.
    Share(u8),
    /// Every device no ring before it took.
    Rest,
}

/// One ring of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// What the admin calls it (`IT`, `Pilot`, `Everyone`).
    pub name: String,
    /// Which devices.
    pub membership: Membership,
    /// Days after the rollout's base date.
    pub offset_days: u32,
    /// The deadline's time of day, on each device's own clock.
    pub time_of_day: NaiveTime,
}

/// Deadlines only in the evening and night: a time of day outside `start..end` (which may wrap
/// midnight) moves to `start` of the same day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterHours {
    /// When the window opens (18:00).
    pub start: NaiveTime,
    /// When it closes (07:00 the next morning, when before `start`).
    pub end: NaiveTime,
}

impl AfterHours {
    fn contains(&self, time: NaiveTime) -> bool {
        if self.start <= self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }
}

/// When a ring may start: how healthy the ring before it must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// At least this share of the ring before updated, in percent of its devices not excluded.
    pub min_updated_percent: f64,
    /// More than this share failed halts the rollout, in percent.
    pub max_failed_percent: f64,
    /// More failures than this within the last hour halts it too, whatever their share.
    pub max_failures_per_hour: Option<usize>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            min_updated_percent: 90.0,
            max_failed_percent: 5.0,
            max_failures_per_hour: None,
        }
    }
}

/// A rollout's rings, their deadlines' rules and the gate between rings.
#[derive(Debug, Clone, PartialEq)]
pub struct RingPlan {
    /// In the order they start.
    pub rings: Vec<Ring>,
    /// Weekend deadlines.
    pub weekends: Weekends,
    /// Evening and night deadlines only, when set.
    pub after_hours: Option<AfterHours>,
    /// The gate before every ring but the first.
    pub gate: Gate,
}

/// Ten thousand buckets: shares to a hundredth of a percent.
const BUCKETS: u64 = 10_000;

/// The device's bucket, 0 to 9,999: FNV-1a of its enrollment id. Written out here rather than
/// taken from the standard library, whose hasher may change between Rust releases: the bucket
/// must not, or devices would change rings when Updraft is upgraded.
pub fn bucket(enrollment_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in enrollment_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % BUCKETS
}

impl RingPlan {
    /// The index of the ring that takes the device, if any does.
    pub fn ring_of(&self, device: &Candidate) -> Option<usize> {
        let bucket = bucket(device.enrollment_id);
        let mut band_start = 0;
        for (index, ring) in self.rings.iter().enumerate() {
            let takes = match &ring.membership {
                Membership::Devices(ids) => ids.contains(device.enrollment_id),
                Membership::Filter(filter) => filter.matches(device),
                Membership::Share(percent) => {
                    let band_end = band_start + u64::from(*percent).min(100) * BUCKETS / 100;
                    let inside = (band_start..band_end).contains(&bucket);
                    band_start = band_end;
                    inside
                }
                Membership::Rest => true,
            };
            if takes {
                return Some(index);
            }
        }
        None
    }

    /// The ring a device joins in a rollout of `release`: none for a device of another
    /// platform, one held or pinned below the release, or one no ring takes. The one rule for
    /// a rollout's start, a draft's counts and a device that enrolls later.
    pub fn place(
        &self,
        device: &Candidate,
        release: &Release,
        restraints: &Restraints,
        now: DateTime<Utc>,
    ) -> Option<usize> {
        if device.platform != Some(release.platform) {
            return None;
        }
        let restrained = OsVersion::parse(&release.product_version)
            .is_ok_and(|version| restraints.exclusion(device, &version, now).is_some());
        if restrained {
            return None;
        }
        self.ring_of(device)
    }

    /// A ring's deadline on each device's own clock: `base` plus the ring's offset, moved off a
    /// weekend and into the after-hours window as the plan says.
    pub fn deadline(&self, ring: usize, base: NaiveDate) -> Option<NaiveDateTime> {
        let ring = self.rings.get(ring)?;
        let mut date = base + Duration::days(i64::from(ring.offset_days));
        date = match (self.weekends, date.weekday()) {
            (Weekends::NextMonday, Weekday::Sat) => date + Duration::days(2),
            (Weekends::NextMonday, Weekday::Sun) => date + Duration::days(1),
            (Weekends::FridayBefore, Weekday::Sat) => date - Duration::days(1),
            (Weekends::FridayBefore, Weekday::Sun) => date - Duration::days(2),
            _ => date,
        };
        let time = match self.after_hours {
            Some(window) if !window.contains(ring.time_of_day) => window.start,
            _ => ring.time_of_day,
        };
        Some(date.and_time(time))
    }

    /// The plan with every ring's offset shortened to `percent` of itself, rounded up (a release
    /// that fixes an actively exploited vulnerability: a policy may ask for half). The first
    /// ring keeps day 0 when it had it.
    pub fn shortened(&self, percent: u32) -> Self {
        let mut plan = self.clone();
        for ring in &mut plan.rings {
            ring.offset_days = (ring.offset_days * percent.min(100)).div_ceil(100);
        }
        plan
    }
}

/// The deadline of a ring that opens on `today`: the planned one, unless that leaves its
/// devices less than a day of notices (the gate opened late, or the admin promoted it late); then
/// the day after `today`, at the planned time on each device's clock. `None` when the plan
/// stands.
pub fn late_deadline(planned: NaiveDateTime, today: NaiveDate) -> Option<NaiveDateTime> {
    let earliest = (today + Duration::days(1)).and_time(planned.time());
    (planned < earliest).then_some(earliest)
}

/// Where one ring stands, as its gate reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingProgress {
    /// Devices in the ring.
    pub devices: usize,
    /// Updated (or cleaned up after).
    pub updated: usize,
    /// Failed or invalid.
    pub failed: usize,
    /// Excluded: not counted either way.
    pub excluded: usize,
    /// Failures reported within the last hour.
    pub failures_last_hour: usize,
}

impl RingProgress {
    fn eligible(&self) -> usize {
        self.devices.saturating_sub(self.excluded)
    }

    /// `count` in percent of the devices not excluded; none when every device is excluded.
    fn percent(&self, count: usize) -> Option<f64> {
        match self.eligible() {
            0 => None,
            eligible => Some(count as f64 * 100.0 / eligible as f64),
        }
    }
}

/// What a gate says of the next ring.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Start it.
    Promote {
        /// By the admin's hand rather than by the numbers.
        by_hand: bool,
    },
    /// Not yet: the ring before has not updated enough.
    Wait {
        /// Its updated share, in percent.
        updated_percent: f64,
        /// What the gate asks.
        needed_percent: f64,
    },
    /// Stop the rollout before the next ring: the ring before fails too much.
    Halt(HaltReason),
}

/// Why a rollout halted.
#[derive(Debug, Clone, PartialEq)]
pub enum HaltReason {
    /// Too large a share failed.
    FailedShare {
        /// Its failed share, in percent.
        failed_percent: f64,
        /// The gate's limit.
        limit_percent: f64,
    },
    /// Failures came too fast.
    FailureRate {
        /// Failures within the last hour.
        last_hour: usize,
        /// The gate's limit.
        limit: usize,
    },
}

impl std::fmt::Display for HaltReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FailedShare {
                failed_percent,
                limit_percent,
            } => write!(
                f,
                "{failed_percent:.1}% of the ring failed, more than the gate's {limit_percent}%"
            ),
            Self::FailureRate { last_hour, limit } => write!(
                f,
                "{last_hour} failures within the last hour, more than the gate's {limit}"
            ),
        }
    }
}

impl Gate {
    /// The verdict on the ring after `before`. An admin's promotion wins over the numbers (it is
    /// theirs to make, and the audit log keeps it); a halt wins over a promotion by numbers.
    pub fn judge(&self, before: &RingProgress, promoted_by_hand: bool) -> Verdict {
        if promoted_by_hand {
            return Verdict::Promote { by_hand: true };
        }
        // A ring with nothing left to update has nothing to wait for, and nothing failed.
        let Some(failed_percent) = before.percent(before.failed) else {
            return Verdict::Promote { by_hand: false };
        };
        if failed_percent > self.max_failed_percent {
            return Verdict::Halt(HaltReason::FailedShare {
                failed_percent,
                limit_percent: self.max_failed_percent,
            });
        }
        if let Some(limit) = self.max_failures_per_hour
            && before.failures_last_hour > limit
        {
            return Verdict::Halt(HaltReason::FailureRate {
                last_hour: before.failures_last_hour,
                limit,
            });
        }
        let updated_percent = before.percent(before.updated).unwrap_or(100.0);
        if updated_percent >= self.min_updated_percent {
            Verdict::Promote { by_hand: false }
        } else {
            Verdict::Wait {
                updated_percent,
                needed_percent: self.min_updated_percent,
            }
        }
    }
}

/// A device kept out of every rollout until `until` (or until the hold is lifted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The device.
    pub enrollment_id: String,
    /// Why, in the admin's words.
    pub reason: String,
    /// When it ends by itself.
    pub until: Option<DateTime<Utc>>,
}

/// A group kept `majors_behind` major versions behind the newest (N-1 pinning): it takes the
/// updates of its own major, never the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// What the admin calls the group.
    pub group: String,
    /// Its devices.
    pub filter: DeviceFilter,
    /// How many majors behind the newest of their platform (1 for N-1).
    pub majors_behind: u32,
}

/// Whether a hold keeps the device out of every release at `now` (a hold past its end does not).
pub fn on_hold(enrollment_id: &str, holds: &[Hold], now: DateTime<Utc>) -> Option<Exclusion> {
    holds
        .iter()
        .find(|h| h.enrollment_id == enrollment_id && h.until.is_none_or(|until| now < until))
        .map(|hold| Exclusion::OnHold {
            reason: hold.reason.clone(),
            until: hold.until,
        })
}

/// Whether a hold or a pin keeps the device out of a release of `version`. `majors` are the
/// majors the feed lists for the release's platform, newest first: N-1 is the one after the
/// newest in that list, not the newest minus one (macOS went from 15 to 26). A pin reaching past
/// the oldest listed major keeps the device on that oldest one. Holds come first: they name a
/// device.
pub fn held_back(
    device: &Candidate,
    version: &OsVersion,
    majors: &[u32],
    holds: &[Hold],
    pins: &[Pin],
    now: DateTime<Utc>,
) -> Option<Exclusion> {
    if let Some(held) = on_hold(device.enrollment_id, holds, now) {
        return Some(held);
    }
    pins.iter()
        .filter(|pin| pin.filter.matches(device))
        .filter_map(|pin| {
            let behind = usize::try_from(pin.majors_behind).ok()?;
            let highest = majors.get(behind).or(majors.last())?;
            Some((pin, *highest))
        })
        .find(|(_, highest)| version.major() > *highest)
        .map(|(pin, highest)| Exclusion::Pinned {
            group: pin.group.clone(),
            highest_major: highest,
        })
}

/// What keeps devices out of a release whatever the rollout: holds, and pins measured against
/// the majors the feed lists for the release's platform (newest first).
#[derive(Debug, Clone, Copy, Default)]
pub struct Restraints<'a> {
    /// Devices held back by hand.
    pub holds: &'a [Hold],
    /// Groups kept behind the newest major.
    pub pins: &'a [Pin],
    /// The platform's majors in the feed, newest first ([`majors_of`]).
    pub majors: &'a [u32],
}

impl Restraints<'_> {
    /// Why the device stays out of a release of `version`, if it does.
    pub fn exclusion(
        &self,
        device: &Candidate,
        version: &OsVersion,
        now: DateTime<Utc>,
    ) -> Option<Exclusion> {
        held_back(device, version, self.majors, self.holds, self.pins, now)
    }
}

/// The majors of `platform` the releases list, newest first, once each.
pub fn majors_of(releases: &[updraft_feed::FeedRelease], platform: Platform) -> Vec<u32> {
    let mut majors: Vec<u32> = releases
        .iter()
        .filter(|r| r.platform == platform)
        .filter_map(|r| OsVersion::parse(&r.product_version).ok())
        .map(|v| v.major())
        .collect();
    majors.sort_unstable_by(|a, b| b.cmp(a));
    majors.dedup();
    majors
}

#[cfg(test)]
mod tests;
