//! Every real lookup-service capture in tests/fixtures/gdmf, read as it is.

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use updraft_feed::{FeedError, FeedIndex, LookupResponse, SetKind};

fn capture(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap()
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gdmf")
}

#[test]
fn every_capture_parses_and_indexes_without_skipping() {
    let mut seen = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        let (response, _) = LookupResponse::parse_saved(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if response.entry_count() > 0 {
            let index = FeedIndex::new(&response);
            assert!(
                index.skipped().is_empty(),
                "{}: {:?}",
                path.display(),
                index.skipped()
            );
        }
        seen += 1;
    }
    assert!(seen >= 3);
}

#[test]
fn april_2026_capture_counts_match_the_reference() {
    let response = LookupResponse::parse(&capture("pmv_2026-04-11_raw.json")).unwrap();
    let count = |kind: SetKind, platform: &str| {
        response
            .sets
            .iter()
            .filter(|s| s.kind == kind)
            .flat_map(|s| &s.platforms)
            .filter(|p| p.platform == platform)
            .map(|p| p.entries.len())
            .sum::<usize>()
    };
    // release-feeds.md §1.2: PublicAssetSets 29/6/2, AssetSets 86/17/8, BSI 1/2.
    assert_eq!(
        (
            count(SetKind::Public, "iOS"),
            count(SetKind::Public, "macOS"),
            count(SetKind::Public, "visionOS")
        ),
        (29, 6, 2)
    );
    assert_eq!(
        (
            count(SetKind::All, "iOS"),
            count(SetKind::All, "macOS"),
            count(SetKind::All, "visionOS")
        ),
        (86, 17, 8)
    );
    assert_eq!(
        (
            count(SetKind::BackgroundSecurity, "iOS"),
            count(SetKind::BackgroundSecurity, "macOS")
        ),
        (1, 2)
    );
    let names: Vec<_> = response.sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "PublicAssetSets",
            "AssetSets",
            "PublicBackgroundSecurityImprovements"
        ]
    );
    let bsi = response
        .entries()
        .find(|e| e.set.kind == SetKind::BackgroundSecurity && e.platform == "macOS")
        .unwrap();
    assert_eq!(bsi.entry.product_version_extra.as_deref(), Some("(a)"));
    assert_eq!(bsi.entry.prerequisite_build.as_deref(), Some("25D2140"));
}

#[test]
fn legacy_capture_keeps_xros_and_the_rsr_key() {
    let (response, etag) = LookupResponse::parse_saved(&capture(
        "pmv_2024-09-28_sofa-cache-wrapper_xrOS_RSRkey.json",
    ))
    .unwrap();
    assert_eq!(
        etag.as_deref(),
        Some("e0cf49ba54058869e03111c58768b3b8492bcc3afb9ad1c73c2bce256597b2f5")
    );
    let rsr = response
        .sets
        .iter()
        .find(|s| s.name == "PublicRapidSecurityResponses")
        .unwrap();
    assert_eq!(rsr.kind, SetKind::BackgroundSecurity);
    assert!(response.entries().any(|e| e.platform == "xrOS"));
}

#[test]
fn empty_200_capture_is_refused() {
    let (response, _) =
        LookupResponse::parse_saved(&capture("pmv_2025-05-21_EMPTY-200_sofa-cache-wrapper.json"))
            .unwrap();
    assert_eq!(response.entry_count(), 0);
    assert_eq!(response.require_entries(), Err(FeedError::Empty));
}

#[test]
fn wrapped_errors_point_inside_data() {
    let body = br#"{"etag": "x", "data": {"AssetSets": {"macOS": [{"ProductVersion": 26}]}}}"#;
    let error = LookupResponse::parse_saved(body).unwrap_err().to_string();
    assert!(
        error.contains("data.AssetSets.macOS[0].ProductVersion"),
        "{error}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = LookupResponse::parse_saved(&bytes);
    }

    #[test]
    fn parser_never_panics_on_mutated_captures(position in 0usize..137_221, byte in any::<u8>(), cut in prop::bool::weighted(0.3)) {
        let mut bytes = capture("pmv_2026-04-11_raw.json");
        let position = position % bytes.len();
        if cut { bytes.truncate(position) } else { bytes[position] = byte }
        if let Ok(response) = LookupResponse::parse(&bytes) {
            let _ = FeedIndex::new(&response);
        }
    }
}

#[test]
fn the_capture_as_of_a_day_holds_what_was_posted_by_then_and_nothing_later() {
    let response = LookupResponse::parse(&capture("pmv_2026-04-11_raw.json")).unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 4, 8).unwrap();
    let earlier = response.as_of(day);
    let versions = |r: &LookupResponse, platform: &str| -> Vec<String> {
        r.entries()
            .filter(|e| e.platform == platform)
            .map(|e| e.entry.product_version.clone())
            .collect()
    };
    assert!(earlier.entries().all(|e| e.entry.posting_date <= day));
    // macOS 26.4.1 was posted on 2026-04-09, iOS 26.4.1 on 2026-04-08.
    assert!(!versions(&earlier, "macOS").contains(&"26.4.1".to_owned()));
    assert!(versions(&earlier, "iOS").contains(&"26.4.1".to_owned()));
    assert!(versions(&response, "macOS").contains(&"26.4.1".to_owned()));
    let dates = response.posting_dates();
    assert!(dates.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(response.as_of(*dates.last().unwrap()), response);
}
