//! Each port's conformance suite (`updraft_mdm::conformance`) against `updraft serve` (always),
//! against NanoHUB when `NANOHUB_BIN` names its binary (started here on loopback with a CA made
//! here), and against deliberately wrong servers, to show that each suite can fail.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;

use updraft_clock::{ManualClock, SharedClock};
use updraft_ddm::Declaration;
use updraft_ddm::checkin::{
    Authenticate, CheckinMessage, DeclarativeManagementCheckin, EnrollmentKeys, TokenUpdate,
};
use updraft_mdm::conformance::{self, Failure};
use updraft_mdm::fake::FakeServer;
use updraft_mdm::{
    AssignOutcome, Assignment, AssignmentStore, DeclarationStore, KmfddmClient, MdmError,
    PollingStatusSource, Preset, ServerProfile,
};
use updraft_server::{AppState, Db, Limits, NoPusher, SealingKey, ServerConfig};
use updraft_sim::{DeviceIdentity, IdentityIssuer};

/// A server under test: its admin client, and where its devices check in.
struct Under {
    client: Arc<KmfddmClient>,
    mdm_url: String,
    identities: Option<IdentityIssuer>,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn updraft_serve() -> Under {
    let dir = tempfile::tempdir().unwrap();
    let issuer = IdentityIssuer::generate("conformance device CA").unwrap();
    let trust = updraft_server::DeviceTrust::from_pem(&[issuer.ca_pem().as_bytes().to_vec()], None)
        .unwrap();
    let state = AppState::new(ServerConfig {
        db: Db::open(&dir.path().join("server.db")).await.unwrap(),
        clock: Arc::new(updraft_clock::SystemClock),
        pusher: Arc::new(NoPusher),
        sealing_key: SealingKey::from_bytes(&[5; 32]),
        api_key: Some("key".into()),
        forwarding: updraft_server::DdmForwarding::Off,
        device_trust: Some(trust),
        push_certificate: None,
        webhook: None,
        limits: Limits::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, updraft_server::app(state)).await });
    Under {
        client: Arc::new(KmfddmClient::updraft(&url, "key").unwrap()),
        mdm_url: format!("{url}/mdm"),
        identities: Some(issuer),
        _guard: Box::new(dir),
    }
}

/// NanoHUB from `NANOHUB_BIN`, with file storage and a CA made here; none without the variable.
async fn nanohub() -> Option<Under> {
    let binary = std::env::var_os("NANOHUB_BIN")?;
    let dir = tempfile::tempdir().unwrap();
    let issuer = IdentityIssuer::generate("conformance device CA").unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, issuer.ca_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(binary)
        .args(["-storage", "file", "-storage-dsn"])
        .arg(dir.path().join("data"))
        .args(["-api-key", "hub-key", "-ca"])
        .arg(&ca)
        .args(["-listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("NANOHUB_BIN starts");
    /// Stops NanoHUB, then removes its folder.
    struct Kill {
        child: std::process::Child,
        _dir: tempfile::TempDir,
    }
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{base}/version")).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let profile = ServerProfile::preset(Preset::NanoHub, &base, "hub-key");
    Some(Under {
        client: Arc::new(KmfddmClient::new(profile).unwrap()),
        mdm_url: format!("{base}/mdm"),
        identities: Some(issuer),
        _guard: Box::new(Kill { child, _dir: dir }),
    })
}

/// A device that checks in as Apple's do: to one MDM URL, signed when the server wants it.
struct Device {
    udid: String,
    mdm_url: String,
    identity: Option<DeviceIdentity>,
}

impl Device {
    fn new(under: &Under, udid: &str) -> Self {
        Self {
            udid: udid.into(),
            mdm_url: under.mdm_url.clone(),
            identity: under.identities.as_ref().map(|i| i.issue(udid).unwrap()),
        }
    }

    fn keys(&self) -> EnrollmentKeys {
        EnrollmentKeys {
            udid: Some(self.udid.clone()),
            ..Default::default()
        }
    }

    async fn checkin(&self, message: CheckinMessage) -> Result<(), Failure> {
        let body = message.to_xml();
        let mut request = reqwest::Client::new()
            .put(&self.mdm_url)
            .header("content-type", "application/x-apple-aspen-mdm-checkin");
        if let Some(identity) = &self.identity {
            request = request.header("mdm-signature", identity.sign(&body).unwrap());
        }
        let response = request.body(body).send().await.map_err(|e| e.to_string())?;
        match response.status().as_u16() {
            200 => Ok(()),
            status => Err(format!(
                "check-in answered {status}: {}",
                response.text().await.unwrap_or_default()
            )),
        }
    }

    async fn enroll(&self) -> Result<(), Failure> {
        self.checkin(CheckinMessage::Authenticate(Authenticate {
            enrollment: self.keys(),
            topic: "com.apple.mgmt.External.conformance".into(),
            product_name: Some("Mac14,2".into()),
            serial_number: Some(format!("SER{}", self.udid)),
            ..Default::default()
        }))
        .await?;
        self.checkin(CheckinMessage::TokenUpdate(TokenUpdate {
            enrollment: self.keys(),
            topic: "com.apple.mgmt.External.conformance".into(),
            token: vec![7; 32],
            push_magic: "magic".into(),
            ..Default::default()
        }))
        .await
    }

    async fn report(&self, json: &str) -> Result<(), Failure> {
        self.checkin(CheckinMessage::DeclarativeManagement(
            DeclarativeManagementCheckin {
                enrollment: self.keys(),
                endpoint: "status".into(),
                data: Some(json.as_bytes().to_vec()),
            },
        ))
        .await
    }
}

fn run_name() -> String {
    format!(
        "r{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn every_suite(under: &Under) {
    let run = run_name();
    let client = under.client.as_ref();
    conformance::declaration_store(client, client, &run)
        .await
        .expect("declarations and sets");
    let device = Device::new(under, &format!("CONF-{run}"));
    device.enroll().await.expect("enrolls");
    conformance::assignment_store(client, client, &run, &device.udid, false)
        .await
        .expect("assignments");
    conformance::notifier(client, std::slice::from_ref(&device.udid), false)
        .await
        .expect("pushes");

    // Status by polling `status-report`, which both servers offer.
    let polled = Device::new(under, &format!("POLL-{run}"));
    polled.enroll().await.expect("enrolls");
    let clock: SharedClock = Arc::new(ManualClock::new("2026-04-10T09:00:00Z".parse().unwrap()));
    let list = updraft_mdm::parse_enrollment_list(&polled.udid).unwrap();
    let polling =
        PollingStatusSource::new(under.client.clone(), list, clock, chrono::Duration::zero());
    conformance::status_source(&polling, &polled.udid, |json| polled.report(json))
        .await
        .expect("status by polling");
}

#[tokio::test]
async fn updraft_serve_passes_every_suite() {
    let under = updraft_serve().await;
    every_suite(&under).await;
    // Its own status-changes feed, too.
    let device = Device::new(&under, "FEED-1");
    device.enroll().await.unwrap();
    conformance::status_source(under.client.as_ref(), "FEED-1", |json| device.report(json))
        .await
        .expect("status from the feed");
}

#[tokio::test]
async fn nanohub_passes_every_suite_when_given() {
    let Some(under) = nanohub().await else {
        eprintln!("NANOHUB_BIN is not set: NanoHUB's conformance was not run");
        return;
    };
    every_suite(&under).await;
    // NanoHUB has no status-changes feed: it says so plainly.
    let error = updraft_mdm::StatusSource::status_changes(under.client.as_ref(), 0, 1)
        .await
        .unwrap_err();
    assert!(matches!(error, MdmError::Unsupported(_)), "{error}");
}

/// A server that reports every declaration as changed, and touching anything as done.
struct CarelessDeclarations(FakeServer);

#[async_trait]
impl DeclarationStore for CarelessDeclarations {
    async fn put_declaration(&self, declaration: &Declaration) -> Result<bool, MdmError> {
        self.0.put_declaration(declaration).await.map(|_| true)
    }
    async fn add_to_set(&self, set: &str, id: &str) -> Result<bool, MdmError> {
        self.0.add_to_set(set, id).await
    }
    async fn touch(&self, _: &str) -> Result<(), MdmError> {
        Ok(())
    }
}

/// A server that claims every push went out.
struct Boastful<'a>(&'a KmfddmClient);

#[async_trait]
impl AssignmentStore for Boastful<'_> {
    async fn assign(&self, pairs: &[Assignment]) -> Result<AssignOutcome, MdmError> {
        let outcome = self.0.assign(pairs).await?;
        Ok(AssignOutcome {
            push_failed: BTreeMap::new(),
            ..outcome
        })
    }
    async fn unassign(&self, pairs: &[Assignment]) -> Result<AssignOutcome, MdmError> {
        self.0.unassign(pairs).await
    }
}

#[tokio::test]
async fn the_suites_fail_on_a_server_that_breaks_their_rules() {
    let under = updraft_serve().await;
    let careless = CarelessDeclarations(FakeServer::default());
    let failure = conformance::declaration_store(&careless, &under.client, &run_name())
        .await
        .unwrap_err();
    assert!(failure.contains("same declaration again"), "{failure}");

    let device = Device::new(&under, "BOAST-1");
    device.enroll().await.unwrap();
    let boastful = Boastful(&under.client);
    let failure = conformance::assignment_store(&boastful, &under.client, "b", "BOAST-1", false)
        .await
        .unwrap_err();
    assert!(failure.contains("cannot push"), "{failure}");
}
