use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::json;

use updraft_ddm::{DeviceStatus, StatusReport};
use updraft_feed::Platform;

use crate::plan::{Exclusion, enforcement_declarations, names};
use crate::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn release() -> Release {
    Release {
        platform: Platform::MacOs,
        product_version: "26.4.1".into(),
        product_version_extra: None,
        builds: vec![build("25E253", None, &["j314sap", "j223ap"])],
    }
}

fn build(build: &str, prerequisite: Option<&str>, devices: &[&str]) -> ReleaseBuild {
    ReleaseBuild {
        build: Some(build.into()),
        prerequisite_build: prerequisite.map(str::to_owned),
        supported_devices: devices.iter().map(|d| d.to_string()).collect(),
    }
}

fn mac(model: &str, version: &str, capabilities: bool) -> DeviceFacts {
    DeviceFacts {
        enrollment_id: "E1".into(),
        model: Some(model.into()),
        os_version: Some(version.into()),
        build: Some("25D125".into()),
        supported_configurations: Some(if capabilities {
            vec!["com.apple.configuration.softwareupdate.enforcement.specific".into()]
        } else {
            vec!["com.apple.configuration.passcode.settings".into()]
        }),
        ..Default::default()
    }
}

#[test]
fn decisions_name_their_reasons() {
    let r = release();
    assert_eq!(
        decide(&mac("MacBookPro18,3", "26.3", true), &r),
        Decision::Enforce {
            device_id_source: DeviceIdSource::Derived,
            device_id: "J314sAP".into(),
            target_build: Some("25E253".into()),
        }
    );
    // A T2 Mac has two ids; the bridge id matches.
    assert!(matches!(
        decide(&mac("MacBookAir9,1", "15.7", true), &r),
        Decision::Enforce { .. }
    ));
    let reason = |facts: &DeviceFacts| match decide(facts, &r) {
        Decision::Exclude(reason) => reason,
        other => panic!("expected an exclusion, got {other:?}"),
    };
    let current = reason(&mac("MacBookPro18,3", "26.4.1", true));
    assert!(matches!(current, Exclusion::AlreadyCurrent { .. }));
    assert_eq!(
        current.to_string(),
        "already at or above the target: runs 26.4.1, target 26.4.1 (25E253)"
    );
    let old = reason(&mac("MacBookPro18,3", "13.6", true));
    assert!(
        old.to_string().contains("macOS 13.6 is below 14.0"),
        "{old}"
    );
    assert_eq!(
        reason(&mac("MacBookPro18,3", "26.3", false)),
        Exclusion::NotSupervised
    );
    assert!(matches!(
        reason(&mac("iMac18,1", "26.3", true)),
        Exclusion::NotSupported { .. }
    ));
    assert!(matches!(
        reason(&mac("Mac99,9", "26.3", true)),
        Exclusion::NoDeviceId { .. }
    ));
    let mut reported = mac("Mac99,9", "26.3", true);
    reported.reported_device_id = Some("J314SAP".into());
    assert_eq!(
        decide(&reported, &r),
        Decision::Enforce {
            device_id_source: DeviceIdSource::Reported,
            device_id: "J314SAP".into(),
            target_build: Some("25E253".into()),
        }
    );
    let mut unknown_capabilities = mac("MacBookPro18,3", "26.3", true);
    unknown_capabilities.supported_configurations = None;
    assert!(matches!(
        decide(&unknown_capabilities, &r),
        Decision::Wait(_)
    ));
}

#[test]
fn bsi_needs_its_prerequisite_build() {
    let bsi = Release {
        product_version: "26.3.1".into(),
        product_version_extra: Some("(a)".into()),
        builds: vec![
            build("25D771280a", Some("25D2128"), &["j314sap"]),
            build("25D771290a", Some("25D2129"), &["j314sap"]),
        ],
        ..release()
    };
    let mut device = mac("MacBookPro18,3", "26.3.1", true);
    assert!(
        matches!(decide(&device, &bsi), Decision::Exclude(reason) if reason.to_string().contains("installs only on build 25D2128 or 25D2129"))
    );
    // Of the BSI's builds, only the one for the device's base build applies: it is named.
    device.build = Some("25D2129".into());
    assert!(matches!(
        decide(&device, &bsi),
        Decision::Enforce { target_build: Some(b), .. } if b == "25D771290a"
    ));
    device.extra = "(a)".into();
    assert!(matches!(
        decide(&device, &bsi),
        Decision::Exclude(Exclusion::AlreadyCurrent { .. })
    ));
}

#[test]
fn declarations_use_three_part_versions_and_offsetless_deadlines() {
    let deadline =
        NaiveDateTime::parse_from_str("2026-04-16T18:00:00", "%Y-%m-%dT%H:%M:%S").unwrap();
    let mut r = release();
    r.product_version = "26.4".into();
    let declarations =
        enforcement_declarations(3, 1, &r, deadline, Some("https://it.example.com/26")).unwrap();
    assert_eq!(declarations.len(), 2, "one build: one configuration");
    assert_eq!(declarations[0].0, names::enforcement_set(3, 1, None));
    let json = serde_json::to_value(&declarations[0].1).unwrap();
    assert_eq!(json["Identifier"], names::enforcement(3, 1, None));
    assert_eq!(json["Payload"]["TargetOSVersion"], "26.4.0");
    assert_eq!(json["Payload"]["TargetBuildVersion"], "25E253");
    assert_eq!(
        json["Payload"]["TargetLocalDateTime"],
        "2026-04-16T18:00:00"
    );
    assert_eq!(
        declarations[1].1.payload["StandardConfigurations"],
        json!([names::enforcement(3, 1, None)])
    );
    assert!(enforcement_declarations(3, 1, &r, deadline, Some("http://insecure")).is_err());
}

/// iOS 26.4.1 is listed as 23E254 and 23E6254. A device both list gets the version alone (Apple: a
/// build that does not fit yields to the version); a device only one lists gets that build, in
/// its own declaration and set.
#[test]
fn a_release_of_several_builds_names_a_build_only_where_exactly_one_fits() {
    let deadline =
        NaiveDateTime::parse_from_str("2026-04-16T18:00:00", "%Y-%m-%dT%H:%M:%S").unwrap();
    let ios = Release {
        platform: Platform::Ios,
        product_version: "26.4.1".into(),
        product_version_extra: None,
        builds: vec![
            build("23E254", None, &["iphone15,2", "iphone16,1"]),
            build("23E6254", None, &["iphone15,2"]),
        ],
    };
    assert_eq!(ios.label(), "26.4.1 (23E254, 23E6254)");
    let phone = |model: &str| DeviceFacts {
        enrollment_id: "P1".into(),
        model: Some(model.into()),
        os_version: Some("26.3".into()),
        build: Some("23D100".into()),
        ..Default::default()
    };
    let target = |facts: &DeviceFacts| match decide(facts, &ios) {
        Decision::Enforce { target_build, .. } => target_build,
        other => panic!("expected enforcement, got {other:?}"),
    };
    assert_eq!(target(&phone("iPhone15,2")), None);
    assert_eq!(target(&phone("iPhone16,1")), Some("23E254".into()));

    let declarations = enforcement_declarations(4, 2, &ios, deadline, None).unwrap();
    let configurations: Vec<(String, String, Option<String>)> = declarations
        .iter()
        .filter_map(|(set, d)| {
            let build = d.payload.get("TargetOSVersion")?;
            assert_eq!(build, "26.4.1");
            Some((
                set.clone(),
                d.identifier.clone(),
                d.payload
                    .get("TargetBuildVersion")
                    .and_then(|b| b.as_str())
                    .map(str::to_owned),
            ))
        })
        .collect();
    assert_eq!(
        configurations,
        [
            (
                names::enforcement_set(4, 2, None),
                names::enforcement(4, 2, None),
                None
            ),
            (
                names::enforcement_set(4, 2, Some("23E254")),
                names::enforcement(4, 2, Some("23E254")),
                Some("23E254".into())
            ),
            (
                names::enforcement_set(4, 2, Some("23E6254")),
                names::enforcement(4, 2, Some("23E6254")),
                Some("23E6254".into())
            ),
        ]
    );
    let record = Enforcement::planned(
        4,
        2,
        "P1",
        &ios,
        Some("23E254"),
        deadline,
        None,
        at("2026-04-11T09:00:00Z"),
    );
    assert_eq!(
        record.set_name,
        names::enforcement_set(4, 2, Some("23E254"))
    );
    assert_eq!(record.target_build.as_deref(), Some("23E254"));
    let both = Enforcement::planned(
        4,
        2,
        "P2",
        &ios,
        None,
        deadline,
        None,
        at("2026-04-11T09:00:00Z"),
    );
    assert_eq!(both.set_name, names::enforcement_set(4, 2, None));
    assert_eq!(both.target_build, None);
}

fn enforcement() -> Enforcement {
    Enforcement::planned(
        1,
        1,
        "E1",
        &release(),
        Some("25E253"),
        NaiveDateTime::parse_from_str("2026-04-16T18:00:00", "%Y-%m-%dT%H:%M:%S").unwrap(),
        Some(120),
        at("2026-04-11T09:00:00Z"),
    )
}

fn observed(items: serde_json::Value, declaration_id: &str, at_time: &str) -> Event {
    let mut status = DeviceStatus::default();
    status
        .apply(&StatusReport::parse(json!({"StatusItems": items}).to_string().as_bytes()).unwrap());
    let mut observation = Observation::from_status(&status, declaration_id);
    observation.reported_at = Some(at(at_time));
    Event::Observed(Box::new(observation))
}

/// Runs events and renders the timeline as `kind: detail` lines.
fn run(events: &[(&str, Event)]) -> (Enforcement, Vec<String>) {
    let rules = Rules::default();
    let mut state = enforcement();
    let mut lines = Vec::new();
    for (now, event) in events {
        let (next, effects) = step(&state, event, at(now), &rules);
        for effect in effects {
            lines.push(match effect {
                Effect::Timeline { kind, detail } => format!("{kind}: {detail}"),
                Effect::Alert { kind, .. } => format!("ALERT {kind}"),
                Effect::Assign { set } => format!("ASSIGN {set}"),
                Effect::Unassign { set } => format!("UNASSIGN {set}"),
                Effect::Touch { declaration } => format!("TOUCH {declaration}"),
            });
        }
        state = next;
    }
    (state, lines)
}

#[test]
fn a_device_walks_all_seven_phases() {
    let id = names::enforcement(1, 1, None);
    let declaration = |valid: &str, active: bool| json!({"configurations": [{"identifier": id, "server-token": "t", "active": active, "valid": valid}], "activations": [], "assets": [], "management": []});
    let (state, lines) = run(&[
        ("2026-04-11T09:00:00Z", Event::Assigned { push: Push::Sent }),
        (
            "2026-04-11T09:05:00Z",
            observed(
                json!({"management": {"declarations": declaration("valid", true)}, "softwareupdate": {"install-state": "waiting"}}),
                &id,
                "2026-04-11T09:05:00Z",
            ),
        ),
        (
            "2026-04-11T10:00:00Z",
            observed(
                json!({"softwareupdate": {"install-state": "downloading"}}),
                &id,
                "2026-04-11T10:00:00Z",
            ),
        ),
        (
            "2026-04-11T12:00:00Z",
            observed(
                json!({"softwareupdate": {"install-state": "prepared"}}),
                &id,
                "2026-04-11T12:00:00Z",
            ),
        ),
        (
            "2026-04-16T16:00:00Z",
            observed(
                json!({"softwareupdate": {"install-state": "installing"}}),
                &id,
                "2026-04-16T16:00:00Z",
            ),
        ),
        (
            "2026-04-16T16:40:00Z",
            observed(
                json!({"softwareupdate": {"install-state": "none"}, "device": {"operating-system": {"version": "26.4.1", "build-version": "25E253"}}}),
                &id,
                "2026-04-16T16:40:00Z",
            ),
        ),
        (
            "2026-04-16T16:41:00Z",
            Event::Unassigned { push: Push::Sent },
        ),
        (
            "2026-04-16T16:45:00Z",
            observed(
                json!({"management": {"declarations": {"configurations": [], "activations": [], "assets": [], "management": []}}}),
                &id,
                "2026-04-16T16:45:00Z",
            ),
        ),
    ]);
    assert_eq!(state.phase, Phase::CleanedUp);
    assert_eq!(
        lines,
        [
            "declaration_assigned: com.updraft.su.r1.w1 in set com.updraft.su.r1.w1.set",
            "push_sent: DeclarativeManagement queued and device pushed",
            "declaration_active: com.updraft.su.r1.w1 active and valid",
            "install_state: waiting",
            "install_state: downloading",
            "install_state: prepared",
            "install_state: installing",
            "os_updated: 26.4.1 (25E253)",
            "UNASSIGN com.updraft.su.r1.w1.set",
            "declaration_unassigned: com.updraft.su.r1.w1",
            "push_sent: device pushed to remove the declaration",
            "declaration_removed: the device no longer holds the declaration",
        ]
    );
}

#[test]
fn a_failed_push_is_told_as_such_and_the_device_still_progresses_when_it_connects() {
    let id = names::enforcement(1, 1, None);
    let (state, lines) = run(&[
        (
            "2026-04-11T09:00:00Z",
            Event::Assigned {
                push: Push::Failed("no push certificate".into()),
            },
        ),
        (
            "2026-04-11T13:00:00Z",
            observed(
                json!({"softwareupdate": {"install-state": "downloading"}}),
                &id,
                "2026-04-11T13:00:00Z",
            ),
        ),
    ]);
    assert_eq!(
        lines[..2],
        [
            "declaration_assigned: com.updraft.su.r1.w1 in set com.updraft.su.r1.w1.set",
            "push_failed: no push certificate",
        ]
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("push_sent")),
        "no push is claimed: {lines:?}"
    );
    assert_eq!(state.phase, Phase::Downloading);
}

#[test]
fn failure_records_apples_reason_and_alerts() {
    let id = names::enforcement(1, 1, None);
    let (state, lines) = run(&[
        ("2026-04-11T09:00:00Z", Event::Assigned { push: Push::Sent }),
        (
            "2026-04-11T10:00:00Z",
            observed(
                json!({"softwareupdate": {"install-state": "failed", "failure-reason": {"count": 2, "reason": "Not enough free disk space"}}}),
                &id,
                "2026-04-11T10:00:00Z",
            ),
        ),
    ]);
    assert_eq!(state.phase, Phase::Failed);
    assert_eq!(state.failure_count, 2);
    assert!(lines.contains(&"install_failed: Not enough free disk space".to_owned()));
    assert!(lines.contains(&"ALERT install_failed".to_owned()));
}

#[test]
fn silence_past_the_deadline_flags_then_fails_the_device() {
    let (state, lines) = run(&[
        ("2026-04-11T09:00:00Z", Event::Assigned { push: Push::Sent }),
        ("2026-04-16T17:00:00Z", Event::Tick),
        ("2026-04-24T17:00:00Z", Event::Tick),
    ]);
    assert!(
        lines.iter().any(|l| l.starts_with("past_deadline")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("stale")), "{lines:?}");
    assert_eq!(state.phase, Phase::Failed);
    assert!(state.failure_reason.unwrap().contains("did not respond"));
}

#[test]
fn invalid_declarations_carry_apples_reasons() {
    let id = names::enforcement(1, 1, None);
    let items = json!({"management": {"declarations": {"activations": [], "assets": [], "management": [], "configurations": [
        {"identifier": id, "server-token": "t", "active": false, "valid": "invalid",
         "reasons": [{"code": "Error.ConfigurationCannotBeApplied", "description": "DowngradeNotSupported"}]}]}}});
    let (state, lines) = run(&[
        ("2026-04-11T09:00:00Z", Event::Assigned { push: Push::Sent }),
        (
            "2026-04-11T09:05:00Z",
            observed(items, &id, "2026-04-11T09:05:00Z"),
        ),
    ]);
    assert_eq!(state.phase, Phase::Invalid);
    assert_eq!(
        lines[2],
        "declaration_invalid: Error.ConfigurationCannotBeApplied: DowngradeNotSupported"
    );
}

#[test]
fn a_download_that_does_not_finish_in_a_day_is_flagged_stuck_once() {
    let id = names::enforcement(1, 1, None);
    let downloading = observed(
        json!({"softwareupdate": {"install-state": "downloading"}}),
        &id,
        "2026-04-11T10:00:00Z",
    );
    let still = |at_time: &str| {
        observed(
            json!({"softwareupdate": {"install-state": "downloading"}}),
            &id,
            at_time,
        )
    };
    let (state, lines) = run(&[
        ("2026-04-11T09:00:00Z", Event::Assigned { push: Push::Sent }),
        ("2026-04-11T10:00:00Z", downloading),
        ("2026-04-12T09:00:00Z", still("2026-04-12T09:00:00Z")),
        ("2026-04-12T11:00:00Z", still("2026-04-12T11:00:00Z")),
        ("2026-04-12T13:00:00Z", still("2026-04-12T13:00:00Z")),
    ]);
    let stuck: Vec<&String> = lines.iter().filter(|l| l.starts_with("stuck")).collect();
    assert_eq!(
        stuck,
        ["stuck: downloading since 2026-04-11T10:00:00Z"],
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| *l == "ALERT device_stuck").count(),
        1
    );
    assert!(state.stuck);
}

#[test]
fn a_prepared_device_waiting_for_its_deadline_is_not_stuck() {
    let id = names::enforcement(1, 1, None);
    let (state, lines) = run(&[
        ("2026-04-11T09:00:00Z", Event::Assigned { push: Push::Sent }),
        (
            "2026-04-11T10:00:00Z",
            observed(
                json!({"softwareupdate": {"install-state": "prepared"}}),
                &id,
                "2026-04-11T10:00:00Z",
            ),
        ),
        ("2026-04-14T10:00:00Z", Event::Tick),
    ]);
    assert!(!state.stuck);
    assert!(!lines.iter().any(|l| l.starts_with("stuck")), "{lines:?}");
}

/// Every time-based path: ticking a record only once its `tick_due` has passed must give the same
/// record and the same effects, at the same times, as ticking it every 15 minutes until it is
/// final (as the console did before `tick_due`).
#[test]
fn ticking_only_when_due_changes_nothing_against_ticking_always() {
    let id = names::enforcement(1, 1, None);
    let state_at = |state: &str, time: &str| {
        (
            time.to_owned(),
            observed(
                json!({"softwareupdate": {"install-state": state}}),
                &id,
                time,
            ),
        )
    };
    type Reports = Vec<(String, Event)>;
    let scenarios: Vec<(&str, Option<i32>, Reports)> = vec![
        ("silent from the start", Some(120), vec![]),
        ("silent, zone unknown", None, vec![]),
        (
            "downloads for ever",
            Some(-300),
            vec![state_at("downloading", "2026-04-11T10:00:00Z")],
        ),
        (
            "installs for ever",
            Some(120),
            vec![
                state_at("prepared", "2026-04-11T12:00:00Z"),
                state_at("installing", "2026-04-16T16:10:00Z"),
            ],
        ),
        (
            "prepared, then silent past its deadline",
            Some(600),
            vec![state_at("prepared", "2026-04-12T08:00:00Z")],
        ),
        (
            "reports daily while waiting",
            Some(0),
            (11..25)
                .map(|day| state_at("waiting", &format!("2026-04-{day}T07:30:00Z")))
                .collect(),
        ),
    ];
    let rules = Rules::default();
    for (name, offset, mut events) in scenarios {
        events.sort_by(|a, b| a.0.cmp(&b.0));
        let start = Enforcement {
            utc_offset_minutes: offset,
            ..enforcement()
        };
        let (start, _) = step(
            &start,
            &Event::Assigned { push: Push::Sent },
            at("2026-04-11T09:00:00Z"),
            &rules,
        );
        let mut always = (start.clone(), Vec::new());
        let mut when_due = (start, Vec::new());
        let mut skipped = 0;
        let mut now = at("2026-04-11T09:00:00Z");
        let mut pending = events.iter().peekable();
        while now < at("2026-04-27T09:00:00Z") {
            now += chrono::Duration::minutes(15);
            while let Some((time, event)) = pending.next_if(|(time, _)| at(time) <= now) {
                for (state, effects) in [&mut always, &mut when_due] {
                    let (next, more) = step(state, event, at(time), &rules);
                    *state = next;
                    effects.extend(more.into_iter().map(|e| (time.clone(), e)));
                }
            }
            if !always.0.phase.is_final() {
                let (next, more) = step(&always.0, &Event::Tick, now, &rules);
                always.0 = next;
                always
                    .1
                    .extend(more.into_iter().map(|e| (now.to_rfc3339(), e)));
            }
            if when_due.0.tick_due.is_some_and(|due| due < now) {
                let (next, more) = step(&when_due.0, &Event::Tick, now, &rules);
                when_due.0 = next;
                when_due
                    .1
                    .extend(more.into_iter().map(|e| (now.to_rfc3339(), e)));
            } else {
                skipped += 1;
            }
        }
        assert_eq!(when_due, always, "{name}");
        assert!(
            always
                .1
                .iter()
                .any(|(_, e)| matches!(e, Effect::Alert { .. })),
            "{name}: the scenario raises no flag, so it tests nothing: {:?}",
            always.1
        );
        assert!(skipped > 1000, "{name}: only {skipped} ticks skipped");
    }
}
