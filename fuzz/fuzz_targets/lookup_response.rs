//! A response of Apple's Software Lookup Service (or its saved form). No input panics; a
//! response that parses can be indexed for applicability.
#![no_main]

use libfuzzer_sys::fuzz_target;
use updraft_feed::{FeedIndex, LookupResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = LookupResponse::parse(data) {
        let _ = FeedIndex::new(&response);
    }
    let _ = LookupResponse::parse_saved(data);
});
