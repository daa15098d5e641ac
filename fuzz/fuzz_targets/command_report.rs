//! A command report as a device sends it to `/mdm/connect`. No input panics; a report that
//! parses is written back and parses again, naming the same device.
#![no_main]

use libfuzzer_sys::fuzz_target;
use updraft_ddm::checkin::CommandReport;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = CommandReport::parse(data) {
        let again = CommandReport::parse(&report.to_xml())
            .unwrap_or_else(|error| panic!("a parsed report does not read back: {error}"));
        assert_eq!(again.device_id(), report.device_id());
    }
});
