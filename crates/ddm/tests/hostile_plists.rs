//! Property lists built to hurt a parser: each is refused with a reason, never a crash.

use updraft_ddm::checkin::{CheckinError, CheckinMessage, CommandReport, MAX_PLIST_DEPTH};
use updraft_ddm::hostile::{nested_binary, nested_xml, shared_binary};

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
