//! The DDM server without a socket (`app().oneshot`), on NanoMDM's real check-in captures.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{Value, json};
use updraft_ddm::checkin::CommandStatus;

use common::*;
use updraft_ddm::checkin::{DeclarativeManagementCommand, GetBootstrapTokenResponse};
use updraft_server::DdmForwarding;

#[tokio::test]
async fn nanomdm_captures_enroll_a_device() {
    let server = server(DdmForwarding::Off).await;
    // Authenticate.1 is an iPad on iOS 9; Authenticate.2 and TokenUpdate.2 a Mac (same UDID).
    let (status, _) = server.checkin(fixture("Authenticate.1.plist")).await;
    assert_eq!(status, StatusCode::OK);
    server.enroll().await;
    let (status, body) = server.admin("GET", "/v1/x-updraft/enrollments", None).await;
    assert_eq!(status, StatusCode::OK);
    let enrollments = json_body(&body);
    let mac = enrollments
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == UDID)
        .unwrap();
    assert_eq!(mac["model"], "iMac14,2");
    assert_eq!(mac["serial_number"], "C02MT66KFLHH");
    assert_eq!(mac["push_ready"], true);
    // The first TokenUpdate turned declarative management on: a command waits for the device.
    let command = server
        .connect(None)
        .await
        .expect("a command waits for the device");
    assert_eq!(command.command.request_type, "DeclarativeManagement");
    // It was asked its name and zone first (answered in `connect`), and the console reads them.
    let (_, body) = server.admin("GET", "/v1/x-updraft/enrollments", None).await;
    let enrollments = json_body(&body);
    let mac = enrollments
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == UDID)
        .unwrap();
    assert_eq!(mac["device_name"], "Lab Mac");
    assert_eq!(mac["time_zone"], "Europe/Paris");
}

/// The token carried in a command's `Data`.
fn carried_token(command: &DeclarativeManagementCommand) -> Value {
    json_body(
        command
            .command
            .data
            .as_deref()
            .expect("the command carries tokens"),
    )["SyncTokens"]["DeclarationsToken"]
        .clone()
}

#[tokio::test]
async fn commands_carry_the_tokens_of_when_they_are_sent_and_a_change_during_a_sync_gets_its_own() {
    let server = server(DdmForwarding::Off).await;
    server.enroll().await;
    let declaration = json!({"Type": "com.apple.configuration.passcode.settings", "Identifier": "passcode",
        "Payload": {"MinimumLength": 6}});
    server
        .admin("PUT", "/v1/declarations", Some(declaration))
        .await;
    server
        .admin(
            "PUT",
            "/v1/set-declarations/base?declaration=passcode",
            None,
        )
        .await;

    // Queued at TokenUpdate with no sets; sent after one was assigned: the token of the sending.
    let before = server.declarations_token().await;
    server
        .admin("PUT", &format!("/v1/enrollment-sets/{UDID}?set=base"), None)
        .await;
    let first = server
        .connect(None)
        .await
        .expect("the command from enrollment");
    let assigned = server.declarations_token().await;
    assert_ne!(assigned, before);
    assert_eq!(carried_token(&first), assigned);

    // Unassigned while the device syncs for the first command: a second one is queued, and the
    // answer to the first gets it, carrying the token without the set.
    server
        .admin(
            "DELETE",
            &format!("/v1/enrollment-sets/{UDID}?set=base"),
            None,
        )
        .await;
    let second = server
        .connect(Some((CommandStatus::Acknowledged, &first.command_uuid)))
        .await
        .expect("a command for the change made during the sync");
    assert_ne!(second.command_uuid, first.command_uuid);
    assert_eq!(carried_token(&second), before);

    // NotNow: not sent again in the same session, but at the next Idle.
    assert!(
        server
            .connect(Some((CommandStatus::NotNow, &second.command_uuid)))
            .await
            .is_none()
    );
    let again = server
        .connect(None)
        .await
        .expect("NotNow is sent again at Idle");
    assert_eq!(again.command_uuid, second.command_uuid);
    assert!(
        server
            .connect(Some((CommandStatus::Acknowledged, &again.command_uuid)))
            .await
            .is_none()
    );
    assert!(
        server.connect(None).await.is_none(),
        "nothing is left to send"
    );
    assert_eq!(
        server.count("SELECT COUNT(*) FROM commands").await,
        0,
        "acknowledged commands are deleted"
    );
}

#[tokio::test]
async fn declarations_reach_the_device_through_sets_and_404_when_not_assigned() {
    let server = server(DdmForwarding::Off).await;
    server.enroll().await;
    let declaration = json!({"Type": "com.apple.configuration.softwareupdate.enforcement.specific", "Identifier": "su",
        "Payload": {"TargetOSVersion": "26.4.1", "TargetBuildVersion": "25E253", "TargetLocalDateTime": "2026-04-15T17:00:00"}});
    assert_eq!(
        server
            .admin("PUT", "/v1/declarations", Some(declaration.clone()))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    // The same declaration again is unchanged: 304 (KMFDDM's code; its openapi.yaml says otherwise).
    assert_eq!(
        server
            .admin("PUT", "/v1/declarations", Some(declaration))
            .await
            .0,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        server
            .admin("PUT", "/v1/set-declarations/wave1?declaration=su", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );

    let (_, before) = server.ddm("tokens", None).await;
    assert_eq!(
        server.ddm("declaration/configuration/su", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server
            .admin(
                "PUT",
                &format!("/v1/enrollment-sets/{UDID}?set=wave1"),
                None
            )
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .admin(
                "PUT",
                &format!("/v1/enrollment-sets/{UDID}?set=wave1"),
                None
            )
            .await
            .0,
        StatusCode::NOT_MODIFIED
    );

    let (status, tokens) = server.ddm("tokens", None).await;
    assert_eq!(status, StatusCode::OK);
    let tokens = json_body(&tokens);
    assert_ne!(
        tokens["SyncTokens"]["DeclarationsToken"],
        json_body(&before)["SyncTokens"]["DeclarationsToken"]
    );
    assert_eq!(tokens["SyncTokens"]["Timestamp"], "2026-04-10T09:00:00Z");
    let items = json_body(&server.ddm("declaration-items", None).await.1);
    assert_eq!(
        items["Declarations"]["Configurations"][0]["Identifier"],
        "su"
    );
    assert_eq!(items["Declarations"]["Activations"], json!([]));
    assert_eq!(
        items["DeclarationsToken"],
        tokens["SyncTokens"]["DeclarationsToken"]
    );
    let (status, fetched) = server.ddm("declaration/configuration/su", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_body(&fetched)["Payload"]["TargetOSVersion"], "26.4.1");
    // Asked under the wrong category, it is not there.
    assert_eq!(
        server.ddm("declaration/activation/su", None).await.0,
        StatusCode::NOT_FOUND
    );
}

/// A device's first full status report, as captured.
fn first_status_report() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/ddm-status/status.1st.json"),
    )
    .unwrap()
}

#[tokio::test]
async fn status_is_an_empty_200_after_commit_and_merges() {
    let server = server(DdmForwarding::Off).await;
    server.enroll().await;
    let report = first_status_report();
    let (status, body) = server.ddm("status", Some(report)).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    let incremental =
        json!({"StatusItems": {"softwareupdate": {"install-state": "downloading"}}, "Errors": []});
    assert_eq!(
        server
            .ddm("status", Some(incremental.to_string().into_bytes()))
            .await
            .0,
        StatusCode::OK
    );
    let (items, next) = server.merged_status_items().await;
    assert_eq!(items["softwareupdate"]["install-state"], "downloading");
    assert_eq!(items["device"]["operating-system"]["version"], "13.3.1");
    // The raw reports are kept, newest first.
    let (status, raw) = server.raw_report(0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_body(&raw), incremental);
    // Nothing after the cursor: an empty page.
    let empty = server.status_changes(next).await;
    assert_eq!(empty["changes"], json!([]));
}

#[tokio::test]
async fn a_report_that_changes_nothing_advances_the_feed_without_writing_the_status_again() {
    let server = server(DdmForwarding::Off).await;
    server.enroll().await;
    let mut full: Value = serde_json::from_slice(&first_status_report()).unwrap();
    full["FullReport"] = json!(true);
    let full = full.to_string().into_bytes();
    server.ddm("status", Some(full.clone())).await;
    let (first, cursor) = server.merged_status_items().await;
    // Marks the stored status, to see whether the next fold writes it again.
    let pool = server.pool().await;
    sqlx::query("UPDATE status SET updated_at = 'marked'")
        .execute(&pool)
        .await
        .unwrap();
    let updated_at = || async {
        sqlx::query_scalar::<_, String>("SELECT updated_at FROM status")
            .fetch_one(&pool)
            .await
            .unwrap()
    };

    // The daily full report, the same again: the device shows in the feed (it reported), with
    // the same status, which was not written again.
    server.ddm("status", Some(full)).await;
    let page = server.status_changes(cursor).await;
    assert_eq!(page["changes"][0]["enrollment"]["id"], UDID);
    assert_eq!(page["changes"][0]["status"]["StatusItems"], first);
    assert_eq!(updated_at().await, "marked");

    // A report that changes an item is written.
    let incremental =
        json!({"StatusItems": {"softwareupdate": {"install-state": "downloading"}}, "Errors": []});
    server
        .ddm("status", Some(incremental.to_string().into_bytes()))
        .await;
    let (items, _) = server.merged_status_items().await;
    assert_eq!(items["softwareupdate"]["install-state"], "downloading");
    assert_ne!(updated_at().await, "marked");
    pool.close().await;
}

#[tokio::test]
async fn only_the_newest_raw_reports_are_kept_and_the_merged_status_keeps_everything() {
    let server = server(DdmForwarding::Off).await;
    server.enroll().await;
    let first = first_status_report();
    assert_eq!(server.ddm("status", Some(first)).await.0, StatusCode::OK);
    let kept = updraft_server::writer::RAW_REPORTS_KEPT;
    let sent = 3 * kept + 5;
    for n in 0..sent {
        let report = json!({"StatusItems": {"test": {"n": n}}, "Errors": []});
        let body = report.to_string().into_bytes();
        assert_eq!(server.ddm("status", Some(body)).await.0, StatusCode::OK);
        if n % 7 == 0 {
            // Folds happen between reports as well as at the end.
            server.merged_status_items().await;
        }
    }
    let (items, _) = server.merged_status_items().await;
    assert_eq!(items["device"]["operating-system"]["version"], "13.3.1");
    let (status, newest) = server.raw_report(0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_body(&newest)["StatusItems"]["test"]["n"], sent - 1);
    let (status, oldest_kept) = server.raw_report(kept - 1).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json_body(&oldest_kept)["StatusItems"]["test"]["n"],
        sent - kept,
        "exactly the newest {kept} are kept"
    );
    assert_eq!(server.raw_report(kept).await.0, StatusCode::NOT_FOUND);
    // And nothing older is left behind in the database.
    assert_eq!(server.stored_raw_reports().await, kept as i64);
}

#[tokio::test]
async fn a_re_enrollment_starts_without_the_old_raw_reports() {
    let server = server(DdmForwarding::Off).await;
    server.enroll().await;
    assert_eq!(
        server.ddm("status", Some(first_status_report())).await.0,
        StatusCode::OK
    );
    server.merged_status_items().await;
    for n in 0..3 {
        // Acknowledged, not yet merged when the device enrolls again.
        let report = json!({"StatusItems": {"test": {"n": n}}, "Errors": []});
        let body = report.to_string().into_bytes();
        assert_eq!(server.ddm("status", Some(body)).await.0, StatusCode::OK);
    }
    server.enroll().await;
    assert_eq!(server.raw_report(0).await.0, StatusCode::NOT_FOUND);
    assert_eq!(server.stored_raw_reports().await, 0);

    let fresh = json!({"StatusItems": {"test": {"n": "fresh"}}, "Errors": []});
    let body = fresh.to_string().into_bytes();
    assert_eq!(server.ddm("status", Some(body)).await.0, StatusCode::OK);
    let (status, raw) = server.raw_report(0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_body(&raw), fresh);
    assert_eq!(server.stored_raw_reports().await, 1);
}

#[tokio::test]
async fn raw_reports_stored_before_the_kept_lists_existed_are_listed_on_upgrade() {
    // A database as the previous release left it: every raw report in one table, the last two
    // not yet merged when it stopped.
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("server.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db_path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let mut previous = sqlx::migrate!("./migrations");
    previous.migrations = previous.migrations[..2].to_vec().into();
    previous.run(&pool).await.unwrap();
    sqlx::query("INSERT INTO enrollments (id, enrolled_at) VALUES (?, '2026-04-01T00:00:00.000Z')")
        .bind(UDID)
        .execute(&pool)
        .await
        .unwrap();
    for n in 0..40 {
        let report = json!({"StatusItems": {"test": {"n": n}}, "Errors": []});
        insert_raw_report(&pool, "2026-04-02T00:00:00.000Z", &report).await;
    }
    sqlx::query("UPDATE counters SET value = 38 WHERE name = 'status_through'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let server = server_in(dir, DdmForwarding::Off).await;
    let kept = updraft_server::writer::RAW_REPORTS_KEPT;
    for index in [0, kept - 1] {
        let (status, raw) = server.raw_report(index).await;
        assert_eq!(status, StatusCode::OK, "index {index}");
        assert_eq!(json_body(&raw)["StatusItems"]["test"]["n"], 39 - index);
    }
    assert_eq!(server.raw_report(kept).await.0, StatusCode::NOT_FOUND);
    assert_eq!(server.stored_raw_reports().await, kept as i64);
    let (items, _) = server.merged_status_items().await;
    assert_eq!(items["test"]["n"], 39, "the unmerged reports are merged");
}

#[tokio::test]
async fn statuses_dropped_from_memory_are_read_back_and_lose_nothing() {
    // Six devices reporting in turn through a cache of two generations of two statuses: most
    // reports find their device's status gone from memory and must read it back.
    let server = server(DdmForwarding::Unsigned).await;
    let ids: Vec<String> = (0..6).map(|n| format!("DEVICE-{n}")).collect();
    for round in 0..4 {
        for (n, id) in ids.iter().enumerate() {
            let mut items = json!({"test": {"round": round}});
            if round == 0 {
                items["test"]["first"] = json!(n);
            }
            let body = json!({"StatusItems": items, "Errors": []}).to_string();
            let request = Request::put("/ddm/status")
                .header("x-enrollment-id", id)
                .body(Body::from(body))
                .unwrap();
            assert_eq!(server.send(request).await.0, StatusCode::OK);
        }
        if round == 1 {
            // A reader in the middle folds what is pending.
            server.status_changes(0).await;
        }
    }
    let changes = server.status_changes(0).await;
    for (n, id) in ids.iter().enumerate() {
        let change = changes["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["enrollment"]["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} is in the feed"));
        let test = &change["status"]["StatusItems"]["test"];
        assert_eq!(test["first"], n, "{id} keeps its first report's item");
        assert_eq!(test["round"], 3, "{id} has its newest report");
    }
}

#[tokio::test]
async fn reports_stored_but_not_yet_merged_at_a_stop_are_merged_on_the_next_start() {
    let mut server = server(DdmForwarding::Off).await;
    server.enroll().await;
    let first = first_status_report();
    assert_eq!(server.ddm("status", Some(first)).await.0, StatusCode::OK);
    // This process's writer thread outlives the state dropped below (a real stop ends it with
    // the process): with nothing left to merge it writes nothing more, so it cannot race the
    // next start's writer.
    server.merged_status_items().await;
    // A report acknowledged to the device (its raw row committed) while the process stops
    // before merging it: written here the way the writer writes it, behind the server's back.
    let pool = server.pool().await;
    let late =
        json!({"StatusItems": {"softwareupdate": {"install-state": "prepared"}}, "Errors": []});
    insert_raw_report(&pool, "2026-04-10T09:30:00.000Z", &late).await;
    pool.close().await;

    server.state = state_on(&server.db_path, DdmForwarding::Off, &server.issuer).await;
    let (items, _) = server.merged_status_items().await;
    assert_eq!(items["softwareupdate"]["install-state"], "prepared");
    assert_eq!(items["device"]["operating-system"]["version"], "13.3.1");
}

#[tokio::test]
async fn bad_input_is_a_400_with_the_reason_and_stores_nothing() {
    let server = server(DdmForwarding::Off).await;
    server.enroll().await;
    let (status, body) = server
        .checkin(b"<plist><dict><key>MessageType".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&body).contains("property list"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, body) = server
        .ddm(
            "status",
            Some(
                br#"{"StatusItems": {"softwareupdate": {"failure-reason": {"reason": "x"}}}}"#
                    .to_vec(),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("softwareupdate.failure-reason"));
    let (status, _) = server.ddm("bogus-endpoint", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.ddm("status", Some(vec![b' '; 40 * 1024])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = server.checkin(vec![b'x'; 100 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (_, reports) = server
        .admin("GET", &format!("/v1/status-report/{UDID}"), None)
        .await;
    assert!(String::from_utf8_lossy(&reports).contains("no status report"));
    let (status, _) = server.admin("PUT", "/v1/declarations", Some(json!({"Identifier": "x".repeat(65), "Type": "com.apple.configuration.x", "Payload": {}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bootstrap_tokens_are_sealed_at_rest_and_served_back() {
    let server = server(DdmForwarding::Off).await;
    server.enroll().await;
    let token = b"bootstrap-token-plaintext-0123456789";
    let set = format!(
        "<plist version=\"1.0\"><dict><key>MessageType</key><string>SetBootstrapToken</string><key>UDID</key><string>{UDID}</string><key>BootstrapToken</key><data>{}</data></dict></plist>",
        base64::engine::general_purpose::STANDARD.encode(token)
    );
    assert_eq!(server.checkin(set.into_bytes()).await.0, StatusCode::OK);
    let get = format!(
        "<plist version=\"1.0\"><dict><key>MessageType</key><string>GetBootstrapToken</string><key>UDID</key><string>{UDID}</string></dict></plist>"
    );
    let (status, body) = server.checkin(get.into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        GetBootstrapTokenResponse::parse(&body)
            .unwrap()
            .bootstrap_token
            .as_deref(),
        Some(&token[..])
    );
    // The database file never holds the token in clear.
    let db = std::fs::read(&server.db_path).unwrap();
    let wal = std::fs::read(server.db_path.with_extension("db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token),
            "plaintext token found at rest"
        );
    }
    // The console sees only that one is escrowed, and when it was asked for.
    let (_, listing) = server.admin("GET", "/v1/x-updraft/enrollments", None).await;
    let mac = json_body(&listing)
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == UDID)
        .cloned()
        .unwrap();
    assert_eq!(mac["bootstrap_token_escrowed"], true);
    assert!(mac["bootstrap_token_requested_at"].is_string());
    assert!(!String::from_utf8_lossy(&listing).contains("bootstrap-token-plaintext"));
}

#[tokio::test]
async fn forwarded_ddm_requires_the_enrollment_and_a_valid_signature_when_keyed() {
    let server = server(DdmForwarding::Signed(b"hmac-key".to_vec())).await;
    server.enroll().await;
    let body = br#"{"StatusItems": {"softwareupdate": {"install-state": "none"}}, "Errors": []}"#;
    let request = |signature: Option<String>, enrollment: Option<&str>| {
        let mut builder = Request::put("/ddm/status");
        if let Some(signature) = signature {
            builder = builder.header("x-hmac-signature", signature);
        }
        if let Some(enrollment) = enrollment {
            builder = builder.header("x-enrollment-id", enrollment);
        }
        builder.body(Body::from(body.to_vec())).unwrap()
    };
    let good = updraft_server::secrets::sign_hmac(b"hmac-key", body);
    assert_eq!(
        server.send(request(Some(good.clone()), Some(UDID))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.send(request(None, Some(UDID))).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        server
            .send(request(
                Some(updraft_server::secrets::sign_hmac(b"wrong", body)),
                Some(UDID)
            ))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.send(request(Some(good), None)).await.0,
        StatusCode::BAD_REQUEST
    );
    let tokens = Request::get("/ddm/tokens")
        .header("x-enrollment-id", UDID)
        .header(
            "x-hmac-signature",
            updraft_server::secrets::sign_hmac(b"hmac-key", b""),
        )
        .body(Body::empty())
        .unwrap();
    let (status, body) = server.send(tokens).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(json_body(&body)["SyncTokens"]["DeclarationsToken"].is_string());
}

#[tokio::test]
async fn the_admin_api_needs_the_key_and_devices_never_see_401() {
    let server = server(DdmForwarding::Off).await;
    let (status, _) = server
        .send(
            Request::get("/v1/declarations")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong = base64::engine::general_purpose::STANDARD.encode("kmfddm:nope");
    let (status, _) = server
        .send(
            Request::get("/v1/declarations")
                .header("authorization", format!("Basic {wrong}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.admin("GET", "/v1/declarations", None).await.0,
        StatusCode::OK
    );
    // An unknown device's check-in is answered, not refused with 401.
    let (status, _) = server.checkin(fixture("Authenticate.1.plist")).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED);
}
