//! The server's writer: one thread, on a connection of its own, makes every write of a device
//! request (status reports, check-ins, the command connection) and of the bulk admin calls.
//! Whatever arrives while it commits is written in its next transaction, one commit for the
//! lot: SQLite runs one writer at a time, and connections that took turns at its write lock
//! waited on each other in sleeps of SQLite's busy handler (1 to 100 ms each, tens of thousands
//! of them in a 2,000-device lab). Each write runs in a savepoint of its own, so one that fails
//! leaves the others of its batch in place; every caller is answered once the batch commits.
//!
//! A status report is acknowledged once its raw body is committed: that is all a device waits
//! for, and all that must survive a crash. Merging reports into each enrollment's status (and
//! advancing its change number) is folded later, for many reports at once: when the writer falls
//! idle, in steps under load, or before anyone reads status ([`Writer::flush`]), so no reader
//! ever sees a merged status older than an acknowledged report. A fold records how far every
//! status is merged (`counters.status_through`); on start the writer folds what a crash left
//! behind.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::any::Any;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use updraft_clock::SharedClock;
use updraft_ddm::{DeviceStatus, StatusBounds, StatusReport};

use crate::db::{Context, Db, DbError, parse_recent_reports, timestamp};

/// Largest batch of jobs committed at once.
const MAX_BATCH: usize = 512;
/// Longest a merged status lags behind its reports while reports keep arriving (readers never
/// see the lag: they flush first). Long enough that the several reports of one device's sync, or
/// of a busy one, are written as one merged status rather than one each.
const FOLD_EVERY: Duration = Duration::from_millis(2000);
/// Most merged statuses written by one fold under load (the oldest first), so a fold never holds
/// reports back for long (the writer is also the one committing them).
const FOLD_STEP: usize = 512;
/// How long the writer waits for more reports before folding.
const IDLE: Duration = Duration::from_millis(20);

/// Raw reports kept per enrollment (the newest; `GET /v1/status-report/:id?index=N` reads them).
/// Older ones are deleted when the status that replaced them is written, so the database stays
/// bounded however long devices report. (Migration 0003 assumes 16 when it lists them first.)
pub const RAW_REPORTS_KEPT: usize = 16;

/// A report as a handler hands it over.
struct Received {
    enrollment_id: String,
    body: Vec<u8>,
    report: StatusReport,
    done: oneshot::Sender<Result<(), String>>,
}

/// A stop's sender and what to tell it.
type Answer = (oneshot::Sender<Result<(), String>>, Result<(), String>);

type WriteWork = Box<dyn FnOnce(&Connection) -> Result<Box<dyn Any + Send>, DbError> + Send>;

/// A write handed over by [`Writer::write`]: it runs in the batch's transaction and returns its
/// outcome, erased to be carried back, which the caller receives once the batch has committed.
struct Write {
    work: WriteWork,
    done: oneshot::Sender<Result<Box<dyn Any + Send>, DbError>>,
}

enum Job {
    Report(Received),
    Write(Write),
    /// Forget the status of this enrollment (it re-enrolled).
    Forget {
        enrollment_id: String,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Fold everything acknowledged so far before answering.
    Flush {
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Fold everything, answer, and take no more jobs.
    Stop {
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// The handle handlers use to submit reports and writes. The queue needs no bound of its own:
/// every sender waits for its answer, so it never holds more jobs than there are requests in
/// flight.
#[derive(Clone, Debug)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Report(received) => write!(f, "Report({})", received.enrollment_id),
            Job::Write(_) => write!(f, "Write"),
            Job::Forget { enrollment_id, .. } => write!(f, "Forget({enrollment_id})"),
            Job::Flush { .. } => write!(f, "Flush"),
            Job::Stop { .. } => write!(f, "Stop"),
        }
    }
}

const STOPPED: &str = "the server's writer has stopped";

impl Writer {
    /// Starts the writer thread; it first folds any reports a crash left unmerged. If its
    /// connection cannot be opened, the error is logged and every submit answers that the
    /// writer has stopped.
    pub fn start(
        db: Db,
        clock: SharedClock,
        cache_generation: usize,
        bounds: StatusBounds,
    ) -> Self {
        let (jobs, receiver) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("server-writer".into())
            .spawn(move || match db.open_writer() {
                Ok(connection) => {
                    WriterThread::new(connection, clock, cache_generation.max(1), bounds)
                        .run(&receiver);
                }
                Err(error) => tracing::error!(%error, "the server's writer cannot start"),
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "the server's writer thread cannot start");
        }
        Self { jobs }
    }

    async fn send(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Job,
    ) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.jobs.send(job(done)).map_err(|_| STOPPED.to_owned())?;
        wait.await.map_err(|_| STOPPED.to_owned())?
    }

    /// Stores a parsed report; returns once its body is committed.
    pub async fn submit(
        &self,
        enrollment_id: String,
        body: Vec<u8>,
        report: StatusReport,
    ) -> Result<(), String> {
        self.send(|done| {
            Job::Report(Received {
                enrollment_id,
                body,
                report,
                done,
            })
        })
        .await
    }

    /// Drops what the writer holds of an enrollment (call when it re-enrolls); returns once done.
    pub async fn forget(&self, enrollment_id: String) {
        let _ = self
            .send(|done| Job::Forget {
                enrollment_id,
                done,
            })
            .await;
    }

    /// Returns once every report acknowledged before the call is merged into `status`.
    pub async fn flush(&self) -> Result<(), String> {
        self.send(|done| Job::Flush { done }).await
    }

    /// Commits and folds everything handed over before the call, then stops taking jobs (every
    /// later one is answered that the writer has stopped). For a clean shutdown: nothing is lost
    /// without it, but the next start then merges the reports a stop left unmerged.
    pub async fn stop(&self) -> Result<(), String> {
        self.send(|done| Job::Stop { done }).await
    }

    /// Runs `work` in the writer's next transaction; returns what it returned once that commits.
    /// An error from `work` undoes only its own changes; a failed commit is every write's error.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        context: &'static str,
        work: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let stopped = || DbError::shared(context, STOPPED);
        let (done, wait) = oneshot::channel();
        let work = Box::new(move |connection: &Connection| {
            work(connection).map(|value| Box::new(value) as Box<dyn Any + Send>)
        });
        self.jobs
            .send(Job::Write(Write { work, done }))
            .map_err(|_| stopped())?;
        let value = wait.await.map_err(|_| stopped())??;
        value
            .downcast::<T>()
            .map(|value| *value)
            .map_err(|_| DbError::shared(context, "the writer answered with another type"))
    }
}

/// Merged statuses the writer keeps in memory so a report costs no read and no re-parse: the
/// writer is the only writer of `status`, so the cache cannot go stale, except on
/// re-enrollment, which sends a `forget`. Two generations of at most `generation` each (a merged
/// status is several KB in memory): a status used in the older one moves to the newer, and when
/// the newer is full the older is dropped, so a device's burst of reports costs one read while
/// 100,000 devices reporting once a day do not all stay in memory. A pending status is always in
/// the newer, since merging moves it there and a generation is dropped only after a full fold.
struct StatusCache {
    generation: usize,
    newer: HashMap<String, Cached>,
    older: HashMap<String, Cached>,
}

impl StatusCache {
    fn forget(&mut self, enrollment_id: &str) -> Option<Cached> {
        let newer = self.newer.remove(enrollment_id);
        let older = self.older.remove(enrollment_id);
        newer.or(older)
    }
}

/// What the writer knows of an enrollment: its merged status and its newest raw reports.
#[derive(Default)]
struct Cached {
    status: DeviceStatus,
    /// Ids of the newest raw reports, newest first, at most [`RAW_REPORTS_KEPT`].
    recent_reports: VecDeque<i64>,
    /// Whether the database has a merged status for it (or will, once its pending one is
    /// written): a first report is written even if it carries nothing.
    stored: bool,
}

impl Cached {
    /// Adds a raw report; returns the one it pushes out of the kept ones, if any. A report
    /// already listed (replayed after a stop) is not listed twice.
    fn record(&mut self, raw_id: i64) -> Option<i64> {
        if self
            .recent_reports
            .front()
            .is_some_and(|&newest| newest >= raw_id)
        {
            return None;
        }
        self.recent_reports.push_front(raw_id);
        (self.recent_reports.len() > RAW_REPORTS_KEPT)
            .then(|| self.recent_reports.pop_back())
            .flatten()
    }

    fn recent_reports_column(&self) -> String {
        let ids: Vec<String> = self.recent_reports.iter().map(i64::to_string).collect();
        ids.join(",")
    }
}

/// A merged status not yet written.
struct Pending {
    /// The newest report's time.
    received_at: String,
    /// The oldest report not yet written, and when it came.
    first_id: i64,
    since: Instant,
    /// Raw reports no longer kept, deleted when this status is written.
    evicted: Vec<i64>,
    /// Whether the merged status differs from the one written. Most reports repeat it (a
    /// device's daily full report, above all): then only the enrollment's change number, contact
    /// time and list of raw reports are written, not the status again.
    status_changed: bool,
}

struct WriterThread {
    connection: Connection,
    clock: SharedClock,
    cache: StatusCache,
    pending: HashMap<String, Pending>,
    /// The pending enrollments by their oldest unwritten report, oldest first. An entry whose
    /// enrollment was since written or forgotten is stale and skipped (its `first_id` no longer
    /// matches), so finding the oldest and taking the oldest cost no scan of every pending one.
    queue: VecDeque<(i64, String)>,
    /// The newest raw report merged in memory.
    through: i64,
    /// Raw reports no enrollment lists any more (it re-enrolled), deleted by the next fold.
    orphans: Vec<i64>,
    /// What a merged status keeps at most.
    bounds: StatusBounds,
}

impl WriterThread {
    fn new(
        connection: Connection,
        clock: SharedClock,
        cache_generation: usize,
        bounds: StatusBounds,
    ) -> Self {
        Self {
            connection,
            clock,
            bounds,
            cache: StatusCache {
                generation: cache_generation,
                newer: HashMap::new(),
                older: HashMap::new(),
            },
            pending: HashMap::new(),
            queue: VecDeque::new(),
            through: 0,
            orphans: Vec::new(),
        }
    }

    fn run(mut self, receiver: &mpsc::Receiver<Job>) {
        if let Err(error) = self.recover() {
            tracing::error!(%error, "folding unmerged status reports at start failed");
        }
        let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
        loop {
            let first = if self.pending.is_empty() && self.orphans.is_empty() {
                receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                receiver.recv_timeout(IDLE)
            };
            match first {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => {
                    self.fold_logged(usize::MAX);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fold_logged(usize::MAX);
                    return;
                }
            }
            batch.extend(receiver.try_iter().take(MAX_BATCH - 1));
            if let Some((done, folded)) = self.handle(&mut batch) {
                let _ = done.send(folded);
                return;
            }
            if self
                .oldest_pending()
                .is_some_and(|pending| pending.since.elapsed() >= FOLD_EVERY)
            {
                self.fold_logged(FOLD_STEP);
            }
        }
    }

    /// Handles a batch; returns the answer to a stop, if the batch held one.
    fn handle(&mut self, batch: &mut Vec<Job>) -> Option<Answer> {
        let mut reports = Vec::with_capacity(batch.len());
        let mut writes = Vec::new();
        let mut stop = None;
        for job in batch.drain(..) {
            match job {
                Job::Report(received) => reports.push(received),
                Job::Write(write) => writes.push(write),
                Job::Forget {
                    enrollment_id,
                    done,
                } => {
                    // Reports received before it re-enrolled are stored first, then dropped here.
                    self.commit(&mut writes, &mut reports);
                    if let Some(cached) = self.cache.forget(&enrollment_id) {
                        self.orphans.extend(cached.recent_reports);
                    }
                    if let Some(pending) = self.pending.remove(&enrollment_id) {
                        self.orphans.extend(pending.evicted);
                    }
                    let _ = done.send(Ok(()));
                }
                Job::Flush { done } => {
                    self.commit(&mut writes, &mut reports);
                    let folded = self.fold(usize::MAX);
                    let _ = done.send(folded.map_err(|e| e.to_string()));
                }
                Job::Stop { done } => stop = Some(done),
            }
        }
        self.commit(&mut writes, &mut reports);
        let done = stop?;
        Some((done, self.fold(usize::MAX).map_err(|e| e.to_string())))
    }

    /// Runs the writes and stores the raw reports in one transaction, answers every sender once
    /// it commits, and merges the reports in memory.
    fn commit(&mut self, writes: &mut Vec<Write>, reports: &mut Vec<Received>) {
        if writes.is_empty() && reports.is_empty() {
            return;
        }
        let now = timestamp(self.clock.now());
        let mut outcomes = Vec::with_capacity(writes.len());
        let committed = write_batch(&mut self.connection, writes, reports, &now, &mut outcomes);
        for (done, outcome) in outcomes {
            // A write that ran is undone with its batch if the commit fails.
            let answer = match &committed {
                Ok(_) => outcome,
                Err(error) => Err(batch_failed(error)),
            };
            let _ = done.send(answer);
        }
        let answer = committed.as_ref().map(|_| ()).map_err(ToString::to_string);
        let first_id = committed.ok().map(|last| last - reports.len() as i64 + 1);
        for (offset, received) in reports.drain(..).enumerate() {
            if let Some(first_id) = first_id {
                let raw_id = first_id + offset as i64;
                self.merge(received.enrollment_id, received.report, &now, raw_id);
            }
            let _ = received.done.send(answer.clone());
        }
    }

    fn merge(
        &mut self,
        enrollment_id: String,
        report: StatusReport,
        received_at: &str,
        raw_id: i64,
    ) {
        if !self.cache.newer.contains_key(&enrollment_id) {
            let cached = match self.cache.older.remove(&enrollment_id) {
                Some(cached) => cached,
                None => self.read_cached(&enrollment_id),
            };
            if self.cache.newer.len() >= self.cache.generation {
                // Unmerged statuses live only in the cache: write them all before the older
                // generation goes (and keep it if that fails).
                match self.fold(usize::MAX) {
                    Ok(()) => self.cache.older = std::mem::take(&mut self.cache.newer),
                    Err(error) => tracing::warn!(%error, "merging status reports failed"),
                }
            }
            self.cache.newer.insert(enrollment_id.clone(), cached);
        }
        let (changed, evicted) = match self.cache.newer.get_mut(&enrollment_id) {
            Some(cached) => {
                let absorbed = cached.status.absorb_within(report, &self.bounds);
                if absorbed.refused > 0 {
                    tracing::warn!(
                        enrollment = %enrollment_id,
                        refused = absorbed.refused,
                        "status items over the server's bounds were not kept (see status-errors)"
                    );
                }
                let changed = absorbed.changed || !cached.stored;
                cached.stored = true;
                (changed, cached.record(raw_id))
            }
            None => (false, None),
        };
        self.through = self.through.max(raw_id);
        let pending = match self.pending.entry(enrollment_id) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.queue.push_back((raw_id, entry.key().clone()));
                entry.insert(Pending {
                    received_at: String::new(),
                    first_id: raw_id,
                    since: Instant::now(),
                    evicted: Vec::new(),
                    status_changed: false,
                })
            }
        };
        pending.received_at = received_at.to_owned();
        pending.status_changed |= changed;
        pending.evicted.extend(evicted);
    }

    /// The pending status waiting longest, dropping stale queue entries on the way.
    fn oldest_pending(&mut self) -> Option<&Pending> {
        while let Some((first_id, id)) = self.queue.front() {
            match self.pending.get(id) {
                Some(pending) if pending.first_id == *first_id => break,
                _ => {
                    self.queue.pop_front();
                }
            }
        }
        let (_, id) = self.queue.front()?;
        self.pending.get(id)
    }

    /// An enrollment's merged status and kept raw reports, as the database has them.
    fn read_cached(&self, enrollment_id: &str) -> Cached {
        let mut cached = Cached::default();
        let row: Result<Option<(Option<String>, String)>, _> = self
            .connection
            .prepare_cached(
                "SELECT s.report, e.recent_reports FROM enrollments e
                 LEFT JOIN status s ON s.enrollment_id = e.id WHERE e.id = ?1",
            )
            .and_then(|mut read| {
                read.query_row([enrollment_id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            });
        let (report, recent_reports) = match row {
            Ok(Some(row)) => row,
            Ok(None) => return cached,
            Err(error) => {
                tracing::warn!(%error, enrollment_id, "reading a merged status back failed");
                return cached;
            }
        };
        cached.stored = report.is_some();
        if let Some(parsed) = report.and_then(|r| StatusReport::parse(r.as_bytes()).ok()) {
            cached.status.apply(&parsed);
        }
        cached.recent_reports = parse_recent_reports(&recent_reports);
        cached
    }

    fn fold_logged(&mut self, limit: usize) {
        if let Err(error) = self.fold(limit) {
            // The raw reports are safe; the fold is retried at the next one.
            tracing::warn!(%error, "merging status reports failed");
        }
    }

    /// Writes up to `limit` pending merged statuses (the oldest first), their change numbers and
    /// `status_through`, in one transaction.
    fn fold(&mut self, limit: usize) -> Result<(), DbError> {
        if self.pending.is_empty() && self.orphans.is_empty() {
            return Ok(());
        }
        let mut taken: Vec<(String, Pending)> = Vec::new();
        while taken.len() < limit && self.oldest_pending().is_some() {
            if let Some((_, id)) = self.queue.pop_front()
                && let Some(pending) = self.pending.remove(&id)
            {
                taken.push((id, pending));
            }
        }
        // Every report before the oldest one still pending is merged once this commits.
        let merged_through = self.through;
        let through = self
            .oldest_pending()
            .map_or(merged_through, |pending| pending.first_id - 1);
        let orphans = std::mem::take(&mut self.orphans);
        let unkept: Vec<i64> = taken
            .iter()
            .flat_map(|(_, pending)| pending.evicted.iter().copied())
            .chain(orphans.iter().copied())
            .collect();
        let written = self.write_statuses(&taken, &unkept, through);
        if written.is_err() {
            for (id, pending) in taken.into_iter().rev() {
                self.queue.push_front((pending.first_id, id.clone()));
                self.pending.insert(id, pending);
            }
            self.orphans.extend(orphans);
        }
        written
    }

    /// Writes the merged statuses with their lists of kept raw reports, and deletes the raw
    /// reports in `unkept`: those are merged in this same transaction, so a crash replays
    /// nothing that was deleted.
    fn write_statuses(
        &mut self,
        taken: &[(String, Pending)],
        unkept: &[i64],
        through: i64,
    ) -> Result<(), DbError> {
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin")?;
        let count = taken.len() as i64;
        let last_seq: i64 = tx
            .query_row(
                "UPDATE counters SET value = value + ?1 WHERE name = 'seq' RETURNING value",
                [count],
                |row| row.get(0),
            )
            .context("allocating change numbers")?;
        let first_seq = last_seq - count + 1;
        {
            let mut status = tx
                .prepare_cached(
                    "INSERT INTO status (enrollment_id, report, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(enrollment_id) DO UPDATE SET report = excluded.report,
                         updated_at = excluded.updated_at",
                )
                .context("merging status")?;
            let mut enrollment = tx
                .prepare_cached(
                    "INSERT INTO enrollments (id, seq, last_seen_at, recent_reports)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(id) DO UPDATE SET seq = excluded.seq,
                         last_seen_at = excluded.last_seen_at, recent_reports = excluded.recent_reports",
                )
                .context("advancing change numbers")?;
            for (seq, (id, pending)) in (first_seq..).zip(taken) {
                let cached = self.cache.newer.get(id);
                let recent_reports = cached
                    .map(Cached::recent_reports_column)
                    .unwrap_or_default();
                if pending.status_changed {
                    let report =
                        cached.map_or_else(|| "{}".to_owned(), |c| c.status.to_full_report_json());
                    status
                        .execute(params![id, report, pending.received_at])
                        .context("merging status")?;
                }
                enrollment
                    .execute(params![id, seq, pending.received_at, recent_reports])
                    .context("advancing change numbers")?;
            }
            let mut delete = tx
                .prepare_cached("DELETE FROM status_reports WHERE id = ?1")
                .context("deleting raw reports no longer kept")?;
            for id in unkept {
                delete
                    .execute([id])
                    .context("deleting raw reports no longer kept")?;
            }
        }
        tx.execute(
            "UPDATE counters SET value = ?1 WHERE name = 'status_through'",
            [through],
        )
        .context("recording the folded reports")?;
        tx.commit().context("commit")
    }

    /// Merges the reports committed after the last fold (a crash between the two) and folds them.
    /// A report older than its enrollment's latest enrollment belongs to the previous one.
    fn recover(&mut self) -> Result<(), DbError> {
        self.through = self
            .connection
            .query_row(
                "SELECT value FROM counters WHERE name = 'status_through'",
                [],
                |row| row.get(0),
            )
            .context("reading status_through")?;
        let rows: Vec<(i64, String, String, Vec<u8>, bool)> = self
            .connection
            .prepare(
                "SELECT r.id, r.enrollment_id, r.received_at, r.body,
                     e.enrolled_at IS NOT NULL AND r.received_at < e.enrolled_at
                 FROM status_reports r LEFT JOIN enrollments e ON e.id = r.enrollment_id
                 WHERE r.id > ?1 ORDER BY r.id",
            )
            .and_then(|mut read| {
                read.query_map([self.through], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })?
                .collect()
            })
            .context("reading unmerged status reports")?;
        if rows.is_empty() {
            return Ok(());
        }
        tracing::info!(
            reports = rows.len(),
            "merging status reports left by a stop"
        );
        for (id, enrollment_id, received_at, body, before_enrollment) in rows {
            match StatusReport::parse(&body) {
                Ok(report) if !before_enrollment => {
                    self.merge(enrollment_id, report, &received_at, id);
                }
                // Its enrollment started over since: no list keeps it.
                _ => self.orphans.push(id),
            }
        }
        self.fold(usize::MAX)
    }
}

/// The outcome of a write, if it ran, and where it goes.
type Outcome = (
    oneshot::Sender<Result<Box<dyn Any + Send>, DbError>>,
    Result<Box<dyn Any + Send>, DbError>,
);

/// Runs the writes, then inserts the raw reports, in one transaction; returns the last report's
/// id. Every write's sender lands in `outcomes` with its outcome, or, if the batch failed before
/// the write ran, with the batch's error.
fn write_batch(
    connection: &mut Connection,
    writes: &mut Vec<Write>,
    reports: &[Received],
    now: &str,
    outcomes: &mut Vec<Outcome>,
) -> Result<i64, DbError> {
    let mut writes = writes.drain(..);
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("begin");
    let tx = match tx {
        Ok(tx) => tx,
        Err(error) => {
            outcomes.extend(writes.map(|write| (write.done, Err(batch_failed(&error)))));
            return Err(error);
        }
    };
    for write in writes.by_ref() {
        match run_in_savepoint(&tx, write.work) {
            Ok(outcome) => outcomes.push((write.done, outcome)),
            Err(error) => {
                outcomes.push((write.done, Err(batch_failed(&error))));
                outcomes.extend(writes.map(|write| (write.done, Err(batch_failed(&error)))));
                return Err(error);
            }
        }
    }
    // Inserted last and together by the only writer: their ids are consecutive.
    let last_id = insert_raw(&tx, now, reports)?;
    tx.commit().context("commit")?;
    Ok(last_id)
}

/// A batch's error, as each of its writes is told it.
fn batch_failed(error: &DbError) -> DbError {
    DbError::shared("writing a batch", error)
}

/// Inserts the raw reports; returns the id of the last one.
fn insert_raw(connection: &Connection, now: &str, reports: &[Received]) -> Result<i64, DbError> {
    let mut insert = connection
        .prepare_cached(
            "INSERT INTO status_reports (enrollment_id, received_at, body) VALUES (?1, ?2, ?3)",
        )
        .context("storing reports")?;
    for received in reports {
        insert
            .execute(params![received.enrollment_id, now, received.body])
            .context("storing reports")?;
    }
    Ok(connection.last_insert_rowid())
}

/// Runs one write in a savepoint of its own: its error (or panic) undoes its changes only and
/// becomes its outcome. An error here means the savepoint itself failed, and the whole batch
/// with it.
fn run_in_savepoint(
    connection: &Connection,
    work: WriteWork,
) -> Result<Result<Box<dyn Any + Send>, DbError>, DbError> {
    connection
        .execute_batch("SAVEPOINT write")
        .context("starting a write")?;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| work(connection)))
        .unwrap_or_else(|_| Err(DbError::shared("writing", "the write panicked")));
    let end = if outcome.is_ok() {
        "RELEASE write"
    } else {
        "ROLLBACK TO write; RELEASE write"
    };
    connection.execute_batch(end).context("ending a write")?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_fails_or_panics_undoes_only_itself_and_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("server.db")).await.unwrap();
        let clock = Arc::new(updraft_clock::ManualClock::new(chrono::Utc::now()));
        let writer = Writer::start(db.clone(), clock, 16, StatusBounds::default());
        // Hold the writer so that the forty writes below queue up and share one batch.
        let (held, release) = std::sync::mpsc::channel::<()>();
        let holding = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write("holding", move |_| Ok(release.recv().is_ok()))
                    .await
            }
        });
        let mut writes = tokio::task::JoinSet::new();
        for n in 0..40_i64 {
            let writer = writer.clone();
            writes.spawn(async move {
                let outcome = writer
                    .write("a test write", move |c| {
                        c.execute(
                            "INSERT INTO counters (name, value) VALUES (?1, ?2)",
                            (format!("n{n}"), n),
                        )
                        .context("inserting")?;
                        match n {
                            3 | 17 => Err(DbError::shared("a test write", "refused")),
                            25 => panic!("halfway through a write"),
                            _ => Ok(n * 2),
                        }
                    })
                    .await;
                (n, outcome)
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        held.send(()).unwrap();
        assert!(holding.await.unwrap().unwrap());
        while let Some(joined) = writes.join_next().await {
            let (n, outcome) = joined.unwrap();
            match n {
                3 | 17 => assert!(outcome.unwrap_err().to_string().contains("refused")),
                25 => assert!(outcome.unwrap_err().to_string().contains("panicked")),
                _ => assert_eq!(outcome.unwrap(), n * 2),
            }
        }
        let mut written: Vec<i64> =
            sqlx::query_scalar("SELECT value FROM counters WHERE name LIKE 'n%'")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        written.sort_unstable();
        let expected: Vec<i64> = (0..40).filter(|n| ![3, 17, 25].contains(n)).collect();
        assert_eq!(written, expected);
        // The writer goes on after a panic.
        assert_eq!(writer.write("after", |_| Ok(7)).await.unwrap(), 7);
    }
}
