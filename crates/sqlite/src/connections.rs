//! rusqlite connections, each on a thread of its own, that run whole units of work.
//!
//! sqlx hands every statement, and every row it reads, to a worker thread and waits for the
//! answer: a transaction of a few statements pays more in those hand-offs than in SQLite. Here a
//! caller hands over a closure that runs a whole transaction or read, and waits once.
//!
//! The threads are fixed, opened with their connections, rather than borrowed from tokio's
//! blocking pool: that pool grows a thread whenever none is idle at the moment of a call and
//! retires it after ten idle seconds, and each thread it grew kept an allocator cache of its own
//! (the 5,000-device lab's peak memory went from 0.35 to 0.6-0.9 GB). A fixed thread per
//! connection also keeps SQLite's own allocations for that connection on one thread.

use std::panic::AssertUnwindSafe;

type Job = Box<dyn FnOnce(&mut rusqlite::Connection) + Send>;

/// Connections on threads of their own; clones share them. The threads end when the last
/// clone is dropped, once the work already handed over is done.
#[derive(Clone, Debug)]
pub struct Connections {
    jobs: flume::Sender<Job>,
}

/// A connection could not be opened, or its thread not started.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite refused the connection.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The system refused the thread.
    #[error("cannot start a database thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The work could not run, or did not finish: its thread is gone.
#[derive(Debug, thiserror::Error)]
#[error("the database connection's thread stopped: {0}")]
pub struct Stopped(&'static str);

impl Connections {
    /// Opens `count` connections with `open` (at least one), each on a thread named `name`.
    /// An error opening any of them is returned here, before a thread starts.
    pub fn open(
        name: &str,
        count: usize,
        open: impl Fn() -> rusqlite::Result<rusqlite::Connection>,
    ) -> Result<Self, OpenError> {
        let connections = (0..count.max(1))
            .map(|_| open())
            .collect::<Result<Vec<_>, _>>()?;
        let (jobs, queue) = flume::unbounded::<Job>();
        for mut connection in connections {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    while let Ok(job) = queue.recv() {
                        // A panic unwinds through the work's transaction, which rolls it back, so
                        // the connection is sound for the next job; the caller sees `Stopped`.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut connection)));
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `work` on the first free connection and returns what it returns.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut rusqlite::Connection) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |connection| {
                let _ = done.send(work(connection));
            }))
            .map_err(|_| Stopped("no thread takes work"))?;
        answer.await.map_err(|_| Stopped("the work panicked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_in(dir: &tempfile::TempDir) -> impl Fn() -> rusqlite::Result<rusqlite::Connection> {
        let path = dir.path().join("test.db");
        move || {
            let connection = rusqlite::Connection::open(&path)?;
            connection.busy_timeout(std::time::Duration::from_secs(5))?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            Ok(connection)
        }
    }

    #[tokio::test]
    async fn work_runs_whole_and_a_panic_leaves_the_connection_usable() {
        let dir = tempfile::tempdir().unwrap();
        let connections = Connections::open("test-db", 2, open_in(&dir)).unwrap();
        connections
            .run(|c| c.execute_batch("CREATE TABLE t (n INTEGER NOT NULL)"))
            .await
            .unwrap()
            .unwrap();
        // A transaction that panics halfway leaves nothing behind, and its thread goes on.
        for _ in 0..4 {
            let outcome = connections
                .run(|c| {
                    let tx = c.transaction().unwrap();
                    tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
                    panic!("halfway");
                })
                .await;
            assert!(outcome.is_err());
        }
        let inserted = connections
            .run(|c| {
                let tx = c.transaction()?;
                for n in 0..100 {
                    tx.execute("INSERT INTO t VALUES (?1)", [n])?;
                }
                tx.commit()?;
                c.query_row("SELECT COUNT(*) FROM t", [], |row| row.get::<_, i64>(0))
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(inserted, 100);
    }

    #[tokio::test]
    async fn work_spreads_over_the_connections_and_no_more_threads() {
        let dir = tempfile::tempdir().unwrap();
        let connections = Connections::open("test-db", 3, open_in(&dir)).unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
        let mut waits = Vec::new();
        for _ in 0..3 {
            let barrier = barrier.clone();
            let connections = connections.clone();
            // Three jobs that each wait for the other two: they finish only if all three run
            // at once, on three threads.
            waits.push(tokio::spawn(async move {
                connections
                    .run(move |_| {
                        barrier.wait();
                        std::thread::current().id()
                    })
                    .await
                    .unwrap()
            }));
        }
        let mut threads = std::collections::HashSet::new();
        for wait in waits {
            threads.insert(wait.await.unwrap());
        }
        assert_eq!(threads.len(), 3);
        for _ in 0..50 {
            threads.insert(
                connections
                    .run(|_| std::thread::current().id())
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(
            threads.len(),
            3,
            "work ran only on the three connection threads"
        );
    }

    #[test]
    fn an_unopenable_connection_is_an_error_before_any_thread_starts() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/folder/test.db");
        let error =
            Connections::open("test-db", 2, || rusqlite::Connection::open(&missing)).unwrap_err();
        assert!(error.to_string().contains("unable to open"), "{error}");
    }
}
