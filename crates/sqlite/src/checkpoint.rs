//! The WAL's checkpoints, run beside the writers.
//!
//! SQLite's automatic checkpoint runs inside whichever commit crosses the WAL's size threshold,
//! and that commit then waits for the copy and two fsyncs: it was most of the console engine's
//! write time in the lab. So every connection turns it off ([`crate::open`]) and a connection of
//! the checkpointer's own copies the WAL into the database with PASSIVE checkpoints, which hold up
//! no writer. Under a steady stream of commits a passive checkpoint never catches up with the
//! last frame, and the WAL only starts over from its beginning once one does: it would grow
//! without end (gigabytes a minute at the server's full ingest). So past a size of the caller's
//! choosing a RESTART checkpoint holds new writers back for the little the passive ones left.

use std::time::Duration;

use crate::Connections;

/// When checkpoints run.
#[derive(Debug, Clone, Copy)]
pub enum Schedule {
    /// This long after a write calls [`Checkpointer::soon`], so one copy serves a burst.
    AfterWrites(Duration),
    /// At this interval, for writers that do not call [`Checkpointer::soon`] (the server's
    /// many writers, and sqlx's own).
    Every(Duration),
}

/// What the checkpointer waits for before each checkpoint.
enum Wait {
    Tick(tokio::time::Interval),
    Woken(Duration),
}

/// Runs checkpoints until the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    wake: tokio::sync::mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing on `connection` (a connection of its own, so that a checkpoint
    /// never waits behind the work of the others) by `schedule`; past `restart_above` WAL
    /// frames, a RESTART. `database` names the database in the warnings it logs.
    pub fn spawn(
        database: &'static str,
        connection: Connections,
        schedule: Schedule,
        restart_above: Option<i64>,
    ) -> Self {
        let (wake, mut woken) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut wait = match schedule {
                Schedule::Every(period) => Wait::Tick(tokio::time::interval(period)),
                Schedule::AfterWrites(delay) => Wait::Woken(delay),
            };
            loop {
                let open = match &mut wait {
                    Wait::Tick(every) => tokio::select! {
                        _ = every.tick() => true,
                        open = woken.recv() => open.is_some(),
                    },
                    Wait::Woken(delay) => {
                        let open = woken.recv().await.is_some();
                        if open {
                            tokio::time::sleep(*delay).await;
                        }
                        open
                    }
                };
                if !open {
                    return;
                }
                let done = connection
                    .run(move |connection| checkpoint(connection, restart_above))
                    .await;
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "{database}: WAL checkpoint failed"),
                    Err(error) => tracing::warn!(%error, "{database}: WAL checkpoint stopped"),
                }
            }
        });
        Self { wake }
    }

    /// Asks for a checkpoint after a write: a write that did not would sit in the WAL until the
    /// next one did. A full channel means a checkpoint is already due.
    pub fn soon(&self) {
        let _ = self.wake.try_send(());
    }
}

fn checkpoint(
    connection: &mut rusqlite::Connection,
    restart_above: Option<i64>,
) -> rusqlite::Result<()> {
    let frames: i64 =
        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
    if restart_above.is_some_and(|limit| frames > limit) {
        connection.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Access, open};

    /// With SQLite's own checkpoint off, committed pages stay in the WAL and the database file
    /// does not grow until the checkpointer copies them.
    #[tokio::test]
    async fn a_write_that_asks_is_copied_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let pool = sqlx::SqlitePool::connect_with(crate::pool_options(&path).unwrap())
            .await
            .unwrap();
        let writer = Connections::open("test-db", 1, || open(&path, Access::ReadWrite)).unwrap();
        writer
            .run(|c| {
                c.execute_batch("CREATE TABLE t (blob BLOB NOT NULL)")?;
                let tx = c.transaction()?;
                for _ in 0..256 {
                    tx.execute("INSERT INTO t VALUES (zeroblob(4096))", [])?;
                }
                tx.commit()
            })
            .await
            .unwrap()
            .unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        assert!(
            size() < 64 * 1024,
            "the rows are in the WAL, not yet in the file"
        );
        let checkpointer = Checkpointer::spawn(
            "test database",
            Connections::open("test-checkpoint", 1, || open(&path, Access::ReadWrite)).unwrap(),
            Schedule::AfterWrites(Duration::from_millis(10)),
            None,
        );
        checkpointer.soon();
        let copied = async {
            while size() < 1024 * 1024 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), copied)
            .await
            .expect("the checkpointer copied the WAL into the database file");
        pool.close().await;
    }
}
