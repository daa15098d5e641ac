use super::*;
use crate::machine::{Enforcement, deadline_passes_at};
use crate::plan::ReleaseBuild;

fn time(text: &str) -> NaiveTime {
    NaiveTime::parse_from_str(text, "%H:%M").unwrap()
}

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn ring(name: &str, membership: Membership, offset_days: u32, at: &str) -> Ring {
    Ring {
        name: name.into(),
        membership,
        offset_days,
        time_of_day: time(at),
    }
}

/// IT by name, a 10% pilot, everyone else: the plan the admins describe.
fn three_rings() -> RingPlan {
    RingPlan {
        rings: vec![
            ring(
                "IT",
                Membership::Filter(DeviceFilter {
                    name: Some(Pattern::new("IT-*")),
                    ..DeviceFilter::default()
                }),
                0,
                "17:00",
            ),
            ring("Pilot", Membership::Share(10), 3, "17:00"),
            ring("Everyone", Membership::Rest, 7, "17:00"),
        ],
        weekends: Weekends::Allowed,
        after_hours: None,
        gate: Gate::default(),
    }
}

fn device<'a>(id: &'a str, name: &'a str) -> Candidate<'a> {
    Candidate {
        enrollment_id: id,
        name: Some(name),
        serial: Some("C02XK0AAJGH5"),
        model: Some("MacBookPro18,3"),
        platform: Some(Platform::MacOs),
        os_version: Some("15.7.4"),
    }
}

#[test]
fn the_bucket_of_an_enrollment_id_never_changes_between_versions_of_updraft() {
    // Pinned: a change here moves devices between rings on upgrade.
    for (id, expected) in [
        ("E1", 6579),
        ("4A9B2C1D-0000-4000-8000-000000000001", 5316),
        ("ABCD", 8397),
    ] {
        assert_eq!(bucket(id), expected, "{id}");
    }
}

#[test]
fn a_device_keeps_its_ring_when_the_fleet_grows_and_from_one_rollout_to_the_next() {
    let ids: Vec<String> = (0..20_000).map(|n| format!("ENR-{n:06}")).collect();
    let names: Vec<String> = (0..20_000).map(|n| format!("Mac {n}")).collect();
    let plan = three_rings();
    let rings_of = |count: usize, plan: &RingPlan| -> Vec<Option<usize>> {
        (0..count)
            .map(|n| plan.ring_of(&device(&ids[n], &names[n])))
            .collect()
    };
    let before = rings_of(10_000, &plan);
    // Ten thousand more devices enroll; the next release's rollout builds its plan anew.
    let after = rings_of(20_000, &three_rings());
    assert_eq!(before[..], after[..10_000], "no device moved");
    let pilot = after.iter().filter(|r| **r == Some(1)).count();
    assert!(
        (1_800..=2_200).contains(&pilot),
        "the pilot is about 10% of 20,000: {pilot}"
    );
    assert!(
        after.iter().all(|r| r.is_some()),
        "the last ring takes the rest"
    );
}

#[test]
fn a_device_is_in_the_first_ring_that_takes_it() {
    let plan = three_rings();
    // E1's bucket (6579) is outside the pilot's band: by share alone it would be in Everyone.
    assert_eq!(plan.ring_of(&device("E1", "IT-laptop-7")), Some(0));
    assert_eq!(plan.ring_of(&device("E1", "Finance 7")), Some(2));
    let by_hand = RingPlan {
        rings: vec![
            ring(
                "Canaries",
                Membership::Devices(["E1".to_owned()].into()),
                0,
                "09:00",
            ),
            ring("Half", Membership::Share(50), 1, "09:00"),
        ],
        ..three_rings()
    };
    assert_eq!(by_hand.ring_of(&device("E1", "x")), Some(0));
    // ABCD's bucket is 8397, outside the first half, and no ring takes the rest.
    assert_eq!(by_hand.ring_of(&device("ABCD", "x")), None);
}

#[test]
fn share_rings_take_consecutive_bands() {
    let plan = RingPlan {
        rings: vec![
            ring("A", Membership::Share(60), 0, "09:00"),
            ring("B", Membership::Share(30), 1, "09:00"),
            ring("C", Membership::Share(10), 2, "09:00"),
        ],
        ..three_rings()
    };
    // Buckets 5316 (< 6000), 6579 (6000..9000), 8397 (6000..9000).
    for (id, ring) in [
        ("4A9B2C1D-0000-4000-8000-000000000001", 0),
        ("E1", 1),
        ("ABCD", 1),
    ] {
        assert_eq!(plan.ring_of(&device(id, "x")), Some(ring), "{id}");
    }
}

#[test]
fn filters_match_every_field_they_set_and_patterns_the_whole_value() {
    let mac = device("E1", "IT-Ana's MacBook");
    let cases: &[(DeviceFilter, bool)] = &[
        (DeviceFilter::default(), true),
        (
            DeviceFilter {
                model: Some(Pattern::new("MacBookPro18,*")),
                ..DeviceFilter::default()
            },
            true,
        ),
        (
            DeviceFilter {
                model: Some(Pattern::new("macbookpro18,?")),
                os: Some(Pattern::new("15.*")),
                ..DeviceFilter::default()
            },
            true,
        ),
        (
            DeviceFilter {
                model: Some(Pattern::new("MacBookPro18")),
                ..DeviceFilter::default()
            },
            false,
        ),
        (
            DeviceFilter {
                os: Some(Pattern::new("26.*")),
                ..DeviceFilter::default()
            },
            false,
        ),
        (
            DeviceFilter {
                platform: Some(Platform::Ios),
                ..DeviceFilter::default()
            },
            false,
        ),
        (
            DeviceFilter {
                name: Some(Pattern::new("it-*book")),
                serial: Some(Pattern::new("C02*")),
                ..DeviceFilter::default()
            },
            true,
        ),
        (
            DeviceFilter {
                name: Some(Pattern::new("*ana*")),
                serial: Some(Pattern::new("F*")),
                ..DeviceFilter::default()
            },
            false,
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(filter.matches(&mac), *expected, "{filter:?}");
    }
    let unnamed = Candidate { name: None, ..mac };
    let by_name = DeviceFilter {
        name: Some(Pattern::new("*")),
        ..DeviceFilter::default()
    };
    assert!(!by_name.matches(&unnamed), "no name reported, no match");
}

#[test]
fn patterns_backtrack_over_stars() {
    for (pattern, text, expected) in [
        ("*", "", true),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXbYbZ", false),
        ("*.4.1", "26.4.1", true),
        ("2?.*", "26.4.1", true),
        ("2?", "2", false),
        ("**x", "abx", true),
    ] {
        assert_eq!(
            Pattern::new(pattern).matches(text),
            expected,
            "{pattern} ~ {text}"
        );
    }
}

#[test]
fn deadlines_are_offsets_from_the_base_date_moved_off_weekends_and_into_after_hours() {
    // 2026-12-04 is a Friday.
    let after_hours = Some(AfterHours {
        start: time("18:00"),
        end: time("07:00"),
    });
    let cases = [
        // (offset, time, weekends, after hours, deadline)
        (0, "17:00", Weekends::Allowed, None, "2026-12-04T17:00:00"),
        (1, "17:00", Weekends::Allowed, None, "2026-12-05T17:00:00"),
        (
            1,
            "17:00",
            Weekends::NextMonday,
            None,
            "2026-12-07T17:00:00",
        ),
        (
            2,
            "17:00",
            Weekends::NextMonday,
            None,
            "2026-12-07T17:00:00",
        ),
        (
            2,
            "17:00",
            Weekends::FridayBefore,
            None,
            "2026-12-04T17:00:00",
        ),
        (
            3,
            "17:00",
            Weekends::FridayBefore,
            None,
            "2026-12-07T17:00:00",
        ),
        (
            0,
            "17:00",
            Weekends::Allowed,
            after_hours,
            "2026-12-04T18:00:00",
        ),
        (
            0,
            "22:30",
            Weekends::Allowed,
            after_hours,
            "2026-12-04T22:30:00",
        ),
        (
            0,
            "06:00",
            Weekends::Allowed,
            after_hours,
            "2026-12-04T06:00:00",
        ),
        (
            0,
            "07:00",
            Weekends::Allowed,
            after_hours,
            "2026-12-04T18:00:00",
        ),
        (
            7,
            "09:00",
            Weekends::NextMonday,
            after_hours,
            "2026-12-11T18:00:00",
        ),
    ];
    for (offset, at, weekends, after_hours, expected) in cases {
        let plan = RingPlan {
            rings: vec![ring("R", Membership::Rest, offset, at)],
            weekends,
            after_hours,
            gate: Gate::default(),
        };
        assert_eq!(
            plan.deadline(0, date("2026-12-04")).unwrap(),
            expected.parse::<NaiveDateTime>().unwrap(),
            "+{offset} d at {at}, {weekends:?}, {after_hours:?}"
        );
    }
    assert_eq!(three_rings().deadline(3, date("2026-12-04")), None);
}

#[test]
fn a_ring_deadline_falls_on_each_devices_own_clock() {
    let mut plan = three_rings();
    plan.weekends = Weekends::NextMonday;
    // Pilot: +3 days from Thursday 2026-12-03 is Sunday, so Monday 17:00 local.
    let deadline = plan.deadline(1, date("2026-12-03")).unwrap();
    assert_eq!(deadline, "2026-12-07T17:00:00".parse().unwrap());
    let release = crate::plan::Release {
        platform: Platform::MacOs,
        product_version: "26.4.1".into(),
        product_version_extra: None,
        builds: vec![ReleaseBuild {
            build: Some("25E253".into()),
            prerequisite_build: None,
            supported_devices: BTreeSet::new(),
        }],
    };
    let passes_at = |offset: i32| {
        let record = Enforcement::planned(
            1,
            2,
            "E1",
            &release,
            None,
            deadline,
            Some(offset),
            DateTime::UNIX_EPOCH,
        );
        deadline_passes_at(&record)
    };
    let tokyo = passes_at(9 * 60);
    let los_angeles = passes_at(-8 * 60);
    // Apple's hour after 17:00 local: 09:00 UTC in Tokyo, 02:00 UTC the next day in Los Angeles.
    assert_eq!(
        tokyo,
        "2026-12-07T09:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(los_angeles - tokyo, Duration::hours(17));
}

#[test]
fn a_gate_promotes_waits_or_halts_by_the_ring_before() {
    let progress = |devices, updated, failed, excluded, last_hour| RingProgress {
        devices,
        updated,
        failed,
        excluded,
        failures_last_hour: last_hour,
    };
    let gate = Gate {
        max_failures_per_hour: Some(20),
        ..Gate::default()
    };
    let promote = Verdict::Promote { by_hand: false };
    let cases = [
        // 90 of 100 updated: exactly the gate.
        (progress(100, 90, 2, 0, 0), false, promote.clone()),
        // Excluded devices count neither way: 84 of 94 is 89.4%.
        (
            progress(100, 84, 0, 6, 0),
            false,
            Verdict::Wait {
                updated_percent: 84.0 * 100.0 / 94.0,
                needed_percent: 90.0,
            },
        ),
        (
            progress(100, 89, 5, 0, 0),
            false,
            Verdict::Wait {
                updated_percent: 89.0,
                needed_percent: 90.0,
            },
        ),
        // 5% failed is allowed, 6% is not, even with 92% updated.
        (
            progress(100, 92, 6, 0, 0),
            false,
            Verdict::Halt(HaltReason::FailedShare {
                failed_percent: 6.0,
                limit_percent: 5.0,
            }),
        ),
        // 21 failures within an hour halt a ring of 1,000 whose share is still low.
        (
            progress(1000, 100, 21, 0, 21),
            false,
            Verdict::Halt(HaltReason::FailureRate {
                last_hour: 21,
                limit: 20,
            }),
        ),
        // The admin's hand wins, over a wait and over a halt.
        (
            progress(100, 10, 0, 0, 0),
            true,
            Verdict::Promote { by_hand: true },
        ),
        (
            progress(100, 50, 50, 0, 0),
            true,
            Verdict::Promote { by_hand: true },
        ),
        // A ring with nothing to update is no reason to wait.
        (progress(3, 0, 0, 3, 0), false, promote),
    ];
    for (before, by_hand, expected) in cases {
        assert_eq!(gate.judge(&before, by_hand), expected, "{before:?}");
    }
    let halt = HaltReason::FailedShare {
        failed_percent: 6.0,
        limit_percent: 5.0,
    };
    assert_eq!(
        halt.to_string(),
        "6.0% of the ring failed, more than the gate's 5%"
    );
}

#[test]
fn holds_and_pins_keep_devices_out_with_their_reason() {
    let now: DateTime<Utc> = "2026-12-03T12:00:00Z".parse().unwrap();
    let holds = vec![
        Hold {
            enrollment_id: "E1".into(),
            reason: "on a conference stage until Friday".into(),
            until: Some("2026-12-05T00:00:00Z".parse().unwrap()),
        },
        Hold {
            enrollment_id: "E2".into(),
            reason: "lab instrument".into(),
            until: Some("2026-12-01T00:00:00Z".parse().unwrap()),
        },
    ];
    let pins = vec![Pin {
        group: "Audio studio".into(),
        filter: DeviceFilter {
            name: Some(Pattern::new("Studio-*")),
            ..DeviceFilter::default()
        },
        majors_behind: 1,
    }];
    let v26 = OsVersion::parse("26.4.1").unwrap();
    let v15 = OsVersion::parse("15.7.5").unwrap();
    // The majors the feed lists for macOS: N-1 of 26 is 15, not 25.
    let majors = [26, 15, 14];
    let check =
        |id, name, version| held_back(&device(id, name), version, &majors, &holds, &pins, now);

    let held = check("E1", "Studio-1", &v15).unwrap();
    assert_eq!(
        held.to_string(),
        "on hold until 2026-12-05 00:00 UTC: on a conference stage until Friday"
    );
    assert_eq!(check("E2", "Ana", &v26), None, "E2's hold has expired");
    assert_eq!(
        check("E3", "Studio-2", &v26),
        Some(Exclusion::Pinned {
            group: "Audio studio".into(),
            highest_major: 15,
        })
    );
    assert_eq!(
        check("E3", "Studio-2", &v26).unwrap().to_string(),
        "pinned: Audio studio stays on major version 15 or below"
    );
    assert_eq!(
        check("E3", "Studio-2", &v15),
        None,
        "N-1 still takes its own updates"
    );
    assert_eq!(check("E4", "Ben", &v26), None);
    let far = Pin {
        majors_behind: 9,
        ..pins[0].clone()
    };
    assert_eq!(
        held_back(&device("E3", "Studio-2"), &v15, &majors, &[], &[far], now),
        Some(Exclusion::Pinned {
            group: "Audio studio".into(),
            highest_major: 14,
        }),
        "past the oldest listed major: the oldest"
    );
}

#[test]
fn the_majors_of_a_platform_come_from_the_feed_newest_first() {
    let capture = updraft_feed::LookupResponse::parse(include_bytes!(
        "../../../../tests/fixtures/gdmf/pmv_2026-04-11_raw.json"
    ))
    .unwrap();
    let releases = updraft_feed::releases::releases(&capture);
    assert_eq!(
        majors_of(&releases, Platform::MacOs),
        [26, 15, 14, 13, 12, 11]
    );
}

#[test]
fn an_exploited_vulnerability_shortens_every_offset() {
    let offsets = |plan: &RingPlan| plan.rings.iter().map(|r| r.offset_days).collect::<Vec<_>>();
    let plan = three_rings();
    assert_eq!(offsets(&plan), [0, 3, 7]);
    assert_eq!(offsets(&plan.shortened(50)), [0, 2, 4]);
    assert_eq!(offsets(&plan.shortened(0)), [0, 0, 0]);
    assert_eq!(offsets(&plan.shortened(150)), [0, 3, 7], "never longer");
}

#[test]
fn a_ring_that_opens_late_still_gets_a_day_of_notices() {
    let at = |text: &str| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap();
    let day = |text: &str| text.parse::<NaiveDate>().unwrap();
    // Planned: the pilot on the 13th at 17:00.
    let pilot = at("2026-04-13T17:00");
    assert_eq!(
        late_deadline(pilot, day("2026-04-11")),
        None,
        "two days ahead"
    );
    assert_eq!(
        late_deadline(pilot, day("2026-04-12")),
        None,
        "one day ahead"
    );
    // Opened on the day of its deadline, or after it: the next day at the planned time.
    assert_eq!(
        late_deadline(pilot, day("2026-04-13")),
        Some(at("2026-04-14T17:00"))
    );
    assert_eq!(
        late_deadline(pilot, day("2026-04-20")),
        Some(at("2026-04-21T17:00"))
    );
}
