//! The KMFDDM client against Updraft's server on a loopback socket: the contract both sides keep.

use std::sync::Arc;

use updraft_ddm::checkin::{CheckinMessage, DeclarativeManagementCheckin, EnrollmentKeys};
use updraft_ddm::{ActivationSimple, Declaration};
use updraft_mdm::{
    Assignment, AssignmentStore, DeclarationStore, KmfddmClient, MdmError, Notifier, PushResult,
    StatusSource,
};
use updraft_server::{AppState, Db, Limits, NoPusher, SealingKey, ServerConfig};

/// The device CA of the servers these tests start: their devices sign what they send.
static DEVICE_CA: std::sync::LazyLock<updraft_sim::IdentityIssuer> =
    std::sync::LazyLock::new(|| {
        updraft_sim::IdentityIssuer::generate("Contract device CA").unwrap()
    });

async fn serve(dir: &tempfile::TempDir) -> String {
    let db = Db::open(&dir.path().join("server.db")).await.unwrap();
    let trust =
        updraft_server::DeviceTrust::from_pem(&[DEVICE_CA.ca_pem().as_bytes().to_vec()], None)
            .unwrap();
    let state = AppState::new(ServerConfig {
        db,
        clock: Arc::new(updraft_clock::SystemClock),
        pusher: Arc::new(NoPusher),
        sealing_key: SealingKey::from_bytes(&[1; 32]),
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
    url
}

/// A check-in signed by the device it names (one identity per device, as it enrolled).
async fn checkin(url: &str, message: CheckinMessage) -> u16 {
    static IDENTITIES: std::sync::Mutex<Vec<(String, updraft_sim::DeviceIdentity)>> =
        std::sync::Mutex::new(Vec::new());
    let device = message
        .enrollment()
        .device_id()
        .unwrap_or_default()
        .to_owned();
    let identity = {
        let mut known = IDENTITIES.lock().unwrap();
        match known.iter().find(|(id, _)| *id == device) {
            Some((_, identity)) => identity.clone(),
            None => {
                let identity = DEVICE_CA.issue(&device).unwrap();
                known.push((device, identity.clone()));
                identity
            }
        }
    };
    let body = message.to_xml();
    reqwest::Client::new()
        .put(format!("{url}/mdm/checkin"))
        .header("mdm-signature", identity.sign(&body).unwrap())
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn declaration() -> Declaration {
    Declaration::new(
        "act",
        &ActivationSimple {
            standard_configurations: vec!["cfg".into()],
            predicate: None,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn declarations_sets_and_assignments_report_changes() {
    let dir = tempfile::tempdir().unwrap();
    let client = KmfddmClient::updraft(&serve(&dir).await, "key").unwrap();
    assert!(client.put_declaration(&declaration()).await.unwrap());
    assert!(
        !client.put_declaration(&declaration()).await.unwrap(),
        "an identical PUT is unchanged"
    );
    let stored = client.declaration("act").await.unwrap().unwrap();
    assert_eq!(stored.server_token, declaration().server_token);
    assert_eq!(client.declaration("missing").await.unwrap(), None);
    assert!(client.add_to_set("s1", "act").await.unwrap());
    assert!(!client.add_to_set("s1", "act").await.unwrap());

    let assignments = vec![
        Assignment {
            enrollment_id: "E1".into(),
            set: "s1".into(),
        },
        Assignment {
            enrollment_id: "E2".into(),
            set: "s1".into(),
        },
    ];
    assert_eq!(client.assign(&assignments).await.unwrap().changed, 2);
    assert_eq!(
        client.assign(&assignments).await.unwrap().changed,
        0,
        "assigning again changes nothing"
    );
    assert_eq!(client.enrollment_sets("E1").await.unwrap(), ["s1"]);
    assert_eq!(client.all_assignments().await.unwrap(), assignments);
    assert_eq!(client.unassign(&assignments[..1]).await.unwrap().changed, 1);
    assert!(client.enrollment_sets("E1").await.unwrap().is_empty());

    client.touch("act").await.unwrap();
    assert_ne!(
        client
            .declaration("act")
            .await
            .unwrap()
            .unwrap()
            .server_token,
        stored.server_token
    );
    // Nothing can be pushed here: the server has no push certificate, and E2 never enrolled.
    let pushed = client.push(&["E2".into()]).await.unwrap();
    assert!(
        matches!(&pushed["E2"], PushResult::Failed(reason) if reason.contains("push token")),
        "{pushed:?}"
    );
}

#[tokio::test]
async fn the_status_feed_follows_devices_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve(&dir).await;
    let client = KmfddmClient::updraft(&url, "key").unwrap();
    let keys = EnrollmentKeys {
        udid: Some("UDID-1".into()),
        ..Default::default()
    };
    let auth = updraft_ddm::checkin::Authenticate {
        enrollment: keys.clone(),
        topic: "t".into(),
        product_name: Some("iPhone15,2".into()),
        os_version: Some("26.3".into()),
        ..Default::default()
    };
    assert_eq!(checkin(&url, CheckinMessage::Authenticate(auth)).await, 200);
    let first = client.status_changes(0, 100).await.unwrap();
    assert_eq!(first.changes.len(), 1);
    assert_eq!(
        first.changes[0].enrollment.product_name.as_deref(),
        Some("iPhone15,2")
    );
    assert!(first.changes[0].status.is_none());
    assert!(
        client
            .status_changes(first.next, 100)
            .await
            .unwrap()
            .changes
            .is_empty()
    );

    let report =
        br#"{"StatusItems": {"softwareupdate": {"install-state": "prepared"}}, "Errors": []}"#
            .to_vec();
    let status = CheckinMessage::DeclarativeManagement(DeclarativeManagementCheckin {
        enrollment: keys,
        endpoint: "status".into(),
        data: Some(report),
    });
    assert_eq!(checkin(&url, status).await, 200);
    let second = client.status_changes(first.next, 100).await.unwrap();
    assert_eq!(second.changes.len(), 1);
    let status: serde_json::Value =
        serde_json::from_str(second.changes[0].status.as_ref().unwrap().get()).unwrap();
    assert_eq!(
        status["StatusItems"]["softwareupdate"]["install-state"],
        "prepared"
    );
    assert!(second.next > first.next);
}

#[tokio::test]
async fn a_wrong_key_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let client = KmfddmClient::updraft(&serve(&dir).await, "wrong").unwrap();
    let error = client.put_declaration(&declaration()).await.unwrap_err();
    assert!(matches!(error, MdmError::Unauthorized { .. }), "{error}");
    assert!(error.to_string().contains("API key"));
    let nowhere = KmfddmClient::updraft("http://127.0.0.1:9", "key").unwrap();
    assert!(matches!(
        nowhere.status_changes(0, 1).await.unwrap_err(),
        MdmError::Unreachable { .. }
    ));
}
