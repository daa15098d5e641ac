//! The per-device enforcement state machine: `step(state, event, now) -> (state, effects)`.
//!
//! It reads nothing but its arguments. Effects are data: the caller stores them with the new state
//! in one transaction and carries them out afterwards (assignments, pushes, alerts).

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

use updraft_ddm::status::{DeclarationStatus, Validity};
use updraft_ddm::{DeviceStatus, InstallState, OsVersion, VersionExtra};

use crate::kinds::{AlertKind, EventKind};
pub use crate::kinds::{Phase, RolloutState};

impl Phase {
    /// Whether nothing more is expected of the device.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Excluded | Self::Failed | Self::CleanedUp | Self::Cancelled
        )
    }

    /// Whether the declaration is (or is about to be) assigned.
    pub fn holds_assignment(self) -> bool {
        !matches!(
            self,
            Self::Excluded | Self::Unassigned | Self::CleanedUp | Self::Cancelled
        )
    }
}

/// One device's enforcement record. The store lays it out in columns of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Enforcement {
    /// The rollout.
    pub rollout_id: i64,
    /// The device's enrollment.
    pub enrollment_id: String,
    /// Where it is.
    pub phase: Phase,
    /// Target version, as the feed spells it.
    pub target_version: String,
    /// Target supplemental letter, for a BSI.
    pub target_extra: Option<String>,
    /// Target build (the supplemental build for a BSI).
    pub target_build: Option<String>,
    /// The configuration's identifier.
    pub declaration_id: String,
    /// The set that carries it.
    pub set_name: String,
    /// The deadline, in the device's local time.
    pub deadline: NaiveDateTime,
    /// The device's time zone offset, when known, to tell when the deadline has passed.
    pub utc_offset_minutes: Option<i32>,
    /// Why the device is excluded.
    pub exclusion_reason: Option<String>,
    /// Apple's reason for the last failure.
    pub failure_reason: Option<String>,
    /// How many times the install failed.
    pub failure_count: u64,
    /// Why the device rejected the declaration.
    pub invalid_reason: Option<String>,
    /// The last install-state seen.
    pub install_state: Option<InstallState>,
    /// When the device last reported status.
    pub last_report_at: Option<DateTime<Utc>>,
    /// When the enforcement started (assignment decided).
    pub started_at: DateTime<Utc>,
    /// When the device last asked for its bootstrap token.
    pub bootstrap_requested_at: Option<String>,
    /// The OS the device reported last (version, build, supplemental build).
    pub reported_os: Option<String>,
    /// The deadline has passed and the device is not updated.
    pub past_deadline: bool,
    /// No report for longer than the stale limit.
    pub stale: bool,
    /// When it entered its phase (none for records written before this was kept: their start
    /// stands in).
    pub phase_since: Option<DateTime<Utc>>,
    /// Downloading or installing for longer than the rules allow.
    pub stuck: bool,
    /// The earliest time at which a tick can change this record (a flag to raise, or giving up
    /// on a silent device); none when only an event can. Ticks before it are no-ops, so the
    /// console ticks only the records that are due instead of every open one.
    pub tick_due: Option<DateTime<Utc>>,
}

impl Enforcement {
    /// A device's record when its rollout's wave plans it: the release's target, the set and
    /// declaration of the wave's variant for `target_build` (what [`crate::plan::decide`] found
    /// for the device), the deadline; nothing observed yet.
    #[allow(clippy::too_many_arguments)]
    pub fn planned(
        rollout_id: i64,
        wave: u32,
        enrollment_id: &str,
        release: &crate::plan::Release,
        target_build: Option<&str>,
        deadline: NaiveDateTime,
        utc_offset_minutes: Option<i32>,
        started_at: DateTime<Utc>,
    ) -> Self {
        let variant = release.variant(target_build);
        Self {
            rollout_id,
            enrollment_id: enrollment_id.to_owned(),
            phase: Phase::Planned,
            target_version: release.product_version.clone(),
            target_extra: release.product_version_extra.clone(),
            target_build: release.declared_build(variant),
            declaration_id: crate::plan::names::enforcement(rollout_id, wave, variant),
            set_name: crate::plan::names::enforcement_set(rollout_id, wave, variant),
            deadline,
            utc_offset_minutes,
            exclusion_reason: None,
            failure_reason: None,
            failure_count: 0,
            invalid_reason: None,
            install_state: None,
            last_report_at: None,
            started_at,
            bootstrap_requested_at: None,
            reported_os: None,
            past_deadline: false,
            stale: false,
            phase_since: None,
            stuck: false,
            tick_due: None,
        }
    }
}

/// Whether the server's push to a device went out, as the server tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// Handed to APNs.
    Sent,
    /// Not sent, with the server's or APNs's reason; the device learns of the change at its
    /// next connection.
    Failed(String),
}

impl Push {
    fn timeline(&self, sent: &str) -> Effect {
        match self {
            Self::Sent => timeline(EventKind::PushSent, sent),
            Self::Failed(reason) => timeline(EventKind::PushFailed, reason.clone()),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The server committed the assignment, and pushed the device or failed to.
    Assigned {
        /// What the server said of the push.
        push: Push,
    },
    /// The server committed the unassignment, and pushed the device or failed to.
    Unassigned {
        /// What the server said of the push.
        push: Push,
    },
    /// The device's merged status, or its enrollment, changed.
    Observed(Box<Observation>),
    /// Time passed.
    Tick,
    /// The admin cancelled the rollout for this device.
    Cancel,
    /// The admin retries a failed device.
    Retry,
}

/// What the engine reads from a device's status for one enforcement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// When the server last received a report from the device.
    pub reported_at: Option<DateTime<Utc>>,
    /// `softwareupdate.install-state`.
    pub install_state: Option<InstallState>,
    /// `softwareupdate.failure-reason` count and reason.
    pub failure: Option<(u64, Option<String>)>,
    /// Base OS version.
    pub os_version: Option<String>,
    /// Base build.
    pub build: Option<String>,
    /// Build including a BSI.
    pub supplemental_build: Option<String>,
    /// Supplemental letter.
    pub extra: Option<VersionExtra>,
    /// Whether the report listed the device's declarations at all.
    pub declarations_known: bool,
    /// This enforcement's configuration, as the device holds it.
    pub declaration: Option<DeclarationStatus>,
    /// When the device last asked for its bootstrap token.
    pub bootstrap_requested_at: Option<String>,
}

impl Observation {
    /// Reads what matters for the configuration `declaration_id` out of a merged status.
    pub fn from_status(status: &DeviceStatus, declaration_id: &str) -> Self {
        let declarations = status.declarations();
        Self {
            reported_at: None,
            install_state: status.install_state().cloned(),
            failure: status.failure_reason().map(|f| (f.count, f.reason.clone())),
            os_version: status.os_version().map(str::to_owned),
            build: status.os_build_version().map(str::to_owned),
            supplemental_build: status.os_supplemental_build_version().map(str::to_owned),
            extra: status.os_supplemental_extra_version().cloned(),
            declarations_known: declarations.is_some(),
            declaration: declarations.and_then(|d| d.find(declaration_id)).cloned(),
            bootstrap_requested_at: None,
        }
    }
}

/// Something the caller must do, or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Assign the set to the device on the DDM server (which pushes it).
    Assign {
        /// The set.
        set: String,
    },
    /// Unassign the set (which pushes the device).
    Unassign {
        /// The set.
        set: String,
    },
    /// Bump the declaration's token and push, so the device fetches it again (retry).
    Touch {
        /// The declaration.
        declaration: String,
    },
    /// A timeline entry.
    Timeline {
        /// Its kind.
        kind: EventKind,
        /// Its detail.
        detail: String,
    },
    /// An alert for the admin.
    Alert {
        /// Its kind.
        kind: AlertKind,
        /// Its detail.
        detail: String,
    },
}

fn timeline(kind: EventKind, detail: impl Into<String>) -> Effect {
    Effect::Timeline {
        kind,
        detail: detail.into(),
    }
}

fn alert(kind: AlertKind, detail: impl Into<String>) -> Effect {
    Effect::Alert {
        kind,
        detail: detail.into(),
    }
}

/// Knobs of the rules.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// No report for this long marks a device stale (devices report at least every 24 hours).
    pub stale_after: Duration,
    /// Downloading for this long marks a device stuck.
    pub stuck_downloading_after: Duration,
    /// Installing for this long marks a device stuck (an install restarts the device within
    /// the hour; a prepared device waiting for its deadline is not stuck, and one past it is
    /// flagged as past its deadline).
    pub stuck_installing_after: Duration,
    /// A device that has never reported and is this far past its deadline is given up on.
    pub unresponsive_after_deadline: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            stale_after: Duration::hours(26),
            stuck_downloading_after: Duration::hours(24),
            stuck_installing_after: Duration::hours(3),
            unresponsive_after_deadline: Duration::days(7),
        }
    }
}

/// Advances one device's enforcement by one event.
pub fn step(
    state: &Enforcement,
    event: &Event,
    now: DateTime<Utc>,
    rules: &Rules,
) -> (Enforcement, Vec<Effect>) {
    let mut next = state.clone();
    let mut effects = Vec::new();
    match event {
        Event::Assigned { push } => {
            if state.phase == Phase::Planned {
                next.phase = match push {
                    Push::Sent => Phase::Pushed,
                    Push::Failed(_) => Phase::Assigned,
                };
                effects.push(timeline(
                    EventKind::DeclarationAssigned,
                    format!("{} in set {}", state.declaration_id, state.set_name),
                ));
                effects.push(push.timeline("DeclarativeManagement queued and device pushed"));
            }
        }
        Event::Unassigned { push } => {
            if matches!(state.phase, Phase::Updated | Phase::Cancelled) {
                if state.phase == Phase::Updated {
                    next.phase = Phase::Unassigned;
                }
                effects.push(timeline(
                    EventKind::DeclarationUnassigned,
                    state.declaration_id.clone(),
                ));
                effects.push(push.timeline("device pushed to remove the declaration"));
            }
        }
        Event::Observed(observation) => observe(state, observation, &mut next, &mut effects),
        Event::Tick => {}
        Event::Cancel => {
            if state.phase.holds_assignment() && state.phase != Phase::Planned {
                effects.push(Effect::Unassign {
                    set: state.set_name.clone(),
                });
            }
            if !state.phase.is_final() || state.phase == Phase::Failed {
                next.phase = Phase::Cancelled;
                effects.push(timeline(
                    EventKind::RolloutCancelled,
                    "the admin cancelled the rollout",
                ));
            }
        }
        Event::Retry => {
            if matches!(state.phase, Phase::Failed | Phase::Invalid) {
                next.phase = Phase::Pushed;
                next.failure_reason = None;
                next.invalid_reason = None;
                effects.push(Effect::Touch {
                    declaration: state.declaration_id.clone(),
                });
                effects.push(timeline(
                    EventKind::Retry,
                    "declaration token bumped and device pushed",
                ));
            }
        }
    }
    if next.phase != state.phase {
        next.phase_since = Some(now);
    }
    flags(&mut next, now, rules, &mut effects);
    next.tick_due = tick_due(&next, rules);
    (next, effects)
}

fn observe(
    state: &Enforcement,
    seen: &Observation,
    next: &mut Enforcement,
    effects: &mut Vec<Effect>,
) {
    if let Some(at) = seen.reported_at {
        next.last_report_at = Some(next.last_report_at.map_or(at, |last| last.max(at)));
    }
    if seen.bootstrap_requested_at.is_some()
        && seen.bootstrap_requested_at != state.bootstrap_requested_at
    {
        next.bootstrap_requested_at = seen.bootstrap_requested_at.clone();
        effects.push(timeline(
            EventKind::BootstrapTokenRequested,
            "the Mac fetched its bootstrap token before installing",
        ));
    }
    if matches!(
        state.phase,
        Phase::Excluded | Phase::Cancelled | Phase::CleanedUp
    ) {
        return;
    }
    if let (Some(version), Some(build)) = (&seen.os_version, &seen.build) {
        let os = format!(
            "{version} ({})",
            seen.supplemental_build.as_deref().unwrap_or(build)
        );
        next.reported_os = Some(os);
    }
    if matches!(state.phase, Phase::Unassigned | Phase::Updated) {
        if state.phase == Phase::Unassigned && seen.declarations_known && seen.declaration.is_none()
        {
            next.phase = Phase::CleanedUp;
            effects.push(timeline(
                EventKind::DeclarationRemoved,
                "the device no longer holds the declaration",
            ));
        }
        return;
    }
    if state.phase == Phase::Planned {
        return;
    }

    if let Some(declaration) = &seen.declaration {
        observe_declaration(state, declaration, next, effects);
    }

    // Reached the target: done, whatever the path.
    if reached_target(state, seen) && matches!(seen.install_state, None | Some(InstallState::None))
    {
        next.phase = Phase::Updated;
        next.past_deadline = false;
        effects.push(timeline(
            EventKind::OsUpdated,
            next.reported_os.clone().unwrap_or_default(),
        ));
        effects.push(Effect::Unassign {
            set: state.set_name.clone(),
        });
        return;
    }

    if let Some(install_state) = &seen.install_state
        && state.install_state.as_ref() != Some(install_state)
    {
        observe_install_state(state, install_state, seen, next, effects);
    }
}

/// The device's view of the declaration: rejected (with Apple's reasons), or active and valid.
fn observe_declaration(
    state: &Enforcement,
    declaration: &DeclarationStatus,
    next: &mut Enforcement,
    effects: &mut Vec<Effect>,
) {
    let reasons = declaration
        .reasons
        .iter()
        .flatten()
        .map(|r| {
            format!(
                "{}{}",
                r.code,
                r.description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    match (&declaration.valid, declaration.active) {
        (Validity::Invalid, _) if state.phase != Phase::Invalid => {
            next.phase = Phase::Invalid;
            next.invalid_reason = Some(reasons.clone());
            effects.push(timeline(EventKind::DeclarationInvalid, reasons.clone()));
            effects.push(alert(AlertKind::DeclarationInvalid, reasons));
        }
        (Validity::Valid, true)
            if matches!(
                state.phase,
                Phase::Assigned | Phase::Pushed | Phase::Invalid
            ) =>
        {
            next.phase = Phase::Active;
            next.invalid_reason = None;
            effects.push(timeline(
                EventKind::DeclarationActive,
                format!("{} active and valid", declaration.identifier),
            ));
        }
        _ => {}
    }
}

/// A new `softwareupdate.install-state`: its phase, and on `failed` the device's reason.
fn observe_install_state(
    state: &Enforcement,
    install_state: &InstallState,
    seen: &Observation,
    next: &mut Enforcement,
    effects: &mut Vec<Effect>,
) {
    next.install_state = Some(install_state.clone());
    if *install_state != InstallState::None || state.install_state.is_some() {
        effects.push(timeline(EventKind::InstallState, install_state.as_str()));
    }
    let phase = match install_state {
        InstallState::Waiting => Some(Phase::Waiting),
        InstallState::Downloading => Some(Phase::Downloading),
        InstallState::Prepared => Some(Phase::Prepared),
        InstallState::Installing => Some(Phase::Installing),
        InstallState::Failed => Some(Phase::Failed),
        InstallState::None | InstallState::Other(_) => None,
    };
    if let Some(phase) = phase {
        next.phase = phase;
    }
    if *install_state == InstallState::Failed {
        let (count, reason) = seen.failure.clone().unwrap_or((1, None));
        let reason = reason.unwrap_or_else(|| "the device reported failed without a reason".into());
        next.failure_count = count.max(1);
        next.failure_reason = Some(reason.clone());
        effects.push(timeline(EventKind::InstallFailed, reason.clone()));
        effects.push(alert(AlertKind::InstallFailed, reason));
    }
}

fn reached_target(state: &Enforcement, seen: &Observation) -> bool {
    let (Some(version), Ok(target)) = (&seen.os_version, OsVersion::parse(&state.target_version))
    else {
        return false;
    };
    let Ok(version) = OsVersion::parse(version) else {
        return false;
    };
    match &state.target_extra {
        // A BSI is reached when the supplemental build (or letter) is there.
        Some(extra) => {
            let wanted = VersionExtra::parse(extra);
            let have = seen.extra.clone().unwrap_or_default();
            version > target
                || (version == target
                    && (have >= wanted
                        || (state.target_build.is_some()
                            && seen.supplemental_build == state.target_build)))
        }
        None => version >= target,
    }
}

/// Whether the deadline, plus the hour Apple gives a device to start installing, has passed.
fn deadline_passed(state: &Enforcement, now: DateTime<Utc>) -> bool {
    now > deadline_passes_at(state)
}

/// The instant after which the deadline, plus Apple's hour, has passed on the device.
pub(crate) fn deadline_passes_at(state: &Enforcement) -> DateTime<Utc> {
    // Without the device's zone, the deadline has passed everywhere only once it has passed in
    // the last zone to reach it (UTC-12).
    let offset = Duration::minutes(i64::from(state.utc_offset_minutes.unwrap_or(-12 * 60)));
    (state.deadline + Duration::hours(1) - offset).and_utc()
}

/// Whether the time-based flags apply: the device has its declaration and is not done.
fn is_watched(state: &Enforcement) -> bool {
    !state.phase.is_final()
        && !matches!(
            state.phase,
            Phase::Updated | Phase::Unassigned | Phase::Planned
        )
}

fn stuck_limit(phase: Phase, rules: &Rules) -> Option<Duration> {
    match phase {
        Phase::Downloading => Some(rules.stuck_downloading_after),
        Phase::Installing => Some(rules.stuck_installing_after),
        _ => None,
    }
}

/// When `flags` would next change `state` if no event came: each flag's condition is "now is
/// past a threshold", so the earliest threshold of a flag not yet raised (and of giving up).
fn tick_due(state: &Enforcement, rules: &Rules) -> Option<DateTime<Utc>> {
    if !is_watched(state) {
        return None;
    }
    let deadline = deadline_passes_at(state);
    let stale_at = state.last_report_at.unwrap_or(state.started_at) + rules.stale_after;
    let since = state.phase_since.unwrap_or(state.started_at);
    let thresholds = [
        (!state.past_deadline && state.phase != Phase::Installing).then_some(deadline),
        (!state.stale).then_some(stale_at),
        stuck_limit(state.phase, rules)
            .filter(|_| !state.stuck)
            .map(|limit| since + limit),
        Some(stale_at.max(deadline + rules.unresponsive_after_deadline)),
    ];
    thresholds.into_iter().flatten().min()
}

fn flags(next: &mut Enforcement, now: DateTime<Utc>, rules: &Rules, effects: &mut Vec<Effect>) {
    let open = is_watched(next);
    let past = open && next.phase != Phase::Installing && deadline_passed(next, now);
    if past && !next.past_deadline {
        effects.push(timeline(
            EventKind::PastDeadline,
            format!(
                "deadline {} passed before the device updated",
                next.deadline
            ),
        ));
        effects.push(alert(
            AlertKind::PastDeadline,
            format!(
                "deadline {} passed; the device is {}",
                next.deadline,
                next.phase.as_str()
            ),
        ));
    }
    next.past_deadline = past;
    let reference = next.last_report_at.unwrap_or(next.started_at);
    let stale = open && now - reference > rules.stale_after;
    if stale && !next.stale {
        effects.push(timeline(
            EventKind::Stale,
            format!(
                "no status report since {}",
                reference.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        ));
        effects.push(alert(
            AlertKind::DeviceStale,
            format!(
                "no status report since {}",
                reference.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        ));
    }
    next.stale = stale;
    let since = next.phase_since.unwrap_or(next.started_at);
    let stuck = stuck_limit(next.phase, rules).is_some_and(|limit| now - since > limit);
    if stuck && !next.stuck {
        let detail = format!(
            "{} since {}",
            next.phase.as_str(),
            since.format("%Y-%m-%dT%H:%M:%SZ")
        );
        effects.push(timeline(EventKind::Stuck, detail.clone()));
        effects.push(alert(AlertKind::DeviceStuck, detail));
    }
    next.stuck = stuck;
    // A device silent since before its deadline, long after it: give up with a reason.
    if open && stale && deadline_passed(next, now - rules.unresponsive_after_deadline) {
        let reason = format!(
            "no status report since {}; the device did not respond within {} days after its deadline",
            reference.format("%Y-%m-%dT%H:%M:%SZ"),
            rules.unresponsive_after_deadline.num_days()
        );
        next.phase = Phase::Failed;
        next.failure_reason = Some(reason.clone());
        effects.push(timeline(EventKind::InstallFailed, reason.clone()));
        effects.push(alert(AlertKind::InstallFailed, reason));
    }
}
