//! A device's merged status stays bounded, and what is not kept is said in `Errors`.

use serde_json::{Value, json};
use updraft_ddm::status::REFUSED_CODE;
use updraft_ddm::{DeviceStatus, StatusBounds, StatusReport};

fn report(value: Value) -> StatusReport {
    StatusReport::parse(value.to_string().as_bytes()).expect("a valid report")
}

fn refusals(status: &DeviceStatus) -> Vec<String> {
    status
        .errors()
        .filter(|error| {
            error
                .reasons
                .iter()
                .flatten()
                .any(|reason| reason.code == REFUSED_CODE)
        })
        .map(|error| error.status_item.clone())
        .collect()
}

#[test]
fn thirty_reports_of_fifty_thousand_new_keys_stay_within_the_bounds() {
    let bounds = StatusBounds::default();
    let mut status = DeviceStatus::default();
    status.absorb_within(
        report(json!({"StatusItems": {"device": {"operating-system": {"version": "15.1"}}}})),
        &bounds,
    );
    for round in 0..30 {
        let mut junk = serde_json::Map::new();
        for key in 0..50_000 {
            junk.insert(format!("k{round}-{key}"), json!("x"));
        }
        let absorbed = status.absorb_within(
            report(json!({"StatusItems": {"junk": junk,
                "device": {"operating-system": {"build-version": format!("24B{round}")}}}})),
            &bounds,
        );
        assert!(absorbed.refused > 0 || round == 0);
    }
    let json = status.to_full_report_json();
    assert!(
        json.len() < 2 * bounds.max_unknown_bytes,
        "the merged status grew to {} bytes",
        json.len()
    );
    let unknown = status
        .items()
        .filter(|item| item.name().starts_with("junk."))
        .count();
    assert!(
        unknown <= bounds.max_unknown_items,
        "{unknown} unknown items kept"
    );
    assert!(status.errors().count() <= bounds.max_errors);
    // What Updraft reads still arrived, and the refusal is on record.
    assert_eq!(status.os_version(), Some("15.1"));
    assert_eq!(status.os_build_version(), Some("24B29"));
    let refused = refusals(&status);
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|name| name.starts_with("junk.")));
}

#[test]
fn a_key_of_two_hundred_dots_is_refused_and_nothing_else_is_lost() {
    let bounds = StatusBounds::default();
    let mut status = DeviceStatus::default();
    let dotted = vec!["a"; 201].join(".");
    // A dotted key cannot name an item: refused as the report is read, and named.
    status.absorb_within(
        report(json!({"StatusItems": {
            "device": {"operating-system": {"version": "15.1"}},
            dotted.clone(): 1,
        }})),
        &bounds,
    );
    assert_eq!(refusals(&status), vec![dotted]);
    assert_eq!(status.os_version(), Some("15.1"));
    // The merged status reads back whole, as a server reads it after a restart.
    let again = StatusReport::parse(status.to_full_report_json().as_bytes())
        .expect("the merged status parses back");
    let mut restored = DeviceStatus::default();
    restored.apply(&again);
    assert_eq!(restored, status);
}

#[test]
fn a_deep_array_under_a_name_counts_its_nesting() {
    let bounds = StatusBounds::default();
    let mut status = DeviceStatus::default();
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let absorbed = status.absorb_within(
        report(json!({"StatusItems": {"x": {"y": deep}, "z": [[1]]}})),
        &bounds,
    );
    assert_eq!(absorbed.refused, 1);
    assert!(status.get("x.y").is_none());
    assert!(status.get("z").is_some());
}

#[test]
fn a_full_report_starts_the_budget_again() {
    let bounds = StatusBounds {
        max_unknown_items: 3,
        ..StatusBounds::default()
    };
    let mut status = DeviceStatus::default();
    let absorbed = status.absorb_within(
        report(json!({"StatusItems": {"a": 1, "b": 2, "c": 3, "d": 4}})),
        &bounds,
    );
    assert_eq!(absorbed.refused, 1);
    assert_eq!(refusals(&status), vec!["d".to_owned()]);
    let absorbed = status.absorb_within(
        report(json!({"StatusItems": {"d": 4, "e": 5}, "FullReport": true})),
        &bounds,
    );
    assert_eq!(absorbed.refused, 0);
    assert!(refusals(&status).is_empty());
    assert!(status.get("d").is_some() && status.get("a").is_none());
}

/// Found by the `status_report` fuzzer: a key `declarations.` (trailing dot) under `management`
/// was kept as `management.declarations.`, written back as `declarations: {"": …}` and read after
/// a restart as the known `management.declarations` item. Keys that cannot name an item (empty,
/// or holding a dot) are refused and named instead, and the stored status reads back the same.
#[test]
fn keys_that_cannot_name_an_item_are_refused_and_the_stored_status_reads_back_the_same() {
    let mut status = DeviceStatus::default();
    status.absorb_within(
        report(json!({"StatusItems": {
            "management": {
                "declarations.": {"activations": [], "configurations": [], "assets": [], "management": []},
                "declarations.x": 1,
                "": {"y": 2},
            },
            "device": {"operating-system": {"version": "15.1"}},
        }})),
        &StatusBounds::default(),
    );
    assert_eq!(status.os_version(), Some("15.1"));
    assert!(
        status.declarations().is_none(),
        "nothing read as the known item"
    );
    let mut refused = refusals(&status);
    refused.sort();
    assert_eq!(
        refused,
        vec![
            "management.".to_owned(),
            "management.declarations.".to_owned(),
            "management.declarations.x".to_owned()
        ]
    );
    let stored = status.to_full_report_json();
    let mut restarted = DeviceStatus::default();
    restarted.absorb_within(
        StatusReport::parse(stored.as_bytes()).expect("the stored status reads back"),
        &StatusBounds::default(),
    );
    assert_eq!(restarted.to_full_report_json(), stored);
}

/// Found by the `status_report` fuzzer: without exact float parsing, `1.1111111111111109e+46`
/// read back one ulp off, so a stored status changed at every restart.
#[test]
fn numbers_in_a_stored_status_read_back_exactly() {
    let mut status = DeviceStatus::default();
    status.absorb_within(
        StatusReport::parse(
            br#"{"StatusItems":{"test":{"real-value":[1.1111111111111109e+46,0.1,2.2250738585072014e-308,1e23,3.0000000000000004]}},"Errors":[]}"#,
        )
        .expect("a valid report"),
        &StatusBounds::default(),
    );
    let stored = status.to_full_report_json();
    let mut restarted = DeviceStatus::default();
    restarted.absorb_within(
        StatusReport::parse(stored.as_bytes()).expect("reads back"),
        &StatusBounds::default(),
    );
    assert_eq!(restarted.to_full_report_json(), stored);
    assert!(stored.contains("1.1111111111111109e+46"), "{stored}");
}
