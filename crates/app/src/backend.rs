//! What the console runs against, the embedded lab or a DDM server, and what each can do: the
//! lab's clock moves, a server is followed by a refresh. The choice for the next start is kept
//! in the settings.

use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use updraft_clock::{Clock, SharedClock};
use updraft_console::Console;
use updraft_feed::LookupResponse;
use updraft_lab::{Lab, LabConfig};
use updraft_mdm::MdmBackend;
use updraft_store::Store;

use crate::{AppError, Session, settings};

/// What the console runs against.
pub(crate) enum Backend {
    /// The embedded lab: server, simulated fleet and a clock that can be moved.
    Lab(Box<Lab>),
    /// A DDM server over its admin API, with the console's cache in a file.
    Server {
        console: Box<Console>,
        clock: SharedClock,
        /// Whether the status-subscription declarations are on the server (put at the first
        /// refresh that reaches it, and again after each start: the calls are idempotent).
        prepared: AtomicBool,
    },
}

impl Backend {
    /// The lab in `dir` (cleared first: the lab starts over on every launch) with a fleet of
    /// `devices` simulated devices and `feed`, its fleet enrolled.
    pub(crate) async fn lab(
        dir: &Path,
        devices: usize,
        seed: u64,
        failure_rate: f64,
        feed: &LookupResponse,
    ) -> Result<Self, AppError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("clearing the lab folder {}: {e}", dir.display()))?;
        }
        let mut config = LabConfig::new(devices, seed, feed.clone(), dir.to_path_buf());
        config.failure_rate = failure_rate;
        let lab = Lab::start(&config).await?;
        lab.enroll().await?;
        Ok(Self::Lab(Box::new(lab)))
    }

    /// A console on its cache at `db`, following the DDM server behind `mdm`.
    pub(crate) async fn server(
        db: &Path,
        mdm: Arc<dyn MdmBackend>,
        clock: SharedClock,
    ) -> Result<Self, AppError> {
        let store = Store::open(db).await?;
        Ok(Self::Server {
            console: Box::new(Console::new(store, mdm, clock.clone())),
            clock,
            prepared: AtomicBool::new(false),
        })
    }

    pub(crate) fn set_actor(&mut self, actor: &str) {
        match self {
            Self::Lab(lab) => lab.console.set_actor(actor),
            Self::Server { console, .. } => console.set_actor(actor),
        }
    }

    pub(crate) fn console(&self) -> &Console {
        match self {
            Self::Lab(lab) => &lab.console,
            Self::Server { console, .. } => console,
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        match self {
            Self::Lab(lab) => lab.clock.now(),
            Self::Server { clock, .. } => clock.now(),
        }
    }

    pub(crate) fn is_lab(&self) -> bool {
        matches!(self, Self::Lab(_))
    }

    /// Moves the lab's clock forward in steps of at most 15 minutes; devices act, the console
    /// follows.
    pub(crate) async fn advance(&self, minutes: i64) -> Result<(), AppError> {
        let Self::Lab(lab) = self else {
            return Err(AppError::Invalid(
                "only the lab's clock can be moved; a real fleet runs on real time".into(),
            ));
        };
        let mut left = minutes.max(0);
        while left > 0 {
            let step = left.min(15);
            lab.step(step, true).await?;
            left -= step;
        }
        Ok(())
    }

    /// Follows the DDM server: reads what changed, acts on it, carries out what that implies.
    pub(crate) async fn refresh(&self) -> Result<(), AppError> {
        let console = self.console();
        if let Self::Server { prepared, .. } = self
            && !prepared.load(Ordering::Relaxed)
        {
            // Without the status subscriptions a real device never reports `softwareupdate.*`.
            console.prepare_server().await?;
            prepared.store(true, Ordering::Relaxed);
        }
        console.sync().await?;
        if !self.is_lab() {
            console.watch_push_certificate().await?;
        }
        console.drain_outbox().await?;
        console.tick().await?;
        console.drain_outbox().await?;
        Ok(())
    }
}

impl Session {
    /// Keeps a DDM server as the backend for the next start (see [`settings::use_server`]) and
    /// says so in the audit log.
    pub async fn use_server(
        &self,
        path: &Path,
        secrets: &dyn settings::SecretStore,
        server: settings::ServerSettings,
        api_key: &str,
        companion_key: Option<&str>,
    ) -> Result<(settings::Settings, Vec<settings::CheckLine>), AppError> {
        let (saved, checks) =
            settings::use_server(path, secrets, server, api_key, companion_key).await?;
        self.console()
            .record("settings_changed", &saved.describe())
            .await?;
        Ok((saved, checks))
    }

    /// Keeps the lab as the backend for the next start, and says so in the audit log.
    pub async fn use_lab(&self, path: &Path) -> Result<(), AppError> {
        settings::Settings::Lab.save(path)?;
        self.console()
            .record("settings_changed", &settings::Settings::Lab.describe())
            .await?;
        Ok(())
    }
}
