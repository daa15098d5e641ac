//! Status ingestion: one writer task owns every status write.
//!
//! A report is acknowledged once its raw body is committed: that is all a device waits for, and
//! all that must survive a crash. Merging reports into each enrollment's status (and advancing
//! its change number) is folded later, for many reports at once: when the writer falls idle,
//! in steps under load, or before anyone reads status ([`Ingest::flush`]), so no reader ever
//! sees a merged status older than an acknowledged report. A fold records how far every status
//! is merged (`counters.status_through`); on start the writer folds what a crash left behind.

use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use updraft_clock::SharedClock;
use updraft_ddm::{DeviceStatus, StatusReport};

use crate::db::{Context, Db, DbError, timestamp};

/// Largest batch of reports committed at once.
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
/// Rows per multi-row statement in a fold (three bound values each, far below SQLite's limit).
const FOLD_CHUNK: usize = 1000;

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

enum Job {
    Report(Received),
    /// Forget the status of this enrollment (it re-enrolled).
    Forget {
        enrollment_id: String,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Fold everything acknowledged so far before answering.
    Flush {
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// The handle handlers use to submit reports.
#[derive(Clone, Debug)]
pub struct Ingest {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Report(received) => write!(f, "Report({})", received.enrollment_id),
            Job::Forget { enrollment_id, .. } => write!(f, "Forget({enrollment_id})"),
            Job::Flush { .. } => write!(f, "Flush"),
        }
    }
}

const STOPPED: &str = "the status writer has stopped";

impl Ingest {
    /// Starts the writer task; it first folds any reports a crash left unmerged.
    pub fn start(db: Db, clock: SharedClock, cache_generation: usize) -> Self {
        let (jobs, receiver) = mpsc::channel(8192);
        tokio::spawn(Writer::new(db, clock, cache_generation.max(1)).run(receiver));
        Self { jobs }
    }

    async fn send(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Job,
    ) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(job(done))
            .await
            .map_err(|_| STOPPED.to_owned())?;
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
}

struct Writer {
    db: Db,
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
}

impl Writer {
    fn new(db: Db, clock: SharedClock, cache_generation: usize) -> Self {
        Self {
            db,
            clock,
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

    async fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        if let Err(error) = self.recover().await {
            tracing::error!(%error, "folding unmerged status reports at start failed");
        }
        let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
        loop {
            let received = if self.pending.is_empty() {
                receiver.recv_many(&mut batch, MAX_BATCH).await
            } else {
                match tokio::time::timeout(IDLE, receiver.recv_many(&mut batch, MAX_BATCH)).await {
                    Ok(received) => received,
                    Err(_) => {
                        self.fold_logged(usize::MAX).await;
                        continue;
                    }
                }
            };
            if received == 0 {
                self.fold_logged(usize::MAX).await;
                return;
            }
            self.handle(&mut batch).await;
            if self
                .oldest_pending()
                .is_some_and(|pending| pending.since.elapsed() >= FOLD_EVERY)
            {
                self.fold_logged(FOLD_STEP).await;
            }
        }
    }

    async fn handle(&mut self, batch: &mut Vec<Job>) {
        let mut reports = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            match job {
                Job::Report(received) => reports.push(received),
                Job::Forget {
                    enrollment_id,
                    done,
                } => {
                    // Reports received before it re-enrolled are stored first, then dropped here.
                    self.store(&mut reports).await;
                    if let Some(cached) = self.cache.forget(&enrollment_id) {
                        self.orphans.extend(cached.recent_reports);
                    }
                    if let Some(pending) = self.pending.remove(&enrollment_id) {
                        self.orphans.extend(pending.evicted);
                    }
                    let _ = done.send(Ok(()));
                }
                Job::Flush { done } => {
                    self.store(&mut reports).await;
                    let folded = self.fold(usize::MAX).await;
                    let _ = done.send(folded.map_err(|e| e.to_string()));
                }
            }
        }
        self.store(&mut reports).await;
    }

    /// Commits the raw reports, answers their senders, and merges them in memory.
    async fn store(&mut self, reports: &mut Vec<Received>) {
        if reports.is_empty() {
            return;
        }
        let now = timestamp(self.clock.now());
        let result = insert_raw(&self.db, &now, reports).await;
        let answer = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
        // One multi-row insert by the only writer: the ids are consecutive.
        let first_id = result.ok().map(|last| last - reports.len() as i64 + 1);
        for (offset, received) in reports.drain(..).enumerate() {
            if let Some(first_id) = first_id {
                let raw_id = first_id + offset as i64;
                self.merge(received.enrollment_id, received.report, &now, raw_id)
                    .await;
            }
            let _ = received.done.send(answer.clone());
        }
    }

    async fn merge(
        &mut self,
        enrollment_id: String,
        report: StatusReport,
        received_at: &str,
        raw_id: i64,
    ) {
        if !self.cache.newer.contains_key(&enrollment_id) {
            let cached = match self.cache.older.remove(&enrollment_id) {
                Some(cached) => cached,
                None => self.read_cached(&enrollment_id).await,
            };
            if self.cache.newer.len() >= self.cache.generation {
                // Unmerged statuses live only in the cache: write them all before the older
                // generation goes (and keep it if that fails).
                match self.fold(usize::MAX).await {
                    Ok(()) => self.cache.older = std::mem::take(&mut self.cache.newer),
                    Err(error) => tracing::warn!(%error, "merging status reports failed"),
                }
            }
            self.cache.newer.insert(enrollment_id.clone(), cached);
        }
        let evicted = self.cache.newer.get_mut(&enrollment_id).and_then(|cached| {
            cached.status.absorb(report);
            cached.record(raw_id)
        });
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
                })
            }
        };
        pending.received_at = received_at.to_owned();
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

    async fn read_cached(&self, enrollment_id: &str) -> Cached {
        let mut cached = Cached::default();
        let Ok((report, recent_reports)) = self.db.status_and_recent_reports(enrollment_id).await
        else {
            return cached;
        };
        if let Some(parsed) = report.and_then(|r| StatusReport::parse(r.as_bytes()).ok()) {
            cached.status.apply(&parsed);
        }
        cached.recent_reports = recent_reports;
        cached
    }

    async fn fold_logged(&mut self, limit: usize) {
        if let Err(error) = self.fold(limit).await {
            // The raw reports are safe; the fold is retried at the next one.
            tracing::warn!(%error, "merging status reports failed");
        }
    }

    /// Writes up to `limit` pending merged statuses (the oldest first), their change numbers and
    /// `status_through`, in one transaction.
    async fn fold(&mut self, limit: usize) -> Result<(), DbError> {
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
        let written = self.write_statuses(&taken, &unkept, through).await;
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
    async fn write_statuses(
        &self,
        taken: &[(String, Pending)],
        unkept: &[i64],
        through: i64,
    ) -> Result<(), DbError> {
        let rows: Vec<StatusRow> = taken
            .iter()
            .map(|(id, pending)| {
                let cached = self.cache.newer.get(id);
                StatusRow {
                    enrollment_id: id,
                    report: cached
                        .map_or_else(|| "{}".to_owned(), |c| c.status.to_full_report_json()),
                    recent_reports: cached
                        .map(Cached::recent_reports_column)
                        .unwrap_or_default(),
                    received_at: &pending.received_at,
                }
            })
            .collect();
        let mut tx = self.db.write().await?;
        let first_seq = Db::next_seqs(&mut tx, rows.len() as i64).await?;
        for (chunk_index, chunk) in rows.chunks(FOLD_CHUNK).enumerate() {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO status (enrollment_id, report, updated_at) ",
            );
            upsert.push_values(chunk, |mut row, status| {
                row.push_bind(status.enrollment_id)
                    .push_bind(&status.report)
                    .push_bind(status.received_at);
            });
            upsert.push(" ON CONFLICT(enrollment_id) DO UPDATE SET report = excluded.report, updated_at = excluded.updated_at");
            upsert
                .build()
                .execute(&mut *tx)
                .await
                .context("merging status")?;

            let first = first_seq + (chunk_index * FOLD_CHUNK) as i64;
            let mut seqs = QueryBuilder::<Sqlite>::new(
                "INSERT INTO enrollments (id, seq, last_seen_at, recent_reports) ",
            );
            seqs.push_values(chunk.iter().enumerate(), |mut row, (offset, status)| {
                row.push_bind(status.enrollment_id)
                    .push_bind(first + offset as i64)
                    .push_bind(status.received_at)
                    .push_bind(&status.recent_reports);
            });
            seqs.push(
                " ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, last_seen_at = excluded.last_seen_at,
                  recent_reports = excluded.recent_reports",
            );
            seqs.build()
                .execute(&mut *tx)
                .await
                .context("advancing change numbers")?;
        }
        for chunk in unkept.chunks(FOLD_CHUNK) {
            let mut delete =
                QueryBuilder::<Sqlite>::new("DELETE FROM status_reports WHERE id IN (");
            let mut ids = delete.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            delete.push(")");
            delete
                .build()
                .execute(&mut *tx)
                .await
                .context("deleting raw reports no longer kept")?;
        }
        sqlx::query("UPDATE counters SET value = ? WHERE name = 'status_through'")
            .bind(through)
            .execute(&mut *tx)
            .await
            .context("recording the folded reports")?;
        tx.commit().await.context("commit")
    }

    /// Merges the reports committed after the last fold (a crash between the two) and folds them.
    /// A report older than its enrollment's latest enrollment belongs to the previous one.
    async fn recover(&mut self) -> Result<(), DbError> {
        self.through =
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'status_through'")
                .fetch_one(&self.db.pool)
                .await
                .context("reading status_through")?;
        let rows = sqlx::query(
            "SELECT r.id, r.enrollment_id, r.received_at, r.body,
                 e.enrolled_at IS NOT NULL AND r.received_at < e.enrolled_at AS before_enrollment
             FROM status_reports r LEFT JOIN enrollments e ON e.id = r.enrollment_id
             WHERE r.id > ? ORDER BY r.id",
        )
        .bind(self.through)
        .fetch_all(&self.db.pool)
        .await
        .context("reading unmerged status reports")?;
        if rows.is_empty() {
            return Ok(());
        }
        tracing::info!(
            reports = rows.len(),
            "merging status reports left by a stop"
        );
        for row in rows {
            let id: i64 = row.get("id");
            let body: Vec<u8> = row.get("body");
            let received_at: String = row.get("received_at");
            match StatusReport::parse(&body) {
                Ok(report) if !row.get::<bool, _>("before_enrollment") => {
                    self.merge(row.get("enrollment_id"), report, &received_at, id)
                        .await;
                }
                // Its enrollment started over since: no list keeps it.
                _ => self.orphans.push(id),
            }
        }
        self.fold(usize::MAX).await
    }
}

/// A merged status as a fold writes it.
struct StatusRow<'a> {
    enrollment_id: &'a str,
    report: String,
    recent_reports: String,
    received_at: &'a str,
}

/// Inserts the raw reports in one transaction; returns the id of the last one.
async fn insert_raw(db: &Db, now: &str, reports: &[Received]) -> Result<i64, DbError> {
    let mut tx = db.write().await?;
    let mut raw = QueryBuilder::<Sqlite>::new(
        "INSERT INTO status_reports (enrollment_id, received_at, body) ",
    );
    raw.push_values(reports, |mut row, received| {
        row.push_bind(&received.enrollment_id)
            .push_bind(now)
            .push_bind(&received.body);
    });
    let last_id = raw
        .build()
        .execute(&mut *tx)
        .await
        .context("storing reports")?
        .last_insert_rowid();
    tx.commit().await.context("commit")?;
    Ok(last_id)
}
