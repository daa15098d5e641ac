//! The console application behind the desktop UI, without the UI toolkit: a [`Session`] runs the
//! console (and, by default, the lab it works on) and answers every screen's question with a view
//! from [`view`]. The Tauri shell only forwards calls here, so all of this is tested headless.
#![deny(missing_docs)]

mod backend;
mod cache;
pub mod catalog;
pub mod notices;
mod screens;
pub mod settings;
pub mod table;
pub mod view;
pub mod wizard;

use chrono::{DateTime, Duration, Utc};
use std::path::Path;
use std::sync::Arc;

use updraft_clock::SharedClock;
use updraft_console::Console;
use updraft_feed::LookupResponse;
use updraft_mdm::MdmBackend;
use updraft_store::Store;

pub use screens::policies::MAX_RINGS;

use backend::Backend;
use cache::Cache;

/// The operating system's name for the person at the desktop, for the audit log.
pub fn os_account() -> String {
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| updraft_console::DEFAULT_ACTOR.to_owned())
}

/// A failure the UI shows as it is: what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The admin asked for something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The admin's input was refused (the message says why).
    #[error("{0}")]
    Invalid(String),
    /// Something below failed.
    #[error("{0:#}")]
    Backend(#[from] anyhow::Error),
}

impl From<updraft_console::ConsoleError> for AppError {
    fn from(error: updraft_console::ConsoleError) -> Self {
        match error {
            updraft_console::ConsoleError::State(message) => Self::Invalid(message),
            other => Self::Backend(other.into()),
        }
    }
}

impl From<updraft_store::StoreError> for AppError {
    fn from(error: updraft_store::StoreError) -> Self {
        Self::Backend(error.into())
    }
}

/// The lab's defaults on a first start.
pub const LAB_DEVICES: usize = 500;
/// The lab's seed.
pub const LAB_SEED: u64 = 1;
/// The share of the lab's devices that carry a fault.
pub const LAB_FAILURE_RATE: f64 = 0.05;

/// The console the UI talks to: a backend, the caches, and each screen's answers (in
/// `screens/`).
pub struct Session {
    backend: Backend,
    /// One move of the lab's clock, or one refresh, at a time: two at once would race the
    /// simulated devices or each other's commits.
    advancing: tokio::sync::Mutex<()>,
    cache: Cache,
}

impl Session {
    /// Starts the lab in `dir` (cleared first: the lab starts over on every launch) with a fleet of
    /// `devices` simulated devices and the bundled lookup-service capture, and enrolls the fleet.
    pub async fn lab(dir: &Path, devices: usize, seed: u64) -> Result<Self, AppError> {
        Self::lab_with_faults(dir, devices, seed, LAB_FAILURE_RATE).await
    }

    /// The lab with `failure_rate` of its devices (0 to 1) carrying a fault: an install that
    /// fails, a device that goes silent... (to see gates halt, and alerts).
    pub async fn lab_with_faults(
        dir: &Path,
        devices: usize,
        seed: u64,
        failure_rate: f64,
    ) -> Result<Self, AppError> {
        let feed = LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes())
            .map_err(|e| anyhow::anyhow!("the bundled lookup-service capture: {e}"))?;
        let backend = Backend::lab(dir, devices, seed, failure_rate, &feed).await?;
        Self::on(backend, &feed)
    }

    /// A console on its cache at `db`, following the DDM server behind `backend`, with releases
    /// from `feed`.
    pub async fn server(
        db: &Path,
        backend: Arc<dyn MdmBackend>,
        clock: SharedClock,
        feed: &LookupResponse,
    ) -> Result<Self, AppError> {
        Self::on(Backend::server(db, backend, clock).await?, feed)
    }

    /// A session on `backend`, its releases from `feed` and what they fix from the SOFA feeds
    /// Updraft ships.
    fn on(backend: Backend, feed: &LookupResponse) -> Result<Self, AppError> {
        let sofa = updraft_feed::sofa::bundled()
            .map_err(|e| anyhow::anyhow!("the bundled SOFA feeds: {e}"))?;
        Ok(Self {
            backend,
            advancing: tokio::sync::Mutex::new(()),
            cache: Cache::new(feed, sofa),
        })
    }

    /// Starts with these SOFA feeds instead of the copies Updraft ships (the saved ones).
    pub fn with_sofa(self, feeds: Vec<updraft_feed::sofa::SofaFeed>) -> Self {
        self.cache.replace_sofa(feeds);
        self
    }

    /// Takes newer SOFA feeds: the Releases screen shows what each release fixes from them, and
    /// the release policies read them for exploited vulnerabilities.
    pub async fn update_sofa(
        &self,
        feeds: Vec<updraft_feed::sofa::SofaFeed>,
    ) -> Result<(), AppError> {
        self.cache.replace_sofa(feeds);
        self.apply_policies().await
    }

    /// Names `actor` in the audit log for what this session does (the desktop app passes
    /// [`os_account`]).
    pub fn acting_as(mut self, actor: &str) -> Self {
        self.backend.set_actor(actor);
        self
    }

    fn console(&self) -> &Console {
        self.backend.console()
    }

    fn store(&self) -> &Store {
        self.console().store()
    }

    /// The console's clock (simulated in the lab).
    pub fn now(&self) -> DateTime<Utc> {
        self.backend.now()
    }

    /// Whether this is the lab.
    pub fn is_lab(&self) -> bool {
        self.backend.is_lab()
    }

    /// Moves the lab's clock forward in steps of at most 15 minutes; devices act, the console
    /// follows. Returns the new time.
    pub async fn advance(&self, minutes: i64) -> Result<DateTime<Utc>, AppError> {
        let _one_at_a_time = self.advancing.lock().await;
        self.backend.advance(minutes).await?;
        self.cache.invalidate();
        Ok(self.now())
    }

    /// Follows the DDM server: reads what changed, acts on it, carries out what that implies.
    /// (The lab does this as its clock moves.)
    pub async fn refresh(&self) -> Result<(), AppError> {
        let _one_at_a_time = self.advancing.lock().await;
        self.backend.refresh().await?;
        self.cache.invalidate();
        Ok(())
    }
}

/// "3 d 4 h", "2 h 15 min", "40 s".
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.num_seconds().max(0);
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(Duration::seconds(40)), "40 s");
        assert_eq!(human_duration(Duration::minutes(135)), "2 h 15 min");
        assert_eq!(human_duration(Duration::hours(76)), "3 d 4 h");
        assert_eq!(human_duration(Duration::hours(48)), "2 d");
    }
}
