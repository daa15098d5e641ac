//! The console application over a real lab (server, simulated fleet, SQLite) on loopback: what
//! the screens show before, during and after a rollout started through the wizard's rules.

use chrono::{Datelike, Duration, Weekday};
use updraft_app::view::{DeviceQuery, EventKind, RolloutStatus, Tone};
use updraft_app::wizard::{GatePlan, RolloutPlan, Selection, WavePlan};
use updraft_app::{AppError, Session};

async fn session(devices: usize) -> (Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let session = Session::lab(&dir.path().join("lab"), devices, 3)
        .await
        .expect("lab starts");
    (session, dir)
}

fn weekday_deadline(session: &Session, days: i64) -> String {
    let mut day = session.now().date_naive() + Duration::days(days);
    while matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
        day += Duration::days(1);
    }
    format!("{day}T17:00")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_from_the_wizard_runs_to_the_end_and_every_screen_tells_it() {
    let (session, _dir) = session(80).await;

    let dashboard = session.dashboard().await.expect("dashboard");
    assert!(dashboard.lab);
    assert_eq!(dashboard.devices, 80);
    assert_eq!(
        dashboard.by_os.iter().map(|o| o.count).sum::<usize>(),
        80,
        "every device counted once by OS"
    );
    let banner = dashboard
        .banners
        .iter()
        .find(|b| b.platform == "macOS")
        .expect("a new macOS release is announced");
    assert!(banner.applies_to > 0);

    let plan = RolloutPlan {
        release: banner.release.clone(),
        selection: Selection::All,
        waves: vec![
            WavePlan {
                percent: 25,
                deadline: weekday_deadline(&session, 2),
            },
            WavePlan {
                percent: 75,
                deadline: weekday_deadline(&session, 4),
            },
        ],
        details_url: Some("https://it.example.com/updates".into()),
        gate: None,
    };
    let preview = session.preview(&plan).await.expect("preview");
    assert!(preview.errors.is_empty(), "{:?}", preview.errors);
    assert_eq!(preview.included, banner.applies_to);
    assert_eq!(
        preview.waves.iter().map(|w| w.devices).sum::<usize>(),
        preview.included
    );
    assert!(preview.waves[0].devices < preview.waves[1].devices);
    assert!(
        preview
            .devices
            .iter()
            .filter(|d| d.wave.is_none())
            .all(|d| d.exclusion.as_deref().is_some_and(|r| !r.is_empty())),
        "every excluded device says why"
    );
    assert!(
        session.rollouts().await.expect("rollouts").is_empty(),
        "a preview sends nothing"
    );

    let ids = session.start_rollout(&plan).await.expect("rollout starts");
    assert_eq!(ids.len(), 2, "one rollout per wave");
    let mut days = 0;
    loop {
        session.advance(6 * 60).await.expect("time moves");
        days += 1;
        let rollouts = session.rollouts().await.expect("rollouts");
        if rollouts.iter().all(|r| r.in_progress == 0) || days > 4 * 14 {
            break;
        }
    }
    let rollouts = session.rollouts().await.expect("rollouts");
    assert!(rollouts.iter().all(|r| r.in_progress == 0), "{rollouts:?}");
    assert!(
        rollouts.iter().all(|r| r.state == RolloutStatus::Complete),
        "{rollouts:?}"
    );
    let updated: usize = rollouts.iter().map(|r| r.updated).sum();
    assert!(updated > 0);

    let detail = session.rollout(ids[1]).await.expect("rollout");
    assert!(detail.scoped, "a wave covers its own devices only");
    let first = session.rollout(ids[0]).await.expect("rollout");
    assert!(
        first.scoped,
        "with two waves, each wave is fixed at confirm"
    );
    let funnel_total: usize = detail.funnel.iter().map(|s| s.count).sum();
    assert_eq!(funnel_total, detail.summary.total);

    // A device that updated: its timeline runs from assignment to removal, with durations.
    let page = session
        .devices(&DeviceQuery {
            state: Some("cleaned_up".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .expect("devices");
    assert!(page.total > 0);
    let device = session.device(&page.rows[0].id).await.expect("device");
    let kinds: Vec<&str> = device.timeline.iter().map(|e| e.kind.as_str()).collect();
    for kind in ["declaration_assigned", "os_updated", "declaration_removed"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(
        device
            .timeline
            .iter()
            .skip(1)
            .all(|e| e.since_previous.is_some())
    );
    let updated = device
        .timeline
        .iter()
        .find(|e| e.kind == EventKind::OsUpdated)
        .expect("an os_updated entry");
    assert_eq!(updated.tone, Tone::Done, "the new OS reads as done");
    let span = device
        .timeline_span
        .as_deref()
        .expect("a span over the events");
    assert!(
        span.ends_with(" d") || span.contains(" d "),
        "days from assignment to removal: {span}"
    );
    assert!(
        device.declarations_assigned.is_empty(),
        "cleaned up means no declaration left"
    );

    let csv = session.rollout_csv(ids[1]).await.expect("csv");
    assert_eq!(csv.lines().count(), detail.summary.total + 1);
    assert!(csv.starts_with("enrollment_id,name,serial_number"));

    let audit = session.audit(10).await.expect("audit");
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == "rollout_started")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wizard_refuses_a_bad_plan_and_starts_nothing() {
    let (session, _dir) = session(20).await;
    let release = session
        .dashboard()
        .await
        .expect("dashboard")
        .banners
        .first()
        .expect("a banner")
        .release
        .clone();
    let plan = RolloutPlan {
        release,
        selection: Selection::All,
        waves: vec![WavePlan {
            percent: 90,
            deadline: "next friday".into(),
        }],
        details_url: Some("http://it.example.com/updates".into()),
        gate: None,
    };
    let preview = session.preview(&plan).await.expect("preview");
    assert_eq!(preview.errors.len(), 3, "{:?}", preview.errors);
    assert!(preview.errors.iter().any(|e| e.contains("100%")));
    assert!(preview.errors.iter().any(|e| e.contains("next friday")));
    assert!(preview.errors.iter().any(|e| e.contains("https")));
    match session.start_rollout(&plan).await {
        Err(AppError::Invalid(message)) => assert!(message.contains("100%")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(session.rollouts().await.expect("rollouts").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chosen_devices_only_are_assigned() {
    let (session, _dir) = session(40).await;
    let banner = session.dashboard().await.expect("dashboard").banners[0].clone();
    let preview = session
        .preview(&RolloutPlan {
            release: banner.release.clone(),
            selection: Selection::All,
            waves: vec![WavePlan {
                percent: 100,
                deadline: weekday_deadline(&session, 3),
            }],
            details_url: None,
            gate: None,
        })
        .await
        .expect("preview");
    let chosen: Vec<String> = preview
        .devices
        .iter()
        .filter(|d| d.wave.is_some())
        .take(2)
        .map(|d| d.id.clone())
        .collect();
    let ids = session
        .start_rollout(&RolloutPlan {
            release: banner.release,
            selection: Selection::Devices(chosen.clone()),
            waves: vec![WavePlan {
                percent: 100,
                deadline: weekday_deadline(&session, 3),
            }],
            details_url: None,
            gate: None,
        })
        .await
        .expect("starts");
    session.advance(60).await.expect("time moves");
    let detail = session.rollout(ids[0]).await.expect("rollout");
    assert_eq!(detail.summary.total, 2, "{detail:?}");
    // A cancelled rollout cannot be resumed into assigning again.
    session.cancel_rollout(ids[0]).await.expect("cancel");
    assert!(matches!(
        session.resume_rollout(ids[0]).await,
        Err(AppError::Invalid(_))
    ));
    assert_eq!(
        session
            .rollout(ids[0])
            .await
            .expect("rollout")
            .summary
            .state,
        RolloutStatus::Cancelled
    );
    for id in &chosen {
        let device = session.device(id).await.expect("device");
        assert_eq!(device.enforcements.len(), 1);
    }
}

/// Three chosen devices over 10/10/80%: the first two waves hold none. The preview says so, and
/// the rollout it starts is the wave the preview called 3, not a renumbered wave 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_waves_keep_their_numbers_from_the_preview() {
    let (session, _dir) = session(40).await;
    let banner = session.dashboard().await.expect("dashboard").banners[0].clone();
    let everyone = session
        .preview(&RolloutPlan {
            release: banner.release.clone(),
            selection: Selection::All,
            waves: vec![WavePlan {
                percent: 100,
                deadline: weekday_deadline(&session, 3),
            }],
            details_url: None,
            gate: None,
        })
        .await
        .expect("preview");
    let chosen: Vec<String> = everyone
        .devices
        .iter()
        .filter(|d| d.wave.is_some())
        .take(3)
        .map(|d| d.id.clone())
        .collect();
    let plan = RolloutPlan {
        release: banner.release,
        selection: Selection::Devices(chosen),
        waves: [(10, 2), (10, 3), (80, 4)]
            .map(|(percent, days)| WavePlan {
                percent,
                deadline: weekday_deadline(&session, days),
            })
            .to_vec(),
        details_url: None,
        gate: None,
    };
    let preview = session.preview(&plan).await.expect("preview");
    let sizes: Vec<(u32, usize)> = preview.waves.iter().map(|w| (w.wave, w.devices)).collect();
    assert_eq!(sizes, [(1, 0), (2, 0), (3, 3)]);
    assert!(
        preview.waves[0]
            .warnings
            .iter()
            .any(|w| w.contains("will not be started")),
        "{:?}",
        preview.waves[0]
    );
    let ids = session.start_rollout(&plan).await.expect("starts");
    assert_eq!(ids.len(), 1);
    session.advance(60).await.expect("time moves");
    let rollouts = session.rollouts().await.expect("rollouts");
    assert_eq!(rollouts[0].wave, 3, "{rollouts:?}");
    assert_eq!(rollouts[0].total, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_applicable_device_in_one_wave_stays_open_to_devices_that_come_later() {
    let (session, _dir) = session(20).await;
    let banner = session.dashboard().await.expect("dashboard").banners[0].clone();
    let ids = session
        .start_rollout(&RolloutPlan {
            release: banner.release,
            selection: Selection::All,
            waves: vec![WavePlan {
                percent: 100,
                deadline: weekday_deadline(&session, 3),
            }],
            details_url: None,
            gate: None,
        })
        .await
        .expect("starts");
    let detail = session.rollout(ids[0]).await.expect("rollout");
    assert!(!detail.scoped, "{detail:?}");
    assert_eq!(
        detail.summary.total,
        banner.applies_to + detail.summary.excluded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_new_in_the_feed_raises_one_alert_and_a_notice() {
    let (session, _dir) = session(30).await;
    let mut feed: serde_json::Value =
        serde_json::from_str(updraft_feed::BUNDLED_FEED).expect("bundled feed");
    // Apple posts macOS 26.5 today: a copy of the newest macOS entry with a higher version.
    let today = session.now().date_naive().to_string();
    let macs = feed["PublicAssetSets"]["macOS"]
        .as_array_mut()
        .expect("macOS entries");
    let mut entry = macs[0].clone();
    entry["ProductVersion"] = "26.5".into();
    entry["Build"] = "25F5042g".into();
    entry["PostingDate"] = today.clone().into();
    macs.insert(0, entry);
    let feed = updraft_feed::LookupResponse::parse(feed.to_string().as_bytes()).expect("parses");

    let notices = session.update_feed(&feed).await.expect("update");
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].summary, "New release");
    assert!(
        notices[0].body.starts_with(&format!(
            "macOS 26.5 (25F5042g), posted {today}, applies to"
        )),
        "{notices:?}"
    );
    let releases = session.releases().await.expect("releases");
    assert!(releases.iter().any(|r| r.version == "26.5"));
    let alerts = session.alerts(10).await.expect("alerts");
    assert_eq!(alerts[0].kind, updraft_app::view::AlertKind::NewRelease);

    // The same feed again, or an empty one, says nothing new and keeps the releases.
    assert!(session.update_feed(&feed).await.expect("again").is_empty());
    let empty = updraft_feed::LookupResponse::parse(b"{}").expect("empty parses");
    assert!(session.update_feed(&empty).await.expect("empty").is_empty());
    assert!(
        session
            .releases()
            .await
            .expect("releases")
            .iter()
            .any(|r| r.version == "26.5")
    );
}

/// The audit log names the person at the desktop, and records what leaves the console or changes
/// how it starts: a CSV export and a Settings change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_and_settings_changes_are_audited_in_the_actors_name() {
    let (session, dir) = session(20).await;
    let session = session.acting_as("jdoe");
    let release = session.dashboard().await.expect("dashboard").banners[0]
        .release
        .clone();
    let plan = RolloutPlan {
        release,
        selection: Selection::All,
        waves: vec![WavePlan {
            percent: 100,
            deadline: weekday_deadline(&session, 3),
        }],
        details_url: None,
        gate: None,
    };
    let id = session.start_rollout(&plan).await.expect("rollout")[0];
    let folder = dir.path().join("Downloads");
    let path = session
        .export_rollout_csv(id, &folder)
        .await
        .expect("export");
    let written = std::fs::read_to_string(&path).expect("the CSV is on disk");
    let devices = written.lines().count() - 1;
    assert!(devices > 0);
    session
        .use_lab(&dir.path().join("settings.json"))
        .await
        .expect("settings saved");

    let audit = session.audit(10).await.expect("audit");
    assert!(audit.iter().all(|a| a.actor == "jdoe"), "{audit:?}");
    let exported = audit
        .iter()
        .find(|a| a.action == "rollout_exported")
        .expect("the export is audited");
    assert_eq!(
        exported.detail,
        format!("rollout {id}: {devices} devices to {}", path.display())
    );
    let changed = audit
        .iter()
        .find(|a| a.action == "settings_changed")
        .expect("the settings change is audited");
    assert!(changed.detail.contains("lab"), "{}", changed.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_wave_waits_says_why_and_starts_by_hand() {
    let (session, _dir) = session(40).await;
    let banner = session.dashboard().await.expect("dashboard").banners[0].clone();
    let plan = RolloutPlan {
        release: banner.release,
        selection: Selection::All,
        waves: [(50, 3), (50, 5)]
            .map(|(percent, days)| WavePlan {
                percent,
                deadline: weekday_deadline(&session, days),
            })
            .to_vec(),
        details_url: None,
        gate: Some(GatePlan {
            min_updated_percent: 90,
            max_failed_percent: 5,
        }),
    };
    let ids = session.start_rollout(&plan).await.expect("starts");
    assert_eq!(ids.len(), 2);
    session.advance(30).await.expect("time moves");
    let second = session.rollout(ids[1]).await.expect("rollout");
    assert_eq!(second.summary.state, RolloutStatus::Gated);
    assert_eq!(
        second.summary.total, 0,
        "nothing planned behind a closed gate"
    );
    let gate = second.summary.gate.clone().expect("a gate line");
    assert!(
        gate.starts_with(&format!("waits for rollout {}: ", ids[0]))
            && gate.contains("of the 90% its gate asks"),
        "{gate}"
    );
    // The first wave is not done: only the admin's hand can start the second now.
    session.promote_ring(ids[1]).await.expect("promoted");
    let second = session.rollout(ids[1]).await.expect("rollout");
    assert_eq!(second.summary.state, RolloutStatus::Active);
    assert!(second.summary.total > 0, "{second:?}");
    assert_eq!(second.summary.gate, None);
    let audit = session.audit(10).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.action == "ring_promoted" && e.detail.ends_with("by hand")),
        "{audit:?}"
    );
    match session.promote_ring(ids[1]).await {
        Err(AppError::Invalid(message)) => assert!(message.contains("only a ring waiting")),
        other => panic!("an active wave cannot be promoted again: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_say_what_they_fix_as_sofa_tells_it() {
    let (session, _dir) = session(10).await;
    let releases = session.releases().await.expect("releases");
    let macos_26_3 = releases
        .iter()
        .find(|r| r.platform == "macOS" && r.version == "26.3" && r.extra.is_none())
        .expect("macOS 26.3 in the bundled capture");
    assert_eq!(macos_26_3.cves, Some(67));
    assert_eq!(
        macos_26_3.exploited,
        ["CVE-2025-14174", "CVE-2025-43529", "CVE-2026-20700"]
    );
    assert_eq!(macos_26_3.sofa_mismatch, None);
    assert!(
        releases
            .iter()
            .filter(|r| r.extra.is_some())
            .all(|r| r.cves.is_none()),
        "SOFA lists BSIs apart: not guessed from their base version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_holding_its_declaration_shows_the_prompts_still_expected_before_its_deadline() {
    let (session, _dir) = session(30).await;
    let banner = session
        .dashboard()
        .await
        .expect("dashboard")
        .banners
        .into_iter()
        .find(|b| b.platform == "macOS")
        .expect("a macOS banner");
    let deadline = weekday_deadline(&session, 3);
    let plan = RolloutPlan {
        release: banner.release,
        selection: Selection::All,
        waves: vec![WavePlan {
            percent: 100,
            deadline: deadline.clone(),
        }],
        details_url: None,
        gate: None,
    };
    let preview = session.preview(&plan).await.expect("preview");
    session.start_rollout(&plan).await.expect("starts");
    session.advance(120).await.expect("time moves");
    let mut seen = 0;
    for id in preview
        .devices
        .iter()
        .filter(|d| d.wave.is_some())
        .map(|d| d.id.clone())
    {
        let device = session.device(&id).await.expect("device");
        if !matches!(
            device.enforcements[0].phase.as_str(),
            "active" | "waiting" | "downloading" | "prepared"
        ) {
            assert!(device.expected_prompts.is_empty(), "{id}: {device:?}");
            continue;
        }
        seen += 1;
        let prompts = &device.expected_prompts;
        let deadline_text = deadline.replace('T', " ");
        assert!(
            prompts.iter().all(|p| p.at < deadline_text),
            "all before the deadline: {prompts:?}"
        );
        let cadences: Vec<&str> = prompts.iter().map(|p| p.cadence.as_str()).collect();
        assert_eq!(cadences.iter().filter(|c| **c == "hourly").count(), 24);
        assert_eq!(
            &cadences[cadences.len() - 2..],
            ["30 and 10 minutes before", "30 and 10 minutes before"]
        );
        assert!(cadences.contains(&"daily"), "{cadences:?}");
    }
    assert!(seen > 0, "some Mac holds its declaration two hours in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_device_is_left_out_with_its_reason_until_the_hold_ends_or_is_lifted() {
    let (session, _dir) = session(20).await;
    let banner = session.dashboard().await.expect("dashboard").banners[0].clone();
    let plan = RolloutPlan {
        release: banner.release,
        selection: Selection::All,
        waves: vec![WavePlan {
            percent: 100,
            deadline: weekday_deadline(&session, 3),
        }],
        details_url: None,
        gate: None,
    };
    let before = session.preview(&plan).await.expect("preview");
    let id = before
        .devices
        .iter()
        .find(|d| d.wave.is_some())
        .expect("an included device")
        .id
        .clone();
    let tomorrow = (session.now().date_naive() + Duration::days(2)).to_string();
    for (reason, until, refusal) in [
        ("  ", None, "say why"),
        ("stage", Some("next week"), "is not a date"),
        ("stage", Some("2020-01-01"), "would end before it starts"),
    ] {
        match session.hold_device(&id, reason, until).await {
            Err(AppError::Invalid(message)) => assert!(message.contains(refusal), "{message}"),
            other => panic!("{reason:?} {until:?}: {other:?}"),
        }
    }
    session
        .hold_device(&id, "on stage at the keynote", Some(&tomorrow))
        .await
        .expect("held");
    let held = session.preview(&plan).await.expect("preview");
    let row = held.devices.iter().find(|d| d.id == id).expect("listed");
    assert_eq!(row.wave, None, "left out: {row:?}");
    assert_eq!(
        row.exclusion.as_deref(),
        Some(format!("on hold until {tomorrow} 00:00 UTC: on stage at the keynote").as_str())
    );
    let detail = session.device(&id).await.expect("device");
    assert!(detail.hold.expect("shown").contains("on stage"));
    // The hold ends by itself.
    session.advance(3 * 24 * 60).await.expect("time moves");
    let after = session.preview(&plan).await.expect("preview");
    assert!(after.devices.iter().any(|d| d.id == id && d.wave.is_some()));
    assert_eq!(session.device(&id).await.expect("device").hold, None);
    // Or the admin lifts it.
    session
        .hold_device(&id, "lab instrument", None)
        .await
        .expect("held");
    session.lift_hold(&id).await.expect("lifted");
    assert!(matches!(
        session.lift_hold(&id).await,
        Err(AppError::NotFound(_))
    ));
    let audit: Vec<String> = session
        .audit(20)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(audit.contains(&"device_held".to_owned()) && audit.contains(&"hold_lifted".to_owned()));
}
