//! Property lists built to hurt a parser: each is refused with a reason, never a crash.

use updraft_ddm::checkin::{CheckinError, CheckinMessage, CommandReport, MAX_PLIST_DEPTH};

fn nested_xml(depth: usize) -> Vec<u8> {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0">"#);
    xml.push_str("<dict><key>MessageType</key><string>Authenticate</string><key>x</key>");
    xml.push_str(&"<array>".repeat(depth));
    xml.push_str(&"</array>".repeat(depth));
    xml.push_str("</dict></plist>");
    xml.into_bytes()
}

/// A binary plist of `depth` arrays, each holding the next: 5 bytes an object.
fn nested_binary(depth: usize) -> Vec<u8> {
    let count = depth;
    let mut out = b"bplist00".to_vec();
    let mut offsets = Vec::with_capacity(count);
    for index in 0..count {
        offsets.push(out.len() as u32);
        if index + 1 < count {
            out.push(0xA1);
            out.extend_from_slice(&((index + 1) as u32).to_be_bytes());
        } else {
            out.push(0xA0);
        }
    }
    let table = out.len() as u64;
    for offset in offsets {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&[4, 4]);
    out.extend_from_slice(&(count as u64).to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&table.to_be_bytes());
    out
}

/// A binary plist of `levels` arrays, each holding the next twice: 2^levels elements in
/// a few hundred bytes.
fn shared_binary(levels: usize) -> Vec<u8> {
    let count = levels + 1;
    let mut out = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for index in 0..count {
        offsets.push(out.len() as u32);
        if index + 1 < count {
            out.push(0xA2);
            let next = ((index + 1) as u32).to_be_bytes();
            out.extend_from_slice(&next);
            out.extend_from_slice(&next);
        } else {
            out.push(0xA0);
        }
    }
    let table = out.len() as u64;
    for offset in offsets {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&[4, 4]);
    out.extend_from_slice(&(count as u64).to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&table.to_be_bytes());
    out
}

#[test]
fn a_plist_nested_100000_levels_is_refused_as_too_deep_in_xml_and_binary() {
    for body in [nested_xml(100_000), nested_binary(100_000)] {
        assert_eq!(
            CheckinMessage::parse(&body),
            Err(CheckinError::TooDeep(MAX_PLIST_DEPTH))
        );
        assert_eq!(
            CommandReport::parse(&body).unwrap_err(),
            CheckinError::TooDeep(MAX_PLIST_DEPTH)
        );
    }
}

#[test]
fn nesting_up_to_the_bound_is_read() {
    let body = nested_binary(MAX_PLIST_DEPTH);
    assert!(updraft_ddm::checkin::check_plist_shape(&body).is_ok());
    let too_deep = nested_binary(MAX_PLIST_DEPTH + 1);
    assert_eq!(
        updraft_ddm::checkin::check_plist_shape(&too_deep),
        Err(CheckinError::TooDeep(MAX_PLIST_DEPTH))
    );
    // The XML message is a dictionary around the arrays: one level more.
    let message = nested_xml(MAX_PLIST_DEPTH - 1);
    assert!(!matches!(
        CheckinMessage::parse(&message),
        Err(CheckinError::TooDeep(_))
    ));
}

#[test]
fn a_binary_plist_that_reuses_its_collections_is_refused_before_it_expands() {
    let body = shared_binary(40);
    assert!(body.len() < 1024);
    assert!(matches!(
        CheckinMessage::parse(&body),
        Err(CheckinError::TooManyElements(_))
    ));
}

#[test]
fn garbage_is_not_a_plist() {
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert!(matches!(
        CheckinMessage::parse(&garbage),
        Err(CheckinError::NotAPlist(_))
    ));
    let mut truncated = nested_binary(10);
    truncated.truncate(30);
    assert!(CheckinMessage::parse(&truncated).is_err());
}
