//! The console's local SQLite cache (sqlx, WAL): releases, devices, rollouts, per-device
//! enforcement records, the timeline, alerts, the audit log, settings, and the outbox.
//!
//! A state change and the effects it implies commit in one transaction ([`Store::commit`]), so a
//! crash at any point resumes correctly: pending effects are still in the outbox, and what was
//! done is marked done together with its consequences.
#![deny(missing_docs)]

use chrono::{DateTime, Utc};
use rusqlite::{TransactionBehavior, params};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::path::Path;
use std::str::FromStr;

use updraft_engine::plan::{DeviceFacts, ReleaseBuild, platform_of_model};
use updraft_engine::rings::Hold;
use updraft_engine::{AlertKind, Effect, Enforcement, EventKind, Phase, Release, RolloutState};

mod plans;
mod rows;
pub use plans::{Draft, NewDraft};
pub use rows::Command;
use rows::{ENFORCEMENT_COLUMNS, device_from_row, enforcement_from_row};
use updraft_feed::Platform;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed, or the thread that runs the work.
    #[error("console database: {0}")]
    Database(#[from] updraft_sqlite::Error),
    /// A stored JSON value could not be read.
    #[error("console database: {what} is not readable: {reason}")]
    Corrupt {
        /// Which value.
        what: String,
        /// Why.
        reason: String,
    },
    /// The change would leave a reference dangling: the message says which and what to do.
    #[error("{0}")]
    InUse(String),
}

/// Names what was being done when the database failed: `.context("reading alerts")?`.
trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T, E: Into<updraft_sqlite::Cause>> Context<T> for Result<T, E> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        updraft_sqlite::Context::context(self, context).map_err(StoreError::from)
    }
}

fn ts(at: DateTime<Utc>) -> String {
    updraft_sqlite::timestamp(at, chrono::SecondsFormat::Secs)
}

/// A value of one of the engine's closed sets, read back from its stored name.
fn stored<T: FromStr<Err = updraft_engine::UnknownName>>(
    name: &str,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    name.parse()
        .map_err(|error: updraft_engine::UnknownName| StoreError::Corrupt {
            what: what(),
            reason: format!(
                "{error}: a newer Updraft wrote this database, or it was edited by hand"
            ),
        })
}

/// A device as the console knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    /// Facts from its enrollment and status.
    pub facts: DeviceFacts,
    /// Display name.
    pub name: Option<String>,
    /// IANA time zone, when an inventory supplies it.
    pub time_zone: Option<String>,
    /// Offset from UTC at the rollout's deadline, in minutes.
    pub utc_offset_minutes: Option<i32>,
    /// Last status report.
    pub last_report_at: Option<String>,
    /// When it last fetched its bootstrap token.
    pub bootstrap_token_requested_at: Option<String>,
    /// The server's change number for it.
    pub server_seq: i64,
}

/// A rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// Id.
    pub id: i64,
    /// What it enforces.
    pub release: Release,
    /// Wave number.
    pub wave: u32,
    /// Local deadline, `yyyy-mm-ddThh:mm:ss`.
    pub deadline_local: String,
    /// Optional details page.
    pub details_url: Option<String>,
    /// As the admin set it.
    pub state: RolloutState,
    /// The gate it waits on, for a ring after the first.
    pub gate: Option<RingGate>,
    /// Why its gate halted it.
    pub halt_reason: Option<String>,
    /// The ring it rolls out to, when it is one.
    pub ring: Option<String>,
    /// The saved ring plan it came from, when one did.
    pub placement: Option<Placement>,
}

/// A ring's wave and the gate before it: it starts when the wave `after` passes `gate`.
#[derive(Debug, Clone, PartialEq)]
pub struct RingGate {
    /// The ring's name.
    pub ring: String,
    /// The rollout (wave) of the ring before.
    pub after: i64,
    /// What that ring must reach.
    pub gate: updraft_engine::rings::Gate,
}

/// A rollout to record.
#[derive(Debug, Clone, Copy)]
pub struct NewRollout<'a> {
    /// What it enforces.
    pub release: &'a Release,
    /// Its wave.
    pub wave: u32,
    /// Its deadline on each device's clock, `yyyy-mm-ddThh:mm:ss`.
    pub deadline_local: &'a str,
    /// The page devices show for more information.
    pub details_url: Option<&'a str>,
    /// The devices it covers; none for every device of the release's platform.
    pub scope: Option<&'a [String]>,
    /// The gate it waits on: it is recorded as gated, not active.
    pub gate: Option<&'a RingGate>,
    /// The ring it rolls out to, when it is one (the gate's ring when it has a gate).
    pub ring: Option<&'a str>,
    /// Where the ring comes from, when a saved plan made it.
    pub placement: Option<&'a Placement>,
}

/// The saved ring plan a ring rollout came from: a device that enrolls later and falls in ring
/// `index` of `plan` joins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The saved plan's name.
    pub plan: String,
    /// The ring's position in it, from 0.
    pub index: u32,
    /// The platform's majors the feed listed at the start, newest first (for pinned groups).
    pub majors: Vec<u32>,
}

impl<'a> NewRollout<'a> {
    /// A wave of every device of the release's platform, with no details page and no gate.
    pub fn of(release: &'a Release, wave: u32, deadline_local: &'a str) -> Self {
        Self {
            release,
            wave,
            deadline_local,
            details_url: None,
            scope: None,
            gate: None,
            ring: None,
            placement: None,
        }
    }
}

/// A timeline entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEvent {
    /// When.
    pub at: String,
    /// Kind.
    pub kind: EventKind,
    /// Detail.
    pub detail: String,
    /// The rollout, if any.
    pub rollout_id: Option<i64>,
}

/// An alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Row id: alerts are numbered in the order they were raised.
    pub id: i64,
    /// The rollout, if any.
    pub rollout_id: Option<i64>,
    /// When.
    pub at: String,
    /// Kind.
    pub kind: AlertKind,
    /// The device.
    pub enrollment_id: Option<String>,
    /// Detail.
    pub detail: String,
}

/// A device as the devices table lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSummary {
    /// Enrollment id.
    pub enrollment_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Last status report.
    pub last_report_at: Option<String>,
    /// Model identifier.
    pub model: Option<String>,
    /// Model family (`Mac`, `iPhone`).
    pub model_family: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
    /// OS version.
    pub os_version: Option<String>,
    /// Base build.
    pub build: Option<String>,
    /// Build with a BSI.
    pub supplemental_build: Option<String>,
    /// Supplemental letter, or empty.
    pub extra: String,
    /// Its newest rollout (the highest id it has a record in) and its phase there.
    pub newest_rollout: Option<(i64, Phase)>,
}

/// An entry of the audit log: an admin's action.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// When.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What, as a verb phrase key (`rollout_started`).
    pub action: String,
    /// On what.
    pub detail: String,
}

/// A pending effect.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// Row id.
    pub id: i64,
    /// The rollout it belongs to (none for the base set).
    pub rollout_id: Option<i64>,
    /// The device.
    pub enrollment_id: String,
    /// What to do.
    pub command: Command,
}

/// A timeline entry or an alert to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Note<Kind> {
    /// The device; none for an alert about no one device (a rollout's failed pushes).
    pub enrollment_id: Option<String>,
    /// The rollout, if any.
    pub rollout_id: Option<i64>,
    /// When.
    pub at: DateTime<Utc>,
    /// What it records.
    pub kind: Kind,
    /// The detail a person reads.
    pub detail: String,
}

impl<Kind> Note<Kind> {
    /// A note about a device, within a rollout or not.
    pub fn device(
        enrollment_id: &str,
        rollout_id: Option<i64>,
        at: DateTime<Utc>,
        kind: Kind,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            enrollment_id: Some(enrollment_id.to_owned()),
            rollout_id,
            at,
            kind,
            detail: detail.into(),
        }
    }
}

/// Everything one step changed, committed together.
#[derive(Debug, Default)]
pub struct Changes {
    /// Devices to write.
    pub devices: Vec<DeviceRow>,
    /// Enforcement records to write.
    pub enforcements: Vec<Enforcement>,
    /// Commands to carry out later, by rollout (none for the base set) and device.
    pub outbox: Vec<(Option<i64>, String, Command)>,
    /// Timeline entries.
    pub events: Vec<Note<EventKind>>,
    /// Alerts.
    pub alerts: Vec<Note<AlertKind>>,
    /// Outbox rows now done.
    pub done: Vec<i64>,
    /// Settings to write (the server cursor, for one).
    pub settings: Vec<(String, String)>,
    /// Devices that join a rollout's scope (a late device joining its ring).
    pub scope: Vec<(i64, String)>,
}

impl Changes {
    /// Records an engine step's effects: timeline and alerts stored, the rest to the outbox.
    pub fn effects(&mut self, record: &Enforcement, effects: Vec<Effect>, now: DateTime<Utc>) {
        for effect in effects {
            match effect {
                Effect::Timeline { kind, detail } => self.events.push(Note::device(
                    &record.enrollment_id,
                    Some(record.rollout_id),
                    now,
                    kind,
                    detail,
                )),
                Effect::Alert { kind, detail } => self.alerts.push(Note::device(
                    &record.enrollment_id,
                    Some(record.rollout_id),
                    now,
                    kind,
                    detail,
                )),
                other => {
                    if let Some(command) = Command::of(other) {
                        self.outbox.push((
                            Some(record.rollout_id),
                            record.enrollment_id.clone(),
                            command,
                        ))
                    }
                }
            }
        }
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.enforcements.is_empty()
            && self.outbox.is_empty()
            && self.events.is_empty()
            && self.alerts.is_empty()
            && self.done.is_empty()
            && self.settings.is_empty()
            && self.scope.is_empty()
    }
}

/// The console's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// For bulk reads on a connection of their own (see [`Store::bulk_read`]).
    path: std::path::PathBuf,
    /// The engine's writes (see [`Store::commit`]); beside the pool, as WAL allows.
    direct: updraft_sqlite::Connections,
    /// Copies the WAL into the database after commits; it ends with the last clone.
    checkpointer: updraft_sqlite::Checkpointer,
}

/// How long the checkpointer lets a burst of commits go by, so one copy serves them all.
const CHECKPOINT_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

const CHUNK: usize = 400;

impl Store {
    /// Opens (creating if needed) the database and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(updraft_sqlite::pool_options(path).context("database path")?)
            .await
            .context("opening")?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(sqlx::Error::from)
            .context("applying migrations")?;
        let connections = |name| {
            updraft_sqlite::Connections::open(name, 1, || {
                updraft_sqlite::open(path, updraft_sqlite::Access::ReadWrite)
            })
            .context("opening")
        };
        Ok(Self {
            pool,
            path: path.to_owned(),
            direct: connections("console-db")?,
            checkpointer: updraft_sqlite::Checkpointer::spawn(
                "console database",
                connections("console-db-checkpoint")?,
                updraft_sqlite::Schedule::AfterWrites(CHECKPOINT_DELAY),
                None,
            ),
        })
    }

    /// Runs `work` on the store's own read-write rusqlite connection, on its thread.
    async fn direct<T: Send + 'static>(
        &self,
        context: &'static str,
        work: impl FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.direct.run(work).await.context(context)?
    }

    /// Runs a read of many rows on a read-only rusqlite connection in a blocking thread. sqlx
    /// hands every row across threads (about 10 µs each here), so listing 100,000 devices took
    /// seconds; rusqlite reads them in a fraction of that. WAL lets it read beside the pool.
    async fn bulk_read<T: Send + 'static>(
        &self,
        context: &'static str,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let connection =
                updraft_sqlite::open(&path, updraft_sqlite::Access::ReadOnly).context(context)?;
            read(&connection)
        })
        .await
        .map_err(|error| updraft_sqlite::Error::shared(context, error))?
    }

    /// A setting.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .context("reading a setting")
    }

    /// Records an admin action.
    pub async fn audit(
        &self,
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)")
            .bind(ts(at))
            .bind(actor)
            .bind(action)
            .bind(detail)
            .execute(&self.pool)
            .await
            .context("writing the audit log")?;
        self.checkpoint_soon();
        Ok(())
    }

    /// Creates a rollout, limited to `scope` when given (else every device of its platform), in
    /// one transaction: a rollout never exists, even for a moment, without its scope. Returns its id.
    pub async fn create_rollout(
        &self,
        new: NewRollout<'_>,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let NewRollout {
            release,
            wave,
            deadline_local,
            details_url,
            scope,
            gate,
            ring,
            placement,
        } = new;
        let state = match gate {
            Some(_) => RolloutState::Gated,
            None => RolloutState::Active,
        };
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO rollouts (platform, product_version, product_version_extra, wave,
                deadline_local, details_url, state, created_at, ring_name, gate_after,
                gate_min_updated_percent, gate_max_failed_percent, gate_max_failures_per_hour,
                ring_plan, ring_index, ring_majors)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(release.platform.as_str())
        .bind(&release.product_version)
        .bind(&release.product_version_extra)
        .bind(i64::from(wave))
        .bind(deadline_local)
        .bind(details_url)
        .bind(state.as_str())
        .bind(ts(at))
        .bind(ring.or(gate.map(|g| g.ring.as_str())))
        .bind(gate.map(|g| g.after))
        .bind(gate.map(|g| g.gate.min_updated_percent))
        .bind(gate.map(|g| g.gate.max_failed_percent))
        .bind(gate.and_then(|g| g.gate.max_failures_per_hour.map(|n| n as i64)))
        .bind(placement.map(|p| p.plan.as_str()))
        .bind(placement.map(|p| i64::from(p.index)))
        .bind(placement.map(|p| {
            p.majors
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }))
        .fetch_one(&mut *tx)
        .await
        .context("creating a rollout")?;
        for (position, build) in release.builds.iter().enumerate() {
            sqlx::query(
                "INSERT INTO rollout_builds (rollout_id, position, build, prerequisite_build, supported_devices)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(position as i64)
            .bind(&build.build)
            .bind(&build.prerequisite_build)
            .bind(serde_json::Value::from_iter(build.supported_devices.iter().cloned()).to_string())
            .execute(&mut *tx)
            .await
            .context("recording a rollout's builds")?;
        }
        for chunk in scope.unwrap_or_default().chunks(CHUNK) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO rollout_scope (rollout_id, enrollment_id) ",
            );
            insert.push_values(chunk, |mut row, device| {
                row.push_bind(id).push_bind(device);
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .context("recording a rollout's devices")?;
        }
        tx.commit().await.context("committing a rollout")?;
        self.checkpoint_soon();
        Ok(id)
    }

    /// Which of `ids` a rollout covers: `None` when it covers every device of its platform.
    pub async fn in_scope(
        &self,
        rollout_id: i64,
        ids: &[String],
    ) -> Result<Option<std::collections::HashSet<String>>, StoreError> {
        let scoped: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rollout_scope WHERE rollout_id = ?)")
                .bind(rollout_id)
                .fetch_one(&self.pool)
                .await
                .context("reading a rollout's devices")?;
        if !scoped {
            return Ok(None);
        }
        // An integer, so formatting it into the statement is safe.
        let prefix = format!(
            "SELECT enrollment_id FROM rollout_scope WHERE rollout_id = {rollout_id} AND enrollment_id IN ("
        );
        let found = self
            .fetch_for_ids(&prefix, ids, "reading a rollout's devices", |row| {
                row.get::<_, String>(0)
                    .context("reading a rollout's devices")
            })
            .await?;
        Ok(Some(found.into_iter().collect()))
    }

    /// The devices a rollout is limited to; empty when it covers every device of its platform.
    pub async fn rollout_scope(&self, rollout_id: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT enrollment_id FROM rollout_scope WHERE rollout_id = ? ORDER BY enrollment_id",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await
        .context("reading a rollout's devices")
    }

    /// How many devices a rollout is limited to; 0 when it covers every device of its platform.
    pub async fn rollout_scope_size(&self, rollout_id: i64) -> Result<usize, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM rollout_scope WHERE rollout_id = ?")
                .bind(rollout_id)
                .fetch_one(&self.pool)
                .await
                .context("counting a rollout's devices")?;
        Ok(count.max(0) as usize)
    }

    /// Holds a device back from every rollout (replacing a hold it had).
    pub async fn put_hold(&self, hold: &Hold, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO holds (enrollment_id, reason, until, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT(enrollment_id) DO UPDATE SET reason = excluded.reason,
                until = excluded.until, created_at = excluded.created_at",
        )
        .bind(&hold.enrollment_id)
        .bind(&hold.reason)
        .bind(hold.until.map(ts))
        .bind(ts(at))
        .execute(&self.pool)
        .await
        .context("holding a device")?;
        self.checkpoint_soon();
        Ok(())
    }

    /// Lifts a device's hold; whether it had one.
    pub async fn lift_hold(&self, enrollment_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM holds WHERE enrollment_id = ?")
            .bind(enrollment_id)
            .execute(&self.pool)
            .await
            .context("lifting a hold")?;
        self.checkpoint_soon();
        Ok(done.rows_affected() > 0)
    }

    /// Every hold, ended or not.
    pub async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        let rows =
            sqlx::query("SELECT enrollment_id, reason, until FROM holds ORDER BY enrollment_id")
                .fetch_all(&self.pool)
                .await
                .context("reading holds")?;
        rows.into_iter()
            .map(|row| {
                let enrollment_id: String = row.get("enrollment_id");
                let until = match row.get::<Option<String>, _>("until") {
                    None => None,
                    Some(text) => Some(
                        DateTime::parse_from_rfc3339(&text)
                            .map_err(|e| StoreError::Corrupt {
                                what: format!("the end of {enrollment_id}'s hold"),
                                reason: format!("{text:?}: {e}"),
                            })?
                            .to_utc(),
                    ),
                };
                Ok(Hold {
                    reason: row.get("reason"),
                    enrollment_id,
                    until,
                })
            })
            .collect()
    }

    /// Changes a rollout's state.
    pub async fn set_rollout_state(&self, id: i64, state: RolloutState) -> Result<(), StoreError> {
        self.set_rollout_state_because(id, state, None).await
    }

    /// Halts a gated rollout, saying why.
    pub async fn halt_rollout(&self, id: i64, reason: &str) -> Result<(), StoreError> {
        self.set_rollout_state_because(id, RolloutState::Halted, Some(reason))
            .await
    }

    async fn set_rollout_state_because(
        &self,
        id: i64,
        state: RolloutState,
        halt_reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE rollouts SET state = ?, halt_reason = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(halt_reason)
            .bind(id)
            .execute(&self.pool)
            .await
            .context("updating a rollout")?;
        self.checkpoint_soon();
        Ok(())
    }

    /// Moves a rollout's deadline (a ring that opened late), `yyyy-mm-ddThh:mm:ss` local.
    pub async fn set_rollout_deadline(
        &self,
        id: i64,
        deadline_local: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE rollouts SET deadline_local = ? WHERE id = ?")
            .bind(deadline_local)
            .bind(id)
            .execute(&self.pool)
            .await
            .context("moving a rollout's deadline")?;
        self.checkpoint_soon();
        Ok(())
    }

    /// Rollouts, oldest first.
    pub async fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        let builds = sqlx::query(
            "SELECT rollout_id, build, prerequisite_build, supported_devices FROM rollout_builds
             ORDER BY rollout_id, position",
        )
        .fetch_all(&self.pool)
        .await
        .context("listing rollouts' builds")?;
        let mut builds_of: std::collections::HashMap<i64, Vec<ReleaseBuild>> = Default::default();
        for row in builds {
            let rollout: i64 = row.get("rollout_id");
            let devices: String = row.get("supported_devices");
            builds_of.entry(rollout).or_default().push(ReleaseBuild {
                build: row.get("build"),
                prerequisite_build: row.get("prerequisite_build"),
                supported_devices: serde_json::from_str(&devices).map_err(|e| {
                    StoreError::Corrupt {
                        what: format!("rollout {rollout}'s supported devices"),
                        reason: format!("not a JSON list of ids: {e}"),
                    }
                })?,
            });
        }
        let rows = sqlx::query(
            "SELECT id, platform, product_version, product_version_extra, wave, deadline_local,
                    details_url, state, ring_name, gate_after, gate_min_updated_percent,
                    gate_max_failed_percent, gate_max_failures_per_hour, halt_reason, ring_plan,
                    ring_index, ring_majors
             FROM rollouts ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .context("listing rollouts")?;
        rows.into_iter()
            .map(|row| {
                let id: i64 = row.get("id");
                let platform: String = row.get("platform");
                let state: String = row.get("state");
                Ok(Rollout {
                    id,
                    release: Release {
                        platform: platform.parse().map_err(|e| StoreError::Corrupt {
                            what: format!("rollout {id}'s platform"),
                            reason: format!("{e}"),
                        })?,
                        product_version: row.get("product_version"),
                        product_version_extra: row.get("product_version_extra"),
                        builds: builds_of.remove(&id).unwrap_or_default(),
                    },
                    wave: row.get::<i64, _>("wave") as u32,
                    deadline_local: row.get("deadline_local"),
                    details_url: row.get("details_url"),
                    state: stored::<RolloutState>(&state, || format!("rollout {id}'s state"))?,
                    gate: match (row.get("ring_name"), row.get("gate_after")) {
                        (Some(ring), Some(after)) => Some(RingGate {
                            ring,
                            after,
                            gate: updraft_engine::rings::Gate {
                                min_updated_percent: row
                                    .get::<Option<f64>, _>("gate_min_updated_percent")
                                    .unwrap_or(90.0),
                                max_failed_percent: row
                                    .get::<Option<f64>, _>("gate_max_failed_percent")
                                    .unwrap_or(5.0),
                                max_failures_per_hour: row
                                    .get::<Option<i64>, _>("gate_max_failures_per_hour")
                                    .map(|n| n.max(0) as usize),
                            },
                        }),
                        _ => None,
                    },
                    halt_reason: row.get("halt_reason"),
                    ring: row.get("ring_name"),
                    placement: match (
                        row.get::<Option<String>, _>("ring_plan"),
                        row.get::<Option<i64>, _>("ring_index"),
                    ) {
                        (Some(plan), Some(index)) => Some(Placement {
                            plan,
                            index: u32::try_from(index).unwrap_or(u32::MAX),
                            majors: row
                                .get::<Option<String>, _>("ring_majors")
                                .unwrap_or_default()
                                .split(',')
                                .filter_map(|m| m.trim().parse().ok())
                                .collect(),
                        }),
                        _ => None,
                    },
                })
            })
            .collect()
    }

    /// A device, if known.
    pub async fn device(&self, enrollment_id: &str) -> Result<Option<DeviceRow>, StoreError> {
        Ok(self
            .devices_by_ids(&[enrollment_id.to_owned()])
            .await?
            .into_iter()
            .next())
    }

    /// The devices with these ids that are known.
    pub async fn devices_by_ids(&self, ids: &[String]) -> Result<Vec<DeviceRow>, StoreError> {
        let prefix = format!("{} WHERE enrollment_id IN (", rows::DEVICE_SELECT);
        self.fetch_for_ids(&prefix, ids, "reading devices", device_from_row)
            .await
    }

    /// Rows of `prefix ... enrollment_id IN (<ids>)`, a chunk of ids per statement, in one
    /// hand-off to the store's own connection (the engine reads these for every page of
    /// status changes; through sqlx each row would be a hand-off between threads).
    async fn fetch_for_ids<T: Send + 'static>(
        &self,
        prefix: &str,
        ids: &[String],
        context: &'static str,
        read: fn(&rusqlite::Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let prefix = prefix.to_owned();
        let ids = ids.to_vec();
        self.direct(context, move |connection| {
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(CHUNK) {
                let sql = format!("{prefix}{})", vec!["?"; chunk.len()].join(", "));
                let mut statement = connection.prepare_cached(&sql).context(context)?;
                let mut rows = statement
                    .query(rusqlite::params_from_iter(chunk))
                    .context(context)?;
                while let Some(row) = rows.next().context(context)? {
                    out.push(read(row)?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Every device, ordered by enrollment id.
    pub async fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        const CONTEXT: &str = "listing devices";
        let mut devices = self
            .bulk_read(CONTEXT, |connection| {
                let mut statement = connection.prepare(rows::DEVICE_SELECT).context(CONTEXT)?;
                let mut rows = statement.query([]).context(CONTEXT)?;
                let mut devices = Vec::new();
                while let Some(row) = rows.next().context(CONTEXT)? {
                    devices.push(device_from_row(row)?);
                }
                Ok(devices)
            })
            .await?;
        devices.sort_unstable_by(|a, b| a.facts.enrollment_id.cmp(&b.facts.enrollment_id));
        Ok(devices)
    }

    /// The enforcement records of a rollout that a tick at `now` can change (their `tick_due` is
    /// before it).
    pub async fn enforcements_due(
        &self,
        rollout_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Enforcement>, StoreError> {
        self.rollout_records(
            "WHERE rollout_id = ?1 AND tick_due < ?2 ORDER BY enrollment_id",
            vec![rollout_id, rows::nanos(now)],
            "listing the enforcements due for a tick",
        )
        .await
    }

    /// The records of one rollout that `filter` selects, read in bulk (a report reads a rollout
    /// of 100,000 devices).
    async fn rollout_records(
        &self,
        filter: &'static str,
        params: Vec<i64>,
        context: &'static str,
    ) -> Result<Vec<Enforcement>, StoreError> {
        self.bulk_read(context, move |connection| {
            let sql = format!("SELECT {ENFORCEMENT_COLUMNS} FROM enforcements {filter}");
            let mut statement = connection.prepare(&sql).context(context)?;
            let mut rows = statement
                .query(rusqlite::params_from_iter(params))
                .context(context)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().context(context)? {
                out.push(enforcement_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    /// How many devices a rollout has records for, and how many of them are not final yet.
    pub async fn rollout_counts(&self, rollout_id: i64) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total,
                    COALESCE(SUM(phase NOT IN ('excluded', 'failed', 'cleaned_up', 'cancelled')), 0) AS open
             FROM enforcements WHERE rollout_id = ?",
        )
        .bind(rollout_id)
        .fetch_one(&self.pool)
        .await
        .context("counting a rollout")?;
        Ok((row.get("total"), row.get("open")))
    }

    /// Devices with no enforcement record in a rollout yet that may belong to it: of `platform`,
    /// or of a platform not known yet. The other platforms' devices never get a record, so they
    /// are told apart on two narrow columns read in bulk before any whole row is read. With
    /// `never_reported`, only the devices that never sent a status report (an index of its own
    /// keeps that cheap for the tick, which asks at every turn).
    pub async fn devices_without_enforcement(
        &self,
        rollout_id: i64,
        platform: Platform,
        never_reported: bool,
    ) -> Result<Vec<DeviceRow>, StoreError> {
        const CONTEXT: &str = "listing unplanned devices";
        const UNPLANNED: &str = "SELECT d.enrollment_id, d.model_family, d.model FROM devices d
             WHERE NOT EXISTS (SELECT 1 FROM enforcements e WHERE e.rollout_id = ?1 AND e.enrollment_id = d.enrollment_id)
               AND (NOT EXISTS (SELECT 1 FROM rollout_scope s WHERE s.rollout_id = ?1)
                    OR d.enrollment_id IN (SELECT s.enrollment_id FROM rollout_scope s WHERE s.rollout_id = ?1))";
        let ids = self
            .bulk_read(CONTEXT, move |connection| {
                let sql = if never_reported {
                    format!("{UNPLANNED} AND d.last_report_at IS NULL")
                } else {
                    UNPLANNED.to_owned()
                };
                let mut statement = connection.prepare(&sql).context(CONTEXT)?;
                let mut rows = statement.query([rollout_id]).context(CONTEXT)?;
                let mut ids = Vec::new();
                while let Some(row) = rows.next().context(CONTEXT)? {
                    let family: Option<String> = row.get(1).context(CONTEXT)?;
                    let model: Option<String> = row.get(2).context(CONTEXT)?;
                    let known = family.or(model).and_then(|hint| platform_of_model(&hint));
                    if known.is_none_or(|known| known == platform) {
                        ids.push(row.get::<_, String>(0).context(CONTEXT)?);
                    }
                }
                Ok(ids)
            })
            .await?;
        let mut devices = self.devices_by_ids(&ids).await?;
        devices.sort_by(|a, b| a.facts.enrollment_id.cmp(&b.facts.enrollment_id));
        Ok(devices)
    }

    /// The enforcement records of a rollout, for these devices.
    pub async fn enforcements_for(
        &self,
        rollout_id: i64,
        ids: &[String],
    ) -> Result<Vec<Enforcement>, StoreError> {
        // An integer, so formatting it into the statement is safe.
        let prefix = format!(
            "SELECT {ENFORCEMENT_COLUMNS} FROM enforcements WHERE rollout_id = {rollout_id} AND enrollment_id IN ("
        );
        self.fetch_for_ids(&prefix, ids, "reading enforcements", enforcement_from_row)
            .await
    }

    /// Every enforcement record of a rollout.
    pub async fn enforcements(&self, rollout_id: i64) -> Result<Vec<Enforcement>, StoreError> {
        self.rollout_records(
            "WHERE rollout_id = ? ORDER BY enrollment_id",
            vec![rollout_id],
            "listing enforcements",
        )
        .await
    }

    /// Pending effects, oldest first.
    pub async fn pending_outbox(&self, limit: i64) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query("SELECT id, rollout_id, enrollment_id, action, subject FROM outbox WHERE done_at IS NULL ORDER BY id LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .context("reading the outbox")?;
        rows.into_iter()
            .map(|row| {
                let id = row.get("id");
                let action: &str = row.get("action");
                Ok(OutboxItem {
                    id,
                    rollout_id: row.get("rollout_id"),
                    enrollment_id: row.get("enrollment_id"),
                    command: Command::from_columns(id, action, row.get("subject"))?,
                })
            })
            .collect()
    }

    /// A device's timeline, oldest first.
    pub async fn timeline(&self, enrollment_id: &str) -> Result<Vec<TimelineEvent>, StoreError> {
        Ok(self
            .timelines_of(&[enrollment_id.to_owned()])
            .await?
            .remove(enrollment_id)
            .unwrap_or_default())
    }

    /// The timelines of these devices, by device, oldest first.
    pub async fn timelines_of(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<TimelineEvent>>, StoreError> {
        let mut rows = self
            .fetch_for_ids(
                "SELECT id, enrollment_id, at, kind, detail, rollout_id FROM events WHERE enrollment_id IN (",
                ids,
                "reading timelines",
                |row| {
                    let read = || -> rusqlite::Result<(i64, String, String, TimelineEvent)> {
                        let event = TimelineEvent {
                            at: row.get(2)?,
                            kind: EventKind::Enrolled,
                            detail: row.get(4)?,
                            rollout_id: row.get(5)?,
                        };
                        Ok((row.get(0)?, row.get(1)?, row.get(3)?, event))
                    };
                    let (id, device, kind, mut event) = read().context("reading timelines")?;
                    event.kind = stored(&kind, || format!("timeline entry {id}'s kind"))?;
                    Ok((id, device, event))
                },
            )
            .await?;
        rows.sort_unstable_by_key(|(id, _, _)| *id);
        let mut out: std::collections::HashMap<String, Vec<TimelineEvent>> =
            std::collections::HashMap::new();
        for (_, device, event) in rows {
            out.entry(device).or_default().push(event);
        }
        Ok(out)
    }

    /// Alerts, oldest first.
    pub async fn alerts(&self) -> Result<Vec<Alert>, StoreError> {
        self.alerts_after(0, i64::MAX).await
    }

    /// Alerts raised after the alert numbered `after`, oldest first, at most `limit`.
    pub async fn alerts_after(&self, after: i64, limit: i64) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, rollout_id, at, kind, enrollment_id, detail FROM alerts WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("reading alerts")?;
        rows.into_iter()
            .map(|row| {
                let id = row.get("id");
                Ok(Alert {
                    id,
                    rollout_id: row.get("rollout_id"),
                    at: row.get("at"),
                    kind: stored(row.get("kind"), || format!("alert {id}'s kind"))?,
                    enrollment_id: row.get("enrollment_id"),
                    detail: row.get("detail"),
                })
            })
            .collect()
    }

    /// Raises an alert about no one device (a new release in the feed).
    pub async fn raise_alert(
        &self,
        at: DateTime<Utc>,
        kind: AlertKind,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO alerts (at, kind, detail) VALUES (?, ?, ?)")
            .bind(ts(at))
            .bind(kind.as_str())
            .bind(detail)
            .execute(&self.pool)
            .await
            .context("raising an alert")?;
        self.checkpoint_soon();
        Ok(())
    }

    /// The newest alerts, newest first.
    pub async fn newest_alerts(&self, limit: i64) -> Result<Vec<Alert>, StoreError> {
        let mut alerts = self
            .alerts_after(
                sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(id), 0) FROM alerts")
                    .fetch_one(&self.pool)
                    .await
                    .context("counting alerts")?
                    .saturating_sub(limit),
                limit,
            )
            .await?;
        alerts.reverse();
        Ok(alerts)
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows =
            sqlx::query("SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?")
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .context("reading the audit log")?;
        Ok(rows
            .into_iter()
            .map(|row| AuditEntry {
                at: row.get("at"),
                actor: row.get("actor"),
                action: row.get("action"),
                detail: row.get("detail"),
            })
            .collect())
    }

    /// What the devices table shows of every device, in no particular order, each handed to
    /// `add` as it is read into `into`: the caller keeps what it needs of 100,000 devices
    /// without a second copy of them all. Plain columns written beside the JSON facts, read in
    /// bulk (100,000 devices in about a quarter second here, against 1.7 s through sqlx and
    /// SQLite's JSON functions).
    pub async fn device_summaries<T: Send + 'static>(
        &self,
        mut into: T,
        mut add: impl FnMut(&mut T, DeviceSummary) + Send + 'static,
    ) -> Result<T, StoreError> {
        const CONTEXT: &str = "listing devices";
        self.bulk_read(CONTEXT, move |connection| {
            // No ORDER BY: walking the text primary key's index costs a lookup per row, and
            // the devices table sorts its rows itself. With MAX(), SQLite takes the bare
            // `phase` from the row holding the maximum.
            let mut statement = connection
                .prepare(
                    "SELECT d.enrollment_id, d.name, d.last_report_at, d.model, d.model_family,
                            d.serial_number, d.os_version, d.build, d.supplemental_build, d.extra,
                            newest.rollout_id, newest.phase
                     FROM devices d
                     LEFT JOIN (SELECT enrollment_id, MAX(rollout_id) AS rollout_id, phase
                                FROM enforcements GROUP BY enrollment_id) newest
                       ON newest.enrollment_id = d.enrollment_id",
                )
                .context(CONTEXT)?;
            let mut rows = statement.query([]).context(CONTEXT)?;
            while let Some(row) = rows.next().context(CONTEXT)? {
                let enrollment_id: String = row.get(0).context(CONTEXT)?;
                let rollout: Option<i64> = row.get(10).context(CONTEXT)?;
                let newest_rollout = match rollout {
                    None => None,
                    Some(rollout) => {
                        let phase = row
                            .get_ref(11)
                            .and_then(|v| Ok(v.as_str()?))
                            .context(CONTEXT)?;
                        let phase = stored::<Phase>(phase, || {
                            format!("the phase of {enrollment_id}'s record in rollout {rollout}")
                        })?;
                        Some((rollout, phase))
                    }
                };
                let summary = DeviceSummary {
                    enrollment_id,
                    name: row.get(1).context(CONTEXT)?,
                    last_report_at: row.get(2).context(CONTEXT)?,
                    model: row.get(3).context(CONTEXT)?,
                    model_family: row.get(4).context(CONTEXT)?,
                    serial_number: row.get(5).context(CONTEXT)?,
                    os_version: row.get(6).context(CONTEXT)?,
                    build: row.get(7).context(CONTEXT)?,
                    supplemental_build: row.get(8).context(CONTEXT)?,
                    extra: row.get(9).context(CONTEXT)?,
                    newest_rollout,
                };
                add(&mut into, summary);
            }
            Ok(into)
        })
        .await
    }

    /// A write transaction. IMMEDIATE takes the write lock up front: a deferred transaction that
    /// read first can be refused the upgrade under concurrency, and its writes lost.
    async fn write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("begin")
    }

    /// Writes everything in `changes` in one transaction.
    ///
    /// This is the engine's hot path (every page of status changes, every outbox batch), so it
    /// runs on the store's own rusqlite connection in one blocking hop with cached single-row
    /// statements: through sqlx every statement is a hand-off between threads, and its
    /// multi-row statements are prepared anew for every row count.
    pub async fn commit(&self, changes: Changes, now: DateTime<Utc>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.direct("writing changes", move |connection| {
            write_changes(connection, &changes, &ts(now))
        })
        .await?;
        self.checkpoint_soon();
        Ok(())
    }

    /// SQLite's own checkpoint is off on every connection (see `updraft_sqlite::Checkpointer`).
    fn checkpoint_soon(&self) {
        self.checkpointer.soon();
    }
}

fn write_changes(
    connection: &mut rusqlite::Connection,
    changes: &Changes,
    now: &str,
) -> Result<(), StoreError> {
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("begin")?;
    write_rows(&tx, changes, now)?;
    tx.commit().context("commit")
}

fn write_rows(tx: &rusqlite::Transaction, changes: &Changes, now: &str) -> Result<(), StoreError> {
    let mut statement = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO rollout_scope (rollout_id, enrollment_id) VALUES (?1, ?2)",
        )
        .context("widening a rollout's scope")?;
    for (rollout, id) in &changes.scope {
        statement
            .execute(params![rollout, id])
            .context("widening a rollout's scope")?;
    }
    let mut statement = tx
        .prepare_cached(rows::DEVICE_UPSERT)
        .context("writing devices")?;
    for device in &changes.devices {
        rows::with_device_params(device, now, |params| statement.execute(params))
            .context("writing devices")?;
    }
    let mut statement = tx
        .prepare_cached(&rows::ENFORCEMENT_UPSERT)
        .context("writing enforcements")?;
    for record in &changes.enforcements {
        rows::with_enforcement_params(record, now, |params| statement.execute(params))
            .context("writing enforcements")?;
    }
    let mut statement = tx
        .prepare_cached(
            "INSERT INTO outbox (rollout_id, enrollment_id, action, subject, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .context("writing the outbox")?;
    for (rollout, device, command) in &changes.outbox {
        let (action, subject) = command.columns();
        statement
            .execute(params![rollout, device, action, subject, now])
            .context("writing the outbox")?;
    }
    write_notes(
        tx,
        "events",
        &changes.events,
        EventKind::as_str,
        "writing the timeline",
    )?;
    write_notes(
        tx,
        "alerts",
        &changes.alerts,
        AlertKind::as_str,
        "writing alerts",
    )?;
    let mut statement = tx
        .prepare_cached("UPDATE outbox SET done_at = ?1 WHERE id = ?2")
        .context("closing outbox items")?;
    for id in &changes.done {
        statement
            .execute(params![now, id])
            .context("closing outbox items")?;
    }
    let mut statement = tx
        .prepare_cached(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .context("writing a setting")?;
    for (key, value) in &changes.settings {
        statement
            .execute(params![key, value])
            .context("writing a setting")?;
    }
    Ok(())
}

fn write_notes<Kind: Copy>(
    tx: &rusqlite::Transaction,
    table: &str,
    notes: &[Note<Kind>],
    name: fn(Kind) -> &'static str,
    context: &'static str,
) -> Result<(), StoreError> {
    let mut statement = tx
        .prepare_cached(&format!(
            "INSERT INTO {table} (enrollment_id, rollout_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)"
        ))
        .context(context)?;
    for note in notes {
        statement
            .execute(params![
                note.enrollment_id,
                note.rollout_id,
                ts(note.at),
                name(note.kind),
                note.detail
            ])
            .context(context)?;
    }
    Ok(())
}
