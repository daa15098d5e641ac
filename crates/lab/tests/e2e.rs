//! End to end, over loopback HTTP: the DDM server, simulated devices and the console, through all
//! seven phases, every failure kind, a BSI target, an offline device, and a console restart.

use std::collections::BTreeSet;

use updraft_engine::plan::Release;
use updraft_engine::{AlertKind, EventKind};
use updraft_feed::{BUNDLED_FEED, LookupResponse, Platform};
use updraft_lab::{Lab, LabConfig, LabReport, ReportDevice};
use updraft_sim::{DeviceSpec, Fault};

fn feed() -> LookupResponse {
    LookupResponse::parse(BUNDLED_FEED.as_bytes()).unwrap()
}

fn config(dir: &tempfile::TempDir, devices: usize, seed: u64) -> LabConfig {
    LabConfig::new(devices, seed, feed(), dir.path().to_path_buf())
}

/// A supervised Mac with Apple silicon (MacBook Pro 14-inch M1 Pro) on macOS 26.3.
fn mac(n: u64) -> DeviceSpec {
    DeviceSpec {
        udid: format!("0000{n:04}-MAC"),
        serial: format!("C02TEST{n:04}"),
        name: format!("Test Mac {n}"),
        model: "MacBookPro18,3".into(),
        family: "Mac".into(),
        gdmf_id: "J314sAP".into(),
        os_version: "26.3".into(),
        build: "25D125".into(),
        time_zone: "Europe/Berlin".into(),
        supervised: true,
        apple_silicon: true,
        escrows_bootstrap_token: true,
        user_installs_after: None,
        fault: None,
        seed: n,
        enrolls_at: None,
    }
}

/// An iPhone 14 Pro on iOS 26.3.
fn iphone(n: u64) -> DeviceSpec {
    DeviceSpec {
        udid: format!("0000{n:04}-IPHONE"),
        serial: format!("F17TEST{n:04}"),
        name: format!("Test iPhone {n}"),
        model: "iPhone15,2".into(),
        family: "iPhone".into(),
        gdmf_id: "iPhone15,2".into(),
        os_version: "26.3".into(),
        build: "23D127".into(),
        time_zone: "America/New_York".into(),
        supervised: true,
        apple_silicon: false,
        escrows_bootstrap_token: false,
        user_installs_after: None,
        fault: None,
        seed: n + 1000,
        enrolls_at: None,
    }
}

async fn run_fleet(specs: Vec<DeviceSpec>, releases: Option<Vec<Release>>) -> LabReport {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir, specs.len(), 1);
    config.fleet = Some(specs);
    config.releases = releases;
    let (report, stats) = updraft_lab::run(&config).await.unwrap();
    assert!(
        stats.device_errors.is_empty(),
        "devices met errors: {:?}",
        stats.device_errors
    );
    assert_eq!(stats.push_failures, 0);
    report
}

fn device<'a>(report: &'a LabReport, udid: &str) -> &'a ReportDevice {
    report.devices.iter().find(|d| d.id == udid).unwrap()
}

fn kinds(device: &ReportDevice) -> Vec<&str> {
    device.events.iter().map(|e| e.kind.as_str()).collect()
}

/// `needles` appear in `haystack` in this order.
fn in_order(haystack: &[&str], needles: &[&str]) -> bool {
    let mut rest = haystack.iter();
    needles.iter().all(|needle| rest.any(|k| k == needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_seven_phases_on_a_mac_and_an_iphone() {
    let report = run_fleet(vec![mac(1), iphone(2)], None).await;
    let mac = device(&report, "00000001-MAC");
    assert_eq!(mac.state, "cleaned_up", "{:#?}", mac.events);
    // The console learnt the zone from the server, which asked the device (DeviceInformation).
    assert_eq!(mac.time_zone, "Europe/Berlin");
    assert_eq!(
        (mac.final_version.as_deref(), mac.final_build.as_deref()),
        (Some("26.4.1"), Some("25E253"))
    );
    assert!(mac.declarations_assigned.is_empty());
    assert!(mac.bootstrap_token_escrowed);
    assert!(
        in_order(
            &kinds(mac),
            &[
                "planned",
                "declaration_assigned",
                "push_sent",
                "declaration_active",
                "install_state",
                "bootstrap_token_requested",
                "os_updated",
                "declaration_unassigned",
                "declaration_removed",
            ]
        ),
        "{:?}",
        kinds(mac)
    );
    let states: Vec<&str> = mac
        .events
        .iter()
        .filter(|e| e.kind == EventKind::InstallState)
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(states, ["waiting", "downloading", "prepared", "installing"]);
    // It installed at its deadline: 17:00 in Berlin (CEST, UTC+2) is 15:00 UTC.
    let installing = mac
        .events
        .iter()
        .find(|e| e.detail == "installing")
        .unwrap();
    assert_eq!(installing.at, "2026-04-15T15:00:00Z");
    let phone = device(&report, "00000002-IPHONE");
    assert_eq!(phone.state, "cleaned_up");
    assert_eq!(phone.final_version.as_deref(), Some("26.4.1"));
    // 17:00 in New York (EDT, UTC-4) is 21:00 UTC.
    assert_eq!(
        phone
            .events
            .iter()
            .find(|e| e.detail == "installing")
            .unwrap()
            .at,
        "2026-04-15T21:00:00Z"
    );
    assert!(report.alerts.is_empty(), "{:?}", report.alerts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_kind_ends_failed_with_a_reason_and_an_alert() {
    let with = |mut spec: DeviceSpec, fault: Fault| {
        spec.fault = Some(fault);
        if fault == Fault::MissingBootstrapToken {
            spec.escrows_bootstrap_token = false;
        }
        spec
    };
    let report = run_fleet(
        vec![
            with(mac(1), Fault::NoDiskSpace),
            with(iphone(2), Fault::DownloadFailure),
            with(mac(3), Fault::MissingBootstrapToken),
            with(iphone(4), Fault::NeverReports),
        ],
        None,
    )
    .await;
    let expectations = [
        ("00000001-MAC", "not enough free disk space"),
        ("00000002-IPHONE", "download of the software update failed"),
        ("00000003-MAC", "no bootstrap token"),
        ("00000004-IPHONE", "did not respond"),
    ];
    for (udid, reason) in expectations {
        let d = device(&report, udid);
        assert_eq!(d.state, "failed", "{udid}: {:?}", kinds(d));
        assert!(
            d.failure_reason.as_deref().unwrap_or("").contains(reason),
            "{udid}: {:?}",
            d.failure_reason
        );
        assert!(
            report
                .alerts
                .iter()
                .any(|a| a.device.as_deref() == Some(udid) && a.kind == AlertKind::InstallFailed),
            "{udid} has no install_failed alert"
        );
    }
    // The console warned before the rollout that this Mac would need its user.
    assert!(
        report
            .alerts
            .iter()
            .any(|a| a.device.as_deref() == Some("00000003-MAC")
                && a.kind == AlertKind::BootstrapTokenMissing)
    );
    assert!(kinds(device(&report, "00000003-MAC")).contains(&"bootstrap_token_requested"));
    // The silent device was flagged before it was given up.
    assert!(in_order(
        &kinds(device(&report, "00000004-IPHONE")),
        &["stale", "past_deadline", "install_failed"]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_installs_an_hour_after_it_returns() {
    let mut away = iphone(1);
    away.fault = Some(Fault::Offline);
    let report = run_fleet(vec![away], None).await;
    let d = device(&report, "00000001-IPHONE");
    assert_eq!(d.state, "cleaned_up", "{:?}", kinds(d));
    assert!(
        in_order(
            &kinds(d),
            &["past_deadline", "os_updated", "declaration_removed"]
        ),
        "{:?}",
        kinds(d)
    );
    assert!(
        report
            .alerts
            .iter()
            .any(|a| a.kind == AlertKind::PastDeadline)
    );
    let updated = &d
        .events
        .iter()
        .find(|e| e.kind == EventKind::OsUpdated)
        .unwrap()
        .at;
    assert!(
        updated.as_str() > "2026-04-16",
        "installed {updated}, after the deadline day"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bsi_target_installs_on_its_prerequisite_build_only() {
    let bsi = Release {
        platform: Platform::MacOs,
        product_version: "26.3.1".into(),
        product_version_extra: Some("(a)".into()),
        builds: vec![updraft_engine::ReleaseBuild {
            build: Some("25D771280a".into()),
            prerequisite_build: Some("25D2128".into()),
            supported_devices: ["j314sap".to_owned()].into_iter().collect(),
        }],
    };
    let mut on_base = mac(1);
    on_base.os_version = "26.3.1".into();
    on_base.build = "25D2128".into();
    let other_build = mac(2);
    let report = run_fleet(vec![on_base, other_build], Some(vec![bsi])).await;
    let d = device(&report, "00000001-MAC");
    assert_eq!(d.state, "cleaned_up", "{:?}", kinds(d));
    assert_eq!(
        (d.final_version.as_deref(), d.final_build.as_deref()),
        (Some("26.3.1"), Some("25D771280a"))
    );
    let excluded = device(&report, "00000002-MAC");
    assert_eq!(excluded.state, "excluded");
    assert!(
        excluded
            .exclusion_reason
            .as_deref()
            .unwrap()
            .contains("installs only on build 25D2128")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_restart_mid_rollout_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir, 40, 11);
    config.stop_after_steps = Some(40); // ten simulated hours in: installs are under way
    let mut lab = Lab::start(&config).await.unwrap();
    lab.begin(&config).await.unwrap();
    lab.run_to_end(&config).await.unwrap();
    let pushes_before = lab.fleet.pushes();
    // The console process dies here; a new one opens the same database.
    lab.restart_console().await.unwrap();
    config.stop_after_steps = None;
    let stats = lab.run_to_end(&config).await.unwrap();
    assert!(stats.device_errors.is_empty(), "{:?}", stats.device_errors);
    let report = lab.report().await.unwrap();
    for d in &report.devices {
        assert!(
            ["cleaned_up", "failed", "excluded"].contains(&d.state.as_str()),
            "{} ended {}: {:?}",
            d.id,
            d.state,
            kinds(d)
        );
        let assigned = d
            .events
            .iter()
            .filter(|e| e.kind == EventKind::DeclarationAssigned)
            .count();
        assert!(assigned <= 1, "{} was assigned {assigned} times", d.id);
    }
    assert!(lab.fleet.pushes() > pushes_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_of_300_devices_with_seed_7_ends_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, stats) = Lab::run(&config(&dir, 300, 7)).await.unwrap();
    assert!(stats.device_errors.is_empty(), "{:?}", stats.device_errors);
    let report = lab.report().await.unwrap();
    assert_eq!(report.devices.len(), 300);
    // `updraft lab --json` streams the report; it must be the same document.
    let mut streamed = Vec::new();
    lab.write_report_json(&mut streamed).await.unwrap();
    let streamed: serde_json::Value = serde_json::from_slice(&streamed).unwrap();
    assert_eq!(streamed, serde_json::to_value(&report).unwrap());
    let platforms: BTreeSet<&str> = report
        .releases
        .iter()
        .map(|r| r.platform.as_str())
        .collect();
    assert_eq!(platforms, BTreeSet::from(["iOS", "macOS"]));
    for d in &report.devices {
        match d.state.as_str() {
            "cleaned_up" => {
                assert!(
                    d.declarations_assigned.is_empty(),
                    "{} is updated but still assigned {:?}",
                    d.id,
                    d.declarations_assigned
                );
                assert_eq!(d.final_version, d.target_version.clone(), "{}", d.id);
            }
            "failed" => {
                assert!(
                    d.failure_reason.is_some(),
                    "{} failed without a reason",
                    d.id
                );
                assert!(
                    report
                        .alerts
                        .iter()
                        .any(|a| a.device.as_deref() == Some(d.id.as_str())
                            && a.kind == AlertKind::InstallFailed)
                );
            }
            "excluded" => assert!(
                d.exclusion_reason.is_some(),
                "{} excluded without a reason",
                d.id
            ),
            other => panic!("{} ended {other}: {:?}", d.id, kinds(d)),
        }
        let times: Vec<&str> = d.events.iter().map(|e| e.at.as_str()).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{}: timeline out of order",
            d.id
        );
        assert!(
            times
                .iter()
                .all(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
        );
    }
    let cleaned = report.summary.get("cleaned_up").copied().unwrap_or(0);
    assert!(
        cleaned > 200,
        "most of a real fleet is eligible: {:?}",
        report.summary
    );
    // The same seed gives the same report.
    let again_dir = tempfile::tempdir().unwrap();
    let (again, _) = updraft_lab::run(&config(&again_dir, 300, 7)).await.unwrap();
    assert_eq!(again.summary, report.summary);
    assert_eq!(again.devices, report.devices);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_report_while_a_rollout_is_paused_are_planned_when_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir, 0, 1);
    config.fleet = Some(vec![mac(1), mac(2), iphone(3)]);
    let lab = Lab::start(&config).await.unwrap();
    lab.console.prepare_server().await.unwrap();
    let macos = updraft_lab::newest_releases(&config.feed, lab.started_at.date_naive())
        .into_iter()
        .find(|r| r.platform == Platform::MacOs)
        .unwrap();
    let deadline = (lab.started_at + chrono::Duration::days(5)).naive_utc();
    let rollout = lab
        .console
        .start_rollout(macos, deadline, None)
        .await
        .unwrap();
    lab.console.pause_rollout(rollout).await.unwrap();
    // The fleet enrolls, gets its base declarations and reports, all while the rollout waits.
    for _ in 0..8 {
        lab.step(15, true).await.unwrap();
    }
    let store = lab.console.store();
    let reported = store.device("00000001-MAC").await.unwrap().unwrap();
    assert!(reported.last_report_at.is_some(), "the Mac has reported");
    assert_eq!(store.rollout_counts(rollout).await.unwrap().0, 0);
    lab.console.resume_rollout(rollout).await.unwrap();
    assert_eq!(
        store.rollout_counts(rollout).await.unwrap().0,
        2,
        "both Macs are planned on resume, without waiting for their next report"
    );
}
