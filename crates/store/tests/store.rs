//! The console's store on a real SQLite file per test.

use chrono::{DateTime, NaiveDateTime, Utc};
use updraft_engine::plan::{DeviceFacts, Release, ReleaseBuild, names};
use updraft_engine::{Effect, Enforcement, EventKind, Phase};
use updraft_feed::Platform;
use updraft_store::{Changes, Command, DeviceRow, NewRollout, Note, Store, StoreError};

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
            bootstrap_token_escrowed: true,
            ..Default::default()
        },
        name: Some(format!("Mac {id}")),
        time_zone: Some("Europe/Berlin".into()),
        utc_offset_minutes: None,
        last_report_at: None,
        bootstrap_token_requested_at: None,
        server_seq: 3,
    }
}

/// A store on a fresh file with one rollout of `release()`; the folder lives as long as the guard.
async fn store_with_rollout() -> (Store, i64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("console.db")).await.unwrap();
    let rollout = store
        .create_rollout(NewRollout::of(&release(), 1, "2026-04-15T17:00:00"), now())
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
        .create_rollout(NewRollout::of(&release(), 1, "2026-04-15T17:00:00"), now())
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
        pending[0].command,
        Command::Assign {
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
        .create_rollout(NewRollout::of(&release(), 1, "2026-04-15T17:00:00"), now())
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
        sqlx::query("UPDATE enforcements SET deadline_local = 'next tuesday'")
            .execute(&mut other)
            .await
            .unwrap();
    }
    let error = store.enforcements(rollout).await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(
        error.to_string().contains(&format!(
            "deadline_local of E1's record in rollout {rollout}"
        )) && error.to_string().contains("\"next tuesday\""),
        "{error}"
    );
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
    let devices: Vec<DeviceRow> = (0..6000).map(|n| device(&format!("E{n}"))).collect();
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
    assert_eq!(store.devices().await.unwrap().len(), 6000);
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
            NewRollout {
                scope: Some(&scope),
                ..NewRollout::of(&release(), 1, "2026-04-15T17:00:00")
            },
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
    // A in two rollouts: the list gives the phase of the newest, whichever was written last.
    let first = store
        .create_rollout(NewRollout::of(&release(), 1, "2026-04-15T17:00:00"), now())
        .await
        .unwrap();
    let second = store
        .create_rollout(NewRollout::of(&release(), 1, "2026-04-15T17:00:00"), now())
        .await
        .unwrap();
    let records = |records: Vec<Enforcement>| Changes {
        enforcements: records,
        ..Default::default()
    };
    store
        .commit(
            records(vec![record(second, "A", Phase::Downloading)]),
            now(),
        )
        .await
        .unwrap();
    store
        .commit(records(vec![record(first, "A", Phase::Failed)]), now())
        .await
        .unwrap();

    let mut listed = store
        .device_summaries(Vec::new(), |listed, device| listed.push(device))
        .await
        .unwrap();
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
    assert_eq!(a.newest_rollout, Some((second, Phase::Downloading)));
    assert_eq!(listed[1].os_version, None);
    assert_eq!(listed[1].newest_rollout, None);
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
    let pool = database_at(&path).await;
    migrate_until(&pool, 3).await;
    sqlx::query("INSERT INTO rollouts (id, release, deadline_local, state, created_at) VALUES (1, ?, '2026-04-15T17:00:00', 'active', '')")
        .bind(ONE_BUILD_RELEASE)
        .execute(&pool)
        .await
        .unwrap();
    for (id, phase) in [
        ("E1", "downloading"),
        ("E2", "cleaned_up"),
        ("E3", "planned"),
        ("E4", "pushed"),
    ] {
        let mut old = stored_record(id, phase);
        old.as_object_mut().unwrap().remove("tick_due");
        sqlx::query("INSERT INTO enforcements (rollout_id, enrollment_id, phase, record, updated_at) VALUES (1, ?, ?, ?, '')")
            .bind(id)
            .bind(phase)
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
    let pool = database_at(&path).await;
    migrate_until(&pool, 4).await;
    let earlier = r#"{"platform":"macOS","product_version":"26.4.1","product_version_extra":null,"build":"25E253","prerequisite_build":null,"supported_devices":["j314sap","j223ap"]}"#;
    sqlx::query(
        "INSERT INTO rollouts (release, wave, deadline_local, details_url, state, created_at)
         VALUES (?, 1, '2026-04-15T17:00:00', NULL, 'active', '2026-04-10T09:00:00Z')",
    )
    .bind(earlier)
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

/// A database file for a test that writes what an earlier Updraft left.
async fn database_at(path: &std::path::Path) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    sqlx::SqlitePool::connect_with(options).await.unwrap()
}

/// Applies the first `count` migrations only: the schema of the Updraft that stopped there.
async fn migrate_until(pool: &sqlx::SqlitePool, count: usize) {
    let mut earlier = sqlx::migrate!("./migrations");
    earlier.migrations = earlier.migrations[..count].to_vec().into();
    earlier.run(pool).await.unwrap();
}

/// `release()` as releases were stored before they had builds (migration 5 converts it).
const ONE_BUILD_RELEASE: &str = r#"{"platform":"macOS","product_version":"26.4.1","product_version_extra":null,"build":"25E253","prerequisite_build":null,"supported_devices":["j314sap"]}"#;

/// An enforcement record as the JSON column held it before migration 6, field for field.
fn stored_record(id: &str, phase: &str) -> serde_json::Value {
    serde_json::json!({
        "rollout_id": 1,
        "enrollment_id": id,
        "phase": phase,
        "target_version": "26.4.1",
        "target_extra": null,
        "target_build": "25E253",
        "declaration_id": names::enforcement(1, 1, None),
        "set_name": names::enforcement_set(1, 1, None),
        "deadline": "2026-04-15T17:00:00",
        "utc_offset_minutes": 120,
        "exclusion_reason": null,
        "failure_reason": null,
        "failure_count": 0,
        "invalid_reason": null,
        "install_state": null,
        "last_report_at": null,
        "started_at": "2026-04-10T09:00:00Z",
        "bootstrap_requested_at": null,
        "reported_os": null,
        "past_deadline": false,
        "stale": false,
        "phase_since": null,
        "stuck": false,
        "tick_due": null
    })
}

/// A database as the Updraft before migration 6 left it (every value a JSON column) opens with
/// each value read back field for field from its new columns, and a commit goes on from there.
#[tokio::test]
async fn a_database_of_json_rows_reads_back_field_for_field_after_the_column_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.db");
    let pool = database_at(&path).await;
    migrate_until(&pool, 5).await;
    let release = r#"{"platform":"iOS","product_version":"26.4.1","product_version_extra":null,"builds":[
        {"build":"23E254","prerequisite_build":null,"supported_devices":["d83ap","j517ap"]},
        {"build":"23E6254","prerequisite_build":null,"supported_devices":["d93ap"]}]}"#;
    let facts = r#"{"enrollment_id":"E1","model":"iPhone17,1","model_family":"iPhone","serial_number":"F2LX0000","enrolled_at":"2026-04-01T08:00:00Z","os_version":"26.3","build":"23D127","supplemental_build":"23D127a","extra":"(a)","reported_device_id":"d83ap","supported_configurations":["com.apple.configuration.softwareupdate.enforcement.specific"],"bootstrap_token_escrowed":false}"#;
    let mut old_record = stored_record("E1", "downloading");
    for (field, value) in [
        ("target_extra", serde_json::json!("(b)")),
        ("exclusion_reason", serde_json::json!(null)),
        ("failure_reason", serde_json::json!("download failed")),
        ("failure_count", serde_json::json!(2)),
        ("install_state", serde_json::json!("downloading")),
        (
            "last_report_at",
            serde_json::json!("2026-04-11T10:30:00.123456789Z"),
        ),
        (
            "bootstrap_requested_at",
            serde_json::json!("2026-04-11T10:00:00Z"),
        ),
        ("reported_os", serde_json::json!("26.3 (23D127a)")),
        ("past_deadline", serde_json::json!(true)),
        ("phase_since", serde_json::json!("2026-04-11T10:30:00Z")),
        ("tick_due", serde_json::json!("2026-04-12T10:30:00.5Z")),
    ] {
        old_record[field] = value;
    }
    for statement in [
        "INSERT INTO rollouts (id, release, wave, deadline_local, details_url, state, created_at)
         VALUES (1, ?1, 2, '2026-04-15T17:00:00', 'https://it.example/ios', 'paused', '')",
        "INSERT INTO devices (enrollment_id, facts, name, time_zone, utc_offset_minutes, last_report_at,
            bootstrap_token_escrowed, server_seq, updated_at, model, model_family, serial_number,
            os_version, build, supplemental_build, extra)
         VALUES ('E1', ?1, 'Ana''s iPhone', 'Europe/Lisbon', 60, '2026-04-11T10:30:00Z', 0, 7, '',
            'iPhone17,1', 'iPhone', 'F2LX0000', '26.3', '23D127', '23D127a', '(a)')",
        "INSERT INTO enforcements (rollout_id, enrollment_id, phase, record, updated_at, tick_due)
         VALUES (1, 'E1', 'downloading', ?1, '', 1775989800)",
        r#"INSERT INTO outbox (rollout_id, enrollment_id, effect, created_at)
         VALUES (1, 'E1', '{"effect":"unassign","set":"updraft.rollout.1.w2"}', ''),
                (NULL, 'E1', '{"effect":"touch","declaration":"com.updraft.enforcement.1.w2"}', '')"#,
    ] {
        let value = match statement {
            s if s.contains("INTO rollouts") => release.to_owned(),
            s if s.contains("INTO devices") => facts.to_owned(),
            _ => old_record.to_string(),
        };
        sqlx::query(statement).bind(value).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let store = Store::open(&path).await.unwrap();
    let rollout = &store.rollouts().await.unwrap()[0];
    assert_eq!(
        (rollout.wave, rollout.state, rollout.details_url.as_deref()),
        (
            2,
            updraft_engine::RolloutState::Paused,
            Some("https://it.example/ios")
        )
    );
    let ids = |list: &[&str]| list.iter().map(|id| id.to_string()).collect();
    assert_eq!(
        rollout.release,
        Release {
            platform: Platform::Ios,
            product_version: "26.4.1".into(),
            product_version_extra: None,
            builds: vec![
                ReleaseBuild {
                    build: Some("23E254".into()),
                    prerequisite_build: None,
                    supported_devices: ids(&["d83ap", "j517ap"]),
                },
                ReleaseBuild {
                    build: Some("23E6254".into()),
                    prerequisite_build: None,
                    supported_devices: ids(&["d93ap"]),
                },
            ],
        }
    );
    let device = store.device("E1").await.unwrap().unwrap();
    assert_eq!(
        device,
        DeviceRow {
            facts: DeviceFacts {
                enrollment_id: "E1".into(),
                model: Some("iPhone17,1".into()),
                model_family: Some("iPhone".into()),
                serial_number: Some("F2LX0000".into()),
                enrolled_at: Some("2026-04-01T08:00:00Z".into()),
                os_version: Some("26.3".into()),
                build: Some("23D127".into()),
                supplemental_build: Some("23D127a".into()),
                extra: "(a)".into(),
                reported_device_id: Some("d83ap".into()),
                supported_configurations: Some(vec![
                    "com.apple.configuration.softwareupdate.enforcement.specific".into()
                ]),
                bootstrap_token_escrowed: false,
            },
            name: Some("Ana's iPhone".into()),
            time_zone: Some("Europe/Lisbon".into()),
            utc_offset_minutes: Some(60),
            last_report_at: Some("2026-04-11T10:30:00Z".into()),
            bootstrap_token_requested_at: None,
            server_seq: 7,
        }
    );
    let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
    let migrated = Enforcement {
        target_extra: Some("(b)".into()),
        failure_reason: Some("download failed".into()),
        failure_count: 2,
        install_state: Some(updraft_engine::InstallState::Downloading),
        last_report_at: Some(at("2026-04-11T10:30:00.123456789Z")),
        bootstrap_requested_at: Some("2026-04-11T10:00:00Z".into()),
        reported_os: Some("26.3 (23D127a)".into()),
        past_deadline: true,
        phase_since: Some(at("2026-04-11T10:30:00Z")),
        // The old column held whole seconds; the next step computes it to the nanosecond.
        tick_due: Some(at("2026-04-12T10:30:00Z")),
        ..record(1, "E1", Phase::Downloading)
    };
    assert_eq!(
        store.enforcements(1).await.unwrap(),
        std::slice::from_ref(&migrated)
    );
    let commands: Vec<_> = store
        .pending_outbox(10)
        .await
        .unwrap()
        .into_iter()
        .map(|item| (item.rollout_id, item.command))
        .collect();
    assert_eq!(
        commands,
        [
            (
                Some(1),
                Command::Unassign {
                    set: "updraft.rollout.1.w2".into()
                }
            ),
            (
                None,
                Command::Touch {
                    declaration: "com.updraft.enforcement.1.w2".into()
                }
            ),
        ]
    );

    // Written again through the columns, the record reads back as written, to the nanosecond.
    let next = Enforcement {
        phase: Phase::Failed,
        tick_due: Some(at("2026-04-12T10:30:00.000000001Z")),
        ..migrated
    };
    let changes = Changes {
        enforcements: vec![next.clone()],
        ..Changes::default()
    };
    store.commit(changes, now()).await.unwrap();
    assert_eq!(store.enforcements(1).await.unwrap(), [next]);
}
