//! How the engine's values lie in the store's tables: a column per field (migration 0006), so
//! the engine's types carry no storage concerns, and a field added to one is a migration here.
//! Timestamps are RFC 3339 text to the nanosecond, so a record reads back exactly as written.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use rusqlite::{Row, ToSql, params};
use std::sync::LazyLock;

use updraft_engine::plan::DeviceFacts;
use updraft_engine::{Effect, Enforcement, InstallState, Phase};

use crate::{Context, DeviceRow, StoreError, stored};

/// An enforcement record's columns, in the order of [`with_enforcement_params`] and
/// [`enforcement_from_row`].
pub(crate) const ENFORCEMENT_COLUMNS: &str = "rollout_id, enrollment_id, phase, target_version,
    target_extra, target_build, declaration_id, set_name, deadline_local, utc_offset_minutes,
    exclusion_reason, failure_reason, failure_count, invalid_reason, install_state, last_report_at,
    started_at, bootstrap_requested_at, reported_os, past_deadline, stale, phase_since, stuck,
    tick_due";

/// Writes a record whole, whether or not it exists; `updated_at` is the last parameter.
pub(crate) static ENFORCEMENT_UPSERT: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<&str> = ENFORCEMENT_COLUMNS.split(',').map(str::trim).collect();
    let placeholders: Vec<String> = (1..=columns.len() + 1).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = columns[2..]
        .iter()
        .chain(&["updated_at"])
        .map(|column| format!("{column} = excluded.{column}"))
        .collect();
    format!(
        "INSERT INTO enforcements ({}, updated_at) VALUES ({})
         ON CONFLICT(rollout_id, enrollment_id) DO UPDATE SET {}",
        columns.join(", "),
        placeholders.join(", "),
        updates.join(", ")
    )
});

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `tick_due` is an integer, for its index: nanoseconds since 1970, so it reads back exactly.
/// A time past 2262 saturates (nothing is due that late).
pub(crate) fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Calls `write` with the parameters of [`ENFORCEMENT_UPSERT`] for a record written at `now`
/// (borrowed, not boxed: the engine writes 100,000 of them in one commit).
pub(crate) fn with_enforcement_params<R>(
    record: &Enforcement,
    now: &str,
    write: impl FnOnce(&[&dyn ToSql]) -> R,
) -> R {
    let deadline = record.deadline.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
    let last_report_at = record.last_report_at.map(text);
    let started_at = text(record.started_at);
    let phase_since = record.phase_since.map(text);
    let tick_due = record.tick_due.map(nanos);
    let install_state = record.install_state.as_ref().map(InstallState::as_str);
    let failure_count = i64::try_from(record.failure_count).unwrap_or(i64::MAX);
    write(params![
        record.rollout_id,
        record.enrollment_id,
        record.phase.as_str(),
        record.target_version,
        record.target_extra,
        record.target_build,
        record.declaration_id,
        record.set_name,
        deadline,
        record.utc_offset_minutes,
        record.exclusion_reason,
        record.failure_reason,
        failure_count,
        record.invalid_reason,
        install_state,
        last_report_at,
        started_at,
        record.bootstrap_requested_at,
        record.reported_os,
        record.past_deadline,
        record.stale,
        phase_since,
        record.stuck,
        tick_due,
        now,
    ])
}

/// A record from a row that selects [`ENFORCEMENT_COLUMNS`].
pub(crate) fn enforcement_from_row(row: &Row) -> Result<Enforcement, StoreError> {
    const CONTEXT: &str = "reading an enforcement record";
    let rollout_id: i64 = row.get(0).context(CONTEXT)?;
    let enrollment_id: String = row.get(1).context(CONTEXT)?;
    let what =
        |column: &str| format!("{column} of {enrollment_id}'s record in rollout {rollout_id}");
    let time = |index: usize, column: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        let Some(value) = row.get::<_, Option<String>>(index).context(CONTEXT)? else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(&value)
            .map(|at| Some(at.to_utc()))
            .map_err(|e| StoreError::Corrupt {
                what: what(column),
                reason: format!("{value:?} is not an RFC 3339 time: {e}"),
            })
    };
    let phase: String = row.get(2).context(CONTEXT)?;
    let deadline: String = row.get(8).context(CONTEXT)?;
    Ok(Enforcement {
        phase: stored::<Phase>(&phase, || what("phase"))?,
        target_version: row.get(3).context(CONTEXT)?,
        target_extra: row.get(4).context(CONTEXT)?,
        target_build: row.get(5).context(CONTEXT)?,
        declaration_id: row.get(6).context(CONTEXT)?,
        set_name: row.get(7).context(CONTEXT)?,
        deadline: deadline
            .parse::<NaiveDateTime>()
            .map_err(|e| StoreError::Corrupt {
                what: what("deadline_local"),
                reason: format!("{deadline:?} is not a local date and time: {e}"),
            })?,
        utc_offset_minutes: row.get(9).context(CONTEXT)?,
        exclusion_reason: row.get(10).context(CONTEXT)?,
        failure_reason: row.get(11).context(CONTEXT)?,
        failure_count: row
            .get::<_, i64>(12)
            .context(CONTEXT)?
            .try_into()
            .map_err(|e| StoreError::Corrupt {
                what: what("failure_count"),
                reason: format!("{e}"),
            })?,
        invalid_reason: row.get(13).context(CONTEXT)?,
        install_state: row
            .get_ref(14)
            .and_then(|value| Ok(value.as_str_or_null()?.map(InstallState::parse)))
            .context(CONTEXT)?,
        last_report_at: time(15, "last_report_at")?,
        started_at: time(16, "started_at")?.ok_or_else(|| StoreError::Corrupt {
            what: what("started_at"),
            reason: "it is empty".into(),
        })?,
        bootstrap_requested_at: row.get(17).context(CONTEXT)?,
        reported_os: row.get(18).context(CONTEXT)?,
        past_deadline: row.get(19).context(CONTEXT)?,
        stale: row.get(20).context(CONTEXT)?,
        phase_since: time(21, "phase_since")?,
        stuck: row.get(22).context(CONTEXT)?,
        tick_due: row
            .get::<_, Option<i64>>(23)
            .context(CONTEXT)?
            .map(DateTime::from_timestamp_nanos),
        rollout_id,
        enrollment_id,
    })
}

/// A device's columns, in the order of [`device_from_row`].
pub(crate) const DEVICE_SELECT: &str = "SELECT enrollment_id, model, model_family, serial_number,
    enrolled_at, os_version, build, supplemental_build, extra, reported_device_id,
    supported_configurations, bootstrap_token_escrowed, name, time_zone, utc_offset_minutes,
    last_report_at, bootstrap_token_requested_at, server_seq FROM devices";

/// Writes a device whole, whether or not it exists.
pub(crate) const DEVICE_UPSERT: &str = "INSERT INTO devices (enrollment_id, model, model_family,
        serial_number, enrolled_at, os_version, build, supplemental_build, extra, reported_device_id,
        supported_configurations, bootstrap_token_escrowed, name, time_zone, utc_offset_minutes,
        last_report_at, bootstrap_token_requested_at, server_seq, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
     ON CONFLICT(enrollment_id) DO UPDATE SET model = excluded.model,
        model_family = excluded.model_family, serial_number = excluded.serial_number,
        enrolled_at = excluded.enrolled_at, os_version = excluded.os_version,
        build = excluded.build, supplemental_build = excluded.supplemental_build,
        extra = excluded.extra, reported_device_id = excluded.reported_device_id,
        supported_configurations = excluded.supported_configurations,
        bootstrap_token_escrowed = excluded.bootstrap_token_escrowed, name = excluded.name,
        time_zone = excluded.time_zone, utc_offset_minutes = excluded.utc_offset_minutes,
        last_report_at = excluded.last_report_at,
        bootstrap_token_requested_at = excluded.bootstrap_token_requested_at,
        server_seq = excluded.server_seq, updated_at = excluded.updated_at";

/// Calls `write` with the parameters of [`DEVICE_UPSERT`] for a device written at `now`.
pub(crate) fn with_device_params<R>(
    device: &DeviceRow,
    now: &str,
    write: impl FnOnce(&[&dyn ToSql]) -> R,
) -> R {
    let facts = &device.facts;
    let supported_configurations = facts
        .supported_configurations
        .as_ref()
        .map(|list| serde_json::Value::from(list.clone()).to_string());
    write(params![
        facts.enrollment_id,
        facts.model,
        facts.model_family,
        facts.serial_number,
        facts.enrolled_at,
        facts.os_version,
        facts.build,
        facts.supplemental_build,
        facts.extra,
        facts.reported_device_id,
        supported_configurations,
        facts.bootstrap_token_escrowed,
        device.name,
        device.time_zone,
        device.utc_offset_minutes,
        device.last_report_at,
        device.bootstrap_token_requested_at,
        device.server_seq,
        now,
    ])
}

/// A device from a row of [`DEVICE_SELECT`].
pub(crate) fn device_from_row(row: &Row) -> Result<DeviceRow, StoreError> {
    const CONTEXT: &str = "reading a device";
    let enrollment_id: String = row.get(0).context(CONTEXT)?;
    let supported_configurations = match row.get::<_, Option<String>>(10).context(CONTEXT)? {
        None => None,
        Some(list) => Some(
            serde_json::from_str(&list).map_err(|e| StoreError::Corrupt {
                what: format!("supported_configurations of device {enrollment_id}"),
                reason: format!("{list:?} is not a JSON list of names: {e}"),
            })?,
        ),
    };
    let facts = DeviceFacts {
        model: row.get(1).context(CONTEXT)?,
        model_family: row.get(2).context(CONTEXT)?,
        serial_number: row.get(3).context(CONTEXT)?,
        enrolled_at: row.get(4).context(CONTEXT)?,
        os_version: row.get(5).context(CONTEXT)?,
        build: row.get(6).context(CONTEXT)?,
        supplemental_build: row.get(7).context(CONTEXT)?,
        extra: row.get(8).context(CONTEXT)?,
        reported_device_id: row.get(9).context(CONTEXT)?,
        supported_configurations,
        bootstrap_token_escrowed: row.get(11).context(CONTEXT)?,
        enrollment_id,
    };
    Ok(DeviceRow {
        facts,
        name: row.get(12).context(CONTEXT)?,
        time_zone: row.get(13).context(CONTEXT)?,
        utc_offset_minutes: row.get(14).context(CONTEXT)?,
        last_report_at: row.get(15).context(CONTEXT)?,
        bootstrap_token_requested_at: row.get(16).context(CONTEXT)?,
        server_seq: row.get(17).context(CONTEXT)?,
    })
}

/// What the outbox asks of the DDM server, carried out after the transaction that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Assign the set to the device (the server pushes it).
    Assign {
        /// The set.
        set: String,
    },
    /// Unassign the set (the server pushes the device).
    Unassign {
        /// The set.
        set: String,
    },
    /// Bump the declaration's token and push, so its devices fetch it again.
    Touch {
        /// The declaration.
        declaration: String,
    },
}

impl Command {
    /// The command an engine effect asks for; none for the effects the store records itself
    /// (timeline entries and alerts).
    pub fn of(effect: Effect) -> Option<Self> {
        match effect {
            Effect::Assign { set } => Some(Self::Assign { set }),
            Effect::Unassign { set } => Some(Self::Unassign { set }),
            Effect::Touch { declaration } => Some(Self::Touch { declaration }),
            Effect::Timeline { .. } | Effect::Alert { .. } => None,
        }
    }

    /// Its `action` and `subject` columns.
    pub(crate) fn columns(&self) -> (&'static str, &str) {
        match self {
            Self::Assign { set } => ("assign", set),
            Self::Unassign { set } => ("unassign", set),
            Self::Touch { declaration } => ("touch", declaration),
        }
    }

    /// The command of an outbox row.
    pub(crate) fn from_columns(id: i64, action: &str, subject: String) -> Result<Self, StoreError> {
        match action {
            "assign" => Ok(Self::Assign { set: subject }),
            "unassign" => Ok(Self::Unassign { set: subject }),
            "touch" => Ok(Self::Touch {
                declaration: subject,
            }),
            other => Err(StoreError::Corrupt {
                what: format!("outbox item {id}"),
                reason: format!(
                    "{other:?} is not an action (assign, unassign, touch): a newer Updraft wrote this database, or it was edited by hand"
                ),
            }),
        }
    }
}
