//! Attacks on the device side: who may speak for a device, and what a hostile body can do.
//! Each test fails if its defence is removed; each ends by checking that a legitimate device
//! is still served.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use updraft_ddm::hostile::{nested_binary, nested_xml};

use common::*;
use updraft_ddm::checkin::{
    Authenticate, CheckOut, CheckinMessage, CommandReport, DeclarativeManagementCheckin,
    EnrollmentKeys, GetBootstrapToken, GetBootstrapTokenResponse, SetBootstrapToken, TokenUpdate,
};
use updraft_server::{DdmForwarding, Limits};
use updraft_sim::IdentityIssuer;

const OTHER: &str = "0B5E1C2A-7A1F-4D0B-9C51-2E1E7D3D6A10";

fn keys(device: &str) -> EnrollmentKeys {
    EnrollmentKeys {
        udid: Some(device.into()),
        ..Default::default()
    }
}

fn authenticate(device: &str) -> Vec<u8> {
    CheckinMessage::Authenticate(Authenticate {
        enrollment: keys(device),
        topic: "com.apple.mgmt.External.test".into(),
        ..Default::default()
    })
    .to_xml()
}

fn token_update(device: &str) -> Vec<u8> {
    CheckinMessage::TokenUpdate(TokenUpdate {
        enrollment: keys(device),
        topic: "com.apple.mgmt.External.test".into(),
        token: vec![7; 32],
        push_magic: format!("magic-{device}"),
        ..Default::default()
    })
    .to_xml()
}

fn status(device: &str, report: &Value) -> Vec<u8> {
    CheckinMessage::DeclarativeManagement(DeclarativeManagementCheckin {
        enrollment: keys(device),
        endpoint: "status".into(),
        data: Some(report.to_string().into_bytes()),
    })
    .to_xml()
}

fn check_out(device: &str) -> Vec<u8> {
    CheckinMessage::CheckOut(CheckOut {
        enrollment: keys(device),
        topic: "com.apple.mgmt.External.test".into(),
    })
    .to_xml()
}

fn get_bootstrap_token(device: &str) -> Vec<u8> {
    CheckinMessage::GetBootstrapToken(GetBootstrapToken {
        enrollment: keys(device),
        ..Default::default()
    })
    .to_xml()
}

fn os_version(version: &str) -> Value {
    json!({"StatusItems": {"device": {"operating-system": {"version": version}}}, "Errors": []})
}

impl Server {
    async fn enroll_as_itself(&self, device: &str) {
        for body in [authenticate(device), token_update(device)] {
            let (code, answer) = self.checkin(body).await;
            assert_eq!(code, StatusCode::OK, "{}", String::from_utf8_lossy(&answer));
        }
    }

    async fn os_version_of(&self, device: &str) -> Option<String> {
        let changes = self.status_changes(0).await;
        changes["changes"]
            .as_array()?
            .iter()
            .find(|c| c["enrollment"]["id"] == device)
            .and_then(|c| {
                c["status"]["StatusItems"]["device"]["operating-system"]["version"].as_str()
            })
            .map(str::to_owned)
    }

    async fn enrollments(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM enrollments").await
    }

    /// The device's own requests still work: a status report lands.
    async fn still_serves(&self, device: &str, version: &str) {
        let (code, _) = self.checkin(status(device, &os_version(version))).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(self.os_version_of(device).await.as_deref(), Some(version));
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[tokio::test]
async fn a_request_without_an_identity_is_a_400_on_every_device_route_and_stores_nothing() {
    let server = server(DdmForwarding::Off).await;
    for path in ["/mdm/checkin", "/mdm", "/mdm/connect"] {
        let body = if path == "/mdm/connect" {
            CommandReport::idle(UDID).to_xml()
        } else {
            authenticate(UDID)
        };
        let (code, answer) = server.device_request(path, body, None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            text(&answer).contains("Mdm-Signature"),
            "{path}: {}",
            text(&answer)
        );
    }
    assert_eq!(server.enrollments().await, 0);
    server.enroll_as_itself(UDID).await;
    server.still_serves(UDID, "15.1").await;
}

#[tokio::test]
async fn an_identity_from_another_ca_is_a_400() {
    let server = server(DdmForwarding::Off).await;
    let stranger = IdentityIssuer::generate("Someone else's CA")
        .unwrap()
        .issue(UDID)
        .unwrap();
    let (code, answer) = server
        .device_request("/mdm/checkin", authenticate(UDID), Some(&stranger))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        text(&answer).contains("not from a device CA"),
        "{}",
        text(&answer)
    );
    assert_eq!(server.enrollments().await, 0);
}

#[tokio::test]
async fn another_devices_certificate_cannot_speak_for_a_device() {
    let server = server(DdmForwarding::Off).await;
    server.enroll_as_itself(UDID).await;
    server.enroll_as_itself(OTHER).await;
    server.still_serves(UDID, "15.1").await;
    let token = SetBootstrapToken {
        enrollment: keys(UDID),
        bootstrap_token: Some(b"the victim's bootstrap token".to_vec()),
        ..Default::default()
    };
    let (code, _) = server
        .checkin(CheckinMessage::SetBootstrapToken(token).to_xml())
        .await;
    assert_eq!(code, StatusCode::OK);

    let thief = server.identity(OTHER);
    let forged = [
        ("Authenticate", "/mdm/checkin", authenticate(UDID)),
        ("TokenUpdate", "/mdm/checkin", token_update(UDID)),
        ("CheckOut", "/mdm/checkin", check_out(UDID)),
        (
            "status report",
            "/mdm/checkin",
            status(UDID, &os_version("99.0")),
        ),
        (
            "command report",
            "/mdm/connect",
            CommandReport::idle(UDID).to_xml(),
        ),
        (
            "GetBootstrapToken",
            "/mdm/checkin",
            get_bootstrap_token(UDID),
        ),
        (
            "status on NanoMDM's one endpoint",
            "/mdm",
            status(UDID, &os_version("99.0")),
        ),
    ];
    for (what, path, body) in forged {
        let (code, answer) = server.device_request(path, body, Some(&thief)).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{what}: {}", text(&answer));
        assert!(
            !text(&answer).contains("victim's bootstrap token"),
            "{what} leaked the token"
        );
    }
    // Nothing the thief sent took: the device is enrolled, its status and token its own.
    let enrollment: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT checked_out_at, push_magic FROM enrollments WHERE id = ?")
            .bind(UDID)
            .fetch_one(&server.pool().await)
            .await
            .unwrap();
    assert_eq!(enrollment, (None, Some(format!("magic-{UDID}"))));
    assert_eq!(server.os_version_of(UDID).await.as_deref(), Some("15.1"));
    let (code, answer) = server.checkin(get_bootstrap_token(UDID)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        GetBootstrapTokenResponse::parse(&answer)
            .unwrap()
            .bootstrap_token,
        Some(b"the victim's bootstrap token".to_vec())
    );
    server.still_serves(UDID, "15.2").await;
    server.still_serves(OTHER, "14.7").await;
}

#[tokio::test]
async fn a_signature_replayed_on_another_body_is_a_400() {
    let server = server(DdmForwarding::Off).await;
    server.enroll_as_itself(UDID).await;
    let identity = server.identity(UDID);
    let signed = identity.sign(&status(UDID, &os_version("15.1"))).unwrap();
    let request = Request::put("/mdm/checkin")
        .header("mdm-signature", signed)
        .body(Body::from(status(UDID, &os_version("99.0"))))
        .unwrap();
    let (code, answer) = server.send(request).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        text(&answer).contains("does not verify"),
        "{}",
        text(&answer)
    );
    assert_eq!(server.os_version_of(UDID).await, None);
    let garbage = Request::put("/mdm/checkin")
        .header("mdm-signature", "bm90IGEgc2lnbmF0dXJl")
        .body(Body::from(authenticate(UDID)))
        .unwrap();
    assert_eq!(server.send(garbage).await.0, StatusCode::BAD_REQUEST);
    server.still_serves(UDID, "15.1").await;
}

#[tokio::test]
async fn forwarded_ddm_is_off_unless_keyed_or_allowed_unsigned() {
    let server = server(DdmForwarding::Off).await;
    server.enroll_as_itself(UDID).await;
    let forged = Request::put("/ddm/status")
        .header("x-enrollment-id", UDID)
        .body(Body::from(os_version("99.0").to_string()))
        .unwrap();
    assert_eq!(server.send(forged).await.0, StatusCode::NOT_FOUND);
    assert_eq!(server.os_version_of(UDID).await, None);

    let keyed = common::server(DdmForwarding::Signed(b"hmac-key".to_vec())).await;
    keyed.enroll_as_itself(UDID).await;
    let unsigned = Request::put("/ddm/status")
        .header("x-enrollment-id", UDID)
        .body(Body::from(os_version("99.0").to_string()))
        .unwrap();
    assert_eq!(keyed.send(unsigned).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(keyed.os_version_of(UDID).await, None);
    keyed.still_serves(UDID, "15.1").await;
}

#[tokio::test]
async fn hostile_bodies_are_refused_with_the_reason_and_the_server_keeps_serving() {
    let limits = Limits::default();
    let server = server_with(DdmForwarding::Off, limits).await;
    server.enroll_as_itself(UDID).await;
    let identity = server.identity(UDID);
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "XML nested 100,000 deep",
            nested_xml(100_000),
            StatusCode::BAD_REQUEST,
            "deeper than 64",
        ),
        (
            "binary nested 100,000 deep",
            nested_binary(100_000),
            StatusCode::BAD_REQUEST,
            "deeper than 64",
        ),
        (
            "binary garbage",
            garbage,
            StatusCode::BAD_REQUEST,
            "property list",
        ),
        (
            "over the size limit",
            vec![b' '; limits.max_checkin_bytes + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
    ];
    for (what, body, expected, reason) in cases {
        for path in ["/mdm/checkin", "/mdm/connect", "/mdm"] {
            // Signed, so the parser is reached; unsigned, so the identity check refuses first.
            for signer in [Some(&identity), None] {
                let (code, answer) = server.device_request(path, body.clone(), signer).await;
                assert_eq!(code, expected, "{what} at {path}: {}", text(&answer));
                if signer.is_some() {
                    assert!(text(&answer).contains(reason), "{what}: {}", text(&answer));
                }
            }
        }
    }
    // A status report whose JSON nests 100,000 deep.
    let deep_json = format!(
        "{{\"StatusItems\":{{\"a\":{}{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (code, answer) = server
        .checkin(status_raw(UDID, deep_json.into_bytes()))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{}", text(&answer));
    assert!(
        text(&answer).contains("recursion limit"),
        "{}",
        text(&answer)
    );
    let shallow_but_deep = format!(
        "{{\"StatusItems\":{}{}}}",
        "{\"a\":".repeat(200),
        "1".to_owned() + &"}".repeat(200)
    );
    let (code, answer) = server
        .checkin(status_raw(UDID, shallow_but_deep.into_bytes()))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{}", text(&answer));
    assert!(
        text(&answer).contains("recursion limit"),
        "{}",
        text(&answer)
    );
    assert_eq!(server.enrollments().await, 1);
    assert_eq!(server.stored_raw_reports().await, 0);
    server.still_serves(UDID, "15.1").await;
}

fn status_raw(device: &str, data: Vec<u8>) -> Vec<u8> {
    CheckinMessage::DeclarativeManagement(DeclarativeManagementCheckin {
        enrollment: keys(device),
        endpoint: "status".into(),
        data: Some(data),
    })
    .to_xml()
}

/// Peak resident memory of this process, from Linux's /proc.
fn peak_rss_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// Four status reads of the device at once: the status-changes feed, status-values, the
/// newest raw report and status-errors.
async fn four_status_reads_at_once(server: &Server) -> Vec<StatusCode> {
    let paths = [
        "/v1/x-updraft/status-changes?after=0".to_owned(),
        format!("/v1/status-values/{UDID}"),
        format!("/v1/status-report/{UDID}?index=0"),
        format!("/v1/status-errors/{UDID}"),
    ];
    let (a, b, c, d) = tokio::join!(
        server.admin("GET", &paths[0], None),
        server.admin("GET", &paths[1], None),
        server.admin("GET", &paths[2], None),
        server.admin("GET", &paths[3], None),
    );
    vec![a.0, b.0, c.0, d.0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_reports_of_fifty_thousand_new_keys_keep_a_device_within_its_bounds() {
    let limits = Limits::default();
    let server = server_with(DdmForwarding::Off, limits).await;
    server.enroll_as_itself(UDID).await;
    server.still_serves(UDID, "15.1").await;
    for round in 0..30 {
        let mut junk = serde_json::Map::new();
        for key in 0..50_000 {
            junk.insert(format!("k{round}-{key}"), json!(1));
        }
        let report = json!({"StatusItems": {"junk": junk}, "Errors": []});
        let body = report.to_string().into_bytes();
        assert!(body.len() < limits.max_status_bytes, "{} bytes", body.len());
        let (code, answer) = server.checkin(status_raw(UDID, body)).await;
        assert_eq!(code, StatusCode::OK, "round {round}: {}", text(&answer));
    }
    let merged: String = sqlx::query_scalar("SELECT report FROM status WHERE enrollment_id = ?")
        .bind(UDID)
        .fetch_one(&server.pool().await)
        .await
        .unwrap();
    // The bound: 1 MiB of unknown items and 256 errors, whatever the device sends.
    assert!(
        merged.len() < 2 * 1024 * 1024,
        "merged status of {} bytes",
        merged.len()
    );
    let (code, errors) = server
        .admin("GET", &format!("/v1/status-errors/{UDID}"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let errors = json_body(&errors);
    let described = errors[UDID].to_string();
    assert!(described.contains("not kept by the server"), "{described}");
    // Reads of the device's status (four at once, as consoles and tools do) stay small.
    let started = std::time::Instant::now();
    let reads = four_status_reads_at_once(&server).await;
    let read_time = started.elapsed();
    assert!(
        reads.iter().all(|code| *code == StatusCode::OK),
        "{reads:?}"
    );
    let peak = peak_rss_mb();
    eprintln!(
        "30 reports of 50,000 new keys: merged status {} KB, 4 parallel status reads {read_time:?}, peak RSS {peak:?} MB",
        merged.len() / 1024
    );
    if let Some(peak) = peak {
        // Bodies built by this test included: 30 reports of 1 MB, parsed one at a time.
        assert!(peak < 400, "peak RSS {peak} MB");
    }
    server.still_serves(UDID, "15.2").await;
}

#[tokio::test]
async fn a_key_of_two_hundred_dots_loses_nothing_across_a_restart() {
    let mut server = server(DdmForwarding::Off).await;
    server.enroll_as_itself(UDID).await;
    let dotted = vec!["a"; 201].join(".");
    let report = json!({"StatusItems": {
        "device": {"operating-system": {"version": "15.1"}, "model": {"family": "Mac"}},
        dotted.clone(): 1,
    }, "Errors": []});
    let (code, _) = server.checkin(status(UDID, &report)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(server.os_version_of(UDID).await.as_deref(), Some("15.1"));
    let (_, errors) = server
        .admin("GET", &format!("/v1/status-errors/{UDID}"), None)
        .await;
    assert!(text(&errors).contains(&dotted), "{}", text(&errors));
    // A restart reads the merged status back; the next partial report merges into it.
    server.state = state_on(&server.db_path, DdmForwarding::Off, &server.issuer).await;
    let partial =
        json!({"StatusItems": {"softwareupdate": {"install-state": "downloading"}}, "Errors": []});
    assert_eq!(
        server.checkin(status(UDID, &partial)).await.0,
        StatusCode::OK
    );
    let changes = server.status_changes(0).await;
    let items = &changes["changes"][0]["status"]["StatusItems"];
    assert_eq!(items["device"]["operating-system"]["version"], "15.1");
    assert_eq!(items["device"]["model"]["family"], "Mac");
    assert_eq!(items["softwareupdate"]["install-state"], "downloading");
}
