//! Status reports (`StatusReport`) and a device's known status, merged report by report.
//!
//! Schema: apple/device-management `declarative/protocol/statusreport.yaml` and
//! `declarative/status/*.yaml`. A status item's dotted name is a path into the nested
//! `StatusItems` object: `softwareupdate.install-state` arrives as
//! `{"softwareupdate": {"install-state": "..."}}`.

mod codec;
mod items;
mod merge;

pub use codec::*;
pub use items::*;
pub use merge::*;

/// Why a status report cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusReportError {
    /// The body is not JSON, or not of the report's shape.
    #[error("status report is not valid JSON of the StatusReport shape: {0}")]
    Malformed(String),
    /// `StatusItems` is absent or not an object.
    #[error("status report has no StatusItems object")]
    MissingStatusItems,
    /// A known status item does not have the shape Apple's schema gives it.
    #[error("status item {item} is malformed: {reason}")]
    InvalidItem {
        /// The item's dotted name.
        item: String,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::VersionExtra;
    use serde_json::Value;
    use serde_json::json;

    fn report(value: Value) -> StatusReport {
        StatusReport::parse(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn nested_tree_becomes_typed_items() {
        let parsed = report(json!({
            "StatusItems": {
                "softwareupdate": {
                    "install-state": "downloading",
                    "pending-version": {"os-version": "26.4", "build-version": "25E246",
                                        "target-local-date-time": "2026-05-01T09:00:00"},
                    "failure-reason": {"count": 0},
                    "device-id": "J314sAP"
                },
                "device": {"operating-system": {"supplemental": {"extra-version": "a"}}},
                "future": {"thing": {"deep": 3}}
            },
            "Errors": []
        }));
        let mut status = DeviceStatus::default();
        status.apply(&parsed);
        assert_eq!(status.install_state(), Some(&InstallState::Downloading));
        assert_eq!(
            status
                .pending_version()
                .unwrap()
                .target_local_date_time
                .as_deref(),
            Some("2026-05-01T09:00:00")
        );
        assert_eq!(status.device_id(), Some("J314sAP"));
        assert_eq!(
            status.os_supplemental_extra_version(),
            Some(&VersionExtra::parse("(a)"))
        );
        assert_eq!(
            status.get("future.thing.deep").map(StatusItem::to_value),
            Some(json!(3))
        );
    }

    #[test]
    fn empty_objects_are_items_and_non_empty_ones_namespaces() {
        let parsed = report(json!({"StatusItems": {
            "future": {"empty": {}, "list": [1, {"a": null}], "flag": false},
            "bare": {}}}));
        let mut items: Vec<(String, Value)> = parsed
            .items
            .iter()
            .map(|item| (item.name().to_owned(), item.to_value()))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            items,
            [
                ("bare".to_owned(), json!({})),
                ("future.empty".to_owned(), json!({})),
                ("future.flag".to_owned(), json!(false)),
                ("future.list".to_owned(), json!([1, {"a": null}])),
            ]
        );
    }

    #[test]
    fn unknown_install_state_is_kept_verbatim() {
        let parsed =
            report(json!({"StatusItems": {"softwareupdate": {"install-state": "paused"}}}));
        assert_eq!(
            parsed.items,
            vec![StatusItem::InstallState(InstallState::Other(
                "paused".into()
            ))]
        );
        assert_eq!(
            parsed.to_json()["StatusItems"]["softwareupdate"]["install-state"],
            json!("paused")
        );
    }

    #[test]
    fn known_item_of_the_wrong_shape_names_the_item() {
        let error = StatusReport::parse(
            br#"{"StatusItems":{"softwareupdate":{"failure-reason":{"reason":"x"}}},"Errors":[]}"#,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("softwareupdate.failure-reason"),
            "{error}"
        );
        assert!(error.to_string().contains("count"), "{error}");
    }

    #[test]
    fn incremental_reports_update_only_what_they_carry() {
        let mut status = DeviceStatus::default();
        status.apply(&report(json!({"StatusItems": {
            "softwareupdate": {"install-state": "downloading", "failure-reason": {"count": 1, "reason": "disk"}},
            "device": {"operating-system": {"version": "26.3"}}}})));
        status.apply(&report(json!({"StatusItems": {
            "softwareupdate": {"install-state": "prepared", "failure-reason": {"count": 0}}}})));
        assert_eq!(status.install_state(), Some(&InstallState::Prepared));
        assert_eq!(status.os_version(), Some("26.3"));
        assert_eq!(status.failure_reason().unwrap().reason, None);
        status.apply(&report(json!({"FullReport": true, "StatusItems": {
            "softwareupdate": {"install-state": "none"}}})));
        assert_eq!(status.os_version(), None);
        assert_eq!(status.install_state(), Some(&InstallState::None));
    }

    #[test]
    fn absorbing_tells_whether_anything_changed() {
        let full = json!({"FullReport": true, "StatusItems": {
            "softwareupdate": {"install-state": "none"},
            "device": {"operating-system": {"version": "26.3", "build-version": "25D125"}}}});
        let mut status = DeviceStatus::default();
        assert!(status.absorb(report(full.clone())), "a first report");
        assert!(
            !status.absorb(report(full.clone())),
            "the daily full report, unchanged"
        );
        assert!(!status.absorb(report(
            json!({"StatusItems": {"softwareupdate": {"install-state": "none"}}})
        )));
        assert!(status.absorb(report(
            json!({"StatusItems": {"softwareupdate": {"install-state": "waiting"}}})
        )));
        // A full report that leaves an item out removes it.
        let mut fewer = full.clone();
        fewer["StatusItems"]["device"]["operating-system"]
            .as_object_mut()
            .unwrap()
            .remove("build-version");
        assert!(status.absorb(report(fewer.clone())));
        assert!(!status.absorb(report(fewer)));
        let error = json!({"StatusItems": {}, "Errors": [
            {"StatusItem": "softwareupdate.device-id", "Reasons": [{"Code": "Error.NotSupported"}]}]});
        assert!(status.absorb(report(error.clone())), "a new error");
        assert!(!status.absorb(report(error)), "the same error again");
    }

    #[test]
    fn incremental_array_items_merge_by_identifier() {
        let mut status = DeviceStatus::default();
        status.apply(&report(json!({"StatusItems": {"app": {"managed": {"list": [
            {"identifier": "a", "state": "installed"}, {"identifier": "b", "state": "installed"}]}}}})));
        status.apply(&report(
            json!({"StatusItems": {"app": {"managed": {"list": [
            {"identifier": "a", "_removed": true}, {"identifier": "c", "state": "queued"}]}}}}),
        ));
        let list = status.get("app.managed.list").unwrap().to_value();
        let ids: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["identifier"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn errors_clear_when_the_item_arrives() {
        let mut status = DeviceStatus::default();
        status.apply(&report(json!({"StatusItems": {}, "Errors": [
            {"StatusItem": "softwareupdate.device-id", "Reasons": [{"Code": "Error.NotSupported"}]}]})));
        assert_eq!(status.errors().count(), 1);
        status.apply(&report(
            json!({"StatusItems": {"softwareupdate": {"device-id": "J413AP"}}}),
        ));
        assert_eq!(status.errors().count(), 0);
    }

    #[test]
    fn missing_status_items_is_an_error() {
        assert_eq!(
            StatusReport::parse(br#"{"Errors":[]}"#),
            Err(StatusReportError::MissingStatusItems)
        );
        assert!(matches!(
            StatusReport::parse(b"{not json"),
            Err(StatusReportError::Malformed(_))
        ));
    }
}
