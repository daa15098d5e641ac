//! SOFA's feeds (tests/fixtures/sofa, truncated captures of 2026-08-22) against the lookup
//! service's releases.

use std::collections::BTreeSet;
use std::path::Path;

use updraft_feed::sofa::{SofaFeed, Vulnerabilities};
use updraft_feed::{FeedBuild, FeedError, FeedRelease, LookupResponse, Platform, Window};

fn sofa(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/sofa")
            .join(name),
    )
    .unwrap()
}

/// A release as the lookup service listed it on 2026-08-22 (SOFA's `Source: gdmf` entries of
/// that day give the same version and build).
fn listed(platform: Platform, version: &str, builds: &[&str]) -> FeedRelease {
    let window = Window {
        posting_date: "2026-08-17".parse().unwrap(),
        expiration_date: None,
    };
    FeedRelease {
        platform,
        product_version: version.into(),
        product_version_extra: None,
        builds: builds
            .iter()
            .map(|build| FeedBuild {
                build: Some((*build).into()),
                prerequisite_build: None,
                supported_devices: BTreeSet::new(),
                window,
            })
            .collect(),
        window,
        management_only: false,
    }
}

#[test]
fn a_release_sofa_agrees_on_gets_its_cve_counts_and_exploited_ones() {
    let feed =
        SofaFeed::parse(&sofa("macos_data_feed_v2.truncated.json"), Platform::MacOs).unwrap();
    assert_eq!(
        feed.vulnerabilities(&listed(Platform::MacOs, "26.6.2", &["25G83"])),
        Vulnerabilities::Known {
            cves: 28,
            exploited: vec![],
            security_info: Some("https://support.apple.com/en-us/148281".into()),
        }
    );
    let Vulnerabilities::Known {
        cves, exploited, ..
    } = feed.vulnerabilities(&listed(Platform::MacOs, "15.7.9", &["24G830"]))
    else {
        panic!("15.7.9 is listed");
    };
    assert_eq!((cves, exploited), (1, vec!["CVE-2026-65400".to_owned()]));
}

#[test]
fn a_sofa_entry_that_disagrees_with_the_lookup_service_is_shown_never_used() {
    let feed =
        SofaFeed::parse(&sofa("macos_data_feed_v2.truncated.json"), Platform::MacOs).unwrap();
    assert_eq!(
        feed.vulnerabilities(&listed(Platform::MacOs, "26.6.2", &["25G84"])),
        Vulnerabilities::Mismatch(
            "SOFA lists macOS 26.6.2 as build 25G83, the lookup service as 25G84; its CVEs are not used"
                .into()
        )
    );
    // As once happened: a macOS entry carrying an iOS release's name (and CVEs).
    let text = String::from_utf8(sofa("macos_data_feed_v2.truncated.json")).unwrap();
    let swapped = text.replace(
        "\"ProductName\": \"macOS\"",
        "\"ProductName\": \"iOS and iPadOS\"",
    );
    assert_ne!(swapped, text, "the capture names its product");
    let feed = SofaFeed::parse(swapped.as_bytes(), Platform::MacOs).unwrap();
    assert_eq!(
        feed.vulnerabilities(&listed(Platform::MacOs, "26.6.2", &["25G83"])),
        Vulnerabilities::Mismatch(
            "SOFA's macOS feed gives macOS 26.6.2 the product name \"iOS and iPadOS\"; its CVEs are not used"
                .into()
        )
    );
}

#[test]
fn an_ios_feed_without_builds_is_matched_on_its_version_and_name() {
    let feed = SofaFeed::parse(&sofa("ios_data_feed_v1.truncated.json"), Platform::Ios).unwrap();
    let Vulnerabilities::Known { cves, .. } =
        feed.vulnerabilities(&listed(Platform::Ios, "26.6.1", &["23G80"]))
    else {
        panic!("iOS 26.6.1 is listed without a build, so the version decides");
    };
    assert_eq!(cves, 29);
    assert_eq!(
        feed.vulnerabilities(&listed(Platform::MacOs, "26.6.1", &["25G76"])),
        Vulnerabilities::NotListed,
        "an iOS feed says nothing of macOS"
    );
}

#[test]
fn releases_sofa_does_not_list_are_not_listed_not_guessed() {
    let feed =
        SofaFeed::parse(&sofa("macos_data_feed_v2.truncated.json"), Platform::MacOs).unwrap();
    let bundled = LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes()).unwrap();
    for release in updraft_feed::releases::releases(&bundled) {
        assert_eq!(
            feed.vulnerabilities(&release),
            Vulnerabilities::NotListed,
            "{} {}",
            release.platform,
            release.product_version
        );
    }
}

#[test]
fn a_broken_sofa_feed_is_an_error_naming_where() {
    let error = SofaFeed::parse(
        br#"{"OSVersions": [{"SecurityReleases": [{"ProductVersion": 26}]}]}"#,
        Platform::MacOs,
    )
    .unwrap_err();
    let FeedError::Malformed { path, reason } = error else {
        panic!("{error:?}");
    };
    assert_eq!(
        path,
        "SOFA feed OSVersions[0].SecurityReleases[0].ProductVersion"
    );
    assert!(reason.contains("expected a string"), "{reason}");
}

#[test]
fn the_bundled_feeds_speak_of_the_bundled_captures_releases() {
    let feeds = updraft_feed::sofa::bundled().unwrap();
    let bundled = LookupResponse::parse(updraft_feed::BUNDLED_FEED.as_bytes()).unwrap();
    let releases = updraft_feed::releases::releases(&bundled);
    let of = |platform: Platform, version: &str| {
        let release = releases
            .iter()
            .find(|r| r.platform == platform && r.product_version == version && !r.is_bsi())
            .unwrap_or_else(|| panic!("{platform} {version} in the capture"));
        updraft_feed::sofa::vulnerabilities_of(&feeds, release)
    };
    let Vulnerabilities::Known {
        cves, exploited, ..
    } = of(Platform::MacOs, "26.3")
    else {
        panic!("macOS 26.3 is in SOFA");
    };
    assert_eq!(cves, 67);
    assert_eq!(
        exploited,
        ["CVE-2025-14174", "CVE-2025-43529", "CVE-2026-20700"]
    );
    let Vulnerabilities::Known { cves, .. } = of(Platform::Ios, "26.4") else {
        panic!("iOS 26.4 is in SOFA");
    };
    assert_eq!(cves, 44);
}
