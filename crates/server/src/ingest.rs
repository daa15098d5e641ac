//! Status ingestion: one writer task batches reports into one transaction, with multi-row
//! statements, and answers each sender only after its report is committed.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

use updraft_clock::SharedClock;
use updraft_ddm::{DeviceStatus, StatusReport};

use crate::db::{Context, Db, DbError, timestamp};

/// Largest batch committed at once.
const MAX_BATCH: usize = 512;

struct Job {
    enrollment_id: String,
    body: Vec<u8>,
    /// None: forget the cached status of this enrollment (it re-enrolled).
    report: Option<StatusReport>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Merged statuses the writer holds in memory, so a report costs no read and no re-parse of the
/// stored status. The writer is the only writer of `status`, so the cache cannot go stale, except
/// on re-enrollment, which sends a `forget`. Bounded: past the limit it starts over.
const CACHE_LIMIT: usize = 200_000;

/// The handle handlers use to submit reports.
#[derive(Clone, Debug)]
pub struct Ingest {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("enrollment_id", &self.enrollment_id)
            .finish()
    }
}

impl Ingest {
    /// Starts the writer task.
    pub fn start(db: Db, clock: SharedClock) -> Self {
        let (jobs, receiver) = mpsc::channel(8192);
        tokio::spawn(writer(db, clock, receiver));
        Self { jobs }
    }

    /// Stores a parsed report; returns once it is committed.
    pub async fn submit(
        &self,
        enrollment_id: String,
        body: Vec<u8>,
        report: StatusReport,
    ) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job {
                enrollment_id,
                body,
                report: Some(report),
                done,
            })
            .await
            .map_err(|_| "the status writer has stopped".to_owned())?;
        wait.await
            .map_err(|_| "the status writer has stopped".to_owned())?
    }
}

impl Ingest {
    /// Drops what the writer holds of an enrollment (call when it re-enrolls); returns once done.
    pub async fn forget(&self, enrollment_id: String) {
        let (done, wait) = oneshot::channel();
        let job = Job {
            enrollment_id,
            body: Vec::new(),
            report: None,
            done,
        };
        if self.jobs.send(job).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn writer(db: Db, clock: SharedClock, mut receiver: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut cache: HashMap<String, DeviceStatus> = HashMap::new();
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (forgets, mut reports): (Vec<Job>, Vec<Job>) =
            batch.drain(..).partition(|job| job.report.is_none());
        for job in forgets {
            cache.remove(&job.enrollment_id);
            let _ = job.done.send(Ok(()));
        }
        if reports.is_empty() {
            continue;
        }
        if cache.len() > CACHE_LIMIT {
            cache.clear();
        }
        let result = commit(&db, clock.now(), &mut reports, &mut cache)
            .await
            .map_err(|error| error.to_string());
        if result.is_err() {
            for job in &reports {
                cache.remove(&job.enrollment_id);
            }
        }
        for job in reports {
            let _ = job.done.send(result.clone());
        }
    }
}

async fn commit(
    db: &Db,
    now: DateTime<Utc>,
    batch: &mut [Job],
    cache: &mut HashMap<String, DeviceStatus>,
) -> Result<(), DbError> {
    let now = timestamp(now);
    let reports: Vec<Option<StatusReport>> =
        batch.iter_mut().map(|job| job.report.take()).collect();
    let batch = &*batch;
    let mut tx = db.write().await?;
    let first_seq = Db::next_seqs(&mut tx, batch.len() as i64).await?;

    // Current merged status of every enrollment in the batch: from the cache, else in one query.
    let mut merged: HashMap<&str, (DeviceStatus, i64)> = HashMap::new();
    let mut missing: Vec<&str> = Vec::new();
    for job in batch {
        let id = job.enrollment_id.as_str();
        if merged.contains_key(id) {
            continue;
        }
        // Taken out, not cloned: a failed commit leaves these enrollments to be re-read.
        match cache.remove(id) {
            Some(status) => {
                merged.insert(id, (status, 0));
            }
            None => missing.push(id),
        }
    }
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT enrollment_id, report FROM status WHERE enrollment_id IN (",
        );
        let mut separated = query.separated(", ");
        for id in &missing {
            separated.push_bind(*id);
        }
        query.push(")");
        for row in query
            .build()
            .fetch_all(&mut *tx)
            .await
            .context("reading status")?
        {
            let id: String = row.get("enrollment_id");
            let report: String = row.get("report");
            let mut status = DeviceStatus::default();
            if let Ok(parsed) = StatusReport::parse(report.as_bytes()) {
                status.apply(&parsed);
            }
            if let Ok(index) = missing.binary_search(&id.as_str()) {
                merged.insert(missing[index], (status, 0));
            }
        }
    }
    for (offset, (job, report)) in batch.iter().zip(reports).enumerate() {
        let entry = merged.entry(job.enrollment_id.as_str()).or_default();
        if let Some(report) = report {
            entry.0.absorb(report);
        }
        entry.1 = first_seq + offset as i64;
    }

    let mut raw = QueryBuilder::<Sqlite>::new(
        "INSERT INTO status_reports (enrollment_id, received_at, body) ",
    );
    raw.push_values(batch, |mut row, job| {
        row.push_bind(&job.enrollment_id)
            .push_bind(&now)
            .push_bind(&job.body);
    });
    raw.build()
        .execute(&mut *tx)
        .await
        .context("storing reports")?;

    let mut statuses: Vec<(&str, DeviceStatus)> = Vec::with_capacity(merged.len());
    let merged: Vec<(&str, String, i64)> = merged
        .into_iter()
        .map(|(id, (status, seq))| {
            let json = status.to_full_report_json().to_string();
            statuses.push((id, status));
            (id, json, seq)
        })
        .collect();
    let mut upsert =
        QueryBuilder::<Sqlite>::new("INSERT INTO status (enrollment_id, report, updated_at) ");
    upsert.push_values(&merged, |mut row, (id, report, _)| {
        row.push_bind(*id).push_bind(report).push_bind(&now);
    });
    upsert.push(" ON CONFLICT(enrollment_id) DO UPDATE SET report = excluded.report, updated_at = excluded.updated_at");
    upsert
        .build()
        .execute(&mut *tx)
        .await
        .context("merging status")?;

    let mut seqs = QueryBuilder::<Sqlite>::new("INSERT INTO enrollments (id, seq, last_seen_at) ");
    seqs.push_values(&merged, |mut row, (id, _, seq)| {
        row.push_bind(*id).push_bind(*seq).push_bind(&now);
    });
    seqs.push(
        " ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, last_seen_at = excluded.last_seen_at",
    );
    seqs.build()
        .execute(&mut *tx)
        .await
        .context("advancing change numbers")?;

    tx.commit().await.context("commit")?;
    cache.extend(
        statuses
            .into_iter()
            .map(|(id, status)| (id.to_owned(), status)),
    );
    Ok(())
}
