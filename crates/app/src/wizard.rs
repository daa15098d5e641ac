//! The rollout wizard's rules, pure: which devices a plan covers, how they split into waves, each
//! device's deadline on its own clock, why a device is left out, and what deserves a warning.
//! Nothing here sends anything; [`crate::Session::start_rollout`] does, after the admin confirms.

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

use updraft_ddm::OsVersion;
use updraft_engine::plan::DeviceFacts;
use updraft_engine::rings::{Candidate, Restraints};
use updraft_engine::{Decision, decide};
use updraft_store::DeviceRow;

use crate::catalog::CatalogRelease;

/// Which devices the admin chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "mode", content = "values", rename_all = "camelCase")]
pub enum Selection {
    /// Every device the release applies to.
    All,
    /// Devices of these model identifiers (`Mac14,2`).
    Models(Vec<String>),
    /// Devices on these OS versions (`26.3`).
    OsVersions(Vec<String>),
    /// These enrollment ids, picked by hand.
    Devices(Vec<String>),
}

/// One wave: a share of the chosen devices and their deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct WavePlan {
    /// Percent of the chosen devices, 1 to 100; the waves' shares add up to 100.
    pub percent: u32,
    /// The deadline on each device's own clock, `YYYY-MM-DDTHH:MM` (seconds allowed).
    pub deadline: String,
}

/// What the admin filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPlan {
    /// The release's catalog key.
    pub release: String,
    /// The devices.
    pub selection: Selection,
    /// One to five waves.
    pub waves: Vec<WavePlan>,
    /// Optional https page the device links to.
    pub details_url: Option<String>,
    /// Each wave after the first starts only when the wave before passes this gate; without it,
    /// every wave starts at once.
    #[serde(default)]
    #[ts(optional)]
    pub gate: Option<GatePlan>,
}

/// The gate between waves, in whole percent of a wave's devices not excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct GatePlan {
    /// At least this share updated (90 by default).
    pub min_updated_percent: u32,
    /// More than this share failed halts the waves after it (5 by default).
    pub max_failed_percent: u32,
}

impl GatePlan {
    /// The engine's gate.
    pub fn gate(self) -> updraft_engine::rings::Gate {
        updraft_engine::rings::Gate {
            min_updated_percent: f64::from(self.min_updated_percent.min(100)),
            max_failed_percent: f64::from(self.max_failed_percent.min(100)),
            max_failures_per_hour: None,
        }
    }
}

/// A plan the wizard accepts, with its deadlines parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPlan {
    /// The waves that hold devices, in order, each with the number the preview showed.
    pub waves: Vec<CheckedWave>,
    /// Every applicable device in one wave: the rollout also takes in devices that enroll, or
    /// become eligible, after it starts. Any narrower choice is fixed when the admin confirms.
    pub open: bool,
    /// The DetailsURL, checked.
    pub details_url: Option<String>,
}

/// One wave of a checked plan.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedWave {
    /// Its number in the plan, from 1: a wave left empty keeps its number unused, so wave 3 is
    /// still wave 3 when wave 2 had no device.
    pub number: u32,
    /// The deadline, in each device's local time.
    pub deadline: NaiveDateTime,
    /// The devices' enrollment ids.
    pub devices: Vec<String>,
}

/// A device in the preview.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PreviewDevice {
    /// Enrollment id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Model identifier.
    pub model: String,
    /// Current OS.
    pub os: String,
    /// Wave number, from 1; none when excluded.
    pub wave: Option<u32>,
    /// The deadline on the device's clock, with its zone.
    pub local_deadline: Option<String>,
    /// Why it is left out.
    pub exclusion: Option<String>,
    /// What the admin should know.
    pub warnings: Vec<String>,
}

/// A wave in the preview.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PreviewWave {
    /// Wave number, from 1.
    pub wave: u32,
    /// Its deadline, local to each device.
    pub deadline: String,
    /// How many devices it covers.
    pub devices: usize,
    /// Warnings about the deadline.
    pub warnings: Vec<String>,
}

/// The preview, device by device.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// Problems that forbid confirming (empty when the plan can start).
    pub errors: Vec<String>,
    /// The waves.
    pub waves: Vec<PreviewWave>,
    /// Devices included.
    pub included: usize,
    /// Devices of the platform left out (with reasons).
    pub excluded: usize,
    /// Included devices with at least one warning.
    pub warned: usize,
    /// Every device of the release's platform the selection touched, included ones first.
    pub devices: Vec<PreviewDevice>,
}

/// The longest DetailsURL accepted; Apple sets no limit, but a page address this long is a mistake.
/// The longest DetailsURL the wizard takes.
pub const MAX_DETAILS_URL: usize = 2048;

/// The most waves a rollout has.
pub const MAX_WAVES: usize = 5;

/// Parses a deadline typed as a local date and time.
pub fn parse_deadline(text: &str) -> Result<NaiveDateTime, String> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| {
            format!("deadline {text:?} is not a local date and time like 2026-12-04T17:00")
        })
}

/// Checks a DetailsURL: absolute https with a host, no credentials, at most 2,048 characters.
pub fn check_details_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.len() > MAX_DETAILS_URL {
        return Err(format!(
            "DetailsURL is {} characters long; at most {MAX_DETAILS_URL}",
            text.len()
        ));
    }
    updraft_ddm::declaration::validate_details_url(text).map_err(|e| e.to_string())?;
    let url = url::Url::parse(text).map_err(|e| format!("DetailsURL {text:?}: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("DetailsURL must not carry a user name or password".into());
    }
    Ok(url.to_string())
}

fn selected(selection: &Selection, device: &DeviceRow) -> bool {
    let facts = &device.facts;
    match selection {
        Selection::All => true,
        Selection::Models(models) => facts.model.as_ref().is_some_and(|m| models.contains(m)),
        Selection::OsVersions(versions) => facts
            .os_version
            .as_ref()
            .is_some_and(|v| versions.contains(v)),
        Selection::Devices(ids) => ids.contains(&facts.enrollment_id),
    }
}

/// A stable spread of devices over waves that does not follow enrollment order (which often
/// follows purchase date, and so model): FNV-1a of the enrollment id.
fn spread_key(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The deadline as an instant on a device, when its zone is known.
fn deadline_instant(deadline: NaiveDateTime, zone: Option<&str>) -> Option<DateTime<Utc>> {
    let zone: chrono_tz::Tz = zone?.parse().ok()?;
    zone.from_local_datetime(&deadline)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
}

/// Checks the plan and builds the device-by-device preview. `devices` are the devices the console
/// knows; `now` is the console's clock.
pub fn preview(
    plan: &RolloutPlan,
    release: &CatalogRelease,
    devices: &[DeviceRow],
    restraints: &Restraints,
    now: DateTime<Utc>,
) -> (Preview, Option<CheckedPlan>) {
    let CheckedFields {
        mut errors,
        details_url,
        deadlines,
    } = check_fields(plan, release, now);
    let (mut included, mut excluded) = split_selection(plan, release, devices, restraints, now);
    if included.is_empty() && errors.is_empty() {
        errors.push("the selection covers no device this release applies to".into());
    }
    // Waves by share, in a stable spread.
    included.sort_by_key(|device| spread_key(&device.facts.enrollment_id));
    let mut waves = Vec::new();
    let mut preview_waves = Vec::new();
    let mut included_rows = Vec::new();
    for (index, members) in split_by_share(&included, &plan.waves)
        .into_iter()
        .enumerate()
    {
        let deadline = deadlines.get(index).copied();
        let before = index
            .checked_sub(1)
            .and_then(|previous| deadlines.get(previous).copied());
        let wave = check_wave(index, deadline, before, members, release, now);
        preview_waves.push(PreviewWave {
            wave: index as u32 + 1,
            deadline: plan.waves[index].deadline.clone(),
            devices: members.len(),
            warnings: wave.warnings,
        });
        included_rows.extend(wave.rows);
        waves.extend(wave.checked);
    }
    included_rows.sort_by(|a, b| (a.wave, &a.name, &a.id).cmp(&(b.wave, &b.name, &b.id)));
    excluded.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let warned = included_rows
        .iter()
        .filter(|d| !d.warnings.is_empty())
        .count();
    let preview = Preview {
        included: included_rows.len(),
        excluded: excluded.len(),
        warned,
        waves: preview_waves,
        devices: included_rows.into_iter().chain(excluded).collect(),
        errors,
    };
    let checked = preview.errors.is_empty().then(|| CheckedPlan {
        open: plan.selection == Selection::All && plan.waves.len() == 1,
        waves,
        details_url,
    });
    (preview, checked)
}

/// What the wizard's fields say, before any device is looked at.
struct CheckedFields {
    errors: Vec<String>,
    details_url: Option<String>,
    /// The waves' deadlines that parse, in order (an error names each one that does not).
    deadlines: Vec<NaiveDateTime>,
}

fn check_fields(plan: &RolloutPlan, release: &CatalogRelease, now: DateTime<Utc>) -> CheckedFields {
    let mut errors = Vec::new();
    if !release.available_on(now.date_naive()) {
        errors.push(format!(
            "{} {} is not offered on {} (posted {}, expires {})",
            release.release.platform,
            release.release.label(),
            now.date_naive(),
            release.window.posting_date,
            release
                .window
                .expiration_date
                .map_or("never".to_owned(), |d| d.to_string())
        ));
    }
    let details_url = match plan.details_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match check_details_url(text) {
            Ok(url) => Some(url),
            Err(error) => {
                errors.push(error);
                None
            }
        },
    };
    if plan.waves.is_empty() || plan.waves.len() > MAX_WAVES {
        errors.push(format!(
            "a rollout has one to {MAX_WAVES} waves, not {}",
            plan.waves.len()
        ));
    }
    let total: u32 = plan.waves.iter().map(|w| w.percent).sum();
    if !plan.waves.is_empty() && (total != 100 || plan.waves.iter().any(|w| w.percent == 0)) {
        errors.push(format!(
            "the waves' shares must each be above 0 and add up to 100%, not {total}%"
        ));
    }
    let mut deadlines = Vec::new();
    for (index, wave) in plan.waves.iter().enumerate() {
        match parse_deadline(&wave.deadline) {
            Ok(deadline) => deadlines.push(deadline),
            Err(error) => errors.push(format!("wave {}: {error}", index + 1)),
        }
    }
    CheckedFields {
        errors,
        details_url,
        deadlines,
    }
}

/// The devices of the release's platform the selection covers: those it applies to, and a row
/// with the reason for each of the others.
fn split_selection<'d>(
    plan: &RolloutPlan,
    release: &CatalogRelease,
    devices: &'d [DeviceRow],
    restraints: &Restraints,
    now: DateTime<Utc>,
) -> (Vec<&'d DeviceRow>, Vec<PreviewDevice>) {
    let version = OsVersion::parse(&release.release.product_version).ok();
    let mut included = Vec::new();
    let mut excluded = Vec::new();
    for device in devices
        .iter()
        .filter(|d| d.facts.platform() == Some(release.release.platform))
        .filter(|d| selected(&plan.selection, d))
    {
        let candidate = Candidate::of(&device.facts, device.name.as_deref());
        if let Some(held) = version
            .as_ref()
            .and_then(|v| restraints.exclusion(&candidate, v, now))
        {
            excluded.push(excluded_row(device, held.to_string()));
            continue;
        }
        match decide(&device.facts, &release.release) {
            Decision::Enforce { .. } => included.push(device),
            Decision::Exclude(reason) => excluded.push(excluded_row(device, reason.to_string())),
            Decision::Wait(what) => excluded.push(excluded_row(
                device,
                format!("not enough known yet: {what}"),
            )),
        }
    }
    (included, excluded)
}

/// Consecutive runs of `devices`, one a wave, sized by the waves' cumulative shares; the last
/// wave takes the rest, so rounding loses no device.
fn split_by_share<'a, T>(devices: &'a [T], waves: &[WavePlan]) -> Vec<&'a [T]> {
    let mut runs = Vec::with_capacity(waves.len());
    let mut start = 0usize;
    let mut cumulative = 0u32;
    for (index, wave) in waves.iter().enumerate() {
        cumulative += wave.percent;
        let end = if index + 1 == waves.len() {
            devices.len()
        } else {
            (devices.len() * cumulative.min(100) as usize / 100).max(start)
        };
        runs.push(&devices[start.min(devices.len())..end.min(devices.len())]);
        start = end;
    }
    runs
}

/// One wave of the preview: its warnings, its devices' rows, and the wave to start if it has
/// devices and a deadline.
struct WaveCheck {
    warnings: Vec<String>,
    rows: Vec<PreviewDevice>,
    checked: Option<CheckedWave>,
}

fn check_wave(
    index: usize,
    deadline: Option<NaiveDateTime>,
    before: Option<NaiveDateTime>,
    members: &[&DeviceRow],
    release: &CatalogRelease,
    now: DateTime<Utc>,
) -> WaveCheck {
    let mut warnings = Vec::new();
    if let Some(deadline) = deadline {
        if matches!(deadline.weekday(), Weekday::Sat | Weekday::Sun) {
            warnings.push(format!(
                "the deadline falls on a {}: nobody may be at the desk to see the countdown",
                deadline.format("%A")
            ));
        }
        if before.is_some_and(|previous| deadline < previous) {
            warnings.push(format!("wave {} is due before wave {index}", index + 1));
        }
    }
    let mut past = 0;
    let mut rows = Vec::with_capacity(members.len());
    for device in members {
        let mut device_warnings = device_warnings(device, release);
        let zone = device.time_zone.as_deref();
        let local_deadline = deadline.map(|d| {
            format!(
                "{} {}",
                d.format("%a %Y-%m-%d %H:%M"),
                zone.unwrap_or("(device time zone unknown)")
            )
        });
        if let Some(at) = deadline.and_then(|d| deadline_instant(d, zone))
            && at <= now
        {
            past += 1;
            device_warnings.push("the deadline has already passed on this device's clock: it will install within the hour".into());
        }
        rows.push(PreviewDevice {
            id: device.facts.enrollment_id.clone(),
            name: device.name.clone().unwrap_or_default(),
            model: device.facts.model.clone().unwrap_or_default(),
            os: os_label(&device.facts),
            wave: Some(index as u32 + 1),
            local_deadline,
            exclusion: None,
            warnings: device_warnings,
        });
    }
    if past > 0 {
        warnings.push(format!(
            "the deadline has already passed on {past} devices' clocks: they will install within the hour"
        ));
    }
    let checked = match deadline {
        _ if members.is_empty() => {
            warnings.push("no device falls in this wave: it will not be started".into());
            None
        }
        Some(deadline) => Some(CheckedWave {
            number: index as u32 + 1,
            deadline,
            devices: members
                .iter()
                .map(|d| d.facts.enrollment_id.clone())
                .collect(),
        }),
        None => None,
    };
    WaveCheck {
        warnings,
        rows,
        checked,
    }
}

fn os_label(facts: &DeviceFacts) -> String {
    match (&facts.os_version, &facts.build) {
        (Some(version), Some(build)) => format!("{version} ({build})"),
        (Some(version), None) => version.clone(),
        _ => String::new(),
    }
}

fn excluded_row(device: &DeviceRow, reason: String) -> PreviewDevice {
    PreviewDevice {
        id: device.facts.enrollment_id.clone(),
        name: device.name.clone().unwrap_or_default(),
        model: device.facts.model.clone().unwrap_or_default(),
        os: os_label(&device.facts),
        wave: None,
        local_deadline: None,
        exclusion: Some(reason),
        warnings: Vec::new(),
    }
}

fn device_warnings(device: &DeviceRow, release: &CatalogRelease) -> Vec<String> {
    let mut warnings = Vec::new();
    if release.release.platform == updraft_feed::Platform::MacOs
        && !device.facts.bootstrap_token_escrowed
        && device.facts.is_apple_silicon()
    {
        warnings.push(
            "Mac with Apple silicon without an escrowed bootstrap token: its user must authorize the update"
                .into(),
        );
    }
    if device.time_zone.is_none() {
        warnings.push("time zone unknown: the deadline is read on the device's own clock".into());
    }
    warnings
}
