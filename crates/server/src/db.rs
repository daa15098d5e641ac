//! The server's SQLite database: enrollments, declarations and sets, status, commands.

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use updraft_ddm::Declaration;

/// A database failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("server database: {context}: {source}")]
pub struct DbError {
    context: &'static str,
    #[source]
    source: SqlError,
}

/// The driver's error: sqlx for the admin API, rusqlite for the writer and the paths
/// every device request takes.
#[derive(Debug, thiserror::Error)]
enum SqlError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Rusqlite(#[from] rusqlite::Error),
    /// A connection thread of [`Db::direct`] refused or dropped the work.
    #[error("{0}")]
    Direct(String),
    /// The failure of something shared: a batch of the writer's, or the writer itself.
    #[error("{0}")]
    Shared(String),
}

impl DbError {
    /// An error shared by every write of a batch (or by every caller of a stopped writer).
    pub(crate) fn shared(context: &'static str, reason: impl ToString) -> Self {
        Self {
            context,
            source: SqlError::Shared(reason.to_string()),
        }
    }
}

pub(crate) trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, DbError>;
}

impl<T, E: Into<SqlError>> Context<T> for Result<T, E> {
    fn context(self, context: &'static str) -> Result<T, DbError> {
        self.map_err(|source| DbError {
            context,
            source: source.into(),
        })
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
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The server's database.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: SqlitePool,
    path: PathBuf,
    /// rusqlite connections for the paths every device request takes (see [`Db::direct`]).
    direct: updraft_sqlite::Connections,
}

/// Connections [`Db::direct`] runs reads on: this machine class has two cores, and the writer
/// takes one of them at full load.
const DIRECT_CONNECTIONS: usize = 4;

/// Status reports and merged statuses are 2-3 KB each: in 4 KB pages most of them spill into
/// overflow pages. Takes effect only when the file is created.
const PAGE_SIZE: u32 = 16384;

/// How long a write waits for another writer (or a RESTART checkpoint) before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// WAL frames (pages) past which a checkpoint makes writers wait until the WAL starts over.
const WAL_FRAMES_LIMIT: i64 = 16384;

/// Copies the WAL into the database every 100 ms without holding up writers (PASSIVE).
/// Under a steady stream of commits a passive checkpoint never catches up with the last frame,
/// and the WAL only starts over from its beginning once one does: it would grow without end
/// (gigabytes a minute at full ingest). So once it passes [`WAL_FRAMES_LIMIT`], a RESTART
/// checkpoint holds new writers back for the little the passive ones left to copy.
async fn checkpoint_beside_writers(pool: SqlitePool) {
    let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        let passive: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await;
        let result = match passive {
            Ok((_, frames, _)) if frames > WAL_FRAMES_LIMIT => {
                sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                    .execute(&pool)
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "WAL checkpoint failed");
        }
    }
}

/// A rusqlite connection with the pool's per-connection settings (WAL is the file's own), for
/// use from one thread at a time.
fn open_connection(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let connection = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA wal_autocheckpoint = 0;",
    )?;
    Ok(connection)
}

impl Db {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .context("database path")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .page_size(PAGE_SIZE)
            // Checkpoints run beside the writers (below), not inside whichever commit happens
            // to cross the WAL's size threshold: that commit would wait for the copy and fsync.
            .pragma("wal_autocheckpoint", "0")
            // A statement that may fail halfway through a transaction keeps a statement journal
            // (a copy of every page it touches); in temporary files that was a tenth of ingest's
            // time in syscalls.
            .pragma("temp_store", "memory")
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
        tokio::spawn(checkpoint_beside_writers(pool.clone()));
        Ok(Self {
            pool,
            path: path.to_owned(),
            direct: updraft_sqlite::Connections::open("server-db", DIRECT_CONNECTIONS, || {
                open_connection(path)
            })
            .map_err(|error| DbError {
                context: "opening connections",
                source: SqlError::Direct(error.to_string()),
            })?,
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
        self.direct.run(work).await.map_err(|error| DbError {
            context,
            source: SqlError::Direct(error.to_string()),
        })?
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
