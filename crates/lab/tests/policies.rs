//! Release policies in the lab, over loopback HTTP: the lookup service's history is replayed from
//! a day before macOS and iOS 26.4.1 were posted; when each appears, its platform's policy starts
//! it in three rings, and the gates promote (or halt) the rings after the first.

use chrono::{DateTime, NaiveDate, Utc};
use updraft_engine::{AlertKind, DraftState, RolloutState};
use updraft_feed::{BUNDLED_FEED, LookupResponse};
use updraft_lab::{Lab, LabConfig};

fn config(dir: &tempfile::TempDir, failure_rate: f64) -> LabConfig {
    let capture = LookupResponse::parse(BUNDLED_FEED.as_bytes()).unwrap();
    let mut config = LabConfig::new(160, 11, capture.clone(), dir.path().to_path_buf());
    config.failure_rate = failure_rate;
    config.replay(
        &capture,
        NaiveDate::from_ymd_opt(2026, 4, 7).unwrap(),
        updraft_lab::standard_rings(),
    );
    config
}

/// Every rollout the console holds, as (platform, ring, state, when it was recorded).
async fn rollouts(lab: &Lab) -> Vec<(String, Option<String>, RolloutState)> {
    lab.console
        .store()
        .rollouts()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.release.platform.as_str().to_owned(), r.ring, r.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_appears_mid_run_is_started_by_its_policy_and_promoted_ring_by_ring() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir, 0.0);
    let (lab, _) = Lab::run(&config).await.unwrap();
    let started: DateTime<Utc> = "2026-04-07T09:00:00Z".parse().unwrap();
    assert_eq!(lab.started_at, started);

    // Nothing existed at the start: both releases were posted later, and the policy acted then.
    let drafted: Vec<_> = lab
        .console
        .store()
        .alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == AlertKind::RolloutDrafted)
        .collect();
    assert_eq!(drafted.len(), 2, "{drafted:?}");
    for alert in &drafted {
        assert!(
            alert.at.parse::<DateTime<Utc>>().unwrap() > started,
            "{alert:?}"
        );
        assert!(alert.detail.contains("26.4.1") && alert.detail.contains("started in 3 rings"));
    }
    let drafts = lab.console.store().drafts().await.unwrap();
    assert!(
        drafts.iter().all(|d| d.state == DraftState::Started),
        "{drafts:?}"
    );

    let rollouts = rollouts(&lab).await;
    for platform in ["iOS", "macOS"] {
        let rings: Vec<_> = rollouts.iter().filter(|r| r.0 == platform).collect();
        let names: Vec<Option<&str>> = rings.iter().map(|r| r.1.as_deref()).collect();
        assert_eq!(
            names,
            [Some("IT"), Some("Pilot"), Some("Everyone")],
            "{rings:?}"
        );
        assert!(
            rings.iter().all(|r| r.2 == RolloutState::Active),
            "ring 1 passed its gate and so did ring 2: {rings:?}"
        );
    }
    let audit = lab.console.store().audit_log(1000).await.unwrap();
    let promoted = audit
        .iter()
        .filter(|e| e.action == "ring_promoted" && e.detail.contains("passed its gate"))
        .count();
    assert_eq!(
        promoted, 4,
        "rings 2 and 3 of each platform, by their gates"
    );
    let report = lab.report().await.unwrap();
    assert!(
        report.summary.get("cleaned_up").copied().unwrap_or(0) > 100,
        "{:?}",
        report.summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_that_fails_too_much_is_halted_before_its_second_ring() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir, 0.6);
    let (lab, _) = Lab::run(&config).await.unwrap();
    let rollouts = rollouts(&lab).await;
    let halted: Vec<_> = rollouts
        .iter()
        .filter(|r| r.2 == RolloutState::Halted)
        .collect();
    assert!(!halted.is_empty(), "{rollouts:?}");
    for (platform, ring, _) in &halted {
        assert_eq!(ring.as_deref(), Some("Pilot"), "{rollouts:?}");
        // The ring after the halted one never started.
        assert!(
            rollouts.iter().any(|r| &r.0 == platform
                && r.1.as_deref() == Some("Everyone")
                && r.2 == RolloutState::Gated),
            "{rollouts:?}"
        );
    }
    assert!(
        lab.console
            .store()
            .alerts()
            .await
            .unwrap()
            .iter()
            .any(|a| a.kind == AlertKind::RolloutHalted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_enrolls_after_the_rings_started_joins_its_ring() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir, 0.0);
    let mut specs = updraft_sim::generate(
        &updraft_sim::FleetPlan {
            devices: config.devices,
            seed: config.seed,
            failure_rate: 0.0,
            start: NaiveDate::from_ymd_opt(2026, 4, 7).unwrap(),
        },
        &config.feed,
    );
    // Eight Macs unboxed on the 10th, a day after macOS 26.4.1's rings started.
    let late_at: DateTime<Utc> = "2026-04-10T12:00:00Z".parse().unwrap();
    let late: Vec<String> = specs
        .iter_mut()
        .filter(|s| s.family == "Mac")
        .take(8)
        .map(|spec| {
            spec.enrolls_at = Some(late_at);
            spec.udid.clone()
        })
        .collect();
    config.fleet = Some(specs);
    let (lab, _) = Lab::run(&config).await.unwrap();

    let store = lab.console.store();
    let macos: Vec<_> = store
        .rollouts()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.release.platform == updraft_feed::Platform::MacOs)
        .collect();
    assert!(macos.iter().all(|r| r.placement.is_some()), "{macos:?}");
    let mut joined = 0;
    for id in &late {
        let mut rings = Vec::new();
        for rollout in &macos {
            if store.rollout_scope(rollout.id).await.unwrap().contains(id) {
                rings.push(rollout.ring.clone());
            }
        }
        assert!(rings.len() <= 1, "{id} is in one ring at most: {rings:?}");
        joined += rings.len();
    }
    assert!(
        joined >= 6,
        "the late Macs joined their rings: {joined} of 8"
    );
    let report = lab.report().await.unwrap();
    let updated = report
        .devices
        .iter()
        .filter(|d| late.contains(&d.id) && d.state == "cleaned_up")
        .count();
    assert!(updated >= 6, "and updated with them: {updated} of 8");
}
