//! The lab: the DDM server, a simulated fleet and the console in one process, talking over
//! loopback HTTP only. The console learns about devices only through its `MdmBackend` client and
//! the server; the devices only through the check-in endpoint. Time is a manual clock moved in
//! steps, so a rollout of two weeks runs in seconds, and the same seed gives the same report.
#![deny(missing_docs)]

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use updraft_clock::{Clock, ManualClock, SharedClock};
use updraft_console::{Console, RingStart};
pub use updraft_engine::AlertKind;
use updraft_engine::plan::Release;
use updraft_engine::policy::{PolicyAction, ReleasePolicy};
use updraft_engine::rings::{Gate, Membership, Ring, RingPlan, Weekends};
use updraft_engine::{Enforcement, EventKind, Phase, RolloutState};
use updraft_feed::{LookupResponse, Platform};
use updraft_mdm::{
    Deployment, KmfddmClient, MdmError, PollingStatusSource, StatusSource, parse_enrollment_list,
};
use updraft_server::identity::DeviceTrust;
use updraft_server::{
    ApnsPusher, AppState, Db, DdmForwarding, Enqueuer, Limits, NoPusher, SealingKey, ServerConfig,
    WebhookConfig,
};
use updraft_sim::{DeviceSpec, Endpoints, Fleet, FleetPlan, IdentityIssuer};

pub use updraft_mdm::ServerProfile;

/// What `Lab::start` builds for a server: the fleet, the admin client, the console's backend,
/// and the embedded server's pusher.
type Parts = (
    Arc<Fleet>,
    Arc<KmfddmClient>,
    Arc<Deployment>,
    Option<Arc<ApnsPusher>>,
);
use updraft_store::Store;

/// The name the lab saves its policies' ring plan under.
const POLICY_PLAN: &str = "lab rings";

/// How to run the lab.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Fleet size.
    pub devices: usize,
    /// Seed for the fleet and its faults.
    pub seed: u64,
    /// Share of devices with a fault.
    pub failure_rate: f64,
    /// The lookup-service response to take releases and versions from.
    pub feed: LookupResponse,
    /// Where the databases go.
    pub dir: PathBuf,
    /// Simulated minutes per step.
    pub step_minutes: i64,
    /// Give up after this many simulated days.
    pub max_days: i64,
    /// Roll out this release instead of the newest per platform (a BSI, for one).
    pub releases: Option<Vec<Release>>,
    /// Devices to use instead of generating them.
    pub fleet: Option<Vec<DeviceSpec>>,
    /// Stop after this many steps (to test a restart in the middle of a rollout).
    pub stop_after_steps: Option<usize>,
    /// The DDM server: the embedded one, or a real one started elsewhere.
    pub server: LabServer,
    /// Roll each release out in these rings, from the lab's first day, instead of one wave.
    pub rings: Option<RingPlan>,
    /// Later captures of the lookup service, oldest first, each taking the place of the feed at
    /// 00:00 UTC on its date: releases appear in the middle of a run.
    pub feed_history: Vec<(NaiveDate, LookupResponse)>,
    /// Release policies instead of rollouts started at once: every platform of the fleet gets a
    /// policy that starts its newest release in these rings when the lookup service lists it
    /// (base date its posting date; offsets halved when it fixes an exploited CVE).
    pub policy: Option<RingPlan>,
    /// The first day (default: the day after the feed's newest posting date).
    pub start: Option<NaiveDate>,
}

/// Which DDM server the lab's fleet and console use.
#[derive(Debug, Clone, Default)]
pub enum LabServer {
    /// Updraft's server in this process, on the lab's clock, pushing through the fleet's gateway.
    #[default]
    Embedded,
    /// A server started elsewhere (`updraft serve`, NanoHUB).
    External(Box<ExternalServer>),
}

/// A DDM server started elsewhere, as the fleet and the console reach it.
#[derive(Debug, Clone)]
pub struct ExternalServer {
    /// The devices' MDM URL (`ServerURL` and `CheckInURL`, one endpoint as NanoMDM's `/mdm`).
    pub mdm_url: String,
    /// The admin API (KMFDDM's): address, prefix, user, key.
    pub ddm_api: ServerProfile,
    /// The CA that issues the devices' identities (certificate and key, PEM), one the server
    /// trusts (NanoHUB's `-ca`). Without it devices send no signature (`updraft serve`).
    pub identity_ca: Option<(String, String)>,
    /// Where the console reads devices' status.
    pub status: ExternalStatus,
    /// How often each device connects on its own (the server cannot push from here).
    pub connect_every: Duration,
}

/// Where the console reads status from an external server.
#[derive(Debug, Clone)]
pub enum ExternalStatus {
    /// The server's own status-changes feed (`updraft serve`).
    Feed,
    /// A webhook companion in this process, on the lab's clock, listening at `listen`
    /// (NanoHUB's `-webhook-url http://<listen>/webhook`).
    Webhook {
        /// The address to listen on.
        listen: std::net::SocketAddr,
        /// NanoHUB's `-webhook-hmac-key`.
        hmac_key: Option<Vec<u8>>,
        /// NanoMDM's enqueue API, to ask new devices their name and zone.
        enqueue: Option<Enqueuer>,
    },
    /// Polling KMFDDM's `status-report` for the fleet's ids (imported as a list), this often.
    Poll {
        /// Simulated time between polls.
        every: Duration,
    },
}

impl LabConfig {
    /// A configuration with the usual step and horizon.
    pub fn new(devices: usize, seed: u64, feed: LookupResponse, dir: PathBuf) -> Self {
        Self {
            devices,
            seed,
            failure_rate: 0.05,
            feed,
            dir,
            step_minutes: 15,
            max_days: 21,
            releases: None,
            fleet: None,
            stop_after_steps: None,
            server: LabServer::Embedded,
            rings: None,
            feed_history: Vec::new(),
            policy: None,
            start: None,
        }
    }

    /// Replays one capture as history: the lab starts on `from` with the feed as it stood
    /// then, and each later posting date brings the releases posted that day. Release
    /// policies in `plan` act on them.
    pub fn replay(&mut self, capture: &LookupResponse, from: NaiveDate, plan: RingPlan) {
        self.feed = capture.as_of(from);
        self.feed_history = capture
            .posting_dates()
            .into_iter()
            .filter(|day| *day > from)
            .map(|day| (day, capture.as_of(day)))
            .collect();
        self.start = Some(from);
        self.policy = Some(plan);
    }

    /// The newest capture the run will see: what Apple's servers hold for the devices.
    fn last_feed(&self) -> &LookupResponse {
        self.feed_history
            .last()
            .map_or(&self.feed, |(_, feed)| feed)
    }
}

/// The three rings `updraft lab --rings` rolls out in: IT (10% of the fleet) on day 0, a pilot
/// (30%) on day 2, everyone else on day 4, at 17:00 on each device's clock; each ring starts when
/// the one before has 90% updated, and more than 5% failed halts the rest.
pub fn standard_rings() -> RingPlan {
    let ring = |name: &str, membership, offset_days| Ring {
        name: name.into(),
        membership,
        offset_days,
        time_of_day: NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default(),
    };
    RingPlan {
        rings: vec![
            ring("IT", Membership::Share(10), 0),
            ring("Pilot", Membership::Share(30), 2),
            ring("Everyone", Membership::Rest, 4),
        ],
        weekends: Weekends::Allowed,
        after_hours: None,
        gate: Gate::default(),
    }
}

/// A ring's wave as the report tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRing {
    /// Its deadline on each device's clock.
    pub deadline: String,
    /// `macOS`, `iOS`.
    pub platform: String,
    /// Its wave number.
    pub wave: u32,
    /// Its ring's name (none for the first ring, which waits on no gate).
    pub ring: Option<String>,
    /// `active`, `gated`, `halted`...
    pub state: String,
    /// Devices with a record.
    pub devices: usize,
    /// Updated.
    pub updated: usize,
    /// Failed.
    pub failed: usize,
    /// Why its gate halted it.
    pub halt_reason: Option<String>,
}

/// One timeline entry in the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportEvent {
    /// RFC 3339, simulated time.
    pub at: String,
    /// Kind.
    pub kind: EventKind,
    /// Detail.
    pub detail: String,
}

/// One device in the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportDevice {
    /// UDID.
    pub id: String,
    /// Model identifier.
    pub model: String,
    /// SoftwareUpdateDeviceID the console used.
    pub device_id: Option<String>,
    /// macOS or iOS.
    pub platform: String,
    /// IANA zone, as the console learnt it from the server (empty while unknown).
    pub time_zone: String,
    /// OS at the start.
    pub from_version: String,
    /// Build at the start.
    pub from_build: String,
    /// Target version.
    pub target_version: Option<String>,
    /// Target build.
    pub target_build: Option<String>,
    /// OS at the end, as the console knows it.
    pub final_version: Option<String>,
    /// Build at the end (the supplemental build for a BSI).
    pub final_build: Option<String>,
    /// Final state.
    pub state: String,
    /// Why excluded.
    pub exclusion_reason: Option<String>,
    /// Why failed.
    pub failure_reason: Option<String>,
    /// Whether a bootstrap token is escrowed.
    pub bootstrap_token_escrowed: bool,
    /// Enforcement declarations still assigned on the server.
    pub declarations_assigned: Vec<String>,
    /// Timeline, oldest first.
    pub events: Vec<ReportEvent>,
}

/// One alert.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportAlert {
    /// When.
    pub at: String,
    /// Kind.
    pub kind: AlertKind,
    /// The device.
    pub device: Option<String>,
    /// Detail.
    pub detail: String,
}

/// A released target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportRelease {
    /// Platform.
    pub platform: String,
    /// Version.
    pub product_version: String,
    /// Its builds.
    pub builds: Vec<String>,
}

/// The lab's report (the `updraft lab --json` contract).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabReport {
    /// Simulated start, RFC 3339.
    pub started_at: String,
    /// What was rolled out.
    pub releases: Vec<ReportRelease>,
    /// Every device.
    pub devices: Vec<ReportDevice>,
    /// Every alert.
    pub alerts: Vec<ReportAlert>,
    /// Devices per final state.
    pub summary: BTreeMap<String, usize>,
    /// Each ring's wave, when the releases went out in rings (absent otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rings: Vec<ReportRing>,
}

/// Counters of a run, for benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LabStats {
    /// Steps taken.
    pub steps: usize,
    /// Simulated time at the end.
    pub ended_at: String,
    /// HTTP requests devices sent.
    pub device_requests: u64,
    /// Pushes delivered.
    pub pushes: u64,
    /// Errors devices met (a correct server gives none).
    pub device_errors: Vec<String>,
    /// Pushes the server could not deliver.
    pub push_failures: u64,
    /// Wall-clock seconds spent in each part of a step (devices, console sync, outbox, console
    /// tick, settled check), to see where a large lab spends its time.
    pub seconds: BTreeMap<&'static str, f64>,
}

/// Wall-clock time per part of the step loop (a measurement only: simulated time is the clock's).
#[derive(Default)]
struct Stopwatch(std::sync::Mutex<BTreeMap<&'static str, f64>>);

impl Stopwatch {
    async fn time<T>(&self, part: &'static str, work: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = work.await;
        if let Ok(mut parts) = self.0.lock() {
            *parts.entry(part).or_default() += started.elapsed().as_secs_f64();
        }
        out
    }
}

/// The newest non-BSI release per platform available on `day`, with the builds of it that are
/// available then (iOS' twin builds both: which one a device gets is the device's business).
pub fn newest_releases(feed: &LookupResponse, day: NaiveDate) -> Vec<Release> {
    let releases = updraft_feed::releases::releases(feed);
    let platforms: BTreeSet<Platform> = releases.iter().map(|r| r.platform).collect();
    platforms
        .into_iter()
        .filter_map(|platform| updraft_engine::policy::newest(&releases, platform, day))
        .map(|release| {
            let mut release = release.clone();
            release
                .builds
                .retain(|b| b.build.is_some() && b.window.contains(day));
            Release::from(&release)
        })
        .collect()
}

/// The lab's start: 09:00 UTC on the day after the feed's newest posting date.
pub fn start_of(feed: &LookupResponse) -> DateTime<Utc> {
    let newest = feed
        .entries()
        .map(|e| e.entry.posting_date)
        .max()
        .unwrap_or_default();
    nine_utc(newest + Duration::days(1))
}

fn nine_utc(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default())
        .and_utc()
}

/// The running parts, kept so a test can stop and restart the console in the middle.
pub struct Lab {
    /// The clock.
    pub clock: Arc<ManualClock>,
    /// The fleet.
    pub fleet: Arc<Fleet>,
    /// The console.
    pub console: Console,
    /// The server's admin client.
    pub client: Arc<KmfddmClient>,
    /// What the console talks to: the server, with status from it or from elsewhere.
    backend: Arc<Deployment>,
    /// The fleet's specs.
    pub specs: Vec<DeviceSpec>,
    /// Rollout ids.
    pub rollouts: Vec<(i64, Release)>,
    /// Whether each release went out in rings (`LabConfig::rings`).
    pub in_rings: bool,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Captures still to take effect, oldest first.
    pending_feeds: Vec<(NaiveDate, LookupResponse)>,
    /// The embedded server's pusher (none for an external server).
    pusher: Option<Arc<ApnsPusher>>,
    stopwatch: Stopwatch,
    console_db: PathBuf,
}

impl Lab {
    /// Starts the server and the fleet's push gateway on loopback, and the console.
    pub async fn start(config: &LabConfig) -> anyhow::Result<Self> {
        let started_at = config
            .start
            .map_or_else(|| start_of(&config.feed), nine_utc);
        let clock = Arc::new(ManualClock::new(started_at));
        let shared: SharedClock = clock.clone();
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("creating {}", config.dir.display()))?;

        let specs = match &config.fleet {
            Some(specs) => specs.clone(),
            None => updraft_sim::generate(
                &FleetPlan {
                    devices: config.devices,
                    seed: config.seed,
                    failure_rate: config.failure_rate,
                    start: started_at.date_naive(),
                },
                &config.feed,
            ),
        };
        let (fleet, client, backend, pusher) = match &config.server {
            LabServer::Embedded => Self::embedded(config, &specs, shared.clone()).await?,
            LabServer::External(external) => {
                Self::external(config, external, &specs, shared.clone()).await?
            }
        };
        let console_db = config.dir.join("console.db");
        let console = Self::console(&console_db, backend.clone(), shared.clone()).await?;
        Ok(Self {
            clock,
            fleet,
            console,
            client,
            backend,
            specs,
            rollouts: Vec::new(),
            in_rings: false,
            started_at,
            pending_feeds: config.feed_history.clone(),
            pusher,
            stopwatch: Stopwatch::default(),
            console_db,
        })
    }

    /// Updraft's server in this process, pushing through the fleet's gateway.
    async fn embedded(
        config: &LabConfig,
        specs: &[DeviceSpec],
        clock: SharedClock,
    ) -> anyhow::Result<Parts> {
        let server_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let gateway_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server_url = format!("http://{}", server_listener.local_addr()?);
        let gateway_url = format!("http://{}", gateway_listener.local_addr()?);
        // Devices prove who they are as real ones do: an identity from a CA the server trusts.
        let issuer = Arc::new(IdentityIssuer::generate("Updraft lab device CA")?);
        let device_trust = DeviceTrust::from_pem(&[issuer.ca_pem().as_bytes().to_vec()], None)
            .map_err(anyhow::Error::msg)?;
        let fleet = Fleet::with_endpoints(
            specs.to_vec(),
            Endpoints::updraft(&server_url, issuer).with_software_from(config.last_feed()),
            clock.clone(),
        )?;
        let gateway = fleet.gateway();
        tokio::spawn(async move { axum::serve(gateway_listener, gateway).await });

        let api_key = format!("lab-{}", config.seed);
        let pusher = Arc::new(ApnsPusher::gateway(&gateway_url)?);
        let db = Db::open(&config.dir.join("server.db")).await?;
        let state = AppState::new(ServerConfig {
            db,
            clock,
            pusher: pusher.clone(),
            sealing_key: SealingKey::load_or_create(&config.dir.join("server.key"))?,
            api_key: Some(api_key.clone()),
            forwarding: DdmForwarding::Off,
            device_trust: Some(device_trust),
            push_certificate: None,
            webhook: None,
            limits: Limits::default(),
        });
        let app = updraft_server::app(state);
        tokio::spawn(async move { axum::serve(server_listener, app).await });
        let client = Arc::new(KmfddmClient::updraft(&server_url, &api_key)?);
        let backend = Arc::new(Deployment::single(client.clone()));
        Ok((fleet, client, backend, Some(pusher)))
    }

    /// A server started elsewhere: devices enroll into it with identities from its CA and
    /// connect on their own schedule; the console reads status from the server's feed, from a
    /// webhook companion here, or by polling.
    async fn external(
        config: &LabConfig,
        external: &ExternalServer,
        specs: &[DeviceSpec],
        clock: SharedClock,
    ) -> anyhow::Result<Parts> {
        let identities = match &external.identity_ca {
            Some((certificate, key)) => Some(Arc::new(
                IdentityIssuer::from_pem(certificate, key).context("--identity-ca")?,
            )),
            None => None,
        };
        let endpoints = Endpoints {
            checkin_url: external.mdm_url.clone(),
            connect_url: external.mdm_url.clone(),
            identities,
            connect_every: Some(external.connect_every),
            software: Arc::new(updraft_sim::SoftwareCatalog::from_feed(config.last_feed())),
        };
        let fleet = Fleet::with_endpoints(specs.to_vec(), endpoints, clock.clone())?;
        let client = Arc::new(KmfddmClient::new(external.ddm_api.clone())?);
        let status: Arc<dyn StatusSource> = match &external.status {
            ExternalStatus::Feed => client.clone(),
            ExternalStatus::Webhook {
                listen,
                hmac_key,
                enqueue,
            } => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("--webhook-listen {listen}"))?;
                let url = format!("http://{}", listener.local_addr()?);
                let api_key = format!("companion-{}", config.seed);
                let state = AppState::new(ServerConfig {
                    db: Db::open(&config.dir.join("companion.db")).await?,
                    clock,
                    pusher: Arc::new(NoPusher),
                    sealing_key: SealingKey::load_or_create(&config.dir.join("companion.key"))?,
                    api_key: Some(api_key.clone()),
                    forwarding: DdmForwarding::Off,
                    device_trust: None,
                    push_certificate: None,
                    webhook: Some(WebhookConfig {
                        hmac_key: hmac_key.clone(),
                        enqueue: enqueue.clone(),
                    }),
                    limits: Limits::default(),
                });
                let app = updraft_server::app(state);
                tokio::spawn(async move { axum::serve(listener, app).await });
                Arc::new(KmfddmClient::updraft(&url, &api_key)?)
            }
            ExternalStatus::Poll { every } => {
                // The admin's imported list: the fleet's ids, nothing more (names and zones
                // cannot be read back from a stock NanoHUB).
                let list: String = specs.iter().map(|s| format!("{}\n", s.udid)).collect();
                Arc::new(PollingStatusSource::new(
                    client.clone(),
                    parse_enrollment_list(&list)?,
                    clock,
                    *every,
                ))
            }
        };
        let backend = Arc::new(Deployment::with_status(client.clone(), status));
        Ok((fleet, client, backend, None))
    }

    /// The console learns names and time zones as any console does, from the server (the
    /// devices' answers to DeviceInformation), never from the fleet's specs.
    async fn console(
        path: &Path,
        backend: Arc<Deployment>,
        clock: SharedClock,
    ) -> anyhow::Result<Console> {
        let store = Store::open(path).await?;
        Ok(Console::new(store, backend, clock))
    }

    /// Replaces the console with a fresh one on the same database, as after a crash and restart.
    pub async fn restart_console(&mut self) -> anyhow::Result<()> {
        let clock: SharedClock = self.clock.clone();
        self.console = Self::console(&self.console_db, self.backend.clone(), clock).await?;
        Ok(())
    }

    /// Puts the base declarations on the server, enrolls the fleet and lets the console learn it.
    pub async fn enroll(&self) -> anyhow::Result<()> {
        self.console.prepare_server().await?;
        self.fleet.tick().await;
        self.console.sync().await?;
        self.console.drain_outbox().await?;
        Ok(())
    }

    /// Enrolls the fleet and starts the rollouts (the newest release per platform, or the given).
    pub async fn begin(&mut self, config: &LabConfig) -> anyhow::Result<()> {
        self.enroll().await?;
        if let Some(plan) = &config.policy {
            self.in_rings = true;
            self.console
                .store()
                .put_ring_plan(POLICY_PLAN, plan)
                .await?;
            for platform in self.platforms() {
                self.console
                    .store()
                    .put_policy(&ReleasePolicy {
                        platform,
                        plan: POLICY_PLAN.into(),
                        base_delay_days: 0,
                        action: PolicyAction::Start,
                        exploited_percent: Some(50),
                        since: self.started_at.date_naive(),
                    })
                    .await?;
            }
            return self.apply_policies(&config.feed).await;
        }
        let releases = match &config.releases {
            Some(releases) => releases.clone(),
            None => newest_releases(&config.feed, self.started_at.date_naive()),
        };
        let platforms = self.platforms();
        // The deadline: five days out, 17:00 on each device's clock.
        let deadline = NaiveDateTime::new(
            self.started_at.date_naive() + Duration::days(5),
            NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default(),
        );
        for release in releases
            .into_iter()
            .filter(|r| platforms.contains(&r.platform))
        {
            if let Some(rings) = &config.rings {
                self.in_rings = true;
                let ids = self
                    .console
                    .start_rings(RingStart {
                        release: &release,
                        plan: rings,
                        saved_as: None,
                        base: self.started_at.date_naive(),
                        details_url: Some("https://it.example.com/updates"),
                        majors: &updraft_engine::rings::majors_of(
                            &updraft_feed::releases::releases(&config.feed),
                            release.platform,
                        ),
                    })
                    .await?;
                self.rollouts
                    .extend(ids.into_iter().map(|id| (id, release.clone())));
                continue;
            }
            let id = self
                .console
                .start_rollout(
                    release.clone(),
                    deadline,
                    Some("https://it.example.com/updates"),
                )
                .await?;
            self.rollouts.push((id, release));
        }
        Ok(())
    }

    /// The platforms the fleet has devices of.
    fn platforms(&self) -> BTreeSet<Platform> {
        self.specs
            .iter()
            .map(|s| {
                if s.family == "Mac" {
                    Platform::MacOs
                } else {
                    Platform::Ios
                }
            })
            .collect()
    }

    /// The feed poll as the console does it: the release policies read the feed of the day.
    async fn apply_policies(&mut self, feed: &LookupResponse) -> anyhow::Result<()> {
        let releases = updraft_feed::releases::releases(feed);
        let sofa = updraft_feed::sofa::bundled()?;
        let today = self.clock.now().date_naive();
        for outcome in self.console.apply_policies(&releases, &sofa, today).await? {
            let rollouts = self.console.store().rollouts().await?;
            for id in outcome.rollouts {
                if let Some(rollout) = rollouts.iter().find(|r| r.id == id) {
                    self.rollouts.push((id, rollout.release.clone()));
                }
            }
        }
        Ok(())
    }

    /// Puts in place every capture whose date has come, and lets the policies read it.
    async fn take_new_feeds(&mut self) -> anyhow::Result<()> {
        let today = self.clock.now().date_naive();
        let due = self
            .pending_feeds
            .iter()
            .take_while(|(day, _)| *day <= today)
            .count();
        let newest = self.pending_feeds.drain(..due).next_back();
        if let Some((_, feed)) = newest {
            self.apply_policies(&feed).await?;
        }
        Ok(())
    }

    /// One step: time moves, devices act, the console reads their news and acts on it.
    pub async fn step(&self, minutes: i64, tick_console: bool) -> anyhow::Result<()> {
        let time = &self.stopwatch;
        self.clock.advance(Duration::minutes(minutes));
        time.time("devices", self.fleet.tick()).await;
        time.time("console sync", self.console.sync()).await?;
        time.time("console outbox", self.console.drain_outbox())
            .await?;
        if tick_console {
            time.time("console tick", self.console.tick()).await?;
            time.time("console outbox", self.console.drain_outbox())
                .await?;
        }
        Ok(())
    }

    /// Whether every device of every rollout reached a final state and nothing is pending.
    pub async fn settled(&self) -> anyhow::Result<bool> {
        if !self.pending_feeds.is_empty()
            || !self.console.store().pending_outbox(1).await?.is_empty()
        {
            return Ok(false);
        }
        let rollouts = self.console.store().rollouts().await?;
        for (id, release) in &self.rollouts {
            let state_of = |id: i64| rollouts.iter().find(|r| r.id == id).map(|r| r.state);
            let rollout = rollouts.iter().find(|r| r.id == *id);
            match rollout.map(|r| (r.state, r.gate.as_ref().map(|g| g.after))) {
                // A halted ring, and the rings behind it, wait for an admin the lab does not have.
                Some((RolloutState::Halted, _)) => continue,
                Some((RolloutState::Gated, Some(after)))
                    if matches!(
                        state_of(after),
                        Some(RolloutState::Halted | RolloutState::Gated)
                    ) =>
                {
                    continue;
                }
                Some((RolloutState::Gated, _)) => return Ok(false),
                _ => {}
            }
            let (total, open) = self.console.store().rollout_counts(*id).await?;
            let scope = self.console.store().rollout_scope(*id).await?.len();
            let expected = match scope {
                0 => self
                    .specs
                    .iter()
                    .filter(|s| (s.family == "Mac") == (release.platform == Platform::MacOs))
                    .count(),
                scoped => scoped,
            };
            if total < expected as i64 || open > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Steps until settled or out of time.
    pub async fn run_to_end(&mut self, config: &LabConfig) -> anyhow::Result<LabStats> {
        let steps_per_day = (24 * 60 / config.step_minutes.max(1)) as usize;
        let max_steps = steps_per_day * config.max_days.max(1) as usize;
        let mut steps = 0;
        while steps < max_steps && config.stop_after_steps.is_none_or(|stop| steps < stop) {
            steps += 1;
            // Time-based flags (stale, past deadline) every two simulated hours are plenty.
            let flags_due = steps % (120 / config.step_minutes.clamp(1, 120) as usize).max(1) == 0;
            self.step(config.step_minutes, flags_due).await?;
            self.take_new_feeds().await?;
            if steps % 4 == 0 && self.stopwatch.time("settled", self.settled()).await? {
                break;
            }
        }
        Ok(LabStats {
            steps,
            ended_at: self.clock.now().to_rfc3339(),
            device_requests: self.fleet.requests().await,
            pushes: self.fleet.pushes(),
            device_errors: self.fleet.errors(),
            push_failures: self.pusher.as_ref().map_or(0, |p| p.failures()),
            seconds: self
                .stopwatch
                .0
                .lock()
                .map(|parts| parts.clone())
                .unwrap_or_default(),
        })
    }

    /// Starts, enrolls, rolls out and runs to the end; the lab is handed back for its report
    /// to be read or streamed.
    pub async fn run(config: &LabConfig) -> anyhow::Result<(Self, LabStats)> {
        let mut lab = Self::start(config).await?;
        lab.begin(config).await?;
        let stats = lab.run_to_end(config).await?;
        Ok((lab, stats))
    }

    /// The report, whole in memory (for tests and small fleets; `write_report_json` streams).
    pub async fn report(&self) -> anyhow::Result<LabReport> {
        let mut devices = Vec::with_capacity(self.specs.len());
        let summary = self
            .report_devices(|device| {
                devices.push(device);
                Ok(())
            })
            .await?;
        Ok(LabReport {
            started_at: self.report_started_at(),
            releases: self.report_releases(),
            devices,
            alerts: self.report_alerts().await?,
            summary,
            rings: self.report_rings().await?,
        })
    }

    /// The report as pretty JSON, the same document as `report()` serialized, written a device
    /// at a time so that a fleet of any size never sits in memory whole.
    pub async fn write_report_json(&self, out: &mut impl std::io::Write) -> anyhow::Result<()> {
        write!(
            out,
            "{{\n  \"started_at\": {},\n  \"releases\": {},\n  \"devices\": [",
            serde_json::to_string(&self.report_started_at())?,
            indented_json(&self.report_releases(), 2)?,
        )?;
        let mut first = true;
        let summary = self
            .report_devices(|device| {
                let separator = if first { "\n" } else { ",\n" };
                first = false;
                write!(out, "{separator}{}", " ".repeat(4))?;
                out.write_all(indented_json(&device, 4)?.as_bytes())?;
                Ok(())
            })
            .await?;
        let close = if first { "]" } else { "\n  ]" };
        write!(
            out,
            "{close},\n  \"alerts\": {},\n  \"summary\": {}",
            indented_json(&self.report_alerts().await?, 2)?,
            indented_json(&summary, 2)?,
        )?;
        let rings = self.report_rings().await?;
        if !rings.is_empty() {
            write!(out, ",\n  \"rings\": {}", indented_json(&rings, 2)?)?;
        }
        writeln!(out, "\n}}")?;
        Ok(())
    }

    /// The report's start, RFC 3339.
    pub fn report_started_at(&self) -> String {
        self.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// What was rolled out.
    pub fn report_releases(&self) -> Vec<ReportRelease> {
        let mut releases: Vec<ReportRelease> = Vec::new();
        for (_, r) in &self.rollouts {
            let release = ReportRelease {
                platform: r.platform.as_str().into(),
                product_version: r.product_version.clone(),
                builds: r.builds.iter().filter_map(|b| b.build.clone()).collect(),
            };
            // A release rolled out in rings is one release.
            if !releases.contains(&release) {
                releases.push(release);
            }
        }
        releases
    }

    /// Each ring's wave when the release went out in rings: (platform, ring, state, devices,
    /// updated, what its gate says).
    pub async fn report_rings(&self) -> anyhow::Result<Vec<ReportRing>> {
        if !self.in_rings {
            return Ok(Vec::new());
        }
        let store = self.console.store();
        let rollouts = store.rollouts().await?;
        let mut rings = Vec::new();
        for rollout in rollouts
            .iter()
            .filter(|r| self.rollouts.iter().any(|(id, _)| *id == r.id))
        {
            let progress = self
                .console
                .ring_progress(rollout.id, self.clock.now())
                .await?;
            rings.push(ReportRing {
                deadline: rollout.deadline_local.clone(),
                platform: rollout.release.platform.as_str().into(),
                wave: rollout.wave,
                ring: rollout.ring.clone(),
                state: rollout.state.as_str().into(),
                devices: progress.devices,
                updated: progress.updated,
                failed: progress.failed,
                halt_reason: rollout.halt_reason.clone(),
            });
        }
        Ok(rings)
    }

    /// Every alert, oldest first.
    pub async fn report_alerts(&self) -> anyhow::Result<Vec<ReportAlert>> {
        Ok(self
            .console
            .store()
            .alerts()
            .await?
            .into_iter()
            .map(|a| ReportAlert {
                at: rfc3339(&a.at),
                kind: a.kind,
                device: a.enrollment_id,
                detail: a.detail,
            })
            .collect())
    }

    /// Hands every device's report entry to `visit`, in the fleet's order, reading the store a
    /// chunk of devices at a time; returns the devices per final state.
    pub async fn report_devices(
        &self,
        mut visit: impl FnMut(ReportDevice) -> anyhow::Result<()>,
    ) -> anyhow::Result<BTreeMap<String, usize>> {
        // Enough devices per read to keep the statements few, few enough to keep memory flat.
        const CHUNK: usize = 2000;
        let store = self.console.store();
        let mut assigned: HashMap<String, Vec<String>> = HashMap::new();
        let assignments = match self.client.all_assignments().await {
            Ok(all) => all,
            // KMFDDM lists no assignments: ask for each device's sets.
            Err(MdmError::Unsupported(_)) => {
                let mut all = Vec::new();
                for spec in &self.specs {
                    for set in self.client.enrollment_sets(&spec.udid).await? {
                        all.push(updraft_mdm::Assignment {
                            enrollment_id: spec.udid.clone(),
                            set,
                        });
                    }
                }
                all
            }
            Err(error) => return Err(error.into()),
        };
        for assignment in assignments {
            if assignment.set.starts_with("com.updraft.su.") {
                let declaration = assignment.set.trim_end_matches(".set").to_owned();
                assigned
                    .entry(assignment.enrollment_id)
                    .or_default()
                    .push(declaration);
            }
        }
        let mut summary: BTreeMap<String, usize> = BTreeMap::new();
        for chunk in self.specs.chunks(CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|s| s.udid.clone()).collect();
            let mut records: HashMap<String, Enforcement> = HashMap::new();
            for (id, _) in &self.rollouts {
                for record in store.enforcements_for(*id, &ids).await? {
                    records.insert(record.enrollment_id.clone(), record);
                }
            }
            let devices: HashMap<String, updraft_store::DeviceRow> = store
                .devices_by_ids(&ids)
                .await?
                .into_iter()
                .map(|d| (d.facts.enrollment_id.clone(), d))
                .collect();
            let mut timelines = store.timelines_of(&ids).await?;
            for spec in chunk {
                let record = records.get(&spec.udid);
                let device = devices.get(&spec.udid);
                let state = record
                    .map_or("not_planned", |r| r.phase.as_str())
                    .to_owned();
                *summary.entry(state.clone()).or_default() += 1;
                let facts = device.map(|d| &d.facts);
                visit(ReportDevice {
                    id: spec.udid.clone(),
                    model: spec.model.clone(),
                    device_id: facts
                        .and_then(|f| f.device_ids())
                        .map(|(ids, _)| ids[0].clone()),
                    platform: if spec.family == "Mac" {
                        "macOS".into()
                    } else {
                        "iOS".into()
                    },
                    // What the console learnt from the server (the device's DeviceInformation
                    // answer), not the simulator's spec: empty while unknown.
                    time_zone: device.and_then(|d| d.time_zone.clone()).unwrap_or_default(),
                    from_version: spec.os_version.clone(),
                    from_build: spec.build.clone(),
                    target_version: record.map(|r| r.target_version.clone()),
                    target_build: record.and_then(|r| r.target_build.clone()),
                    final_version: facts.and_then(|f| f.os_version.clone()),
                    final_build: facts
                        .and_then(|f| f.supplemental_build.clone().or(f.build.clone())),
                    state,
                    exclusion_reason: record.and_then(|r| r.exclusion_reason.clone()),
                    failure_reason: record
                        .filter(|r| r.phase == Phase::Failed)
                        .and_then(|r| r.failure_reason.clone()),
                    bootstrap_token_escrowed: device
                        .is_some_and(|d| d.facts.bootstrap_token_escrowed),
                    declarations_assigned: assigned.remove(&spec.udid).unwrap_or_default(),
                    events: timelines
                        .remove(&spec.udid)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|e| ReportEvent {
                            at: rfc3339(&e.at),
                            kind: e.kind,
                            detail: e.detail,
                        })
                        .collect(),
                })?;
            }
        }
        Ok(summary)
    }
}

/// `value` as pretty JSON whose lines after the first are indented by `indent` spaces, to sit
/// inside an enclosing document written by hand (JSON strings hold no raw line breaks).
fn indented_json(value: &impl Serialize, indent: usize) -> anyhow::Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    Ok(text.replace('\n', &format!("\n{}", " ".repeat(indent))))
}

fn rfc3339(text: &str) -> String {
    DateTime::parse_from_rfc3339(text).map_or_else(
        |_| text.to_owned(),
        |t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        },
    )
}

/// Runs a whole lab: start, enroll, roll out, run to the end, report.
pub async fn run(config: &LabConfig) -> anyhow::Result<(LabReport, LabStats)> {
    let (lab, stats) = Lab::run(config).await?;
    Ok((lab.report().await?, stats))
}
