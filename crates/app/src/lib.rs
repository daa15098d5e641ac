//! The console application behind the desktop UI, without the UI toolkit: a [`Session`] runs the
//! console (and, by default, the lab it works on) and answers every screen's question with a view
//! from [`view`]. The Tauri shell only forwards calls here, so all of this is tested headless.
#![deny(missing_docs)]

pub mod catalog;
pub mod notices;
pub mod settings;
pub mod table;
pub mod view;
pub mod wizard;

use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use updraft_clock::{Clock, SharedClock};
use updraft_console::{Console, RolloutRequest};
use updraft_ddm::OsVersion;
use updraft_engine::plan::Exclusion;
use updraft_engine::{Decision, Enforcement, Phase, RolloutState, decide};
use updraft_feed::LookupResponse;
use updraft_lab::{Lab, LabConfig};
use updraft_mdm::MdmBackend;
use updraft_store::{DeviceRow, Store};

use catalog::CatalogRelease;
use table::DeviceTable;
use view::*;
use wizard::{Preview, RolloutPlan};

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

/// What the console runs against.
enum Backend {
    /// The embedded lab: server, simulated fleet and a clock that can be moved.
    Lab(Box<Lab>),
    /// A DDM server over its admin API, with the console's cache in a file.
    Server {
        console: Box<Console>,
        clock: SharedClock,
        /// Whether the status-subscription declarations are on the server (put at the first
        /// refresh that reaches it, and again after each start: the calls are idempotent).
        prepared: std::sync::atomic::AtomicBool,
    },
}

/// The console the UI talks to.
pub struct Session {
    backend: Backend,
    /// One move of the lab's clock at a time: two at once would race the simulated devices.
    advancing: tokio::sync::Mutex<()>,
    catalog: std::sync::RwLock<Arc<Vec<CatalogRelease>>>,
    table: Mutex<Option<Arc<DeviceTable>>>,
    building: tokio::sync::Mutex<()>,
}

impl Session {
    /// Starts the lab in `dir` (cleared first: the lab starts over on every launch) with a fleet of
    /// `devices` simulated devices and the bundled lookup-service capture, and enrolls the fleet.
    pub async fn lab(dir: &Path, devices: usize, seed: u64) -> Result<Self, AppError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("clearing the lab folder {}: {e}", dir.display()))?;
        }
        let feed = LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes())
            .map_err(|e| anyhow::anyhow!("the bundled lookup-service capture: {e}"))?;
        let config = LabConfig::new(devices, seed, feed.clone(), dir.to_path_buf());
        let lab = Lab::start(&config).await?;
        lab.enroll().await?;
        Ok(Self {
            backend: Backend::Lab(Box::new(lab)),
            advancing: tokio::sync::Mutex::new(()),
            catalog: std::sync::RwLock::new(Arc::new(catalog::releases(&feed))),
            table: Mutex::new(None),
            building: tokio::sync::Mutex::new(()),
        })
    }

    /// A console on its cache at `db`, following the DDM server behind `backend`, with releases
    /// from `feed`.
    pub async fn server(
        db: &Path,
        backend: Arc<dyn MdmBackend>,
        clock: SharedClock,
        feed: &LookupResponse,
    ) -> Result<Self, AppError> {
        let store = Store::open(db).await?;
        Ok(Self {
            backend: Backend::Server {
                console: Box::new(Console::new(store, backend, clock.clone())),
                clock,
                prepared: std::sync::atomic::AtomicBool::new(false),
            },
            advancing: tokio::sync::Mutex::new(()),
            catalog: std::sync::RwLock::new(Arc::new(catalog::releases(feed))),
            table: Mutex::new(None),
            building: tokio::sync::Mutex::new(()),
        })
    }

    /// Names `actor` in the audit log for what this session does (the desktop app passes
    /// [`os_account`]).
    pub fn acting_as(mut self, actor: &str) -> Self {
        match &mut self.backend {
            Backend::Lab(lab) => lab.console.set_actor(actor),
            Backend::Server { console, .. } => console.set_actor(actor),
        }
        self
    }

    fn console(&self) -> &Console {
        match &self.backend {
            Backend::Lab(lab) => &lab.console,
            Backend::Server { console, .. } => console,
        }
    }

    fn store(&self) -> &Store {
        self.console().store()
    }

    /// The console's clock (simulated in the lab).
    pub fn now(&self) -> DateTime<Utc> {
        match &self.backend {
            Backend::Lab(lab) => lab.clock.now(),
            Backend::Server { clock, .. } => clock.now(),
        }
    }

    /// Whether this is the lab.
    pub fn is_lab(&self) -> bool {
        matches!(self.backend, Backend::Lab(_))
    }

    /// Moves the lab's clock forward in steps of at most 15 minutes; devices act, the console
    /// follows. Returns the new time.
    pub async fn advance(&self, minutes: i64) -> Result<DateTime<Utc>, AppError> {
        let Backend::Lab(lab) = &self.backend else {
            return Err(AppError::Invalid(
                "only the lab's clock can be moved; a real fleet runs on real time".into(),
            ));
        };
        let _one_at_a_time = self.advancing.lock().await;
        let mut left = minutes.max(0);
        while left > 0 {
            let step = left.min(15);
            lab.step(step, true).await?;
            left -= step;
        }
        self.invalidate();
        Ok(self.now())
    }

    /// Follows the DDM server: reads what changed, acts on it, carries out what that implies.
    /// (The lab does this as its clock moves.)
    pub async fn refresh(&self) -> Result<(), AppError> {
        let _one_at_a_time = self.advancing.lock().await;
        let console = self.console();
        if let Backend::Server { prepared, .. } = &self.backend
            && !prepared.load(std::sync::atomic::Ordering::Relaxed)
        {
            // Without the status subscriptions a real device never reports `softwareupdate.*`.
            console.prepare_server().await?;
            prepared.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        console.sync().await?;
        if !self.is_lab() {
            console.watch_push_certificate().await?;
        }
        console.drain_outbox().await?;
        console.tick().await?;
        console.drain_outbox().await?;
        self.invalidate();
        Ok(())
    }

    fn cached_table(&self) -> Option<Arc<DeviceTable>> {
        self.table.lock().ok()?.as_ref().cloned()
    }

    fn invalidate(&self) {
        if let Ok(mut table) = self.table.lock() {
            *table = None;
        }
    }

    async fn table(&self) -> Result<Arc<DeviceTable>, AppError> {
        if let Some(table) = self.cached_table() {
            return Ok(table);
        }
        // One build at a time: callers that arrive during a build take its result.
        let _building = self.building.lock().await;
        if let Some(table) = self.cached_table() {
            return Ok(table);
        }
        let devices = self.store().device_summaries().await?;
        let mut newest: HashMap<String, (i64, updraft_engine::Phase)> = HashMap::new();
        for (rollout, device, phase) in self.store().phases().await? {
            let entry = newest.entry(device).or_insert((rollout, phase));
            if rollout >= entry.0 {
                *entry = (rollout, phase);
            }
        }
        let rows = devices
            .into_iter()
            .map(|device| {
                let newest = newest.get(&device.enrollment_id);
                summary_view(device, newest)
            })
            .collect();
        let table = Arc::new(DeviceTable::new(rows));
        if let Ok(mut slot) = self.table.lock() {
            *slot = Some(table.clone());
        }
        Ok(table)
    }

    fn catalog(&self) -> Arc<Vec<CatalogRelease>> {
        match self.catalog.read() {
            Ok(catalog) => catalog.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn release(&self, key: &str) -> Result<CatalogRelease, AppError> {
        self.catalog()
            .iter()
            .find(|r| r.key == key)
            .cloned()
            .ok_or_else(|| AppError::NotFound(format!("no release {key:?} in the feed")))
    }

    /// Takes a newer lookup-service response: releases it lists that the last one did not, and
    /// that apply to a device, raise a `new_release` alert each. Returns those alerts as notices.
    pub async fn update_feed(
        &self,
        feed: &LookupResponse,
    ) -> Result<Vec<notices::Notice>, AppError> {
        let releases = catalog::releases(feed);
        if releases.is_empty() {
            // An empty answer never replaces the releases the console knows.
            return Ok(Vec::new());
        }
        let known = self.catalog();
        let devices = self.store().devices().await?;
        let now = self.now();
        let after = self.last_alert_id().await?;
        for release in releases
            .iter()
            .filter(|r| !known.iter().any(|k| k.key == r.key))
        {
            let (applies, _, _) = self.applicability(release, &devices);
            if applies == 0 || !release.available_on(now.date_naive()) {
                continue;
            }
            self.store()
                .raise_alert(
                    now,
                    updraft_engine::AlertKind::NewRelease,
                    &format!(
                        "{} {}, posted {}, applies to {applies} devices",
                        release.release.platform,
                        release.release.label(),
                        release.window.posting_date
                    ),
                )
                .await?;
        }
        if let Ok(mut catalog) = self.catalog.write() {
            *catalog = Arc::new(releases);
        }
        let raised = self.store().alerts_after(after, 1000).await?;
        Ok(notices::group(&raised, |_| None))
    }

    /// The dashboard.
    pub async fn dashboard(&self) -> Result<Dashboard, AppError> {
        let now = self.now();
        let devices = self.store().devices().await?;
        let mut by_os: BTreeMap<(String, Option<OsVersion>, String), usize> = BTreeMap::new();
        for device in &devices {
            let platform = platform_name(device);
            let version = device.facts.os_version.clone().unwrap_or_default();
            *by_os
                .entry((platform, OsVersion::parse(&version).ok(), version))
                .or_default() += 1;
        }
        let rollouts = self.rollout_summaries().await?;
        let mut compliance = Vec::new();
        let mut banners = Vec::new();
        let today = now.date_naive();
        let mut seen_platforms = Vec::new();
        let catalog = self.catalog();
        for release in catalog
            .iter()
            .filter(|r| !r.is_bsi() && r.available_on(today))
        {
            let platform = release.release.platform;
            if seen_platforms.contains(&platform) {
                continue;
            }
            seen_platforms.push(platform);
            let (applies, current, total) = self.applicability(release, &devices);
            if total == 0 {
                continue;
            }
            compliance.push(Compliance {
                platform: platform.to_string(),
                newest: release.release.label(),
                current,
                devices: total,
            });
            let days_ago = (today - release.window.posting_date).num_days();
            let covered = rollouts.iter().any(|r| {
                r.state != RolloutStatus::Cancelled
                    && r.platform == platform.to_string()
                    && r.label == release.release.label()
            });
            if applies > 0 && days_ago <= 30 && !covered {
                banners.push(ReleaseBanner {
                    release: release.key.clone(),
                    platform: platform.to_string(),
                    label: release.release.label(),
                    days_ago,
                    applies_to: applies,
                });
            }
        }
        Ok(Dashboard {
            now: now.to_rfc3339(),
            lab: self.is_lab(),
            devices: devices.len(),
            by_os: by_os
                .into_iter()
                .map(|((platform, _, version), count)| OsCount {
                    platform,
                    version,
                    count,
                })
                .collect(),
            compliance,
            banners,
            rollouts: rollouts
                .into_iter()
                .rev()
                .filter(|r| r.state != RolloutStatus::Cancelled)
                .collect(),
            alerts: self.alerts(5).await?,
        })
    }

    /// (applies to, already current, devices of the platform).
    fn applicability(
        &self,
        release: &CatalogRelease,
        devices: &[DeviceRow],
    ) -> (usize, usize, usize) {
        let mut applies = 0;
        let mut current = 0;
        let mut total = 0;
        for device in devices
            .iter()
            .filter(|d| d.facts.platform() == Some(release.release.platform))
        {
            total += 1;
            match decide(&device.facts, &release.release) {
                Decision::Enforce { .. } => applies += 1,
                Decision::Exclude(Exclusion::AlreadyCurrent { .. }) => current += 1,
                _ => {}
            }
        }
        (applies, current, total)
    }

    /// Every release of the feed, newest first per platform, with how many devices each applies to.
    pub async fn releases(&self) -> Result<Vec<ReleaseView>, AppError> {
        let devices = self.store().devices().await?;
        let today = self.now().date_naive();
        Ok(self
            .catalog()
            .iter()
            .map(|release| {
                let (applies_to, current, _) = self.applicability(release, &devices);
                ReleaseView {
                    key: release.key.clone(),
                    platform: release.release.platform.to_string(),
                    version: release.release.product_version.clone(),
                    extra: release.release.product_version_extra.clone(),
                    builds: release
                        .release
                        .builds
                        .iter()
                        .map(|b| ReleaseBuildView {
                            build: b.build.clone(),
                            prerequisite_build: b.prerequisite_build.clone(),
                            supported_device_ids: b.supported_devices.len(),
                        })
                        .collect(),
                    posted: release.window.posting_date.to_string(),
                    expires: release.window.expiration_date.map(|d| d.to_string()),
                    available: release.available_on(today),
                    management_only: release.management_only,
                    supported_device_ids: release
                        .release
                        .builds
                        .iter()
                        .flat_map(|b| &b.supported_devices)
                        .collect::<std::collections::BTreeSet<_>>()
                        .len(),
                    applies_to,
                    current,
                }
            })
            .collect())
    }

    /// Builds the devices table now if it is not built, so the first look at it does not wait
    /// for a read of every device (call in the background after a start or a refresh).
    pub async fn warm(&self) -> Result<(), AppError> {
        self.table().await.map(|_| ())
    }

    /// A window of the devices table.
    pub async fn devices(&self, query: &DeviceQuery) -> Result<DevicePage, AppError> {
        Ok(self.table().await?.query(query))
    }

    /// The values the devices table's filters offer.
    pub async fn device_facets(&self) -> Result<DeviceFacets, AppError> {
        Ok(self.table().await?.facets())
    }

    /// One device, with its timeline.
    pub async fn device(&self, id: &str) -> Result<DeviceDetail, AppError> {
        let store = self.store();
        let device = store
            .device(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no device {id:?}")))?;
        let mut enforcements: Vec<Enforcement> = Vec::new();
        for rollout in store.rollouts().await? {
            enforcements.extend(store.enforcements_for(rollout.id, &[id.to_owned()]).await?);
        }
        let newest = enforcements
            .iter()
            .max_by_key(|e| e.rollout_id)
            .map(|e| (e.rollout_id, e.phase.as_str().to_owned()));
        let mut previous: Option<DateTime<Utc>> = None;
        let mut first: Option<DateTime<Utc>> = None;
        let timeline: Vec<TimelineEntry> = store
            .timeline(id)
            .await?
            .into_iter()
            .map(|event| {
                let at = DateTime::parse_from_rfc3339(&event.at)
                    .ok()
                    .map(|t| t.with_timezone(&Utc));
                let since_previous = match (previous, at) {
                    (Some(before), Some(now)) => Some(human_duration(now - before)),
                    _ => None,
                };
                if at.is_some() {
                    previous = at;
                    first = first.or(at);
                }
                TimelineEntry {
                    at: event.at,
                    kind: event.kind,
                    detail: event.detail,
                    rollout: event.rollout_id,
                    since_previous,
                }
            })
            .collect();
        let ids = device.facts.device_ids();
        Ok(DeviceDetail {
            row: row_view(&device, newest.as_ref()),
            family: device.facts.model_family.clone(),
            device_id: ids.as_ref().and_then(|(ids, _)| ids.first().cloned()),
            device_id_source: ids.map(|(_, source)| {
                match source {
                    updraft_engine::DeviceIdSource::Reported => "reported by the device",
                    updraft_engine::DeviceIdSource::Derived => "derived from the model",
                }
                .to_owned()
            }),
            supplemental_build: device.facts.supplemental_build.clone(),
            time_zone: device.time_zone.clone(),
            bootstrap_token_escrowed: device.facts.bootstrap_token_escrowed,
            bootstrap_token_requested_at: device.bootstrap_token_requested_at.clone(),
            declarations_assigned: enforcements
                .iter()
                .filter(|e| holds_declaration(e.phase))
                .map(|e| e.declaration_id.clone())
                .collect(),
            enforcements: enforcements
                .iter()
                .map(|e| DeviceEnforcement {
                    rollout: e.rollout_id,
                    target: format!(
                        "{}{}{}",
                        e.target_version,
                        e.target_extra
                            .as_deref()
                            .map(|x| format!(" {x}"))
                            .unwrap_or_default(),
                        e.target_build
                            .as_deref()
                            .map(|b| format!(" ({b})"))
                            .unwrap_or_default()
                    ),
                    phase: e.phase.as_str().to_owned(),
                    deadline: e.deadline.format("%Y-%m-%d %H:%M").to_string(),
                    declaration: e.declaration_id.clone(),
                    failure_reason: e.failure_reason.clone(),
                    failure_count: e.failure_count,
                    exclusion_reason: e.exclusion_reason.clone(),
                    invalid_reason: e.invalid_reason.clone(),
                    past_deadline: e.past_deadline,
                    stale: e.stale,
                    stuck: e.stuck,
                })
                .collect(),
            timeline_span: match (first, previous) {
                (Some(first), Some(last)) if timeline.len() > 1 => {
                    Some(human_duration(last - first))
                }
                _ => None,
            },
            timeline,
        })
    }

    /// The wizard's preview of a plan, device by device. Sends nothing.
    pub async fn preview(&self, plan: &RolloutPlan) -> Result<Preview, AppError> {
        let release = self.release(&plan.release)?;
        let devices = self.store().devices().await?;
        Ok(wizard::preview(plan, &release, &devices, self.now()).0)
    }

    /// Starts the rollout the admin confirmed: one rollout per wave, each with its devices.
    /// Returns the rollouts' ids.
    pub async fn start_rollout(&self, plan: &RolloutPlan) -> Result<Vec<i64>, AppError> {
        let release = self.release(&plan.release)?;
        let devices = self.store().devices().await?;
        let (preview, checked) = wizard::preview(plan, &release, &devices, self.now());
        let Some(checked) = checked else {
            return Err(AppError::Invalid(preview.errors.join("; ")));
        };
        let mut ids = Vec::new();
        for wave in checked.waves {
            let id = self
                .console()
                .start_wave(RolloutRequest {
                    release: release.release.clone(),
                    wave: wave.number,
                    deadline: wave.deadline,
                    details_url: checked.details_url.clone(),
                    scope: (!checked.open).then_some(wave.devices),
                })
                .await?;
            ids.push(id);
        }
        self.console().drain_outbox().await?;
        self.invalidate();
        Ok(ids)
    }

    async fn rollout_summaries(&self) -> Result<Vec<RolloutSummary>, AppError> {
        let mut summaries = Vec::new();
        for rollout in self.store().rollouts().await? {
            let records = self.store().enforcements(rollout.id).await?;
            summaries.push(summary(&rollout, &records));
        }
        Ok(summaries)
    }

    /// Rollouts, newest first.
    pub async fn rollouts(&self) -> Result<Vec<RolloutSummary>, AppError> {
        let mut summaries = self.rollout_summaries().await?;
        summaries.reverse();
        Ok(summaries)
    }

    /// One rollout: its funnel and its failures by reason.
    pub async fn rollout(&self, id: i64) -> Result<RolloutDetail, AppError> {
        let store = self.store();
        let rollout = store
            .rollouts()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| AppError::NotFound(format!("no rollout {id}")))?;
        let records = store.enforcements(id).await?;
        let mut counts: BTreeMap<usize, (Phase, usize)> = BTreeMap::new();
        let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut exclusions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for record in &records {
            let position = FUNNEL
                .iter()
                .position(|p| *p == record.phase)
                .unwrap_or(FUNNEL.len());
            counts.entry(position).or_insert((record.phase, 0)).1 += 1;
            match record.phase {
                Phase::Failed | Phase::Invalid => failures
                    .entry(
                        record
                            .failure_reason
                            .clone()
                            .or_else(|| record.invalid_reason.clone())
                            .unwrap_or_else(|| "no reason given".into()),
                    )
                    .or_default()
                    .push(record.enrollment_id.clone()),
                Phase::Excluded => exclusions
                    .entry(record.exclusion_reason.clone().unwrap_or_default())
                    .or_default()
                    .push(record.enrollment_id.clone()),
                _ => {}
            }
        }
        let groups = |map: BTreeMap<String, Vec<String>>| {
            let mut groups: Vec<FailureGroup> = map
                .into_iter()
                .map(|(reason, devices)| FailureGroup { reason, devices })
                .collect();
            groups.sort_by_key(|group| std::cmp::Reverse(group.devices.len()));
            groups
        };
        Ok(RolloutDetail {
            summary: summary(&rollout, &records),
            details_url: rollout.details_url.clone(),
            scoped: !store.rollout_scope(id).await?.is_empty(),
            funnel: counts
                .into_values()
                .map(|(phase, count)| FunnelStep {
                    phase: phase.as_str().to_owned(),
                    count,
                })
                .collect(),
            failures: groups(failures),
            exclusions: groups(exclusions),
        })
    }

    /// Retries a rollout's failed devices; returns how many.
    pub async fn retry_failed(&self, id: i64) -> Result<usize, AppError> {
        let retried = self.console().retry_failed(id).await?;
        self.console().drain_outbox().await?;
        self.invalidate();
        Ok(retried)
    }

    /// Pauses a rollout.
    pub async fn pause_rollout(&self, id: i64) -> Result<(), AppError> {
        Ok(self.console().pause_rollout(id).await?)
    }

    /// Resumes a rollout.
    pub async fn resume_rollout(&self, id: i64) -> Result<(), AppError> {
        Ok(self.console().resume_rollout(id).await?)
    }

    /// Cancels a rollout: unassigns everything it assigned.
    pub async fn cancel_rollout(&self, id: i64) -> Result<(), AppError> {
        self.console().cancel_rollout(id).await?;
        self.console().drain_outbox().await?;
        self.invalidate();
        Ok(())
    }

    /// A rollout as CSV, one line per device.
    pub async fn rollout_csv(&self, id: i64) -> Result<String, AppError> {
        let records = self.store().enforcements(id).await?;
        let ids: Vec<String> = records.iter().map(|r| r.enrollment_id.clone()).collect();
        let devices: HashMap<String, DeviceRow> = self
            .store()
            .devices_by_ids(&ids)
            .await?
            .into_iter()
            .map(|d| (d.facts.enrollment_id.clone(), d))
            .collect();
        let mut csv = String::from(
            "enrollment_id,name,serial_number,model,os_version,build,phase,target_version,target_build,deadline_local,failure_reason,exclusion_reason,last_report_at\r\n",
        );
        for record in &records {
            let device = devices.get(&record.enrollment_id);
            let facts = device.map(|d| &d.facts);
            let cells = [
                record.enrollment_id.clone(),
                device.and_then(|d| d.name.clone()).unwrap_or_default(),
                facts
                    .and_then(|f| f.serial_number.clone())
                    .unwrap_or_default(),
                facts.and_then(|f| f.model.clone()).unwrap_or_default(),
                facts.and_then(|f| f.os_version.clone()).unwrap_or_default(),
                facts.and_then(|f| f.build.clone()).unwrap_or_default(),
                record.phase.as_str().to_owned(),
                record.target_version.clone(),
                record.target_build.clone().unwrap_or_default(),
                record.deadline.format("%Y-%m-%dT%H:%M:%S").to_string(),
                record.failure_reason.clone().unwrap_or_default(),
                record.exclusion_reason.clone().unwrap_or_default(),
                record
                    .last_report_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            ];
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            csv.push_str(&line.join(","));
            csv.push_str("\r\n");
        }
        Ok(csv)
    }

    /// Writes the rollout's CSV into `folder` as `updraft-rollout-<id>.csv`, and says so in the
    /// audit log (an export carries every device's serial number out of the console).
    pub async fn export_rollout_csv(
        &self,
        id: i64,
        folder: &Path,
    ) -> Result<std::path::PathBuf, AppError> {
        let csv = self.rollout_csv(id).await?;
        let devices = csv.lines().count().saturating_sub(1);
        let path = folder.join(format!("updraft-rollout-{id}.csv"));
        std::fs::create_dir_all(folder)
            .and_then(|()| std::fs::write(&path, csv))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        self.console()
            .record(
                "rollout_exported",
                &format!("rollout {id}: {devices} devices to {}", path.display()),
            )
            .await?;
        Ok(path)
    }

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

    /// The newest alerts, newest first.
    pub async fn alerts(&self, limit: i64) -> Result<Vec<AlertView>, AppError> {
        let alerts = self.store().newest_alerts(limit).await?;
        self.alert_views(alerts).await
    }

    async fn alert_views(
        &self,
        alerts: Vec<updraft_store::Alert>,
    ) -> Result<Vec<AlertView>, AppError> {
        let table = self.table().await?;
        Ok(alerts
            .into_iter()
            .map(|alert| AlertView {
                device_name: alert
                    .enrollment_id
                    .as_deref()
                    .and_then(|id| table.row(id))
                    .map(|r| r.name.clone()),
                id: alert.id,
                at: alert.at,
                kind: alert.kind,
                device: alert.enrollment_id,
                rollout: alert.rollout_id,
                detail: alert.detail,
            })
            .collect())
    }

    /// Alerts raised after `after`, grouped into desktop notices, and the newest alert's id.
    pub async fn notices_after(&self, after: i64) -> Result<(Vec<notices::Notice>, i64), AppError> {
        let alerts = self.store().alerts_after(after, 100_000).await?;
        let last = alerts.last().map_or(after, |a| a.id);
        let table = self.table().await?;
        let notices = notices::group(&alerts, |id| table.row(id).map(|r| r.name.clone()));
        Ok((notices, last))
    }

    /// The newest alert's id (notices start after it).
    pub async fn last_alert_id(&self) -> Result<i64, AppError> {
        Ok(self
            .store()
            .newest_alerts(1)
            .await?
            .first()
            .map_or(0, |a| a.id))
    }

    /// The audit log, newest first.
    pub async fn audit(&self, limit: i64) -> Result<Vec<AuditView>, AppError> {
        Ok(self
            .store()
            .audit_log(limit)
            .await?
            .into_iter()
            .map(|e| AuditView {
                at: e.at,
                actor: e.actor,
                action: e.action,
                detail: e.detail,
            })
            .collect())
    }
}

/// The order devices move through a rollout; the funnel shows phases in it.
const FUNNEL: [Phase; 15] = [
    Phase::Planned,
    Phase::Assigned,
    Phase::Pushed,
    Phase::Active,
    Phase::Waiting,
    Phase::Downloading,
    Phase::Prepared,
    Phase::Installing,
    Phase::Updated,
    Phase::Unassigned,
    Phase::CleanedUp,
    Phase::Failed,
    Phase::Invalid,
    Phase::Excluded,
    Phase::Cancelled,
];

/// Whether a device in this phase still holds (or is being given) the declaration.
fn holds_declaration(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Assigned
            | Phase::Pushed
            | Phase::Active
            | Phase::Invalid
            | Phase::Waiting
            | Phase::Downloading
            | Phase::Prepared
            | Phase::Installing
            | Phase::Failed
            | Phase::Updated
    )
}

fn summary(rollout: &updraft_store::Rollout, records: &[Enforcement]) -> RolloutSummary {
    let count = |f: &dyn Fn(Phase) -> bool| records.iter().filter(|r| f(r.phase)).count();
    let in_progress = count(&|p| {
        !matches!(
            p,
            Phase::Updated
                | Phase::Unassigned
                | Phase::CleanedUp
                | Phase::Failed
                | Phase::Invalid
                | Phase::Excluded
                | Phase::Cancelled
        )
    });
    // An active rollout with every device final reads as complete; it still takes in devices
    // that enroll later, and its failed devices can still be retried.
    let state = match rollout.state {
        RolloutState::Active if in_progress == 0 && !records.is_empty() => RolloutStatus::Complete,
        RolloutState::Active => RolloutStatus::Active,
        RolloutState::Paused => RolloutStatus::Paused,
        RolloutState::Cancelled => RolloutStatus::Cancelled,
    };
    RolloutSummary {
        id: rollout.id,
        wave: rollout.wave,
        platform: rollout.release.platform.to_string(),
        label: rollout.release.label(),
        deadline: rollout.deadline_local.clone(),
        state,
        total: records.len(),
        updated: count(&|p| matches!(p, Phase::Updated | Phase::Unassigned | Phase::CleanedUp)),
        failed: count(&|p| matches!(p, Phase::Failed | Phase::Invalid)),
        excluded: count(&|p| p == Phase::Excluded),
        in_progress,
    }
}

fn platform_name(device: &DeviceRow) -> String {
    device
        .facts
        .platform()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn row_view(device: &DeviceRow, newest: Option<&(i64, String)>) -> DeviceRowView {
    let facts = &device.facts;
    let os = match (&facts.os_version, facts.extra.as_str()) {
        (Some(version), "") => version.clone(),
        (Some(version), extra) => format!("{version} {extra}"),
        (None, _) => String::new(),
    };
    DeviceRowView {
        id: facts.enrollment_id.clone(),
        name: device.name.clone().unwrap_or_default(),
        serial: facts.serial_number.clone().unwrap_or_default(),
        model: facts.model.clone().unwrap_or_default(),
        platform: platform_name(device),
        os,
        build: facts
            .supplemental_build
            .clone()
            .or_else(|| facts.build.clone())
            .unwrap_or_default(),
        state: newest.map_or("none".into(), |(_, phase)| phase.as_str().into()),
        rollout: newest.map(|(id, _)| *id),
        last_report: device.last_report_at.clone(),
    }
}

fn summary_view(
    device: updraft_store::DeviceSummary,
    newest: Option<&(i64, updraft_engine::Phase)>,
) -> DeviceRowView {
    let os = match (device.os_version, device.extra.as_str()) {
        (Some(version), "") => version,
        (Some(version), extra) => format!("{version} {extra}"),
        (None, _) => String::new(),
    };
    let platform = device
        .model_family
        .as_deref()
        .or(device.model.as_deref())
        .and_then(updraft_engine::plan::platform_of_model)
        .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    DeviceRowView {
        id: device.enrollment_id,
        name: device.name.unwrap_or_default(),
        serial: device.serial_number.unwrap_or_default(),
        model: device.model.unwrap_or_default(),
        platform,
        os,
        build: device
            .supplemental_build
            .or(device.build)
            .unwrap_or_default(),
        state: newest.map_or("none".into(), |(_, phase)| phase.as_str().into()),
        rollout: newest.map(|(id, _)| *id),
        last_report: device.last_report_at,
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

/// A CSV cell, quoted when needed; a cell that a spreadsheet would run as a formula is prefixed
/// with an apostrophe (device names come from devices).
fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
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

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    }
}
