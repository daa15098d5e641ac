//! Saved ring plans, release policies and drafts, on a real SQLite file per test.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use updraft_engine::policy::ReleasePolicy;
use updraft_engine::rings::{
    AfterHours, DeviceFilter, Gate, Membership, Pattern, Ring, RingPlan, Weekends,
};
use updraft_engine::{DraftState, PolicyAction};
use updraft_feed::Platform;
use updraft_store::{NewDraft, Store, StoreError};

fn now() -> DateTime<Utc> {
    "2026-04-10T09:00:00Z".parse().unwrap()
}

fn at(hour: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(hour, 0, 0).unwrap()
}

/// A plan with every kind of ring and every rule set, so that a column lost on the way shows.
fn every_kind() -> RingPlan {
    RingPlan {
        rings: vec![
            Ring {
                name: "IT".into(),
                membership: Membership::Devices(["E1".to_owned(), "E2".to_owned()].into()),
                offset_days: 0,
                time_of_day: at(9),
            },
            Ring {
                name: "Studio Macs".into(),
                membership: Membership::Filter(DeviceFilter {
                    platform: Some(Platform::MacOs),
                    model: Some(Pattern::new("Mac14,*")),
                    os: Some(Pattern::new("15.*")),
                    name: Some(Pattern::new("STUDIO-*")),
                    serial: None,
                }),
                offset_days: 2,
                time_of_day: at(19),
            },
            Ring {
                name: "Pilot".into(),
                membership: Membership::Share(20),
                offset_days: 3,
                time_of_day: at(17),
            },
            Ring {
                name: "Everyone".into(),
                membership: Membership::Rest,
                offset_days: 7,
                time_of_day: at(17),
            },
        ],
        weekends: Weekends::NextMonday,
        after_hours: Some(AfterHours {
            start: at(18),
            end: at(7),
        }),
        gate: Gate {
            min_updated_percent: 85.0,
            max_failed_percent: 3.5,
            max_failures_per_hour: Some(12),
        },
    }
}

fn policy(plan: &str) -> ReleasePolicy {
    ReleasePolicy {
        platform: Platform::MacOs,
        plan: plan.into(),
        base_delay_days: 2,
        action: PolicyAction::Draft,
        exploited_percent: Some(50),
        since: NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
    }
}

async fn open() -> (Store, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.db");
    (Store::open(&path).await.unwrap(), dir, path)
}

#[tokio::test]
async fn a_ring_plan_reads_back_ring_for_ring_after_a_reopen_and_a_save_replaces_it() {
    let (store, _dir, path) = open().await;
    store.put_ring_plan("studio", &every_kind()).await.unwrap();
    drop(store);
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.ring_plan("studio").await.unwrap(), Some(every_kind()));

    let mut smaller = every_kind();
    smaller.rings.remove(0);
    smaller.after_hours = None;
    smaller.gate.max_failures_per_hour = None;
    store.put_ring_plan("studio", &smaller).await.unwrap();
    assert_eq!(
        store.ring_plans().await.unwrap(),
        [("studio".into(), smaller)]
    );
}

#[tokio::test]
async fn a_policy_needs_a_saved_plan_and_keeps_it_from_deletion() {
    let (store, _dir, _path) = open().await;
    let error = store.put_policy(&policy("standard")).await.unwrap_err();
    assert!(
        matches!(error, StoreError::InUse(_)) && error.to_string().contains("save the plan first"),
        "{error}"
    );
    store
        .put_ring_plan("standard", &every_kind())
        .await
        .unwrap();
    store.put_policy(&policy("standard")).await.unwrap();
    assert_eq!(store.policies().await.unwrap(), [policy("standard")]);

    let error = store.delete_ring_plan("standard").await.unwrap_err();
    assert!(
        error.to_string().contains("macOS release policy"),
        "{error}"
    );
    assert!(store.ring_plan("standard").await.unwrap().is_some());

    assert!(store.delete_policy(Platform::MacOs).await.unwrap());
    assert!(store.delete_ring_plan("standard").await.unwrap());
    assert!(store.ring_plans().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_release_is_drafted_once_and_decided_once() {
    let (store, _dir, _path) = open().await;
    let exploited = vec!["CVE-2026-20700".to_owned()];
    let draft = NewDraft {
        platform: Platform::MacOs,
        product_version: "26.4.1",
        product_version_extra: None,
        plan: "standard",
        base_date: NaiveDate::from_ymd_opt(2026, 4, 11).unwrap(),
        shortened_to: Some(50),
        exploited: &exploited,
        state: DraftState::Drafted,
    };
    let id = store.record_draft(draft, now()).await.unwrap().unwrap();
    assert_eq!(store.record_draft(draft, now()).await.unwrap(), None);
    let drafts = store.drafts().await.unwrap();
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0].id, id);
    assert_eq!(drafts[0].exploited, exploited);
    assert_eq!(drafts[0].shortened_to, Some(50));
    assert_eq!(drafts[0].created_at, now());

    assert!(store.decide_draft(id, DraftState::Dismissed).await.unwrap());
    assert!(!store.decide_draft(id, DraftState::Started).await.unwrap());
    assert_eq!(
        store.drafts().await.unwrap()[0].state,
        DraftState::Dismissed
    );
}

#[tokio::test]
async fn a_damaged_plan_is_an_error_naming_the_plan_and_ring() {
    let (store, _dir, path) = open().await;
    store.put_ring_plan("studio", &every_kind()).await.unwrap();
    {
        use sqlx::Connection;
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE ring_plan_rings SET membership = 'lottery' WHERE position = 2")
            .execute(&mut other)
            .await
            .unwrap();
    }
    let error = store.ring_plans().await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("ring \"Pilot\" of plan \"studio\"")
            && error.to_string().contains("lottery"),
        "{error}"
    );
}

#[tokio::test]
async fn a_pinned_group_reads_back_and_is_deleted_by_name() {
    let (store, _dir, _path) = open().await;
    let pin = updraft_engine::rings::Pin {
        group: "Audio studio".into(),
        filter: DeviceFilter {
            platform: Some(Platform::MacOs),
            name: Some(Pattern::new("STUDIO-*")),
            ..DeviceFilter::default()
        },
        majors_behind: 1,
    };
    store.put_pin(&pin).await.unwrap();
    assert_eq!(store.pins().await.unwrap(), std::slice::from_ref(&pin));
    let wider = updraft_engine::rings::Pin {
        majors_behind: 2,
        ..pin
    };
    store.put_pin(&wider).await.unwrap();
    assert_eq!(store.pins().await.unwrap(), [wider]);
    assert!(store.delete_pin("Audio studio").await.unwrap());
    assert!(!store.delete_pin("Audio studio").await.unwrap());
    assert!(store.pins().await.unwrap().is_empty());
}
