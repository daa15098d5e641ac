//! One simulated device: enrolls, answers pushes, syncs declarations, reports status per Apple's
//! schema, and installs an enforced update at its deadline in its own time zone.

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use updraft_ddm::checkin::{
    Authenticate, CheckinMessage, CommandReport, CommandStatus, DeclarativeManagementCheckin,
    EnrollmentKeys, GetBootstrapToken, GetBootstrapTokenResponse, IncomingCommand, QueryResponses,
    SetBootstrapToken, TokenUpdate,
};
use updraft_ddm::declaration::SOFTWARE_UPDATE_STATUS_ITEMS;
use updraft_ddm::{
    Declaration, DeclarationItemsResponse, DeclarationPayload, InstallState, OsVersion,
    SoftwareUpdateEnforcementSpecific, TokensResponse, VersionExtra,
};

/// What goes wrong with a device, chosen by seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The download fails for lack of disk space.
    NoDiskSpace,
    /// The download fails.
    DownloadFailure,
    /// Off the network from the first sync until well past the deadline.
    Offline,
    /// Enrolls, then never contacts the server again.
    NeverReports,
    /// A Mac with Apple silicon that never escrowed its bootstrap token.
    MissingBootstrapToken,
}

/// A device to simulate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// UDID.
    pub udid: String,
    /// Serial number.
    pub serial: String,
    /// Device name.
    pub name: String,
    /// Model identifier (`MacBookPro18,3`).
    pub model: String,
    /// `Mac`, `iPhone`, `iPad`.
    pub family: String,
    /// Its true SoftwareUpdateDeviceID.
    pub gdmf_id: String,
    /// OS version.
    pub os_version: String,
    /// Base build.
    pub build: String,
    /// IANA time zone.
    pub time_zone: String,
    /// Supervised (a Mac that is not cannot take the enforcement declaration).
    pub supervised: bool,
    /// A Mac with Apple silicon (fetches its bootstrap token before installing).
    pub apple_silicon: bool,
    /// Escrows a bootstrap token at enrollment.
    pub escrows_bootstrap_token: bool,
    /// If the user installs early: this long after the update is prepared.
    pub user_installs_after: Option<i64>,
    /// What goes wrong.
    pub fault: Option<Fault>,
    /// Per-device seed.
    pub seed: u64,
    /// When it enrolls, if not at the fleet's first tick (a Mac unboxed mid-rollout).
    #[serde(default)]
    pub enrolls_at: Option<DateTime<Utc>>,
}

impl DeviceSpec {
    /// Whether the OS offers `softwareupdate.device-id` (iOS 18, macOS 15 and later).
    pub fn reports_device_id(&self) -> bool {
        let major = OsVersion::parse(&self.os_version)
            .map(|v| v.major())
            .unwrap_or(0);
        if self.family == "Mac" {
            major >= 15
        } else {
            major >= 18
        }
    }

    /// Whether the OS and enrollment allow the enforcement declaration.
    pub fn supports_enforcement(&self) -> bool {
        let major = OsVersion::parse(&self.os_version)
            .map(|v| v.major())
            .unwrap_or(0);
        if self.family == "Mac" {
            self.supervised && major >= 14
        } else {
            major >= 17
        }
    }

    /// The `OSVersion`'s platform name.
    fn os_family(&self) -> &'static str {
        match self.family.as_str() {
            "Mac" => "macOS",
            "iPad" => "iPadOS",
            _ => "iOS",
        }
    }
}

/// Where an enforced install stands on the device.
#[derive(Debug, Clone, PartialEq)]
struct Install {
    declaration_id: String,
    target_version: String,
    target_build: Option<String>,
    deadline_utc: DateTime<Utc>,
    deadline_local: String,
    state: &'static str,
    next_at: DateTime<Utc>,
}

/// HTTP calls a device makes; the fleet implements them over loopback.
pub trait Transport {
    /// `PUT /mdm/checkin`; the response body.
    fn checkin(
        &self,
        body: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(u16, Vec<u8>), String>> + Send;
    /// `PUT /mdm/connect`; the response body.
    fn connect(
        &self,
        body: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(u16, Vec<u8>), String>> + Send;
}

/// Apple's software update service as the fleet's devices see it: the build a device id installs
/// for a version when its declaration names no build (the lowest the feed lists for it).
#[derive(Debug, Default)]
pub struct SoftwareCatalog(HashMap<(String, String), String>);

impl SoftwareCatalog {
    /// The builds of every non-BSI release of `feed`, by lower-cased device id and three-part
    /// version.
    pub fn from_feed(feed: &updraft_feed::LookupResponse) -> Self {
        let mut builds: HashMap<(String, String), String> = HashMap::new();
        for release in updraft_feed::releases::releases(feed) {
            let Ok(version) = OsVersion::parse(&release.product_version) else {
                continue;
            };
            if release.is_bsi() {
                continue;
            }
            for build in &release.builds {
                let Some(name) = &build.build else { continue };
                for device in &build.supported_devices {
                    builds
                        .entry((device.clone(), version.three_part()))
                        .and_modify(|held| {
                            if updraft_ddm::compare_builds(name, held).is_lt() {
                                held.clone_from(name);
                            }
                        })
                        .or_insert_with(|| name.clone());
                }
            }
        }
        Self(builds)
    }

    /// The build `device_id` installs for `version` (`26.4.1` or `26.4.1.0`), if the feed says.
    pub fn build_for(&self, device_id: &str, version: &str) -> Option<&str> {
        let version = OsVersion::parse(version).ok()?.three_part();
        self.0
            .get(&(device_id.to_ascii_lowercase(), version))
            .map(String::as_str)
    }
}

/// Declarations as devices received them, one copy of each revision for a whole fleet: every
/// device holds the same few declarations, and 100,000 copies of each would be most of a large
/// lab's memory. Each device still fetches and parses its own over HTTP.
#[derive(Debug, Default)]
pub struct SharedDeclarations(Mutex<HashMap<(String, String), Arc<Declaration>>>);

impl SharedDeclarations {
    /// The fleet's copy of this revision of the declaration.
    pub fn share(&self, declaration: Declaration) -> Arc<Declaration> {
        let Ok(mut held) = self.0.lock() else {
            return Arc::new(declaration);
        };
        let key = (
            declaration.identifier.clone(),
            declaration.server_token.clone(),
        );
        held.entry(key)
            // The token names the revision; a server that reused one for other content still
            // gets what it sent.
            .and_modify(|shared| {
                if **shared != declaration {
                    *shared = Arc::new(declaration.clone());
                }
            })
            .or_insert_with(|| Arc::new(declaration))
            .clone()
    }
}

/// A device's state.
#[derive(Debug)]
pub struct SimDevice {
    /// What it is.
    pub spec: DeviceSpec,
    rng: StdRng,
    enrolled: bool,
    /// APNs token.
    pub push_token: [u8; 32],
    push_magic: String,
    ddm_token: Option<String>,
    declarations: BTreeMap<String, Arc<Declaration>>,
    shared: Arc<SharedDeclarations>,
    /// Which build a version installs as, for a declaration that names none.
    software: Arc<SoftwareCatalog>,
    /// Current OS version.
    pub os_version: String,
    /// Current base build.
    pub build: String,
    /// Current supplemental build.
    pub supplemental_build: Option<String>,
    /// Current supplemental letter.
    pub extra: VersionExtra,
    install: Option<Install>,
    failure: Option<(u64, String)>,
    install_state: InstallState,
    last_report: Option<DateTime<Utc>>,
    offline: Option<(DateTime<Utc>, DateTime<Utc>)>,
    sent_capabilities: bool,
    /// Requests sent, for the benchmark's counts.
    pub requests: u64,
}

impl SimDevice {
    /// A device not yet enrolled, keeping its declarations in `shared`, installing builds as
    /// `software` lists them.
    pub fn new(
        spec: DeviceSpec,
        shared: Arc<SharedDeclarations>,
        software: Arc<SoftwareCatalog>,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let push_token: [u8; 32] = rng.random();
        let push_magic = format!("{:016X}-{:08X}", rng.random::<u64>(), rng.random::<u32>());
        Self {
            os_version: spec.os_version.clone(),
            build: spec.build.clone(),
            supplemental_build: None,
            extra: VersionExtra::NONE,
            spec,
            rng,
            enrolled: false,
            push_token,
            push_magic,
            ddm_token: None,
            declarations: BTreeMap::new(),
            shared,
            software,
            install: None,
            failure: None,
            install_state: InstallState::None,
            last_report: None,
            offline: None,
            sent_capabilities: false,
            requests: 0,
        }
    }

    fn keys(&self) -> EnrollmentKeys {
        EnrollmentKeys {
            udid: Some(self.spec.udid.clone()),
            ..Default::default()
        }
    }

    /// Whether it is off the network now.
    pub fn is_offline(&self, now: DateTime<Utc>) -> bool {
        self.offline
            .is_some_and(|(from, until)| from <= now && now < until)
    }

    /// Whether the device never contacts the server after enrolling.
    pub fn is_silent(&self) -> bool {
        self.enrolled && self.spec.fault == Some(Fault::NeverReports)
    }

    /// The enforcement declarations the device holds.
    pub fn held_declarations(&self) -> impl Iterator<Item = &str> {
        self.declarations.keys().map(String::as_str)
    }

    /// The next time the device has something to do on its own (an install step, the daily
    /// report, coming back online); `None` before it enrolls, which means now.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        if !self.enrolled {
            return None;
        }
        let candidates = [
            self.install.as_ref().map(|install| install.next_at),
            self.last_report.map(|last| last + Duration::hours(24)),
            self.offline.map(|(_, until)| until),
        ];
        Some(
            candidates
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    /// Whether it has something to do at `now` without a push: an install step, or the daily
    /// full status report Apple's devices send.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        !self.enrolled
            || self
                .install
                .as_ref()
                .is_some_and(|install| install.next_at <= now)
            || self
                .last_report
                .is_some_and(|last| now - last >= Duration::hours(24))
    }

    async fn checkin(
        &mut self,
        transport: &impl Transport,
        message: CheckinMessage,
    ) -> Result<(u16, Vec<u8>), String> {
        self.requests += 1;
        transport.checkin(message.to_xml()).await
    }

    /// Authenticate, TokenUpdate and, for a Mac with Apple silicon, SetBootstrapToken.
    pub async fn enroll(&mut self, transport: &impl Transport) -> Result<(), String> {
        let auth = Authenticate {
            enrollment: self.keys(),
            topic: "com.apple.mgmt.External.updraft-lab".into(),
            os_version: Some(self.os_version.clone()),
            build_version: Some(self.build.clone()),
            product_name: Some(self.spec.model.clone()),
            serial_number: Some(self.spec.serial.clone()),
            device_name: Some(self.spec.name.clone()),
            model: Some(self.spec.model.clone()),
            model_name: Some(self.spec.family.clone()),
            ..Default::default()
        };
        expect_ok(
            self.checkin(transport, CheckinMessage::Authenticate(auth))
                .await?,
        )?;
        let update = TokenUpdate {
            enrollment: self.keys(),
            topic: "com.apple.mgmt.External.updraft-lab".into(),
            token: self.push_token.to_vec(),
            push_magic: self.push_magic.clone(),
            ..Default::default()
        };
        expect_ok(
            self.checkin(transport, CheckinMessage::TokenUpdate(update))
                .await?,
        )?;
        if self.spec.apple_silicon && self.spec.escrows_bootstrap_token {
            let token: [u8; 24] = self.rng.random();
            let set = SetBootstrapToken {
                enrollment: self.keys(),
                bootstrap_token: Some(token.to_vec()),
                ..Default::default()
            };
            expect_ok(
                self.checkin(transport, CheckinMessage::SetBootstrapToken(set))
                    .await?,
            )?;
        }
        self.enrolled = true;
        Ok(())
    }

    /// A push arrived: connect, run the queued commands, and sync declarations.
    pub async fn on_push(
        &mut self,
        transport: &impl Transport,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        if self.is_silent() {
            return Ok(());
        }
        let mut report = CommandReport::idle(&self.spec.udid);
        loop {
            self.requests += 1;
            let (_, body) = transport.connect(report.to_xml()).await?;
            if body.is_empty() {
                return Ok(());
            }
            let command = IncomingCommand::parse(&body).map_err(|e| e.to_string())?;
            report = CommandReport::result(
                &self.spec.udid,
                CommandStatus::Acknowledged,
                &command.command_uuid,
            );
            match command.command.request_type.as_str() {
                "DeclarativeManagement" => {
                    let tokens = command
                        .command
                        .data
                        .as_deref()
                        .map(serde_json::from_slice::<TokensResponse>)
                        .transpose()
                        .map_err(|e| format!("the command's Data is not a tokens response: {e}"))?;
                    self.sync(transport, now, tokens).await?;
                }
                "DeviceInformation" => {
                    let asked = |query: &str| command.command.queries.iter().any(|q| q == query);
                    report.query_responses = Some(QueryResponses {
                        device_name: asked("DeviceName").then(|| self.spec.name.clone()),
                        time_zone: asked("TimeZone").then(|| self.spec.time_zone.clone()),
                    });
                }
                _ => report.status = CommandStatus::Error,
            }
        }
    }

    async fn ddm(
        &mut self,
        transport: &impl Transport,
        endpoint: &str,
        data: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), String> {
        let message = CheckinMessage::DeclarativeManagement(DeclarativeManagementCheckin {
            enrollment: self.keys(),
            endpoint: endpoint.into(),
            data,
        });
        self.checkin(transport, message).await
    }

    /// The DDM synchronization: tokens (from the command's `Data` when it carries them, as
    /// Apple's devices read them), manifest, changed declarations, then a status report.
    async fn sync(
        &mut self,
        transport: &impl Transport,
        now: DateTime<Utc>,
        tokens: Option<TokensResponse>,
    ) -> Result<(), String> {
        let tokens = match tokens {
            Some(tokens) => tokens,
            None => parse_json(expect_ok(self.ddm(transport, "tokens", None).await?)?)?,
        };
        if self.ddm_token.as_deref() == Some(tokens.sync_tokens.declarations_token.as_str()) {
            return Ok(());
        }
        let manifest: DeclarationItemsResponse = parse_json(expect_ok(
            self.ddm(transport, "declaration-items", None).await?,
        )?)?;
        let mut next = BTreeMap::new();
        for (category, item) in manifest.declarations.iter() {
            match self.declarations.get(&item.identifier) {
                Some(held) if held.server_token == item.server_token => {
                    next.insert(item.identifier.clone(), held.clone());
                }
                _ => {
                    let endpoint = format!(
                        "declaration/{}/{}",
                        category.path_segment(),
                        item.identifier
                    );
                    let (status, body) = self.ddm(transport, &endpoint, None).await?;
                    if status == 200 {
                        let declaration = self.shared.share(parse_json(body)?);
                        next.insert(item.identifier.clone(), declaration);
                    }
                }
            }
        }
        self.declarations = next;
        self.ddm_token = Some(manifest.declarations_token);
        self.reconsider_enforcement(now);
        self.report(transport, now, true).await
    }

    /// Picks the active enforcement with the earliest deadline that is newer than the OS.
    fn reconsider_enforcement(&mut self, now: DateTime<Utc>) {
        let current = (OsVersion::parse(&self.os_version).ok(), self.extra.clone());
        let mut best: Option<(DateTime<Utc>, String, SoftwareUpdateEnforcementSpecific)> = None;
        for declaration in self.declarations.values() {
            if !self.activated(&declaration.identifier) || !self.spec.supports_enforcement() {
                continue;
            }
            let Ok(payload) = declaration.payload_as::<SoftwareUpdateEnforcementSpecific>() else {
                continue;
            };
            let Ok(target) = OsVersion::parse(&payload.target_os_version) else {
                continue;
            };
            let newer = match (&current.0, &payload.target_build_version) {
                (Some(version), _) if &target > version => true,
                (Some(version), Some(build)) if &target == version => {
                    self.supplemental_build.as_deref() != Some(build.as_str())
                        && build.ends_with(|c: char| c.is_ascii_lowercase())
                }
                _ => false,
            };
            if !newer {
                continue;
            }
            let deadline = self.local_to_utc(payload.target_local_date_time.0);
            if best.as_ref().is_none_or(|(at, _, _)| deadline < *at) {
                best = Some((deadline, declaration.identifier.clone(), payload));
            }
        }
        match best {
            Some((deadline, identifier, payload)) => {
                if self.install.as_ref().map(|i| &i.declaration_id) == Some(&identifier)
                    || self.install_state == InstallState::Failed
                {
                    return;
                }
                self.install = Some(Install {
                    declaration_id: identifier,
                    target_version: payload.target_os_version.clone(),
                    target_build: payload.target_build_version.clone(),
                    deadline_utc: deadline,
                    deadline_local: payload.target_local_date_time.to_string(),
                    state: "waiting",
                    next_at: now + Duration::minutes(self.rng.random_range(5..30)),
                });
                self.install_state = InstallState::Waiting;
                if self.spec.fault == Some(Fault::Offline) && self.offline.is_none() {
                    // Off the network from shortly after it learns of the update until one to
                    // three days past the deadline.
                    let back = deadline + Duration::hours(self.rng.random_range(24..72));
                    self.offline = Some((now + Duration::minutes(30), back));
                }
            }
            None => {
                if self.install.take().is_some() && self.install_state != InstallState::Failed {
                    self.install_state = InstallState::None;
                }
            }
        }
    }

    fn activated(&self, configuration: &str) -> bool {
        self.declarations.values().any(|d| {
            d.declaration_type == "com.apple.activation.simple"
                && d.payload["StandardConfigurations"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| id == configuration))
        })
    }

    fn local_to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let zone: Tz = self.spec.time_zone.parse().unwrap_or(chrono_tz::UTC);
        zone.from_local_datetime(&local)
            .earliest()
            // A local time skipped by a DST change: the hour after.
            .or_else(|| {
                zone.from_local_datetime(&(local + Duration::hours(1)))
                    .earliest()
            })
            .map(|at| at.with_timezone(&Utc))
            .unwrap_or_else(|| local.and_utc())
    }

    /// Moves a pending install along: download, prepare, install at the deadline, restart.
    pub async fn progress(
        &mut self,
        transport: &impl Transport,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        if self.is_silent() || self.is_offline(now) {
            return Ok(());
        }
        let install_due = self
            .install
            .as_ref()
            .is_some_and(|install| install.next_at <= now);
        if !install_due {
            if self
                .last_report
                .is_some_and(|last| now - last >= Duration::hours(24))
            {
                return self.full_report(transport, now).await;
            }
            return Ok(());
        }
        let Some(mut install) = self.install.clone() else {
            return Ok(());
        };
        match install.state {
            "waiting" => {
                install.state = "downloading";
                install.next_at = now + Duration::minutes(self.rng.random_range(20..180));
                self.install_state = InstallState::Downloading;
            }
            "downloading" => match self.spec.fault {
                Some(Fault::NoDiskSpace) => {
                    return self.fail(transport, now, "The update could not be downloaded because there is not enough free disk space.").await;
                }
                Some(Fault::DownloadFailure) => {
                    return self.fail(transport, now, "The download of the software update failed: the network connection was lost.").await;
                }
                _ => {
                    install.state = "prepared";
                    self.install_state = InstallState::Prepared;
                    let early = self
                        .spec
                        .user_installs_after
                        .map(|minutes| now + Duration::minutes(minutes));
                    // Offline at the deadline: installs one hour after it comes back.
                    let at_deadline = install.deadline_utc.max(now);
                    install.next_at = early.map_or(at_deadline, |early| early.min(at_deadline));
                }
            },
            "prepared" => {
                if self.spec.apple_silicon {
                    let request = GetBootstrapToken {
                        enrollment: self.keys(),
                        ..Default::default()
                    };
                    let (_, body) = self
                        .checkin(transport, CheckinMessage::GetBootstrapToken(request))
                        .await?;
                    let response =
                        GetBootstrapTokenResponse::parse(&body).map_err(|e| e.to_string())?;
                    if response.bootstrap_token.is_none() {
                        return self
                            .fail(transport, now, "Authorization required: no bootstrap token is escrowed with the MDM server, so the update cannot install without a user.")
                            .await;
                    }
                }
                install.state = "installing";
                install.next_at = now + Duration::minutes(self.rng.random_range(20..50));
                self.install_state = InstallState::Installing;
            }
            "installing" => {
                // Restart into the new system.
                let is_supplemental = install
                    .target_build
                    .as_deref()
                    .is_some_and(|b| b.ends_with(|c: char| c.is_ascii_lowercase()));
                let target = OsVersion::parse(&install.target_version)
                    .map(|v| v.three_part())
                    .unwrap_or_default();
                let target = target.trim_end_matches(".0").to_owned();
                if is_supplemental {
                    self.supplemental_build = install.target_build.clone();
                    self.extra = VersionExtra::parse("a");
                } else {
                    // A declaration without TargetBuildVersion installs the build Apple offers
                    // this device for the version (the catalog; the old build if it lists none).
                    let offered = self.software.build_for(&self.spec.gdmf_id, &target);
                    self.build = install
                        .target_build
                        .clone()
                        .or_else(|| offered.map(str::to_owned))
                        .unwrap_or_else(|| self.build.clone());
                    self.os_version = target;
                    self.supplemental_build = None;
                    self.extra = VersionExtra::NONE;
                }
                self.install = None;
                self.install_state = InstallState::None;
                self.failure = None;
                return self.report(transport, now, false).await;
            }
            _ => {}
        }
        self.install = Some(install);
        self.report(transport, now, false).await
    }

    /// Back online after the deadline: the install is enforced an hour later (Apple's rule).
    pub fn resume(&mut self, now: DateTime<Utc>) {
        if let Some(install) = &mut self.install
            && install.deadline_utc < now
        {
            install.next_at = install.next_at.max(now + Duration::hours(1));
        }
    }

    /// When the device returns from being offline, if it is.
    pub fn offline_until(&self) -> Option<DateTime<Utc>> {
        self.offline.map(|(_, until)| until)
    }

    async fn fail(
        &mut self,
        transport: &impl Transport,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), String> {
        let count = self.failure.as_ref().map_or(1, |(count, _)| count + 1);
        self.failure = Some((count, reason.to_owned()));
        self.install_state = InstallState::Failed;
        self.install = None;
        self.report(transport, now, false).await
    }

    /// The status report: every subscribed item the OS has, plus management items.
    pub fn status_report(&self, now: DateTime<Utc>, with_declarations: bool) -> Value {
        let subscribed = self.declarations.values().any(|d| {
            d.declaration_type == "com.apple.configuration.management.status-subscriptions"
        });
        let mut software_update = serde_json::Map::new();
        let mut device = json!({
            "model": {"family": self.spec.family, "identifier": self.spec.model},
            "identifier": {"serial-number": self.spec.serial, "udid": self.spec.udid},
            "operating-system": {"family": self.spec.os_family(), "version": self.os_version, "build-version": self.build},
        });
        if let Some(supplemental) = &self.supplemental_build {
            device["operating-system"]["supplemental"] =
                json!({"build-version": supplemental, "extra-version": self.extra.letter()});
        }
        if subscribed {
            software_update.insert("install-state".into(), json!(self.install_state.as_str()));
            let pending = match &self.install {
                Some(install) => {
                    json!({"os-version": install.target_version, "build-version": install.target_build.clone().unwrap_or_default(), "target-local-date-time": install.deadline_local})
                }
                None => json!({"os-version": "", "build-version": ""}),
            };
            software_update.insert("pending-version".into(), pending);
            let failure = match (&self.failure, &self.install_state) {
                (Some((count, reason)), InstallState::Failed) => {
                    json!({"count": count, "reason": reason, "timestamp": now.to_rfc3339()})
                }
                _ => json!({"count": 0}),
            };
            software_update.insert("failure-reason".into(), failure);
            let reason = match &self.install {
                Some(install) => {
                    json!({"reason": ["declaration"], "declaration-id": install.declaration_id})
                }
                None => json!({"reason": []}),
            };
            software_update.insert("install-reason".into(), reason);
            if self.spec.reports_device_id() {
                software_update.insert("device-id".into(), json!(self.spec.gdmf_id));
                software_update.insert("beta-enrollment".into(), json!(""));
            }
        }
        let mut items = json!({ "device": device });
        if !software_update.is_empty() {
            items["softwareupdate"] = Value::Object(software_update);
        }
        if with_declarations {
            let mut lists: BTreeMap<&str, Vec<Value>> =
                ["activations", "configurations", "assets", "management"]
                    .into_iter()
                    .map(|k| (k, vec![]))
                    .collect();
            for declaration in self.declarations.values() {
                let list = match declaration.category() {
                    Ok(updraft_ddm::DeclarationCategory::Activation) => "activations",
                    Ok(updraft_ddm::DeclarationCategory::Asset) => "assets",
                    Ok(updraft_ddm::DeclarationCategory::Management) => "management",
                    _ => "configurations",
                };
                let supported = declaration.declaration_type
                    != SoftwareUpdateEnforcementSpecific::TYPE
                    || self.spec.supports_enforcement();
                let mut entry = json!({"identifier": declaration.identifier, "server-token": declaration.server_token,
                                       "active": supported, "valid": if supported { "valid" } else { "invalid" }});
                if !supported {
                    entry["reasons"] = json!([{"code": "Error.ConfigurationNotSupported", "description": "The configuration is not supported on this device."}]);
                }
                if let Some(l) = lists.get_mut(list) {
                    l.push(entry);
                }
            }
            items["management"] = json!({ "declarations": lists });
            if !self.sent_capabilities {
                let mut configurations = vec![
                    "com.apple.configuration.management.status-subscriptions",
                    "com.apple.configuration.passcode.settings",
                ];
                if self.spec.supports_enforcement() {
                    configurations.push(SoftwareUpdateEnforcementSpecific::TYPE);
                }
                items["management"]["client-capabilities"] = json!({
                    "supported-versions": ["1.0.0"],
                    "supported-payloads": {
                        "declarations": {"activations": ["com.apple.activation.simple"], "assets": [], "configurations": configurations, "management": []},
                        "status-items": SOFTWARE_UPDATE_STATUS_ITEMS,
                    }
                });
            }
        }
        json!({"StatusItems": items, "Errors": []})
    }

    /// The daily "safety sync": everything, with `FullReport: true`.
    async fn full_report(
        &mut self,
        transport: &impl Transport,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let was_sent = self.sent_capabilities;
        self.sent_capabilities = false;
        let mut report = self.status_report(now, true);
        self.sent_capabilities = was_sent;
        report["FullReport"] = json!(true);
        let body = serde_json::to_vec(&report).unwrap_or_default();
        expect_ok(self.ddm(transport, "status", Some(body)).await?)?;
        self.last_report = Some(now);
        Ok(())
    }

    async fn report(
        &mut self,
        transport: &impl Transport,
        now: DateTime<Utc>,
        with_declarations: bool,
    ) -> Result<(), String> {
        let report = self.status_report(now, with_declarations || !self.sent_capabilities);
        let body = serde_json::to_vec(&report).unwrap_or_default();
        expect_ok(self.ddm(transport, "status", Some(body)).await?)?;
        if with_declarations {
            self.sent_capabilities = true;
        }
        self.last_report = Some(now);
        Ok(())
    }

    /// Whether the device is enrolled.
    pub fn is_enrolled(&self) -> bool {
        self.enrolled
    }

    /// Whether it waits to enroll until later than `now`.
    pub fn enrolls_later(&self, now: DateTime<Utc>) -> bool {
        self.spec.enrolls_at.is_some_and(|at| now < at)
    }
}

fn expect_ok((status, body): (u16, Vec<u8>)) -> Result<Vec<u8>, String> {
    if status == 200 {
        Ok(body)
    } else {
        Err(format!(
            "server answered {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: Vec<u8>) -> Result<T, String> {
    serde_json::from_slice(&body).map_err(|e| format!("unexpected JSON from the server: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declaration(token: &str, payload: Value) -> Declaration {
        serde_json::from_value(json!({
            "Type": "com.apple.configuration.softwareupdate.enforcement.specific",
            "Identifier": "com.updraft.su.1",
            "ServerToken": token,
            "Payload": payload,
        }))
        .unwrap()
    }

    #[test]
    fn devices_share_one_copy_of_each_revision_and_keep_what_the_server_sent() {
        let shared = SharedDeclarations::default();
        let first = shared.share(declaration("t1", json!({"TargetOSVersion": "26.4.1"})));
        let again = shared.share(declaration("t1", json!({"TargetOSVersion": "26.4.1"})));
        assert!(Arc::ptr_eq(&first, &again));
        let revised = shared.share(declaration("t2", json!({"TargetOSVersion": "26.4.2"})));
        assert_eq!(revised.payload["TargetOSVersion"], "26.4.2");
        // A token reused for other content: the device holds what it was sent.
        let reused = shared.share(declaration("t1", json!({"TargetOSVersion": "26.5"})));
        assert_eq!(reused.payload["TargetOSVersion"], "26.5");
        assert_eq!(first.payload["TargetOSVersion"], "26.4.1");
    }
}
