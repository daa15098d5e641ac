//! Where other tools rely on KMFDDM's API: `nonotify` as KMFDDM reads it, `status-errors`,
//! `status-values`, `declaration-sets`, and JSON bodies for every rejection.

mod common;

use axum::http::StatusCode;
use serde_json::json;
use updraft_ddm::checkin::CommandStatus;

use common::*;
use updraft_server::DdmForwarding;

/// Takes and acknowledges every queued command.
async fn drain(server: &Server) {
    let mut next = server.connect(None).await;
    while let Some(command) = next {
        next = server
            .connect(Some((CommandStatus::Acknowledged, &command.command_uuid)))
            .await;
    }
}

async fn with_a_set(server: &Server) {
    server.enroll().await;
    // The enrollment's first commands (DeviceInformation, DeclarativeManagement) are taken.
    drain(server).await;
    let declaration = json!({"Type": "com.apple.configuration.softwareupdate.enforcement.specific",
        "Identifier": "su", "Payload": {"TargetOSVersion": "26.4.1", "TargetLocalDateTime": "2026-04-15T17:00:00"}});
    let put = server
        .admin("PUT", "/v1/declarations?nonotify=1", Some(declaration))
        .await;
    assert_eq!(put.0, StatusCode::NO_CONTENT);
    for set in ["wave1", "wave2"] {
        let path = format!("/v1/set-declarations/{set}?declaration=su&nonotify=1");
        assert_eq!(
            server.admin("PUT", &path, None).await.0,
            StatusCode::NO_CONTENT
        );
    }
}

#[tokio::test]
async fn nonotify_is_read_as_kmfddm_reads_it() {
    let server = server(DdmForwarding::Off).await;
    with_a_set(&server).await;
    // KMFDDM notifies unless the value is truthy: "", 0, false, no, off all notify.
    let cases = [
        ("nonotify=1", false),
        ("nonotify=true", false),
        ("nonotify=yes", false),
        ("nonotify=false", true),
        ("nonotify=0", true),
        ("nonotify=", true),
        ("nonotify=OFF", true),
    ];
    for (query, notifies) in cases {
        for method in ["PUT", "DELETE"] {
            let path = format!("/v1/enrollment-sets/{UDID}?set=wave1&{query}");
            let (code, body) = server.admin(method, &path, None).await;
            assert_eq!(code, StatusCode::NO_CONTENT, "{method} {path}: {body:?}");
            let command = server.connect(None).await;
            assert_eq!(command.is_some(), notifies, "{method} ?{query}");
            if let Some(command) = command {
                server
                    .connect(Some((CommandStatus::Acknowledged, &command.command_uuid)))
                    .await;
            }
        }
    }
}

#[tokio::test]
async fn declaration_sets_status_values_and_status_errors_answer_as_kmfddm() {
    let server = server(DdmForwarding::Off).await;
    with_a_set(&server).await;
    let (code, sets) = server.admin("GET", "/v1/declaration-sets/su", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(json_body(&sets), json!(["wave1", "wave2"]));
    let (_, none) = server
        .admin("GET", "/v1/declaration-sets/missing", None)
        .await;
    assert_eq!(json_body(&none), json!([]));

    let report = json!({"StatusItems": {
        "device": {"operating-system": {"version": "15.1", "build-version": "24B83"}},
        "management": {"declarations": {"configurations": [
            {"identifier": "su", "active": false, "valid": "invalid", "server-token": "t",
             "reasons": [{"code": "Error.ConfigurationCannotBeApplied"}]}]}},
    }, "Errors": [{"StatusItem": "softwareupdate.install-state",
                   "Reasons": [{"Code": "Error.Unavailable", "Description": "not now"}]}]});
    let (code, _) = server
        .ddm("status", Some(report.to_string().into_bytes()))
        .await;
    assert_eq!(code, StatusCode::OK);

    let path = format!("/v1/status-values/{UDID}?prefix=.StatusItems.device.%25");
    let (code, values) = server.admin("GET", &path, None).await;
    assert_eq!(code, StatusCode::OK);
    let values = json_body(&values);
    let paths: Vec<(&str, &str)> = values[UDID]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["path"].as_str().unwrap(), v["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        paths,
        vec![
            (
                ".StatusItems.device.operating-system.build-version",
                "24B83"
            ),
            (".StatusItems.device.operating-system.version", "15.1"),
        ]
    );
    let (_, all) = server
        .admin("GET", &format!("/v1/status-values/{UDID}"), None)
        .await;
    assert!(json_body(&all)[UDID].as_array().unwrap().len() > 2);

    let (code, errors) = server
        .admin("GET", &format!("/v1/status-errors/{UDID},unknown"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let errors = json_body(&errors);
    let entries = errors[UDID].as_array().unwrap();
    assert!(errors.get("unknown").is_none());
    assert!(
        entries.iter().any(|e| e["path"] == ".Errors"
            && e["error"]["StatusItem"] == "softwareupdate.install-state")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["path"] == ".StatusItems.management.declarations"
                && e["error"]["identifier"] == "su")
    );
}

#[tokio::test]
async fn every_admin_rejection_is_json() {
    let server = server(DdmForwarding::Off).await;
    let cases = [
        (
            "GET",
            format!("/v1/status-report/{UDID}?index=abc"),
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/v1/no-such-thing".to_owned(), StatusCode::NOT_FOUND),
        (
            "GET",
            "/v1/x-updraft/status-changes?after=x".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/v1/enrollment-sets/E1".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/v1/x-updraft/push-certificate".to_owned(),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, expected) in cases {
        let (code, body) = server.admin(method, &path, None).await;
        assert_eq!(code, expected, "{method} {path}");
        let error = json_body(&body);
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {error}"
        );
    }
    let (code, body) = server
        .admin(
            "PUT",
            "/v1/declarations",
            Some(json!({"x": "y".repeat(17 * 1024 * 1024)})),
        )
        .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json_body(&body)["error"].is_string());
}
