//! The `ddm` crate against Apple's own examples and real captures (tests/fixtures, sources in
//! tests/fixtures/SOURCES.md).

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use updraft_ddm::checkin::{CheckinError, CheckinMessage};
use updraft_ddm::declaration::{ActivationSimple, StatusSubscriptions};
use updraft_ddm::status::{InstallState, StatusItem, Validity};
use updraft_ddm::{
    Declaration, DeviceStatus, SoftwareUpdateEnforcementSpecific, StatusReport, VersionExtra,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn read(relative: &str) -> Vec<u8> {
    let path = fixtures().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn apple_declaration_examples_round_trip_through_typed_payloads() {
    let base = "apple/examples/declarative/declarations";
    let enforcement: Declaration = serde_json::from_slice(&read(&format!(
        "{base}/configurations/softwareupdate.enforcement.specific/example1.json"
    )))
    .unwrap();
    let payload: SoftwareUpdateEnforcementSpecific = enforcement.payload_as().unwrap();
    assert_eq!(payload.target_os_version, "26.0");
    assert_eq!(payload.target_build_version.as_deref(), Some("23A309"));
    assert_eq!(
        payload.target_local_date_time.to_string(),
        "2025-09-21T01:00:00"
    );

    for (relative, check) in [
        (
            "configurations/softwareupdate.enforcement.specific/example1.json",
            0,
        ),
        (
            "configurations/management.status-subscriptions/example1.json",
            1,
        ),
        ("activations/simple/example1.json", 2),
    ] {
        let original: Value = serde_json::from_slice(&read(&format!("{base}/{relative}"))).unwrap();
        let declaration: Declaration = serde_json::from_value(original.clone()).unwrap();
        declaration.validate().unwrap();
        let rebuilt = match check {
            0 => serde_json::to_value(
                declaration
                    .payload_as::<SoftwareUpdateEnforcementSpecific>()
                    .unwrap(),
            ),
            1 => serde_json::to_value(declaration.payload_as::<StatusSubscriptions>().unwrap()),
            _ => serde_json::to_value(declaration.payload_as::<ActivationSimple>().unwrap()),
        }
        .unwrap();
        assert_eq!(rebuilt, original["Payload"], "{relative}");
        assert_eq!(
            serde_json::to_value(&declaration).unwrap(),
            original,
            "{relative}"
        );
    }
}

#[test]
fn apple_status_examples_parse_and_rebuild_the_same_tree() {
    let mut files = Vec::new();
    json_files(
        &fixtures().join("apple/examples/declarative/status"),
        &mut files,
    );
    assert!(
        files.len() >= 9,
        "expected Apple's status examples, found {files:?}"
    );
    for file in files {
        let tree: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let body = json!({"StatusItems": tree, "Errors": []});
        let report = StatusReport::parse(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!report.items.is_empty(), "{}", file.display());
        let mut rebuilt = report.to_json();
        // Apple's example spells the extra version "a"; Updraft writes the lookup service's "(a)".
        if let Some(extra) =
            rebuilt.pointer_mut("/StatusItems/device/operating-system/supplemental/extra-version")
        {
            assert_eq!(extra, "(a)");
            *extra = json!("a");
        }
        assert_eq!(rebuilt, body, "{}", file.display());
    }
}

#[test]
fn real_macos_report_normalises_the_extra_version() {
    let report = StatusReport::parse(&read("ddm-status/status.1st.json")).unwrap();
    let mut status = DeviceStatus::default();
    status.apply(&report);
    assert_eq!(status.os_version(), Some("13.3.1"));
    assert_eq!(status.os_build_version(), Some("22E261"));
    assert_eq!(
        status.os_supplemental_extra_version(),
        Some(&VersionExtra::parse("a"))
    );
    assert_eq!(status.model_family(), Some("Mac"));
    assert_eq!(status.serial_number(), Some("ZRMXJQTTFX"));
    let capabilities = status.client_capabilities().unwrap();
    assert!(
        capabilities
            .supported_payloads
            .declarations
            .activations
            .contains(&"com.apple.activation.simple".to_owned())
    );
    assert_eq!(status.install_state(), None::<&InstallState>);
}

#[test]
fn real_ios_report_carries_invalid_declarations_with_reasons() {
    let report = StatusReport::parse(&read(
        "ddm-status/A047820F-FC6B-4104-BED0-466876D82BB8.20220628-103225.001918.status.json",
    ))
    .unwrap();
    let mut status = DeviceStatus::default();
    status.apply(&report);
    let declarations = status.declarations().unwrap();
    let invalid: Vec<_> = declarations
        .configurations
        .iter()
        .filter(|d| d.valid == Validity::Invalid)
        .collect();
    assert_eq!(invalid.len(), 2);
    let reason = &invalid[0].reasons.as_ref().unwrap()[0];
    assert_eq!(reason.code, "Error.ConfigurationCannotBeApplied");
    assert_eq!(
        reason.details.as_ref().unwrap()["Error"],
        "An internal error has occurred."
    );
    assert_eq!(status.model_family(), Some("iPhone"));
    // An item no schema lists is kept, not dropped.
    assert!(status.get("management.push-token").is_some());
}

#[test]
fn every_real_report_survives_a_round_trip() {
    let mut files = Vec::new();
    json_files(&fixtures().join("ddm-status"), &mut files);
    for file in files {
        let report = StatusReport::parse(&std::fs::read(&file).unwrap()).unwrap();
        let again = StatusReport::parse(report.to_json().to_string().as_bytes()).unwrap();
        let by_name = |items: &[StatusItem]| {
            let mut items = items.to_vec();
            items.sort_by(|a, b| a.name().cmp(b.name()));
            items
        };
        assert_eq!(
            by_name(&again.items),
            by_name(&report.items),
            "{}",
            file.display()
        );
        let mut status = DeviceStatus::default();
        status.apply(&report);
        let mut restored = DeviceStatus::default();
        restored.apply(&status.to_full_report());
        assert_eq!(restored, status, "{}", file.display());
        let mut stored = DeviceStatus::default();
        stored.apply(&StatusReport::parse(status.to_full_report_json().as_bytes()).unwrap());
        assert_eq!(stored, status, "{}", file.display());
    }
}

#[test]
fn nanomdm_checkin_captures_parse() {
    let CheckinMessage::Authenticate(auth) =
        CheckinMessage::parse(&read("nanomdm/Authenticate.1.plist")).unwrap()
    else {
        panic!("not Authenticate")
    };
    assert_eq!(
        auth.enrollment.udid.as_deref(),
        Some("663b07bb783e9ade1dae4fbb92ea12afc0ce5b69")
    );
    assert_eq!(auth.product_name.as_deref(), Some("iPad2,5"));
    assert_eq!(auth.os_version.as_deref(), Some("9.3.5"));

    let CheckinMessage::Authenticate(mac) =
        CheckinMessage::parse(&read("nanomdm/Authenticate.2.plist")).unwrap()
    else {
        panic!("not Authenticate")
    };
    assert_eq!(mac.model.as_deref(), Some("iMac14,2"));
    assert_eq!(mac.device_name.as_deref(), Some("Fruit"));

    for file in ["nanomdm/TokenUpdate.1.plist", "nanomdm/TokenUpdate.2.plist"] {
        let message = CheckinMessage::parse(&read(file)).unwrap();
        let CheckinMessage::TokenUpdate(update) = &message else {
            panic!("{file}: not TokenUpdate")
        };
        assert_eq!(update.token.len(), 32, "{file}");
        assert!(!update.push_magic.is_empty(), "{file}");
        assert!(
            update.topic.starts_with("com.apple.mgmt.External."),
            "{file}"
        );
        // What Updraft writes, it reads back the same.
        assert_eq!(
            CheckinMessage::parse(&message.to_xml()).unwrap(),
            message,
            "{file}"
        );
    }
    let update = CheckinMessage::parse(&read("nanomdm/TokenUpdate.2.plist")).unwrap();
    let CheckinMessage::TokenUpdate(update) = update else {
        unreachable!()
    };
    assert_eq!(update.push_magic, "888CEB39-BFFA-40F6-89FA-B60752EB63C2");
    assert_eq!(update.awaiting_configuration, Some(false));
}

#[test]
fn a_command_response_is_not_a_checkin() {
    assert_eq!(
        CheckinMessage::parse(&read("nanomdm/DeviceInformation.1.plist")),
        Err(CheckinError::MissingMessageType)
    );
}
