//! The settings every database of ours opens with, for sqlx's pool and rusqlite's connections
//! alike, so the two drivers never disagree about a file they share.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another writer (or a RESTART checkpoint) before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The per-connection settings (WAL is the file's own, set when the pool creates it):
/// - `synchronous = NORMAL`: in WAL, a commit survives a crash of the process, and a power loss
///   at worst rolls back the last commits, never corrupts;
/// - `temp_store = MEMORY`: a statement that may fail halfway through a transaction keeps a
///   statement journal (a copy of every page it touches); in temporary files that was a tenth
///   of ingest's time in syscalls;
/// - `wal_autocheckpoint = 0`: SQLite's own checkpoint runs inside whichever commit crosses the
///   WAL's size threshold, which then waits for the copy and two fsyncs; ours runs beside the
///   writers instead (see [`crate::Checkpointer`]).
const CONNECTION_PRAGMAS: &str = "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
     PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;";

/// sqlx's options for the file at `path`, created if missing, in WAL mode, with
/// [`CONNECTION_PRAGMAS`]' settings. Callers add what is theirs (a page size, a journal limit).
pub fn pool_options(path: &Path) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("temp_store", "memory")
        .pragma("wal_autocheckpoint", "0"))
}

/// What a rusqlite connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads and writes, with the pool's settings.
    ReadWrite,
    /// Reads only: a bulk read beside the writers, which WAL lets go on while they commit.
    ReadOnly,
}

/// A rusqlite connection to the (existing) file at `path`, for use from one thread at a time.
pub fn open(path: &Path, access: Access) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags = match access {
        Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = rusqlite::Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    if access == Access::ReadWrite {
        connection.execute_batch(CONNECTION_PRAGMAS)?;
    }
    Ok(connection)
}

/// A time as stored: RFC 3339 in UTC with a `Z`, so that text order is time order and
/// `datetime()` reads it. The console stores seconds; the server milliseconds, to order the
/// reports a device sends within one second.
pub fn timestamp(at: DateTime<Utc>, precision: SecondsFormat) -> String {
    at.to_rfc3339_opts(precision, true)
}
