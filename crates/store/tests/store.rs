//! The console's store on a real SQLite file per test.

use chrono::{DateTime, NaiveDateTime, Utc};
use updraft_engine::plan::{DeviceFacts, Release, ReleaseBuild, names};
use updraft_engine::{Effect, Enforcement, EventKind, Phase};
use updraft_feed::Platform;
use updraft_store::{Changes, DeviceRow, Note, Store, StoreError};

fn now() -> DateTime<Utc> {
    "2026-04-10T09:00:00Z".parse().unwrap()
}

fn release() -> Release {
    Release {
        platform: Platform::MacOs,
        product_version: "26.4.1".into(),
        product_version_extra: None,
        builds: vec![ReleaseBuild {
            build: Some("25E253".into()),
            prerequisite_build: None,
            supported_devices: ["j314sap".to_owned()].into_iter().collect(),
        }],
    }
}

fn record(rollout: i64, id: &str, phase: Phase) -> Enforcement {
    Enforcement {
        phase,
        ..Enforcement::planned(
            rollout,
            1,
            id,
            &release(),
            Some("25E253"),
            NaiveDateTime::parse_from_str("2026-04-15T17:00:00", "%Y-%m-%dT%H:%M:%S").unwrap(),
            Some(120),
            now(),
        )
    }
}

fn device(id: &str) -> DeviceRow {
    DeviceRow {
        facts: DeviceFacts {
            enrollment_id: id.into(),
            model: Some("MacBookPro18,3".into()),
            ..Default::default()
        },
        name: Some(format!("Mac {id}")),
        time_zone: Some("Europe/Berlin".into()),
        utc_offset_minutes: None,
        last_report_at: None,
        bootstrap_token_escrowed: true,
        bootstrap_token_requested_at: None,
        server_seq: 3,
    }
}

/// A store on a fresh file with one rollout of `release()`; the folder lives as long as the guard.
async fn store_with_rollout() -> (Store, i64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("console.db")).await.unwrap();
    let rollout = store
        .create_rollout(&release(), 1, "2026-04-15T17:00:00", None, None, now())
        .await
        .unwrap();
    (store, rollout, dir)
}

#[tokio::test]
async fn state_and_its_effects_commit_together_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.db");
    let store = Store::open(&path).await.unwrap();
    let rollout = store
        .create_rollout(&release(), 1, "2026-04-15T17:00:00", None, None, now())
        .await
        .unwrap();
    let mut changes = Changes::default();
    changes.devices.push(device("E1"));
    let planned = record(rollout, "E1", Phase::Planned);
    changes.effects(
        &planned,
        vec![
            Effect::Assign {
                set: planned.set_name.clone(),
            },
            Effect::Timeline {
                kind: EventKind::Planned,
                detail: "26.4.1".into(),
            },
        ],
        now(),
    );
    changes.enforcements.push(planned.clone());
    changes
        .settings
        .push(("server.status_cursor".into(), "42".into()));
    store.commit(changes, now()).await.unwrap();

    let pending = store.pending_outbox(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].effect,
        Effect::Assign {
            set: names::enforcement_set(rollout, 1, None)
        }
    );
    assert_eq!(store.rollout_counts(rollout).await.unwrap(), (1, 1));

    // The effect carried out: its consequence and "done" in one commit.
    let pushed = Enforcement {
        phase: Phase::Pushed,
        ..planned
    };
    let done = Changes {
        done: vec![pending[0].id],
        enforcements: vec![pushed.clone()],
        ..Changes::default()
    };
    store.commit(done, now()).await.unwrap();
    drop(store);

    let reopened = Store::open(&path).await.unwrap();
    assert!(reopened.pending_outbox(10).await.unwrap().is_empty());
    assert_eq!(reopened.enforcements(rollout).await.unwrap(), [pushed]);
    assert_eq!(
        reopened
            .setting("server.status_cursor")
            .await
            .unwrap()
            .as_deref(),
        Some("42")
    );
    assert_eq!(reopened.device("E1").await.unwrap().unwrap(), device("E1"));
    let timeline = reopened.timeline("E1").await.unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].kind, EventKind::Planned);
    assert_eq!(reopened.rollouts().await.unwrap()[0].release, release());
}

#[tokio::test]
async fn records_due_for_a_tick_and_unplanned_devices_are_found() {
    let (store, rollout, _dir) = store_with_rollout().await;
    let mut iphone = device("E4");
    iphone.facts.model = Some("iPhone17,1".into());
    let mut unknown = device("E5");
    unknown.facts.model = None;
    let mut reported = device("E3");
    reported.last_report_at = Some("2026-04-10T08:00:00Z".into());
    let changes = Changes {
        devices: vec![device("E1"), device("E2"), reported, iphone, unknown],
        enforcements: vec![
            Enforcement {
                tick_due: Some(now() - chrono::Duration::hours(1)),
                ..record(rollout, "E1", Phase::Downloading)
            },
            record(rollout, "E2", Phase::CleanedUp),
            Enforcement {
                tick_due: Some(now() + chrono::Duration::hours(1)),
                ..record(rollout, "E6", Phase::Waiting)
            },
        ],
        ..Changes::default()
    };
    store.commit(changes, now()).await.unwrap();
    let due = |at: DateTime<Utc>| {
        let store = &store;
        async move {
            let records = store.enforcements_due(rollout, at).await.unwrap();
            records
                .into_iter()
                .map(|r| r.enrollment_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(due(now()).await, ["E1"]);
    assert_eq!(due(now() + chrono::Duration::hours(2)).await, ["E1", "E6"]);
    let unplanned: Vec<_> = store
        .devices_without_enforcement(rollout, Platform::MacOs, false)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.facts.enrollment_id)
        .collect();
    // The iPhone is not the macOS rollout's; a device of no known model may still be.
    assert_eq!(unplanned, ["E3", "E5"]);
    let silent: Vec<_> = store
        .devices_without_enforcement(rollout, Platform::MacOs, true)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.facts.enrollment_id)
        .collect();
    assert_eq!(silent, ["E5"], "E3 has reported");
    assert_eq!(store.rollout_counts(rollout).await.unwrap(), (3, 2));
}

#[tokio::test]
async fn a_damaged_row_is_an_error_naming_it_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.db");
    let store = Store::open(&path).await.unwrap();
    let rollout = store
        .create_rollout(&release(), 1, "2026-04-15T17:00:00", None, None, now())
        .await
        .unwrap();
    store
        .commit(
            Changes {
                enforcements: vec![record(rollout, "E1", Phase::Pushed)],
                ..Changes::default()
            },
            now(),
        )
        .await
        .unwrap();
    // Damage the stored record through a second connection, as a disk or a bad tool might.
    {
        use sqlx::Connection;
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE enforcements SET record = '{not json'")
            .execute(&mut other)
            .await
            .unwrap();
    }
    let error = store.enforcements(rollout).await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("enforcement record"));
}

#[tokio::test]
async fn a_stored_kind_this_version_does_not_know_is_named_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.db");
    let store = Store::open(&path).await.unwrap();
    let mut changes = Changes::default();
    changes.devices.push(device("E1"));
    changes
        .events
        .push(Note::device("E1", None, now(), EventKind::Enrolled, "Mac"));
    changes.alerts.push(Note::device(
        "E1",
        None,
        now(),
        updraft_engine::AlertKind::DeviceStale,
        "silent",
    ));
    store.commit(changes, now()).await.unwrap();
    {
        use sqlx::Connection;
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        for damage in [
            "UPDATE events SET kind = 'teleported'",
            "UPDATE alerts SET kind = 'teleported'",
        ] {
            sqlx::query(damage).execute(&mut other).await.unwrap();
        }
    }
    let error = store.timeline("E1").await.unwrap_err();
    assert!(
        error.to_string().contains("timeline entry 1's kind")
            && error.to_string().contains("unknown name `teleported`"),
        "{error}"
    );
    let error = store.alerts().await.unwrap_err();
    assert!(
        matches!(error, StoreError::Corrupt { .. }) && error.to_string().contains("alert 1's kind"),
        "{error}"
    );
}

#[tokio::test]
async fn a_commit_that_fails_part_way_writes_nothing_and_the_store_goes_on() {
    let (store, rollout, _dir) = store_with_rollout().await;
    // Devices are written before records: the record of a rollout that does not exist fails
    // after the device row went in.
    let broken = Changes {
        devices: vec![device("E1")],
        enforcements: vec![record(rollout + 1, "E1", Phase::Planned)],
        events: vec![Note::device("E1", None, now(), EventKind::Enrolled, "")],
        ..Changes::default()
    };
    let error = store.commit(broken, now()).await.unwrap_err();
    assert!(
        error.to_string().contains("writing enforcements"),
        "the error names what failed: {error}"
    );
    assert_eq!(store.device("E1").await.unwrap(), None);
    assert!(store.timeline("E1").await.unwrap().is_empty());

    let good = Changes {
        devices: vec![device("E1")],
        enforcements: vec![record(rollout, "E1", Phase::Planned)],
        ..Changes::default()
    };
    store.commit(good, now()).await.unwrap();
    assert_eq!(store.device("E1").await.unwrap(), Some(device("E1")));
    assert_eq!(store.rollout_counts(rollout).await.unwrap(), (1, 1));
}

/// Waits up to 10 s for the database file (not its WAL) to grow by half a megabyte past `before`.
async fn grows_by_half_a_megabyte(path: &std::path::Path, before: u64, after_what: &str) {
    let mut waited = 0;
    while std::fs::metadata(path).unwrap().len() < before + 500_000 {
        assert!(waited < 100, "no checkpoint within 10 s of {after_what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
}

#[tokio::test]
async fn committed_changes_reach_the_database_file_without_waiting_for_a_close() {
    let (store, _rollout, dir) = store_with_rollout().await;
    let path = dir.path().join("console.db");
    let before = std::fs::metadata(&path).unwrap().len();
    let devices: Vec<DeviceRow> = (0..2000).map(|n| device(&format!("E{n}"))).collect();
    store
        .commit(
            Changes {
                devices,
                ..Changes::default()
            },
            now(),
        )
        .await
        .unwrap();
    // The commit leaves its pages in the WAL; the checkpointer copies them in beside it.
    grows_by_half_a_megabyte(&path, before, "the commit").await;
    assert_eq!(store.devices().await.unwrap().len(), 2000);
}

#[tokio::test]
async fn a_rollout_written_with_no_engine_commit_after_it_reaches_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.db");
    let store = Store::open(&path).await.unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let scope: Vec<String> = (0..20_000).map(|n| format!("E{n:05}")).collect();
    let rollout = store
        .create_rollout(
            &release(),
            1,
            "2026-04-15T17:00:00",
            None,
            Some(&scope),
            now(),
        )
        .await
        .unwrap();
    // The desktop writes rollouts, audit entries and alerts through the pool; those wake the
    // checkpointer too, or they would wait in the WAL for the engine's next commit.
    grows_by_half_a_megabyte(&path, before, "the rollout").await;
    assert_eq!(store.rollout_scope(rollout).await.unwrap().len(), 20_000);
}

#[tokio::test]
async fn the_device_list_follows_every_change_of_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("console.db")).await.unwrap();
    let mut mac = device("A");
    mac.facts.os_version = Some("26.3".into());
    mac.facts.build = Some("25D125".into());
    let changes = |row: &DeviceRow| Changes {
        devices: vec![row.clone()],
        ..Default::default()
    };
    store.commit(changes(&mac), now()).await.unwrap();
    store.commit(changes(&device("B")), now()).await.unwrap();
    // An update with a BSI installed: the list shows the new facts, not the first ones.
    mac.facts.os_version = Some("26.3.1".into());
    mac.facts.supplemental_build = Some("25D771280a".into());
    mac.facts.extra = "(a)".into();
    mac.facts.serial_number = Some("C02XYZ".into());
    store.commit(changes(&mac), now()).await.unwrap();

    let mut listed = store.device_summaries().await.unwrap();
    listed.sort_by(|a, b| a.enrollment_id.cmp(&b.enrollment_id));
    assert_eq!(listed.len(), 2);
    let a = &listed[0];
    assert_eq!(a.name.as_deref(), Some("Mac A"));
    assert_eq!(a.model.as_deref(), Some("MacBookPro18,3"));
    assert_eq!(a.os_version.as_deref(), Some("26.3.1"));
    assert_eq!(a.build.as_deref(), Some("25D125"));
    assert_eq!(a.supplemental_build.as_deref(), Some("25D771280a"));
    assert_eq!(a.extra, "(a)");
    assert_eq!(a.serial_number.as_deref(), Some("C02XYZ"));
    assert_eq!(listed[1].os_version, None);
}

#[tokio::test]
async fn timelines_of_a_set_of_devices_come_back_per_device_oldest_first() {
    let (store, rollout, _dir) = store_with_rollout().await;
    // Events of three devices interleaved over three commits, as a rollout writes them.
    for (step, kind) in [
        EventKind::DeclarationAssigned,
        EventKind::PushSent,
        EventKind::DeclarationActive,
    ]
    .into_iter()
    .enumerate()
    {
        let mut changes = Changes::default();
        for id in ["E2", "E1", "E3"] {
            let timeline = Effect::Timeline {
                kind,
                detail: format!("{id} {step}"),
            };
            changes.effects(&record(rollout, id, Phase::Planned), vec![timeline], now());
        }
        store.commit(changes, now()).await.unwrap();
    }
    let ids = ["E1".to_owned(), "E3".to_owned(), "E9".to_owned()];
    let timelines = store.timelines_of(&ids).await.unwrap();
    let mut devices: Vec<&String> = timelines.keys().collect();
    devices.sort();
    assert_eq!(
        devices,
        ["E1", "E3"],
        "E2 was not asked for, E9 has no events"
    );
    for id in ["E1", "E3"] {
        let events: Vec<(EventKind, &str)> = timelines[id]
            .iter()
            .map(|e| (e.kind, e.detail.as_str()))
            .collect();
        assert_eq!(
            events,
            [
                (EventKind::DeclarationAssigned, format!("{id} 0").as_str()),
                (EventKind::PushSent, format!("{id} 1").as_str()),
                (EventKind::DeclarationActive, format!("{id} 2").as_str()),
            ]
        );
    }
}

#[tokio::test]
async fn records_written_before_tick_times_existed_are_due_at_the_first_tick() {
    // A database as the previous release left it: records without a tick time.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let mut previous = sqlx::migrate!("./migrations");
    previous.migrations = previous.migrations[..3].to_vec().into();
    previous.run(&pool).await.unwrap();
    sqlx::query("INSERT INTO rollouts (id, release, deadline_local, state, created_at) VALUES (1, ?, '2026-04-15T17:00:00', 'active', '')")
        .bind(serde_json::to_string(&release()).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    for (id, phase) in [
        ("E1", Phase::Downloading),
        ("E2", Phase::CleanedUp),
        ("E3", Phase::Planned),
        ("E4", Phase::Pushed),
    ] {
        let mut old = serde_json::to_value(record(1, id, phase)).unwrap();
        old.as_object_mut().unwrap().remove("tick_due");
        sqlx::query("INSERT INTO enforcements (rollout_id, enrollment_id, phase, record, updated_at) VALUES (1, ?, ?, ?, '')")
            .bind(id)
            .bind(phase.as_str())
            .bind(old.to_string())
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let store = Store::open(&path).await.unwrap();
    let due: Vec<String> = store
        .enforcements_due(1, now())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.enrollment_id)
        .collect();
    assert_eq!(
        due,
        ["E1", "E4"],
        "the watched records, not the final or planned ones"
    );
}

/// A rollout stored before releases had builds (one `build`, `prerequisite_build` and
/// `supported_devices`) opens after the upgrade as a release whose one build is that one.
#[tokio::test]
async fn a_rollout_stored_with_one_build_reads_back_after_the_release_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.db");
    let store = Store::open(&path).await.unwrap();
    drop(store);
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let earlier = r#"{"platform":"macOS","product_version":"26.4.1","product_version_extra":null,"build":"25E253","prerequisite_build":null,"supported_devices":["j314sap","j223ap"]}"#;
    sqlx::query(
        "INSERT INTO rollouts (release, wave, deadline_local, details_url, state, created_at)
         VALUES (?, 1, '2026-04-15T17:00:00', NULL, 'active', '2026-04-10T09:00:00Z')",
    )
    .bind(earlier)
    .execute(&pool)
    .await
    .unwrap();
    // As if this database had stopped at the migration before.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 5")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = Store::open(&path).await.unwrap();
    let rollouts = store.rollouts().await.unwrap();
    assert_eq!(rollouts.len(), 1);
    assert_eq!(
        rollouts[0].release,
        Release {
            platform: Platform::MacOs,
            product_version: "26.4.1".into(),
            product_version_extra: None,
            builds: vec![ReleaseBuild {
                build: Some("25E253".into()),
                prerequisite_build: None,
                supported_devices: ["j223ap".to_owned(), "j314sap".to_owned()]
                    .into_iter()
                    .collect(),
            }],
        }
    );
}
