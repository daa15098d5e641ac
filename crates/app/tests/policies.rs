//! Saved ring plans and release policies over a real lab: a policy saved with a start date
//! before the newest release drafts it at once; the dashboard shows the draft with its rings as
//! they stand; confirming it starts the first ring and gates the others; a dismissed draft is
//! never drafted again; the editor's input is checked ring by ring.

use updraft_app::view::{MembershipKind, PolicyAction, PolicyView, RolloutStatus};
use updraft_app::{AppError, Session};

async fn session() -> (Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let session = Session::lab(&dir.path().join("lab"), 120, 3)
        .await
        .expect("lab starts");
    (session, dir)
}

fn policy(platform: &str, plan: &str, action: PolicyAction) -> PolicyView {
    PolicyView {
        platform: platform.into(),
        plan: plan.into(),
        base_delay_days: 1,
        action,
        exploited_percent: Some(50),
        since: "2026-04-01".into(),
    }
}

/// The template ring plan saved as "Standard", and a policy of `platform` drafting in it: the
/// drafts waiting after it.
async fn drafted_with_the_template(
    session: &Session,
    platform: &str,
) -> Vec<updraft_app::view::DraftView> {
    session
        .save_ring_plan(&session.ring_plan_template())
        .await
        .unwrap();
    session
        .save_policy(&policy(platform, "Standard", PolicyAction::Draft))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_drafts_the_newest_release_and_the_admin_starts_it_in_rings() {
    let (session, _dir) = session().await;
    let plan = session.ring_plan_template();
    session.save_ring_plan(&plan).await.unwrap();
    assert_eq!(
        session.ring_plans().await.unwrap(),
        std::slice::from_ref(&plan)
    );

    let drafts = session
        .save_policy(&policy("macOS", "Standard", PolicyAction::Draft))
        .await
        .unwrap();
    assert_eq!(drafts.len(), 1, "{drafts:?}");
    let draft = &drafts[0];
    assert!(draft.label.starts_with("macOS 26.4.1"), "{draft:?}");
    let names: Vec<&str> = draft.rings.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["IT", "Pilot", "Everyone"]);
    let macs = session
        .dashboard()
        .await
        .unwrap()
        .by_os
        .iter()
        .filter(|o| o.platform == "macOS")
        .map(|o| o.count)
        .sum::<usize>();
    assert_eq!(
        draft.rings.iter().map(|r| r.devices).sum::<usize>(),
        macs,
        "every Mac falls in one ring"
    );
    assert!(draft.gate.contains("90% updated"), "{}", draft.gate);
    // The dashboard shows it, and the policy raised its notice.
    let dashboard = session.dashboard().await.unwrap();
    assert_eq!(dashboard.drafts, drafts);
    assert!(
        session
            .alerts(50)
            .await
            .unwrap()
            .iter()
            .any(|a| a.detail.contains("drafted: confirm it on the dashboard"))
    );
    // Saving the policy again drafts nothing new: one draft per release.
    let again = session
        .save_policy(&policy("macOS", "Standard", PolicyAction::Draft))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);

    let today = session.now().date_naive().to_string();
    let ids = session
        .start_draft(draft.id, Some(&today), Some("https://it.example.com/macos"))
        .await
        .unwrap();
    assert_eq!(ids.len(), 3, "one rollout per ring that holds devices");
    let rollouts = session.rollouts().await.unwrap();
    let states: Vec<RolloutStatus> = ids
        .iter()
        .map(|id| rollouts.iter().find(|r| r.id == *id).unwrap().state)
        .collect();
    assert_eq!(
        states,
        [
            RolloutStatus::Active,
            RolloutStatus::Gated,
            RolloutStatus::Gated
        ]
    );
    assert!(session.drafts().await.unwrap().is_empty());
    let error = session.start_draft(draft.id, None, None).await.unwrap_err();
    assert!(
        error.to_string().contains("only a waiting draft"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dismissed_draft_stays_dismissed_and_a_plan_in_use_stays_saved() {
    let (session, _dir) = session().await;
    let drafts = drafted_with_the_template(&session, "iOS").await;
    assert_eq!(drafts.len(), 1);
    session.dismiss_draft(drafts[0].id).await.unwrap();
    let after = session
        .save_policy(&policy("iOS", "Standard", PolicyAction::Draft))
        .await
        .unwrap();
    assert!(after.is_empty(), "{after:?}");

    let error = session.delete_ring_plan("Standard").await.unwrap_err();
    assert!(
        matches!(error, AppError::Invalid(_)) && error.to_string().contains("iOS release policy"),
        "{error}"
    );
    assert_eq!(
        session.ring_plans().await.unwrap()[0].used_by,
        ["iOS policy"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_names_the_ring_whose_rule_is_broken() {
    let (session, _dir) = session().await;
    type Breaks = Box<dyn Fn(&mut updraft_app::view::RingPlanView)>;
    let cases: Vec<(&str, Breaks)> = vec![
        ("needs a name", Box::new(|p| p.name = " ".into())),
        (
            "ring 2 (\"Pilot\"): give a share between 1 and 100",
            Box::new(|p| p.rings[1].share_percent = Some(0)),
        ),
        (
            "the shares add up to 105%",
            Box::new(|p| p.rings[1].share_percent = Some(100)),
        ),
        (
            "ring 3 (\"Everyone\"): day 1 comes before",
            Box::new(|p| p.rings[2].offset_days = 1),
        ),
        (
            "make \"every device left\" the last ring",
            Box::new(|p| p.rings[0].kind = MembershipKind::Rest),
        ),
        (
            "ring 1 (\"IT\"): \"5pm\" is not a time of day",
            Box::new(|p| p.rings[0].time_of_day = "5pm".into()),
        ),
        (
            "a filter needs at least one field",
            Box::new(|p| p.rings[0].kind = MembershipKind::Filter),
        ),
        (
            "each ring needs a name of its own",
            Box::new(|p| p.rings[1].name = "IT".into()),
        ),
    ];
    for (expected, break_it) in cases {
        let mut plan = session.ring_plan_template();
        break_it(&mut plan);
        let error = session.save_ring_plan(&plan).await.unwrap_err();
        assert!(error.to_string().contains(expected), "{expected}: {error}");
    }
    assert!(
        session.ring_plans().await.unwrap().is_empty(),
        "nothing half-saved"
    );
    let error = session
        .save_policy(&policy("macOS", "Nope", PolicyAction::Start))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("save the plan first"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compliance_report_follows_each_ring_day_by_day_and_names_every_laggard() {
    let (session, dir) = session().await;
    let drafts = drafted_with_the_template(&session, "macOS").await;
    let before = session.compliance(None, "macOS").await.unwrap();
    assert!(before.label.starts_with("macOS 26.4.1"), "{}", before.label);
    assert_eq!(before.series[0].ring, "All");
    let today = session.now().date_naive().to_string();
    session
        .start_draft(drafts[0].id, Some(&today), None)
        .await
        .unwrap();
    session.advance(3 * 24 * 60).await.unwrap();

    let report = session.compliance(None, "macOS").await.unwrap();
    assert_eq!(report.days, before.days + 3);
    let all = &report.series[0];
    assert_eq!(all.percent.len(), report.days + 1);
    assert!(
        all.percent.windows(2).all(|w| w[0] <= w[1]),
        "a curve never falls: {:?}",
        all.percent
    );
    let it = report.series.iter().find(|s| s.ring == "IT").expect("IT");
    assert!(
        *it.percent.last().unwrap() > 50.0,
        "IT's deadline passed two days ago: {it:?}"
    );
    assert!(
        report.series.iter().any(|s| s.ring == "Everyone"),
        "{:?}",
        report.series
    );
    // Every device not on it is listed with a reason, and the counts agree.
    let lagging: usize = report.lags.iter().map(|l| l.devices).sum();
    assert_eq!(lagging, report.lagging_total);
    let compliant = all.percent.last().unwrap() * all.devices as f64 / 100.0;
    assert_eq!(
        compliant.round() as usize + lagging,
        all.devices,
        "{report:?}"
    );
    assert!(report.lagging.iter().all(|d| !d.ring.is_empty()));

    let paths = session
        .export_compliance_csv(None, "macOS", dir.path())
        .await
        .unwrap();
    let curves = std::fs::read_to_string(&paths[0]).unwrap();
    assert!(curves.starts_with("day,date,ring,devices,compliant,percent\r\n"));
    assert_eq!(
        curves.lines().count(),
        1 + report.series.len() * (report.days + 1)
    );
    let devices = std::fs::read_to_string(&paths[1]).unwrap();
    assert_eq!(devices.lines().count(), 1 + all.devices);
    assert!(
        session
            .audit(20)
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "compliance_exported")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drafted_rollout_on_a_failing_fleet_halts_before_its_second_ring() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The desktop's own lab (the end-to-end test runs this fleet with the same seed).
    let session =
        Session::lab_with_faults(&dir.path().join("lab"), 120, updraft_app::LAB_SEED, 0.6)
            .await
            .unwrap();
    // An IT ring of a fifth of the fleet, as the end-to-end test edits it.
    let mut plan = session.ring_plan_template();
    plan.rings[0].share_percent = Some(20);
    session.save_ring_plan(&plan).await.unwrap();
    let drafts = session
        .save_policy(&policy("macOS", "Standard", PolicyAction::Draft))
        .await
        .unwrap();
    let ids = session.start_draft(drafts[0].id, None, None).await.unwrap();
    let state = |rollouts: &[updraft_app::view::RolloutSummary], id: i64| {
        rollouts.iter().find(|r| r.id == id).unwrap().state
    };
    let rollouts = session.rollouts().await.unwrap();
    assert_eq!(state(&rollouts, ids[1]), RolloutStatus::Gated);
    let gate = rollouts
        .iter()
        .find(|r| r.id == ids[1])
        .unwrap()
        .gate
        .clone();
    assert!(gate.is_some_and(|g| g.starts_with(&format!("waits for rollout {}", ids[0]))));
    session.advance(24 * 60).await.unwrap();
    let rollouts = session.rollouts().await.unwrap();
    assert_eq!(
        state(&rollouts, ids[1]),
        RolloutStatus::Halted,
        "{rollouts:?}"
    );
    assert_eq!(state(&rollouts, ids[2]), RolloutStatus::Gated);

    // Promoted by hand three days later, after its planned deadline (the 13th): its devices
    // still get a day of notices instead of a deadline already past.
    session.advance(3 * 24 * 60).await.unwrap();
    session.promote_ring(ids[1]).await.unwrap();
    let pilot = session.rollouts().await.unwrap();
    let pilot = pilot.iter().find(|r| r.id == ids[1]).unwrap();
    assert_eq!(pilot.state, RolloutStatus::Active);
    assert_eq!(pilot.deadline, "2026-04-15T17:00:00");
    assert!(
        session
            .audit(20)
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "deadline_moved" && e.detail.contains("2026-04-13 17:00:00"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_group_stays_one_major_behind_in_the_wizard_and_in_rings() {
    use updraft_app::view::PinView;
    use updraft_app::wizard::{RolloutPlan, Selection, WavePlan};

    let (session, _dir) = session().await;
    let pin = PinView {
        name: "Studio".into(),
        filter_platform: Some("macOS".into()),
        filter_model: None,
        filter_os: None,
        filter_name: Some("Lab Mac 0001*".into()),
        filter_serial: None,
        majors_behind: 1,
    };
    let error = session
        .save_pin(&PinView {
            filter_platform: None,
            filter_name: None,
            ..pin.clone()
        })
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("needs at least one field"),
        "{error}"
    );
    session.save_pin(&pin).await.unwrap();
    assert_eq!(session.pins().await.unwrap(), std::slice::from_ref(&pin));

    let macos = session
        .releases()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.platform == "macOS" && r.version == "26.4.1")
        .unwrap();
    let plan = RolloutPlan {
        release: macos.key.clone(),
        selection: Selection::All,
        waves: vec![WavePlan {
            percent: 100,
            deadline: format!(
                "{}T17:00",
                session.now().date_naive() + chrono::Duration::days(3)
            ),
        }],
        details_url: None,
        gate: None,
    };
    let preview = session.preview(&plan).await.unwrap();
    let pinned: Vec<_> = preview
        .devices
        .iter()
        .filter(|d| d.name.starts_with("Lab Mac 0001"))
        .collect();
    assert!(!pinned.is_empty());
    for device in &pinned {
        assert_eq!(
            device.exclusion.as_deref(),
            Some("pinned: Studio stays on major version 15 or below"),
            "{device:?}"
        );
    }

    // The same group in a policy's rings: its Macs join none.
    let drafts = drafted_with_the_template(&session, "macOS").await;
    let in_rings: usize = drafts[0].rings.iter().map(|r| r.devices).sum();
    let macs = preview.devices.len();
    assert_eq!(in_rings, macs - pinned.len(), "{drafts:?}");

    session.delete_pin("Studio").await.unwrap();
    let after = session.preview(&plan).await.unwrap();
    assert!(after.devices.iter().all(|d| {
        d.exclusion
            .as_deref()
            .is_none_or(|e| !e.starts_with("pinned"))
    }));
}
