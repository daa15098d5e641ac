//! What the screens show: the UI's contract, serialized in camelCase. Every string that came from a
//! device or the feed travels as data and is rendered as text by the UI.

use serde::{Deserialize, Serialize};

use updraft_engine::InstallState;
pub use updraft_engine::{AlertKind, EventKind};

/// Devices on one OS version.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct OsCount {
    /// `macOS`, `iOS`.
    pub platform: String,
    /// `26.3`.
    pub version: String,
    /// Devices.
    pub count: usize,
}

/// How much of a platform runs its newest release.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct Compliance {
    /// Platform.
    pub platform: String,
    /// Newest release offered today (not a BSI), with its build.
    pub newest: String,
    /// Devices at or above it.
    pub current: usize,
    /// Devices of the platform.
    pub devices: usize,
}

/// "macOS 26.4, released 2 days ago, applies to 1,204 devices".
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseBanner {
    /// Catalog key, for the wizard.
    pub release: String,
    /// Platform.
    pub platform: String,
    /// Version and build.
    pub label: String,
    /// Days since posting.
    pub days_ago: i64,
    /// Devices it applies to.
    pub applies_to: usize,
}

/// Where a rollout stands, as the screens say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Devices are still moving.
    Active,
    /// Active, and every device is final (it still takes in devices that enroll later).
    Complete,
    /// Paused by the admin.
    Paused,
    /// Cancelled by the admin.
    Cancelled,
    /// A wave waiting for the wave before it to pass its gate.
    Gated,
    /// Its gate halted it: the wave before failed too much.
    Halted,
}

/// A rollout in a list.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSummary {
    /// Id.
    pub id: i64,
    /// The ring it rolls out to, when it is one of a ring plan.
    pub ring: Option<String>,
    /// Wave.
    pub wave: u32,
    /// Platform.
    pub platform: String,
    /// Release.
    pub label: String,
    /// Local deadline.
    pub deadline: String,
    /// Where it stands.
    pub state: RolloutStatus,
    /// Devices with a record (including excluded).
    pub total: usize,
    /// Updated (and cleaned up, or being cleaned up).
    pub updated: usize,
    /// Failed or declaration invalid.
    pub failed: usize,
    /// Excluded.
    pub excluded: usize,
    /// Still in progress.
    pub in_progress: usize,
    /// For a wave behind a gate: what it waits for, or why it halted.
    pub gate: Option<String>,
}

/// An alert.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    /// Id.
    pub id: i64,
    /// When (simulated in the lab).
    pub at: String,
    /// Kind.
    pub kind: AlertKind,
    /// Device enrollment id.
    pub device: Option<String>,
    /// Device name.
    pub device_name: Option<String>,
    /// Rollout.
    pub rollout: Option<i64>,
    /// Detail.
    pub detail: String,
}

/// The dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    /// The console's clock.
    pub now: String,
    /// Whether this is the lab.
    pub lab: bool,
    /// Devices known.
    pub devices: usize,
    /// Fleet by OS version.
    pub by_os: Vec<OsCount>,
    /// Share on the newest release, per platform.
    pub compliance: Vec<Compliance>,
    /// New releases that apply to devices not yet in a rollout of them.
    pub banners: Vec<ReleaseBanner>,
    /// Rollouts not cancelled, newest first.
    pub rollouts: Vec<RolloutSummary>,
    /// Newest alerts.
    pub alerts: Vec<AlertView>,
    /// Rollouts release policies drafted, waiting for an admin.
    pub drafts: Vec<DraftView>,
}

/// One build of a release.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseBuildView {
    /// The build.
    pub build: Option<String>,
    /// For a BSI, the base build it installs on.
    pub prerequisite_build: Option<String>,
    /// How many device ids this build lists.
    pub supported_device_ids: usize,
}

/// A release on the Releases screen.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    /// Catalog key.
    pub key: String,
    /// Platform.
    pub platform: String,
    /// `26.3.1`.
    pub version: String,
    /// `(a)` for a BSI.
    pub extra: Option<String>,
    /// Its builds: a release is one version, which the feed may list under several builds.
    pub builds: Vec<ReleaseBuildView>,
    /// `PostingDate`.
    pub posted: String,
    /// `ExpirationDate`.
    pub expires: Option<String>,
    /// Offered on the console's date.
    pub available: bool,
    /// Only in `AssetSets`.
    pub management_only: bool,
    /// Devices ids it lists.
    pub supported_device_ids: usize,
    /// Devices it applies to (not yet on it, eligible).
    pub applies_to: usize,
    /// Devices of the platform already at or above it.
    pub current: usize,
    /// The CVEs it fixes, by SOFA; none when SOFA does not list it or disagrees with Apple.
    pub cves: Option<usize>,
    /// Those actively exploited.
    pub exploited: Vec<String>,
    /// Apple's security note.
    pub security_info: Option<String>,
    /// How SOFA's entry disagrees with the lookup service, shown instead of its counts.
    pub sofa_mismatch: Option<String>,
}

/// A row of the devices table.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
#[ts(rename = "DeviceRow")]
pub struct DeviceRowView {
    /// Enrollment id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Serial number.
    pub serial: String,
    /// Model identifier.
    pub model: String,
    /// Platform.
    pub platform: String,
    /// OS version, with the supplemental letter when there is one.
    pub os: String,
    /// Build.
    pub build: String,
    /// Phase in its newest rollout, or `none`.
    pub state: String,
    /// Its newest rollout.
    pub rollout: Option<i64>,
    /// Last status report.
    pub last_report: Option<String>,
}

/// A query of the devices table: filters, sort and the window of rows wanted.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceQuery {
    /// Part of the name, serial number or enrollment id, any case.
    pub search: String,
    /// Model identifier.
    pub model: Option<String>,
    /// OS version.
    pub os: Option<String>,
    /// Phase.
    pub state: Option<String>,
    /// Rollout.
    pub rollout: Option<i64>,
    /// `name`, `serial`, `model`, `os`, `state`, `lastReport`.
    pub sort: Option<String>,
    /// Sort descending.
    pub descending: bool,
    /// First row.
    pub offset: usize,
    /// Rows wanted (at most 1,000).
    pub limit: usize,
}

/// A window of the devices table.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct DevicePage {
    /// Rows matching the filters.
    pub total: usize,
    /// The window's first row.
    pub offset: usize,
    /// The rows.
    pub rows: Vec<DeviceRowView>,
}

/// Values the filters offer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFacets {
    /// Model identifiers.
    pub models: Vec<String>,
    /// OS versions.
    pub os: Vec<String>,
    /// Phases.
    pub states: Vec<String>,
    /// Rollouts.
    pub rollouts: Vec<i64>,
}

/// How a timeline entry reads at a glance: something went wrong, the device got there, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    /// A failure, a rejected declaration, a missed deadline, silence.
    Trouble,
    /// The new OS, or the declaration removed after it.
    Done,
    /// Anything else.
    Info,
}

impl Tone {
    /// The tone of an event. An install state is trouble only when it is `failed`, which the
    /// event's detail names in Apple's words.
    pub fn of(kind: EventKind, detail: &str) -> Self {
        match kind {
            EventKind::InstallFailed
            | EventKind::DeclarationInvalid
            | EventKind::PastDeadline
            | EventKind::Stale
            | EventKind::Stuck
            | EventKind::PushFailed => Self::Trouble,
            EventKind::InstallState if InstallState::parse(detail) == InstallState::Failed => {
                Self::Trouble
            }
            EventKind::OsUpdated | EventKind::DeclarationRemoved => Self::Done,
            // Listed rather than a wildcard, so a new kind has to say how it reads.
            EventKind::Enrolled
            | EventKind::Planned
            | EventKind::Excluded
            | EventKind::DeclarationAssigned
            | EventKind::DeclarationUnassigned
            | EventKind::PushSent
            | EventKind::RolloutCancelled
            | EventKind::Retry
            | EventKind::BootstrapTokenRequested
            | EventKind::DeclarationActive
            | EventKind::InstallState => Self::Info,
        }
    }
}

/// A timeline entry, with the time since the one before.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// When.
    pub at: String,
    /// Kind.
    pub kind: EventKind,
    /// Detail.
    pub detail: String,
    /// How the entry's marker reads.
    pub tone: Tone,
    /// Rollout.
    pub rollout: Option<i64>,
    /// "2 h 15 min" since the previous entry.
    pub since_previous: Option<String>,
}

/// A device's part in one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct DeviceEnforcement {
    /// Rollout.
    pub rollout: i64,
    /// Target.
    pub target: String,
    /// Phase.
    pub phase: String,
    /// Local deadline.
    pub deadline: String,
    /// The declaration.
    pub declaration: String,
    /// Apple's failure reason.
    pub failure_reason: Option<String>,
    /// Failures so far.
    pub failure_count: u64,
    /// Why excluded.
    pub exclusion_reason: Option<String>,
    /// Why the device rejected the declaration.
    pub invalid_reason: Option<String>,
    /// Deadline passed, not updated.
    pub past_deadline: bool,
    /// No report for too long.
    pub stale: bool,
    /// Downloading or installing for too long.
    pub stuck: bool,
}

/// The device screen.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct DeviceDetail {
    /// The row.
    pub row: DeviceRowView,
    /// Model family.
    pub family: Option<String>,
    /// SoftwareUpdateDeviceID, and whether it was reported or derived from the model.
    pub device_id: Option<String>,
    /// `reported` or `derived from model`.
    pub device_id_source: Option<String>,
    /// Supplemental (BSI) build.
    pub supplemental_build: Option<String>,
    /// IANA time zone.
    pub time_zone: Option<String>,
    /// Bootstrap token escrowed.
    pub bootstrap_token_escrowed: bool,
    /// Last bootstrap token fetch.
    pub bootstrap_token_requested_at: Option<String>,
    /// Enforcement declarations assigned now.
    pub declarations_assigned: Vec<String>,
    /// Its rollouts.
    pub enforcements: Vec<DeviceEnforcement>,
    /// Every event, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// From the first event to the last, in words (`3 d 4 h`); none with fewer than two.
    pub timeline_span: Option<String>,
    /// What keeps it out of every rollout, when an admin holds it back and the hold has not
    /// ended (`on hold until 2026-12-05 00:00 UTC: on stage Friday`).
    pub hold: Option<String>,
    /// The prompts the device's user is expected to see before a deadline still ahead (Apple's
    /// phase 4: no report tells them, so they are expected, never observed), oldest first.
    pub expected_prompts: Vec<ExpectedPromptView>,
}

/// A prompt expected on the device before its deadline.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedPromptView {
    /// On the device's clock, `2026-12-07 16:00`.
    pub at: String,
    /// `daily`, `hourly`, `30 and 10 minutes before`, `at the deadline`.
    pub cadence: String,
    /// The rollout whose deadline it announces.
    pub rollout: i64,
}

/// One phase's count in a rollout's funnel.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct FunnelStep {
    /// Phase.
    pub phase: String,
    /// Devices in it now.
    pub count: usize,
}

/// Failed devices sharing a reason.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct FailureGroup {
    /// Apple's reason (or the console's, for a silent device).
    pub reason: String,
    /// Devices.
    pub devices: Vec<String>,
}

/// The rollout screen.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct RolloutDetail {
    /// The summary.
    pub summary: RolloutSummary,
    /// DetailsURL.
    pub details_url: Option<String>,
    /// Whether it covers chosen devices only.
    pub scoped: bool,
    /// Devices per phase, in the order devices move.
    pub funnel: Vec<FunnelStep>,
    /// Failures by reason.
    pub failures: Vec<FailureGroup>,
    /// Exclusions by reason.
    pub exclusions: Vec<FailureGroup>,
}

/// An audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    /// When.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub detail: String,
}

pub use updraft_engine::{DraftState, PolicyAction, Weekends};

/// How a ring takes its devices, as the editor offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum MembershipKind {
    /// A share of the fleet, drawn on a stable hash of the enrollment id.
    Share,
    /// The devices a filter matches.
    Filter,
    /// Devices named by hand.
    Devices,
    /// Every device no ring before took.
    Rest,
}

/// One ring of a saved plan, as the editor shows and sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct RingView {
    /// `IT`, `Pilot`, `Everyone`.
    pub name: String,
    /// How it takes devices; the fields below that the kind uses are set.
    pub kind: MembershipKind,
    /// Share: percent of the fleet, 1 to 100.
    pub share_percent: Option<u8>,
    /// Filter: `macOS` or `iOS`.
    pub filter_platform: Option<String>,
    /// Filter: model pattern (`Mac14,*`).
    pub filter_model: Option<String>,
    /// Filter: OS version pattern (`15.*`).
    pub filter_os: Option<String>,
    /// Filter: name pattern (`IT-*`).
    pub filter_name: Option<String>,
    /// Filter: serial pattern.
    pub filter_serial: Option<String>,
    /// Devices: enrollment ids.
    pub devices: Vec<String>,
    /// Days after the rollout's base date.
    pub offset_days: u32,
    /// `17:00`, on each device's clock.
    pub time_of_day: String,
}

/// A saved ring plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct RingPlanView {
    /// Its name, unique.
    pub name: String,
    /// In the order they start.
    pub rings: Vec<RingView>,
    /// Where weekend deadlines go.
    pub weekends: Weekends,
    /// Deadlines only from this time (`18:00`)...
    pub after_hours_start: Option<String>,
    /// ...to this one (`07:00`), when both are set.
    pub after_hours_end: Option<String>,
    /// The gate: at least this percent of the ring before updated.
    pub min_updated_percent: f64,
    /// More than this percent failed halts the rollout.
    pub max_failed_percent: f64,
    /// More failures than this within an hour halts it too.
    pub max_failures_per_hour: Option<u32>,
    /// Release policies that use it (it cannot be deleted while any does).
    pub used_by: Vec<String>,
}

/// A platform's release policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    /// `macOS` or `iOS`.
    pub platform: String,
    /// The saved ring plan its rollouts take.
    pub plan: String,
    /// The base date: this many days after the release's posting date.
    pub base_delay_days: u32,
    /// Draft for an admin, or start at once.
    pub action: PolicyAction,
    /// Offsets shortened to this percent when the release fixes an actively exploited CVE.
    pub exploited_percent: Option<u32>,
    /// Releases posted before this day (`YYYY-MM-DD`) are left alone.
    pub since: String,
}

/// One ring of a drafted rollout: who and by when.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct DraftRingView {
    /// The ring.
    pub name: String,
    /// Devices of the platform it takes today (devices on hold are left out).
    pub devices: usize,
    /// Its deadline on each device's clock, `YYYY-MM-DDTHH:MM`.
    pub deadline: String,
}

/// A rollout a release policy drafted.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct DraftView {
    /// Id.
    pub id: i64,
    /// Catalog key of the release, for the wizard.
    pub release: String,
    /// `macOS 26.4.1 (25E253)`.
    pub label: String,
    /// When the lookup service posted it.
    pub posted: String,
    /// The ring plan.
    pub plan: String,
    /// The base date, `YYYY-MM-DD`.
    pub base_date: String,
    /// Offsets shortened to this percent, for an exploited vulnerability.
    pub shortened_to: Option<u32>,
    /// The actively exploited CVEs it fixes.
    pub exploited: Vec<String>,
    /// Waiting, started or dismissed.
    pub state: DraftState,
    /// Its rings as they stand today (empty when its plan is gone).
    pub rings: Vec<DraftRingView>,
    /// "each ring waits for 90% updated of the one before; more than 5% failed halts".
    pub gate: String,
    /// When the policy drafted it.
    pub drafted_at: String,
}

pub use updraft_engine::Lag;

/// One ring's compliance curve.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceSeriesView {
    /// `All`, or the ring's name (`not in a rollout` for devices no rollout covers).
    pub ring: String,
    /// Its devices.
    pub devices: usize,
    /// Percent on the release or newer by the end of day 0 (the posting date), 1, 2...
    pub percent: Vec<f64>,
}

/// How many devices lag for one reason.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct LagCount {
    /// The reason.
    pub lag: Lag,
    /// Devices.
    pub devices: usize,
}

/// A device not on the release, and why.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct LaggingDevice {
    /// Enrollment id.
    pub id: String,
    /// Name.
    pub name: Option<String>,
    /// Its ring.
    pub ring: String,
    /// The OS it reports.
    pub os: String,
    /// Why it lags.
    pub lag: Lag,
    /// Apple's failure reason, the exclusion reason, the hold's reason, or its last report.
    pub detail: String,
}

/// Who runs a release (or newer) how soon after it was posted.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceReport {
    /// Catalog key.
    pub release: String,
    /// `macOS 26.4.1 (25E253)`.
    pub label: String,
    /// Posting date.
    pub posted: String,
    /// Days since posting the curves run to (today, at most 90).
    pub days: usize,
    /// The whole platform first, then each ring.
    pub series: Vec<ComplianceSeriesView>,
    /// Devices not on it, by reason.
    pub lags: Vec<LagCount>,
    /// The first of them, sorted by reason then name.
    pub lagging: Vec<LaggingDevice>,
    /// How many lag in all.
    pub lagging_total: usize,
}

/// A group kept behind the newest major (N-1 pinning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PinView {
    /// Its name, unique (`Audio studio`).
    pub name: String,
    /// Filter: `macOS` or `iOS`.
    pub filter_platform: Option<String>,
    /// Filter: model pattern.
    pub filter_model: Option<String>,
    /// Filter: OS version pattern.
    pub filter_os: Option<String>,
    /// Filter: name pattern (`STUDIO-*`).
    pub filter_name: Option<String>,
    /// Filter: serial pattern.
    pub filter_serial: Option<String>,
    /// Majors behind the newest the feed lists (1: N-1).
    pub majors_behind: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_as_trouble_and_the_update_as_done() {
        let cases = [
            (
                EventKind::InstallFailed,
                "SoftwareUpdateFailureReasonDiskSpace",
                Tone::Trouble,
            ),
            (EventKind::InstallState, "failed", Tone::Trouble),
            (EventKind::InstallState, "downloading", Tone::Info),
            (EventKind::Stale, "", Tone::Trouble),
            (EventKind::OsUpdated, "26.4.1 (25E253)", Tone::Done),
            (EventKind::DeclarationRemoved, "", Tone::Done),
            (EventKind::PushSent, "", Tone::Info),
        ];
        for (kind, detail, tone) in cases {
            assert_eq!(Tone::of(kind, detail), tone, "{kind:?} {detail:?}");
        }
    }
}
