//! Applicability, data-driven: each case is a device on a day against a real capture, and the
//! targets it must get, best first, written as `version [extra] build posting..expiry`.

use chrono::NaiveDate;
use std::path::Path;
use updraft_ddm::{OsVersion, VersionExtra};
use updraft_feed::{DeviceFacts, FeedIndex, LookupResponse, Platform};

fn index(capture: &str) -> FeedIndex {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/gdmf")
        .join(capture);
    let (response, _) = LookupResponse::parse_saved(&std::fs::read(path).unwrap()).unwrap();
    FeedIndex::new(&response)
}

fn targets(
    index: &FeedIndex,
    platform: &str,
    device: &str,
    version: &str,
    build: &str,
    extra: &str,
    day: &str,
) -> Vec<String> {
    let os_version = OsVersion::parse(version).unwrap();
    let extra = VersionExtra::parse(extra);
    let facts = DeviceFacts {
        platform: platform.parse::<Platform>().unwrap(),
        device_id: device,
        os_version: &os_version,
        build,
        extra: &extra,
    };
    index
        .targets(&facts, NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap())
        .into_iter()
        .map(|t| {
            let extra = t
                .product_version_extra
                .map(|e| format!(" {e}"))
                .unwrap_or_default();
            let expiry = t
                .expiration_date
                .map(|d| d.to_string())
                .unwrap_or_else(|| "none".into());
            format!(
                "{}{extra} {} {}..{expiry}",
                t.product_version,
                t.build.unwrap_or_default(),
                t.posting_date
            )
        })
        .collect()
}

const APRIL: &str = "pmv_2026-04-11_raw.json";

#[test]
fn mac_on_26_3_gets_newer_releases_but_not_a_bsi_for_another_build() {
    let index = index(APRIL);
    assert_eq!(
        targets(
            &index,
            "macOS",
            "J314sAP",
            "26.3",
            "25D125",
            "",
            "2026-04-11"
        ),
        [
            // In both PublicAssetSets and AssetSets: one target, earliest posting date.
            "26.4.1 25E253 2026-04-09..2026-07-10",
            "26.4 25E246 2026-03-24..2026-07-08",
            // Two AssetSets entries share 26.3.1 25D2128; only the one listing J314sAP passed.
            "26.3.1 25D2128 2026-03-04..2026-06-22",
        ]
    );
}

#[test]
fn bsi_applies_only_on_its_prerequisite_build() {
    let index = index(APRIL);
    assert_eq!(
        targets(
            &index,
            "macOS",
            "J314sAP",
            "26.3.1",
            "25D2128",
            "",
            "2026-04-11"
        ),
        [
            "26.4.1 25E253 2026-04-09..2026-07-10",
            "26.4 25E246 2026-03-24..2026-07-08",
            "26.3.1 (a) 25D771280a 2026-03-17..2026-07-10",
        ]
    );
    // Already on the BSI: (26.3.1, (a)) is not newer than itself.
    assert_eq!(
        targets(
            &index,
            "macOS",
            "J314sAP",
            "26.3.1",
            "25D2128",
            "a",
            "2026-04-11"
        ),
        [
            "26.4.1 25E253 2026-04-09..2026-07-10",
            "26.4 25E246 2026-03-24..2026-07-08"
        ]
    );
    // The 26.3.2 (a) BSI lists only J700AP, which also gets the newer releases.
    assert_eq!(
        targets(
            &index,
            "macOS",
            "J700AP",
            "26.3.2",
            "25D2140",
            "",
            "2026-04-11"
        ),
        [
            "26.4.1 25E253 2026-04-09..2026-07-10",
            "26.4 25E246 2026-03-24..2026-07-08",
            "26.3.2 (a) 25D771400a 2026-03-17..2026-07-10",
        ]
    );
    assert_eq!(
        targets(
            &index,
            "macOS",
            "J314sAP",
            "26.3.2",
            "25D2140",
            "",
            "2026-04-11"
        ),
        [
            "26.4.1 25E253 2026-04-09..2026-07-10",
            "26.4 25E246 2026-03-24..2026-07-08"
        ]
    );
}

#[test]
fn device_ids_compare_case_insensitively_and_platforms_stay_apart() {
    let index = index(APRIL);
    let upper = targets(
        &index,
        "macOS",
        "J314SAP",
        "26.3",
        "25D125",
        "",
        "2026-04-11",
    );
    assert_eq!(
        upper,
        targets(
            &index,
            "macOS",
            "j314sap",
            "26.3",
            "25D125",
            "",
            "2026-04-11"
        )
    );
    assert_eq!(upper.len(), 3);
    // The same id asked under another platform finds nothing.
    assert!(targets(&index, "iOS", "J314sAP", "26.3", "25D125", "", "2026-04-11").is_empty());
}

#[test]
fn availability_window_is_posting_inclusive_and_expiry_exclusive() {
    let index = index(APRIL);
    // 26.4.1 was posted on 2026-04-09: not yet available the day before.
    let before = targets(
        &index,
        "macOS",
        "J314sAP",
        "26.4",
        "25E246",
        "",
        "2026-04-08",
    );
    assert!(before.is_empty(), "{before:?}");
    let on = targets(
        &index,
        "macOS",
        "J314sAP",
        "26.4",
        "25E246",
        "",
        "2026-04-09",
    );
    assert_eq!(on, ["26.4.1 25E253 2026-04-09..2026-07-10"]);
    // Every entry expires 2026-07-10 at the latest: on that day nothing is available.
    assert!(
        targets(
            &index,
            "macOS",
            "J314sAP",
            "15.0",
            "24A335",
            "",
            "2026-07-10"
        )
        .is_empty()
    );
}

#[test]
fn versions_compare_numerically_with_missing_components_as_zero() {
    let index = index(APRIL);
    // 26.4 == 26.4.0: not newer.
    assert_eq!(
        targets(
            &index,
            "macOS",
            "J314sAP",
            "26.4.0",
            "25E246",
            "",
            "2026-04-11"
        ),
        ["26.4.1 25E253 2026-04-09..2026-07-10"]
    );
}

#[test]
fn iphone_twin_builds_are_separate_targets_newest_build_first() {
    let index = index(APRIL);
    assert_eq!(
        targets(
            &index,
            "iOS",
            "iPhone15,2",
            "26.3.1",
            "23D8133",
            "",
            "2026-04-11"
        ),
        [
            "26.4.1 23E6254 2026-04-08..2026-07-10",
            "26.4.1 23E254 2026-04-08..2026-07-10",
            "26.4 23E6246 2026-03-24..2026-07-10",
            "26.4 23E246 2026-03-24..2026-07-10",
            "26.3.1 (a) 23D771330a 2026-03-17..2026-07-10",
        ]
    );
    // iPadOS, tvOS and watchOS live under the iOS key.
    assert_eq!(
        targets(
            &index,
            "iPadOS",
            "iPhone15,2",
            "26.3.1",
            "23D8133",
            "",
            "2026-04-11"
        )
        .len(),
        5
    );
}

#[test]
fn legacy_xros_key_counts_as_visionos() {
    let index = index("pmv_2024-09-28_sofa-cache-wrapper_xrOS_RSRkey.json");
    assert_eq!(
        targets(
            &index,
            "visionOS",
            "RealityDevice14,1",
            "1.0.2",
            "21N305",
            "",
            "2024-06-01"
        ),
        ["1.0.3 21N333 2024-02-12..2024-06-05"]
    );
    // By the capture's own date the xrOS entry had expired; 2.0 remains (twin builds).
    assert_eq!(
        targets(
            &index,
            "xrOS",
            "RealityDevice14,1",
            "1.0.3",
            "21N333",
            "",
            "2024-09-28"
        ),
        [
            "2.0 22N6320 2024-09-16..2024-12-27",
            "2.0 22N320 2024-09-16..2024-12-27"
        ]
    );
}

#[test]
fn bsi_without_prerequisite_never_applies_and_bad_versions_are_skipped_not_fatal() {
    let body = br#"{"PublicBackgroundSecurityImprovements": {"macOS": [
        {"ProductVersion": "26.3.1", "ProductVersionExtra": "(a)", "Build": "25D771280a", "PostingDate": "2026-03-17", "SupportedDevices": ["J314sAP"]}]},
      "AssetSets": {"macOS": [
        {"ProductVersion": "26.4 beta", "Build": "25E5", "PostingDate": "2026-03-01", "SupportedDevices": ["J314sAP"]},
        {"ProductVersion": "26.4", "Build": "25E246", "PostingDate": "2026-03-24", "SupportedDevices": ["J314sAP", "J314sAP"]}]}}"#;
    let index = FeedIndex::new(&LookupResponse::parse(body).unwrap());
    assert_eq!(index.skipped().len(), 1);
    assert_eq!(index.skipped()[0].location, "AssetSets.macOS[0]");
    let version = OsVersion::parse("26.3.1").unwrap();
    let facts = DeviceFacts {
        platform: Platform::MacOs,
        device_id: "J314sAP",
        os_version: &version,
        build: "25D2128",
        extra: &VersionExtra::NONE,
    };
    let day = NaiveDate::from_ymd_opt(2026, 4, 1).unwrap();
    let found = index.targets(&facts, day);
    // Listed twice in one entry, the device still gets the release once; no expiry means none.
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].product_version, "26.4");
    assert_eq!(found[0].expiration_date, None);
}
