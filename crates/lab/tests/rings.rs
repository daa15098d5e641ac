//! Rings in the lab, over loopback HTTP: a release rolled out in three rings, the second and
//! third starting only when the ring before passes its gate; and a fleet that fails too much,
//! halted before its second ring.

use updraft_engine::{AlertKind, Phase, RolloutState};
use updraft_feed::{BUNDLED_FEED, LookupResponse};
use updraft_lab::{Lab, LabConfig};

fn config(dir: &tempfile::TempDir, failure_rate: f64) -> LabConfig {
    let feed = LookupResponse::parse(BUNDLED_FEED.as_bytes()).unwrap();
    let mut config = LabConfig::new(160, 11, feed, dir.path().to_path_buf());
    config.failure_rate = failure_rate;
    config.rings = Some(updraft_lab::standard_rings());
    config
}

/// (state, devices with a record, of which updated) per wave, in order, and the audit log.
async fn waves(lab: &Lab) -> (Vec<(RolloutState, usize, usize)>, Vec<String>) {
    let store = lab.console.store();
    let rollouts = store.rollouts().await.unwrap();
    let mut waves = Vec::new();
    for (id, _) in &lab.rollouts {
        let state = rollouts.iter().find(|r| r.id == *id).unwrap().state;
        let records = store.enforcements(*id).await.unwrap();
        let updated = records
            .iter()
            .filter(|r| {
                matches!(
                    r.phase,
                    Phase::Updated | Phase::Unassigned | Phase::CleanedUp
                )
            })
            .count();
        waves.push((state, records.len(), updated));
    }
    let audit = store
        .audit_log(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.action, e.detail))
        .collect();
    (waves, audit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ring_starts_when_the_ring_before_passes_its_gate() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir, 0.0);
    let (lab, stats) = Lab::run(&config).await.unwrap();
    let (waves, audit) = waves(&lab).await;
    // Two platforms in the bundled fleet, three rings each.
    assert_eq!(waves.len(), 6, "{waves:?}");
    for (state, records, updated) in &waves {
        assert_eq!(
            *state,
            RolloutState::Active,
            "every ring was promoted: {waves:?}"
        );
        assert!(*records > 0 && *updated > 0, "{waves:?}");
    }
    let promoted: Vec<&String> = audit
        .iter()
        .filter(|line| line.starts_with("ring_promoted") && line.contains("passed its gate"))
        .collect();
    assert_eq!(
        promoted.len(),
        4,
        "rings 2 and 3 of each platform: {audit:#?}"
    );
    assert!(
        lab.console
            .store()
            .alerts()
            .await
            .unwrap()
            .iter()
            .all(|a| a.kind != AlertKind::RolloutHalted)
    );
    assert!(stats.steps > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_that_fails_too_much_halts_the_rings_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir, 0.6);
    let (lab, _) = Lab::run(&config).await.unwrap();
    let (waves, _) = waves(&lab).await;
    assert_eq!(waves.len(), 6, "{waves:?}");
    for platform in waves.chunks(3) {
        assert_eq!(platform[0].0, RolloutState::Active, "{waves:?}");
        assert_eq!(
            (platform[1].0, platform[1].1),
            (RolloutState::Halted, 0),
            "ring 2 halted with nothing assigned: {waves:?}"
        );
        assert_eq!(
            platform[2].0,
            RolloutState::Gated,
            "ring 3 still waits behind ring 2: {waves:?}"
        );
    }
    let halts: Vec<String> = lab
        .console
        .store()
        .alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == AlertKind::RolloutHalted)
        .map(|a| a.detail)
        .collect();
    assert_eq!(halts.len(), 2, "{halts:?}");
    assert!(
        halts[0].contains("halted before it started")
            && halts[0].contains("more than the gate's 5%"),
        "{halts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_ring_is_not_started_as_a_rollout_of_the_whole_platform() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir, 0.0);
    let mut rings = updraft_lab::standard_rings();
    rings.rings[0].membership = updraft_engine::rings::Membership::Devices(Default::default());
    config.rings = Some(rings);
    let mut lab = Lab::start(&config).await.unwrap();
    lab.begin(&config).await.unwrap();
    let store = lab.console.store();
    let rollouts = store.rollouts().await.unwrap();
    assert_eq!(rollouts.len(), 4, "two rings per platform: {rollouts:?}");
    for rollout in &rollouts {
        assert!(
            !store.rollout_scope(rollout.id).await.unwrap().is_empty(),
            "every wave lists its devices: {rollout:?}"
        );
    }
    let first_waves: Vec<_> = rollouts.iter().filter(|r| r.gate.is_none()).collect();
    assert_eq!(
        first_waves.len(),
        2,
        "the pilot, with no ring before it, starts at once"
    );
    assert!(
        first_waves
            .iter()
            .all(|r| r.state == RolloutState::Active && r.wave == 2)
    );
}
