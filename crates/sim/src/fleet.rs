//! A fleet of simulated devices: built from real models and feed versions by seed, reached by the
//! server's pushes through an APNs-shaped gateway, and driven tick by tick on an injected clock.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{Mutex, Semaphore};

use updraft_clock::SharedClock;
use updraft_ddm::OsVersion;
use updraft_feed::models::known_mac_models;
use updraft_feed::{LookupResponse, SetKind};

use crate::device::{DeviceSpec, Fault, SharedDeclarations, SimDevice, SoftwareCatalog, Transport};
use crate::identity::{DeviceIdentity, IdentityError, IdentityIssuer};

/// Where a fleet's devices reach their MDM server, and how they prove who they are.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The check-in URL (`CheckInURL`): Updraft's `/mdm/checkin`, NanoMDM's `/mdm`.
    pub checkin_url: String,
    /// The command connection (`ServerURL`): Updraft's `/mdm/connect`, NanoMDM's `/mdm` (one
    /// endpoint for both, told apart by Content-Type, as Apple's devices send them).
    pub connect_url: String,
    /// Issues each device's identity certificate; every body is then signed (`Mdm-Signature`).
    pub identities: Option<Arc<IdentityIssuer>>,
    /// For a server that cannot push (no APNs here): each device connects on its own this often.
    pub connect_every: Option<chrono::Duration>,
    /// Apple's software update service: the build a version installs as, when a declaration
    /// names none (empty: the device keeps its build number).
    pub software: Arc<SoftwareCatalog>,
}

impl Endpoints {
    /// The same, with the builds Apple's software update service offers from `feed`.
    pub fn with_software_from(mut self, feed: &LookupResponse) -> Self {
        self.software = Arc::new(SoftwareCatalog::from_feed(feed));
        self
    }

    /// Updraft's server at `base_url`, woken by pushes, each device with an identity from
    /// `identities` (a CA the server trusts with `--device-ca`).
    pub fn updraft(base_url: &str, identities: Arc<IdentityIssuer>) -> Self {
        let base = base_url.trim_end_matches('/');
        Self {
            checkin_url: format!("{base}/mdm/checkin"),
            connect_url: format!("{base}/mdm/connect"),
            identities: Some(identities),
            connect_every: None,
            software: Arc::default(),
        }
    }

    /// NanoMDM's single endpoint at `mdm_url` (`https://host/mdm`).
    pub fn nanomdm(mdm_url: &str, identities: Arc<IdentityIssuer>) -> Self {
        Self {
            checkin_url: mdm_url.to_owned(),
            connect_url: mdm_url.to_owned(),
            identities: Some(identities),
            connect_every: None,
            software: Arc::default(),
        }
    }
}

/// Content types Apple's devices send.
const CHECKIN_TYPE: &str = "application/x-apple-aspen-mdm-checkin";
const CONNECT_TYPE: &str = "application/x-apple-aspen-mdm";

/// The HTTP client devices share.
#[derive(Clone, Debug)]
struct HttpTransport {
    http: reqwest::Client,
    checkin_url: Arc<str>,
    connect_url: Arc<str>,
}

/// One device's transport: the shared client, and the device's identity to sign with.
struct DeviceTransport<'a> {
    shared: &'a HttpTransport,
    identity: Option<&'a DeviceIdentity>,
}

impl DeviceTransport<'_> {
    async fn put(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut request = self
            .shared
            .http
            .put(url)
            .header("content-type", content_type);
        if let Some(identity) = self.identity {
            request = request.header(
                "mdm-signature",
                identity.sign(&body).map_err(|e| e.to_string())?,
            );
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| e.to_string())?.to_vec();
        Ok((status, body))
    }
}

impl Transport for DeviceTransport<'_> {
    async fn checkin(&self, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        self.put(&self.shared.checkin_url, CHECKIN_TYPE, body).await
    }

    async fn connect(&self, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        self.put(&self.shared.connect_url, CONNECT_TYPE, body).await
    }
}

/// A simulated fleet.
pub struct Fleet {
    devices: Vec<Mutex<SimDevice>>,
    woken: Vec<AtomicBool>,
    was_offline: Vec<AtomicBool>,
    /// When each device next has something to do on its own, in epoch milliseconds, so a tick
    /// skips idle devices without touching them.
    next_due: Vec<std::sync::atomic::AtomicI64>,
    by_token: HashMap<String, usize>,
    transport: HttpTransport,
    identities: Vec<Option<DeviceIdentity>>,
    connect_every: Option<chrono::Duration>,
    /// When each device last connected, epoch milliseconds (for `connect_every`).
    last_connect: Vec<std::sync::atomic::AtomicI64>,
    clock: SharedClock,
    concurrency: usize,
    errors: std::sync::Mutex<Vec<String>>,
    pushes: AtomicU64,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("devices", &self.devices.len())
            .finish()
    }
}

/// What the fleet reports of a device at the end.
#[derive(Debug, Clone)]
pub struct DeviceOutcome {
    /// The spec it was built from.
    pub spec: DeviceSpec,
    /// OS version now.
    pub os_version: String,
    /// Build now (the supplemental build if a BSI is installed).
    pub build: String,
    /// Declarations it holds.
    pub held: Vec<String>,
}

impl Fleet {
    /// A fleet of `specs` talking to the server at `endpoints`, each device with an identity
    /// issued by the endpoints' CA, if any.
    pub fn with_endpoints(
        specs: Vec<DeviceSpec>,
        endpoints: Endpoints,
        clock: SharedClock,
    ) -> Result<Arc<Self>, IdentityError> {
        let identities = match &endpoints.identities {
            Some(issuer) => specs
                .iter()
                .map(|spec| issuer.issue(&spec.udid).map(Some))
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![None; specs.len()],
        };
        Ok(Self::build(specs, endpoints, identities, clock))
    }

    fn build(
        specs: Vec<DeviceSpec>,
        endpoints: Endpoints,
        identities: Vec<Option<DeviceIdentity>>,
        clock: SharedClock,
    ) -> Arc<Self> {
        let shared = Arc::new(SharedDeclarations::default());
        let devices: Vec<SimDevice> = specs
            .into_iter()
            .map(|spec| SimDevice::new(spec, shared.clone(), endpoints.software.clone()))
            .collect();
        let by_token = devices
            .iter()
            .enumerate()
            .map(|(index, device)| (hex(&device.push_token), index))
            .collect();
        Arc::new(Self {
            last_connect: devices
                .iter()
                .map(|_| std::sync::atomic::AtomicI64::new(i64::MIN))
                .collect(),
            identities,
            connect_every: endpoints.connect_every,
            woken: devices.iter().map(|_| AtomicBool::new(false)).collect(),
            next_due: devices
                .iter()
                .map(|_| std::sync::atomic::AtomicI64::new(i64::MIN))
                .collect(),
            was_offline: devices.iter().map(|_| AtomicBool::new(false)).collect(),
            devices: devices.into_iter().map(Mutex::new).collect(),
            by_token,
            transport: HttpTransport {
                http: reqwest::Client::builder()
                    .pool_max_idle_per_host(256)
                    .build()
                    .unwrap_or_default(),
                checkin_url: endpoints.checkin_url.into(),
                connect_url: endpoints.connect_url.into(),
            },
            clock,
            concurrency: 64,
            errors: std::sync::Mutex::new(Vec::new()),
            pushes: AtomicU64::new(0),
        })
    }

    /// Whether a device connects on its own at `now_millis` (a server that cannot push).
    fn connects_on_its_own(&self, index: usize, now_millis: i64) -> bool {
        self.connect_every.is_some_and(|every| {
            let last = self.last_connect[index].load(Ordering::Relaxed);
            last == i64::MIN || now_millis - last >= every.num_milliseconds()
        })
    }

    /// The push gateway: `POST /3/device/<token>` as APNs takes it; wakes that device.
    pub fn gateway(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/3/device/{token}", post(wake))
            .with_state(self.clone())
    }

    /// Pushes received so far.
    pub fn pushes(&self) -> u64 {
        self.pushes.load(Ordering::Relaxed)
    }

    /// Errors devices met talking to the server (a correct server gives none).
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Does everything due at the clock's time: enrolls, answers pushes, moves installs along.
    pub async fn tick(self: &Arc<Self>) {
        let now = self.clock.now();
        let gate = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let now_millis = now.timestamp_millis();
        for index in 0..self.devices.len() {
            if !self.woken[index].load(Ordering::Relaxed)
                && self.next_due[index].load(Ordering::Relaxed) > now_millis
                && !self.connects_on_its_own(index, now_millis)
            {
                continue;
            }
            let fleet = self.clone();
            let permit = gate.clone().acquire_owned().await;
            tasks.spawn(async move {
                let _permit = permit;
                let mut device = fleet.devices[index].lock().await;
                let offline = device.is_offline(now);
                let was_offline = fleet.was_offline[index].swap(offline, Ordering::Relaxed);
                if offline {
                    return;
                }
                if was_offline {
                    device.resume(now);
                }
                let transport = DeviceTransport {
                    shared: &fleet.transport,
                    identity: fleet.identities[index].as_ref(),
                };
                let mut result = Ok(());
                let mut connect = fleet.woken[index].swap(false, Ordering::Relaxed)
                    | fleet.connects_on_its_own(index, now_millis);
                if !device.is_enrolled() {
                    if device.enrolls_later(now) {
                        return;
                    }
                    result = device.enroll(&transport).await;
                    // A newly enrolled device connects for its first commands right away.
                    connect = true;
                }
                // APNs keeps the last push for a device that was away.
                if result.is_ok() && (connect | fleet.woken[index].swap(false, Ordering::Relaxed)) {
                    fleet.last_connect[index].store(now_millis, Ordering::Relaxed);
                    result = device.on_push(&transport, now).await;
                }
                if result.is_ok() && device.is_due(now) {
                    result = device.progress(&transport, now).await;
                }
                let next = device
                    .next_due()
                    .map_or(i64::MIN, |at| at.timestamp_millis());
                fleet.next_due[index].store(next, Ordering::Relaxed);
                if let Err(error) = result
                    && let Ok(mut errors) = fleet.errors.lock()
                {
                    errors.push(format!("{}: {error}", device.spec.udid));
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Every device's outcome, in fleet order.
    pub async fn outcomes(&self) -> Vec<DeviceOutcome> {
        let mut out = Vec::with_capacity(self.devices.len());
        for device in &self.devices {
            let device = device.lock().await;
            out.push(DeviceOutcome {
                spec: device.spec.clone(),
                os_version: device.os_version.clone(),
                build: device
                    .supplemental_build
                    .clone()
                    .unwrap_or_else(|| device.build.clone()),
                held: device.held_declarations().map(str::to_owned).collect(),
            });
        }
        out
    }

    /// HTTP requests devices sent.
    pub async fn requests(&self) -> u64 {
        let mut total = 0;
        for device in &self.devices {
            total += device.lock().await.requests;
        }
        total
    }

    /// When the last offline device comes back.
    pub async fn last_return(&self) -> Option<chrono::DateTime<Utc>> {
        let mut last = None;
        for device in &self.devices {
            if let Some(until) = device.lock().await.offline_until() {
                last = Some(last.map_or(until, |l: chrono::DateTime<Utc>| l.max(until)));
            }
        }
        last
    }
}

async fn wake(
    State(fleet): State<Arc<Fleet>>,
    Path(token): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if payload["mdm"].as_str().is_none() {
        return StatusCode::BAD_REQUEST;
    }
    match fleet.by_token.get(&token.to_ascii_lowercase()) {
        Some(&index) => {
            fleet.pushes.fetch_add(1, Ordering::Relaxed);
            fleet.woken[index].store(true, Ordering::Relaxed);
            StatusCode::OK
        }
        None => StatusCode::GONE,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How to build a fleet.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    /// Devices.
    pub devices: usize,
    /// Seed.
    pub seed: u64,
    /// Share of devices with a fault, 0 to 1.
    pub failure_rate: f64,
    /// The lab's first day: versions on devices are ones the feed lists by then.
    pub start: NaiveDate,
}

const TIME_ZONES: &[&str] = &[
    "America/Los_Angeles",
    "America/Chicago",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
];

/// A release a device may run on the lab's first day: a non-BSI entry of the feed.
struct Signed {
    version: OsVersion,
    build: String,
    supported: Vec<String>,
    platform: &'static str,
}

impl Signed {
    fn supports(&self, id: &str) -> bool {
        self.supported.iter().any(|s| s.eq_ignore_ascii_case(id))
    }
}

/// Real device ids and versions, per platform family, from the feed.
struct Catalog {
    /// Newest version first; within a version, by build.
    releases: Vec<Signed>,
    newest_mac: Option<OsVersion>,
    newest_ios: Option<OsVersion>,
}

impl Catalog {
    /// The Mac and iOS releases the feed lists on or before `start`.
    fn new(feed: &LookupResponse, start: NaiveDate) -> Self {
        let mut releases = Vec::new();
        for located in feed.entries() {
            let entry = located.entry;
            if located.set.kind == SetKind::BackgroundSecurity || entry.posting_date > start {
                continue;
            }
            let platform: &'static str = match located.platform {
                "macOS" => "macOS",
                "iOS" => "iOS",
                _ => continue,
            };
            if let (Ok(version), Some(build)) =
                (OsVersion::parse(&entry.product_version), &entry.build)
            {
                releases.push(Signed {
                    version,
                    build: build.clone(),
                    supported: entry.supported_devices.clone(),
                    platform,
                });
            }
        }
        releases.sort_by(|a, b| {
            b.version
                .cmp(&a.version)
                .then_with(|| a.build.cmp(&b.build))
        });
        let newest = |platform: &str| {
            releases
                .iter()
                .find(|r| r.platform == platform)
                .map(|r| r.version.clone())
        };
        Self {
            newest_mac: newest("macOS"),
            newest_ios: newest("iOS"),
            releases,
        }
    }

    fn newest(&self, platform: &str) -> Option<&OsVersion> {
        match platform {
            "macOS" => self.newest_mac.as_ref(),
            _ => self.newest_ios.as_ref(),
        }
    }

    /// The releases of the newest version of `platform`.
    fn newest_releases(&self, platform: &'static str) -> impl Iterator<Item = &Signed> {
        let newest = self.newest(platform);
        self.releases
            .iter()
            .filter(move |r| r.platform == platform && Some(&r.version) == newest)
    }
}

/// The models a lab device is drawn from.
struct Models<'a> {
    /// Every Mac of the model maps a fleet has (no rack or server models).
    macs: Vec<(&'a str, &'a [String])>,
    /// Those the newest macOS supports.
    current_macs: Vec<(&'a str, &'a [String])>,
    /// The iPhones and iPads the newest iOS supports.
    ios_ids: Vec<String>,
}

impl Models<'static> {
    fn new(catalog: &Catalog) -> Self {
        let macs: Vec<(&str, &[String])> = known_mac_models()
            .filter(|(model, _)| {
                !model.contains("Rack")
                    && (model.starts_with("Mac") || model.starts_with("iMac"))
                    && !model.starts_with("MacPro7")
            })
            .map(|(model, m)| (model, m.ids.as_slice()))
            .collect();
        let newest_macs: Vec<&Signed> = catalog.newest_releases("macOS").collect();
        let current_macs = macs
            .iter()
            .copied()
            .filter(|(_, ids)| {
                ids.iter()
                    .any(|id| newest_macs.iter().any(|r| r.supports(id)))
            })
            .collect();
        let mut ios_ids: Vec<String> = catalog
            .newest_releases("iOS")
            .flat_map(|r| r.supported.iter().cloned())
            .filter(|id| family_of(id).is_some())
            .collect();
        ios_ids.sort();
        ios_ids.dedup();
        Self {
            macs,
            current_macs,
            ios_ids,
        }
    }
}

/// A device's model: (family, model identifier, the id gdmf lists, platform).
type Model = (&'static str, String, String, &'static str);

fn family_of(id: &str) -> Option<&'static str> {
    if id.starts_with("iPhone") {
        Some("iPhone")
    } else if id.starts_with("iPad") {
        Some("iPad")
    } else {
        None
    }
}

/// Builds the fleet: Macs (about half), iPhones and iPads of real models, on OS versions the feed
/// lists for them, most one or two releases behind the newest, with a share of the edge cases a
/// real fleet has (already current, too old, unsupervised Macs) and faults by `failure_rate`.
///
/// Every draw comes from one generator seeded by the plan, in a fixed order per device: the same
/// plan gives the same fleet, so changing the order of the steps below changes every lab report.
pub fn generate(plan: &FleetPlan, feed: &LookupResponse) -> Vec<DeviceSpec> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let catalog = Catalog::new(feed, plan.start);
    let models = Models::new(&catalog);
    (0..plan.devices)
        .map(|index| one_device(index, plan, &catalog, &models, &mut rng))
        .collect()
}

fn one_device(
    index: usize,
    plan: &FleetPlan,
    catalog: &Catalog,
    models: &Models<'static>,
    rng: &mut StdRng,
) -> DeviceSpec {
    let seed: u64 = rng.random();
    let (family, model, gdmf_id, platform) = pick_model(models, rng);
    let apple_silicon =
        family == "Mac" && !gdmf_id.starts_with("Mac-") && !T2_IDS.contains(&gdmf_id.as_str());
    let (os_version, build) = pick_os(catalog, family, platform, &gdmf_id, rng);
    let supervised = !(family == "Mac" && rng.random_bool(0.04));
    let fault = pick_fault(plan.failure_rate, apple_silicon, rng);
    let user_installs_after = rng.random_bool(0.3).then(|| rng.random_range(60..48 * 60));
    let serial: String = (0..10)
        .map(|_| {
            *b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
                .choose(rng)
                .expect("c") as char
        })
        .collect();
    let udid = format!("{:08X}-{:016X}", rng.random::<u32>(), rng.random::<u64>());
    let time_zone = (*TIME_ZONES.choose(rng).expect("zones")).into();
    DeviceSpec {
        udid,
        serial,
        name: format!("Lab {family} {:05}", index + 1),
        model,
        family: family.into(),
        gdmf_id,
        os_version,
        build,
        time_zone,
        supervised,
        apple_silicon,
        escrows_bootstrap_token: apple_silicon && fault != Some(Fault::MissingBootstrapToken),
        user_installs_after,
        fault,
        seed,
        enrolls_at: None,
    }
}

/// About half Macs, most of them ones the newest macOS supports; the rest iPhones and iPads.
fn pick_model(models: &Models<'static>, rng: &mut StdRng) -> Model {
    let roll: f64 = rng.random();
    if roll < 0.5 || models.ios_ids.is_empty() {
        // Most Macs of a real fleet run a current macOS; a few are too old for it.
        let pool = if rng.random_bool(0.9) && !models.current_macs.is_empty() {
            &models.current_macs
        } else {
            &models.macs
        };
        let (model, ids) = *pool.choose(rng).expect("the model maps are not empty");
        // The id gdmf lists for this Mac (a T2 Mac has two; the bridge id is what it reports).
        ("Mac", model.to_owned(), ids[0].clone(), "macOS")
    } else {
        let id = models.ios_ids.choose(rng).expect("ids").clone();
        (family_of(&id).unwrap_or("iPhone"), id.clone(), id, "iOS")
    }
}

/// (version, build): 5% already on the newest they can run, 4% on the oldest still signed (often
/// too old for the declaration), the rest one of the releases of the last two majors below the
/// newest; a model the feed no longer lists runs an old system the rules leave out.
fn pick_os(
    catalog: &Catalog,
    family: &str,
    platform: &str,
    gdmf_id: &str,
    rng: &mut StdRng,
) -> (String, String) {
    let runnable: Vec<&Signed> = catalog
        .releases
        .iter()
        .filter(|r| r.platform == platform && r.supports(gdmf_id))
        .collect();
    let newest = catalog.newest(platform);
    let edge: f64 = rng.random();
    let chosen = if runnable.is_empty() {
        None
    } else if edge < 0.05 {
        runnable.first().copied()
    } else if edge < 0.09 {
        runnable.last().copied()
    } else {
        let floor = newest.map_or(0, |n| n.major()).saturating_sub(1);
        let behind: Vec<&Signed> = runnable
            .iter()
            .copied()
            .filter(|r| Some(&r.version) != newest && r.version.major() >= floor)
            .collect();
        behind.choose(rng).copied().or(runnable.last().copied())
    };
    match chosen {
        Some(release) => (release.version.to_string(), release.build.clone()),
        None if family == "Mac" => ("12.7.6".into(), "21H1320".into()),
        None => ("15.8.7".into(), "19H411".into()),
    }
}

/// A fault for a share `rate` of devices; a missing bootstrap token only on Apple silicon.
fn pick_fault(rate: f64, apple_silicon: bool, rng: &mut StdRng) -> Option<Fault> {
    rng.random_bool(rate.clamp(0.0, 1.0)).then(|| {
        let kinds: &[Fault] = if apple_silicon {
            &[
                Fault::NoDiskSpace,
                Fault::DownloadFailure,
                Fault::Offline,
                Fault::NeverReports,
                Fault::MissingBootstrapToken,
            ]
        } else {
            &[
                Fault::NoDiskSpace,
                Fault::DownloadFailure,
                Fault::Offline,
                Fault::NeverReports,
            ]
        };
        *kinds.choose(rng).expect("kinds")
    })
}

/// Bridge ids of Intel Macs with a T2 chip (their updates need no bootstrap token).
const T2_IDS: &[&str] = &[
    "J132AP", "J137AP", "J140AAP", "J140KAP", "J152FAP", "J160AP", "J174AP", "J185AP", "J185FAP",
    "J213AP", "J214AP", "J214KAP", "J215AP", "J223AP", "J230AP", "J230KAP", "J680AP", "J780AP",
];
