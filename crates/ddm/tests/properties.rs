//! Properties: no parser panics on arbitrary input, tokens are deterministic, and the status
//! merge obeys the incremental/full rule.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use updraft_ddm::checkin::{CheckinMessage, CommandReport, CommandStatus, QueryResponses};
use updraft_ddm::declaration::{ActivationSimple, StatusSubscriptions};
use updraft_ddm::{
    Declaration, DeclarationItemsResponse, DeviceStatus, SoftwareUpdateEnforcementSpecific,
    StatusReport, TargetLocalDateTime,
};

const ITEMS: &[&str] = &[
    "softwareupdate.install-state",
    "device.operating-system.version",
    "device.operating-system.build-version",
    "softwareupdate.device-id",
    "future.item",
];

fn value_for(name: &str, n: u8) -> Value {
    match name {
        "softwareupdate.install-state" => json!(
            [
                "none",
                "waiting",
                "downloading",
                "prepared",
                "installing",
                "failed"
            ][n as usize % 6]
        ),
        "future.item" => json!(n),
        _ => json!(format!("v{n}")),
    }
}

fn report_json(items: &[(usize, u8)], full: bool) -> Value {
    let mut report = StatusReport::default();
    for (index, n) in items {
        let name = ITEMS[*index % ITEMS.len()];
        report
            .items
            .push(updraft_ddm::StatusItem::from_value(name, value_for(name, *n)).unwrap());
    }
    report.full_report = full;
    report.to_json()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z() .-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z-]{1,8}|softwareupdate|install-state|failure-reason|management|declarations|device|operating-system|supplemental|extra-version", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn status_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = StatusReport::parse(&bytes);
    }

    #[test]
    fn status_parser_never_panics_on_json_shapes(tree in json_value(), full in any::<bool>()) {
        let body = json!({"StatusItems": tree, "Errors": [], "FullReport": full});
        if let Ok(report) = StatusReport::parse(body.to_string().as_bytes()) {
            // Whatever it accepts it can write back and read again identically.
            let again = StatusReport::parse(report.to_json().to_string().as_bytes()).unwrap();
            prop_assert_eq!(again.items, report.items);
        }
    }

    #[test]
    fn checkin_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = CheckinMessage::parse(&bytes);
    }

    #[test]
    fn checkin_parser_never_panics_on_plist_shaped_input(message_type in "Authenticate|TokenUpdate|CheckOut|DeclarativeManagement|SetBootstrapToken|GetBootstrapToken|X", key in "[A-Za-z]{1,12}", value in "[a-z0-9<>&]{0,12}") {
        let body = format!(r#"<?xml version="1.0"?><plist version="1.0"><dict><key>MessageType</key><string>{message_type}</string><key>UDID</key><string>u</string><key>{key}</key><data>{value}</data></dict></plist>"#);
        let _ = CheckinMessage::parse(body.as_bytes());
    }

    #[test]
    fn command_report_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = CommandReport::parse(&bytes);
    }

    /// What the simulator writes, the server reads back field for field; a report that names
    /// no enrollment is refused rather than filed under an empty id.
    #[test]
    fn a_command_report_reads_back_as_it_was_written(
        udid in proptest::option::of("[A-Z0-9-]{1,12}"),
        enrollment_id in proptest::option::of("[a-z0-9-]{1,12}"),
        user_id in proptest::option::of("[0-9]{1,4}"),
        status in prop_oneof![
            Just(CommandStatus::Idle),
            Just(CommandStatus::Acknowledged),
            Just(CommandStatus::Error),
            Just(CommandStatus::CommandFormatError),
            Just(CommandStatus::NotNow),
        ],
        command_uuid in proptest::option::of("[a-f0-9-]{1,36}"),
        answers in proptest::option::of((proptest::option::of(".{0,20}"), proptest::option::of("[A-Za-z/_]{1,20}"))),
    ) {
        let report = CommandReport {
            udid,
            enrollment_id,
            user_id,
            status,
            command_uuid,
            query_responses: answers.map(|(device_name, time_zone)| QueryResponses { device_name, time_zone }),
        };
        match CommandReport::parse(&report.to_xml()) {
            Ok(read) => {
                prop_assert_eq!(&read, &report);
                prop_assert_eq!(read.status.as_str(), format!("{:?}", report.status));
            }
            Err(error) => {
                prop_assert!(report.udid.is_none() && report.enrollment_id.is_none(), "{}", error);
            }
        }
    }

    #[test]
    fn declaration_parser_never_panics(payload in json_value(), kind in "[a-z.]{0,40}", id in "[a-z]{0,70}") {
        let body = json!({"Type": kind, "Identifier": id, "ServerToken": "t", "Payload": payload});
        if let Ok(declaration) = serde_json::from_value::<Declaration>(body) {
            let _ = declaration.validate();
            let _ = declaration.payload_as::<SoftwareUpdateEnforcementSpecific>();
        }
    }

    #[test]
    fn target_local_date_time_never_panics(text in "[0-9T:+Z.-]{0,25}") {
        if let Ok(parsed) = TargetLocalDateTime::parse(&text) {
            prop_assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn tokens_do_not_depend_on_storage_order(
        ids in prop::collection::btree_set("[a-z]{1,10}", 1..8),
        seed in any::<u64>(),
    ) {
        let mut declarations: Vec<Declaration> = ids.iter().map(|id| {
            Declaration::new(id.clone(), &StatusSubscriptions::to_items([id.as_str()])).unwrap()
        }).collect();
        declarations.push(Declaration::new("act", &ActivationSimple {
            standard_configurations: ids.iter().cloned().collect(), predicate: None,
        }).unwrap());
        let first = DeclarationItemsResponse::from_declarations(&declarations).unwrap();
        // A deterministic shuffle driven by the seed.
        let mut state = seed | 1;
        for i in (1..declarations.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            declarations.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let second = DeclarationItemsResponse::from_declarations(&declarations).unwrap();
        prop_assert_eq!(&first, &second);
        prop_assert!(first.declarations_token.len() <= 256);
    }

    #[test]
    fn a_merged_status_written_as_a_full_report_reads_back_the_same(tree in json_value()) {
        let body = json!({"StatusItems": tree, "Errors": [{"StatusItem": "softwareupdate.device-id", "Reasons": [{"Code": "Error.NotSupported"}]}]});
        if let Ok(report) = StatusReport::parse(body.to_string().as_bytes()) {
            let mut status = DeviceStatus::default();
            status.apply(&report);
            let mut again = DeviceStatus::default();
            again.apply(&StatusReport::parse(status.to_full_report_json().as_bytes()).unwrap());
            prop_assert_eq!(again, status);
        }
    }

    #[test]
    fn merge_keeps_the_last_value_of_each_item_since_the_last_full_report(
        reports in prop::collection::vec((prop::collection::vec((0usize..5, any::<u8>()), 0..5), prop::bool::weighted(0.2)), 1..12)
    ) {
        let mut status = DeviceStatus::default();
        let mut model: BTreeMap<&str, Value> = BTreeMap::new();
        for (items, full) in &reports {
            let body = report_json(items, *full);
            status.apply(&StatusReport::parse(body.to_string().as_bytes()).unwrap());
            if *full { model.clear(); }
            for (index, n) in items {
                let name = ITEMS[*index % ITEMS.len()];
                model.insert(name, value_for(name, *n));
            }
        }
        let actual: BTreeMap<&str, Value> = status.items().map(|item| (item.name(), item.to_value())).collect();
        prop_assert_eq!(actual, model);
    }
}
