//! The server's SQLite database: enrollments, declarations and sets, status, commands.

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use updraft_ddm::Declaration;

/// A database failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("server database: {0}")]
pub struct DbError(#[from] updraft_sqlite::Error);

impl DbError {
    /// A failure shared by several callers (a batch of the writer's, a writer that stopped).
    pub(crate) fn shared(context: &'static str, reason: impl ToString) -> Self {
        Self(updraft_sqlite::Error::shared(context, reason))
    }
}

/// Names what was being done when the database failed: `.context("reading declarations")?`.
pub(crate) trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, DbError>;
}

impl<T, E: Into<updraft_sqlite::Cause>> Context<T> for Result<T, E> {
    fn context(self, context: &'static str) -> Result<T, DbError> {
        updraft_sqlite::Context::context(self, context).map_err(DbError)
    }
}

/// What the server knows of an enrollment.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct EnrollmentRecord {
    /// The enrollment id.
    pub id: String,
    /// UDID.
    pub udid: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
    /// Model identifier (`ProductName`).
    pub product_name: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Device name (Authenticate's, or the device's answer to DeviceInformation).
    pub device_name: Option<String>,
    /// IANA time zone, from the device's answer to DeviceInformation.
    pub time_zone: Option<String>,
    /// OS version at enrollment.
    pub os_version: Option<String>,
    /// Build at enrollment.
    pub build_version: Option<String>,
    /// When it enrolled.
    pub enrolled_at: Option<String>,
    /// Whether it can be pushed (a TokenUpdate arrived).
    pub push_ready: bool,
    /// When it checked out, if it did.
    pub checked_out_at: Option<String>,
    /// Last contact.
    pub last_seen_at: Option<String>,
    /// Whether a bootstrap token is escrowed (never the token itself).
    pub bootstrap_token_escrowed: bool,
    /// When the device last asked for its bootstrap token.
    pub bootstrap_token_requested_at: Option<String>,
    /// Change cursor.
    pub seq: i64,
}

/// The push coordinates of an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushInfo {
    /// The enrollment.
    pub enrollment_id: String,
    /// APNs device token.
    pub token: Vec<u8>,
    /// The `mdm` value to send.
    pub push_magic: String,
    /// The push topic.
    pub topic: String,
}

pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    updraft_sqlite::timestamp(at, chrono::SecondsFormat::Millis)
}

/// The server's database.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: SqlitePool,
    path: PathBuf,
    /// rusqlite connections for the paths every device request takes (see [`Db::direct`]).
    direct: updraft_sqlite::Connections,
    /// Checkpoints the WAL until the last clone of the database is dropped.
    _checkpointer: updraft_sqlite::Checkpointer,
}

/// Connections [`Db::direct`] runs reads on: this machine class has two cores, and the writer
/// takes one of them at full load.
const DIRECT_CONNECTIONS: usize = 4;

/// Status reports and merged statuses are 2-3 KB each: in 4 KB pages most of them spill into
/// overflow pages. Takes effect only when the file is created.
const PAGE_SIZE: u32 = 16384;

/// WAL frames (pages) past which a checkpoint makes writers wait until the WAL starts over
/// (see `updraft_sqlite::Checkpointer`).
const WAL_FRAMES_LIMIT: i64 = 16384;

/// How often the WAL is checkpointed: the server's writers (the writer thread, sqlx's admin
/// writes) do not say when they commit.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

fn open_connection(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    updraft_sqlite::open(path, updraft_sqlite::Access::ReadWrite)
}

impl Db {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        let options = updraft_sqlite::pool_options(path)
            .context("database path")?
            .page_size(PAGE_SIZE)
            // After a restart of the WAL, the file shrinks back to this size.
            .pragma(
                "journal_size_limit",
                (WAL_FRAMES_LIMIT * i64::from(PAGE_SIZE)).to_string(),
            );
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .context("opening the database")?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(sqlx::Error::from)
            .context("applying migrations")?;
        let connections = |name, count| {
            updraft_sqlite::Connections::open(name, count, || open_connection(path))
                .context("opening connections")
        };
        Ok(Self {
            pool,
            path: path.to_owned(),
            direct: connections("server-db", DIRECT_CONNECTIONS)?,
            _checkpointer: updraft_sqlite::Checkpointer::spawn(
                "server database",
                connections("server-db-checkpoint", 1)?,
                updraft_sqlite::Schedule::Every(CHECKPOINT_EVERY),
                Some(WAL_FRAMES_LIMIT),
            ),
        })
    }

    /// A connection of the writer's own (see [`crate::writer`]).
    pub(crate) fn open_writer(&self) -> Result<rusqlite::Connection, DbError> {
        let connection = open_connection(&self.path).context("opening the writer's connection")?;
        // The writer reads back the statuses it merges into; the other connections' caches
        // are emptied by every write of another connection anyway, so they keep SQLite's default.
        connection
            .pragma_update(None, "cache_size", -16384)
            .context("sizing the writer's cache")?;
        Ok(connection)
    }

    /// Runs `work` on one of the server's rusqlite read connections: a whole read in one
    /// hand-off (see `updraft_sqlite`). For the reads every device request makes (its
    /// declarations) and the changes feed the console reads at every step; writes go through
    /// the writer (see [`crate::writer`]).
    pub(crate) async fn direct<T: Send + 'static>(
        &self,
        context: &'static str,
        work: impl FnOnce(&mut rusqlite::Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.direct.run(work).await.context(context)?
    }

    /// The declarations assigned to an enrollment through its sets.
    pub async fn declarations_for(&self, enrollment_id: &str) -> Result<Vec<Declaration>, DbError> {
        let enrollment_id = enrollment_id.to_owned();
        self.direct(ASSIGNED_CONTEXT, move |connection| {
            assigned_declarations(connection, &enrollment_id)
        })
        .await
    }

    /// A declaration by its identifier.
    pub async fn declaration(&self, identifier: &str) -> Result<Option<Declaration>, DbError> {
        const CONTEXT: &str = "reading a declaration";
        let identifier = identifier.to_owned();
        self.direct(CONTEXT, move |connection| {
            connection
                .prepare_cached(
                    "SELECT identifier, type, payload, server_token FROM declarations WHERE identifier = ?1",
                )
                .context(CONTEXT)?
                .query_row([&identifier], declaration_from_row)
                .optional()
                .context(CONTEXT)
                .map(Option::flatten)
        })
        .await
    }

    /// Push coordinates of the given enrollments that can be pushed.
    pub async fn push_info(&self, ids: &[String]) -> Result<Vec<PushInfo>, DbError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(500) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT id, push_token, push_magic, topic FROM enrollments
                 WHERE push_token IS NOT NULL AND checked_out_at IS NULL AND id IN (",
            );
            let mut separated = query.separated(", ");
            for id in chunk {
                separated.push_bind(id);
            }
            query.push(")");
            let rows = query
                .build()
                .fetch_all(&self.pool)
                .await
                .context("reading push tokens")?;
            found.extend(rows.into_iter().map(|row| {
                PushInfo {
                    enrollment_id: row.get("id"),
                    token: row.get("push_token"),
                    push_magic: row
                        .get::<Option<String>, _>("push_magic")
                        .unwrap_or_default(),
                    topic: row.get::<Option<String>, _>("topic").unwrap_or_default(),
                }
            }));
        }
        Ok(found)
    }

    /// Enrollments changed after `after`, oldest change first.
    pub async fn changes_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(EnrollmentRecord, Option<String>)>, DbError> {
        const CONTEXT: &str = "listing changes";
        self.direct(CONTEXT, move |connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {ENROLLMENT_COLUMNS}, s.report FROM enrollments e LEFT JOIN status s ON s.enrollment_id = e.id
                     WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2"
                ))
                .context(CONTEXT)?;
            let rows = statement
                .query_map((after, limit), |row| {
                    Ok((enrollment_from_row(row)?, row.get(ENROLLMENT_COLUMN_COUNT)?))
                })
                .context(CONTEXT)?;
            rows.collect::<Result<_, _>>().context(CONTEXT)
        })
        .await
    }

    /// Enrollments ordered by id, after `after`.
    pub async fn enrollments(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<EnrollmentRecord>, DbError> {
        const CONTEXT: &str = "listing enrollments";
        let after = after.to_owned();
        self.direct(CONTEXT, move |connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {ENROLLMENT_COLUMNS} FROM enrollments e WHERE e.id > ?1 ORDER BY e.id LIMIT ?2"
                ))
                .context(CONTEXT)?;
            let rows = statement
                .query_map((&after, limit), enrollment_from_row)
                .context(CONTEXT)?;
            rows.collect::<Result<_, _>>().context(CONTEXT)
        })
        .await
    }

    /// An enrollment's raw report `index` (0 the newest) if it is kept: its id, time and body.
    pub(crate) async fn recent_report(
        &self,
        id: &str,
        index: usize,
    ) -> Result<Option<(i64, String, Vec<u8>)>, DbError> {
        let recent: Option<String> =
            sqlx::query_scalar("SELECT recent_reports FROM enrollments WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .context("reading the kept raw reports")?;
        let Some(report_id) =
            recent.and_then(|recent| parse_recent_reports(&recent).get(index).copied())
        else {
            return Ok(None);
        };
        sqlx::query_as("SELECT id, received_at, body FROM status_reports WHERE id = ?")
            .bind(report_id)
            .fetch_optional(&self.pool)
            .await
            .context("reading a raw report")
    }

    /// The merged status of an enrollment, as a full report's JSON.
    pub async fn status(&self, id: &str) -> Result<Option<String>, DbError> {
        sqlx::query_scalar("SELECT report FROM status WHERE enrollment_id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .context("reading status")
    }

    /// Whether `device_id` enrolled with the certificate of this fingerprint.
    pub(crate) async fn identity_bound(
        &self,
        device_id: &str,
        fingerprint: &str,
    ) -> Result<bool, DbError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM identity_bindings WHERE device_id = ? AND fingerprint = ?)",
        )
        .bind(device_id)
        .bind(fingerprint)
        .fetch_one(&self.pool)
        .await
        .context("reading a device's certificates")
    }
}

const ENROLLMENT_COLUMNS: &str = "e.id, e.udid, e.serial_number, e.product_name, e.model, e.device_name,
    e.os_version, e.build_version, e.enrolled_at, e.push_token IS NOT NULL AS push_ready, e.checked_out_at,
    e.last_seen_at, e.bootstrap_token IS NOT NULL AS escrowed, e.bootstrap_token_requested_at, e.seq,
    e.time_zone";

/// How many columns [`ENROLLMENT_COLUMNS`] lists.
const ENROLLMENT_COLUMN_COUNT: usize = 16;

fn enrollment_from_row(row: &rusqlite::Row) -> rusqlite::Result<EnrollmentRecord> {
    Ok(EnrollmentRecord {
        id: row.get(0)?,
        udid: row.get(1)?,
        serial_number: row.get(2)?,
        product_name: row.get(3)?,
        model: row.get(4)?,
        device_name: row.get(5)?,
        os_version: row.get(6)?,
        build_version: row.get(7)?,
        enrolled_at: row.get(8)?,
        push_ready: row.get(9)?,
        checked_out_at: row.get(10)?,
        last_seen_at: row.get(11)?,
        bootstrap_token_escrowed: row.get(12)?,
        bootstrap_token_requested_at: row.get(13)?,
        seq: row.get(14)?,
        time_zone: row.get(15)?,
    })
}

const ASSIGNED_CONTEXT: &str = "reading an enrollment's declarations";

/// The declarations assigned to an enrollment through its sets, on any connection (the readers'
/// or the writer's, which builds a command's tokens with them).
pub(crate) fn assigned_declarations(
    connection: &rusqlite::Connection,
    enrollment_id: &str,
) -> Result<Vec<Declaration>, DbError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT DISTINCT d.identifier, d.type, d.payload, d.server_token
             FROM enrollment_sets es
             JOIN set_declarations sd ON sd.set_name = es.set_name
             JOIN declarations d ON d.identifier = sd.identifier
             WHERE es.enrollment_id = ?1",
        )
        .context(ASSIGNED_CONTEXT)?;
    let mut rows = statement.query([enrollment_id]).context(ASSIGNED_CONTEXT)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().context(ASSIGNED_CONTEXT)? {
        out.extend(declaration_from_row(row).context(ASSIGNED_CONTEXT)?);
    }
    Ok(out)
}

/// A declaration from `identifier, type, payload, server_token`; none if its stored payload is
/// not JSON (the admin API accepts only JSON, so only a damaged row is skipped).
fn declaration_from_row(row: &rusqlite::Row) -> rusqlite::Result<Option<Declaration>> {
    let payload = row.get_ref(2)?.as_str()?;
    let Ok(payload) = serde_json::from_str(payload) else {
        return Ok(None);
    };
    Ok(Some(Declaration {
        identifier: row.get(0)?,
        declaration_type: row.get(1)?,
        server_token: row.get(3)?,
        payload,
    }))
}

/// A random (version 4) UUID, upper-case as Apple writes them.
/// A random (version 4) UUID, upper case.
pub fn new_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    let mut b = bytes;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `recent_reports` column: ids newest first, comma-separated (written by the writer).
pub(crate) fn parse_recent_reports(column: &str) -> VecDeque<i64> {
    let mut ids: VecDeque<i64> = column
        .split(',')
        .filter_map(|id| id.trim().parse().ok())
        .collect();
    ids.make_contiguous().sort_unstable_by(|a, b| b.cmp(a));
    ids
}
