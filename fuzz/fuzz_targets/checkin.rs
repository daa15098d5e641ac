//! A check-in message as a device sends it to `/mdm/checkin` (XML or binary plist, any bytes).
//! No input panics; a message that parses is written back and parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use updraft_ddm::checkin::CheckinMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = CheckinMessage::parse(data) {
        let written = message.to_xml();
        if let Err(error) = CheckinMessage::parse(&written) {
            panic!("a parsed check-in does not read back: {error}");
        }
    }
});
