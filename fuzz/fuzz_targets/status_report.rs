//! A status report as a device sends it (DDM `status` endpoint). No input panics; a report
//! that parses is merged into a device's status within the server's bounds, and the merged
//! status the server stores reads back (a restart must not lose a device's status).
#![no_main]

use libfuzzer_sys::fuzz_target;
use updraft_ddm::{DeviceStatus, StatusBounds, StatusReport};

fuzz_target!(|data: &[u8]| {
    let Ok(report) = StatusReport::parse(data) else {
        return;
    };
    let mut status = DeviceStatus::default();
    status.absorb_within(report, &StatusBounds::default());
    let stored = status.to_full_report_json();
    let reread = StatusReport::parse(stored.as_bytes())
        .unwrap_or_else(|error| panic!("the merged status does not read back: {error}\n{stored}"));
    let mut restarted = DeviceStatus::default();
    restarted.absorb_within(reread, &StatusBounds::default());
    assert_eq!(
        restarted.to_full_report_json(),
        stored,
        "the merged status changes across a restart"
    );
});
