//! A declaration that names no build (a release of several builds, each fitting the device) still
//! lands the device on a real build: the one Apple's service offers it for the version.

use updraft_feed::{BUNDLED_FEED, LookupResponse};
use updraft_sim::SoftwareCatalog;

#[test]
fn a_version_installs_as_the_lowest_build_the_feed_lists_for_the_device() {
    let feed = LookupResponse::parse(BUNDLED_FEED.as_bytes()).expect("bundled feed");
    let catalog = SoftwareCatalog::from_feed(&feed);
    // iOS 26.4.1 is listed as 23E254 and 23E6254 for the same devices.
    assert_eq!(catalog.build_for("iPhone16,2", "26.4.1"), Some("23E254"));
    assert_eq!(catalog.build_for("iphone16,2", "26.4.1.0"), Some("23E254"));
    assert_eq!(catalog.build_for("J314sAP", "26.4.1"), Some("25E253"));
    assert_eq!(catalog.build_for("iPhone16,2", "99.0"), None);
    assert_eq!(catalog.build_for("NoSuchDevice1,1", "26.4.1"), None);
}
