//! Desktop notices from alerts, grouped: one notice per kind of alert in a batch, so that 300
//! failures arriving at once are one notice that counts them, not 300.

use serde::Serialize;
use std::collections::BTreeMap;

use updraft_engine::AlertKind;
use updraft_store::Alert;

/// One desktop notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// The alert kind it groups.
    pub kind: AlertKind,
    /// How many alerts it stands for.
    pub count: usize,
    /// First line.
    pub summary: String,
    /// The rest.
    pub body: String,
}

/// At most this many distinct reasons are named in a grouped notice.
const REASONS_SHOWN: usize = 3;

/// Groups a batch of alerts into notices, most urgent kind first. `name_of` gives a device's
/// display name from its enrollment id.
pub fn group(alerts: &[Alert], name_of: impl Fn(&str) -> Option<String>) -> Vec<Notice> {
    let mut by_kind: BTreeMap<(u8, AlertKind), Vec<&Alert>> = BTreeMap::new();
    for alert in alerts {
        by_kind
            .entry((urgency(alert.kind), alert.kind))
            .or_default()
            .push(alert);
    }
    by_kind
        .into_iter()
        .map(|((_, kind), alerts)| {
            let device = |alert: &Alert| {
                alert
                    .enrollment_id
                    .as_deref()
                    .map(|id| name_of(id).unwrap_or_else(|| id.to_owned()))
                    .unwrap_or_else(|| "a device".to_owned())
            };
            if let [alert] = alerts.as_slice() {
                let summary = match alert.enrollment_id {
                    Some(_) => format!("{} on {}", title(kind, 1), device(alert)),
                    None => title(kind, 1).to_owned(),
                };
                return Notice {
                    kind,
                    count: 1,
                    summary,
                    body: alert.detail.clone(),
                };
            }
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for alert in &alerts {
                *reasons.entry(alert.detail.as_str()).or_default() += 1;
            }
            let mut reasons: Vec<(&str, usize)> = reasons.into_iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let mut body: Vec<String> = reasons
                .iter()
                .take(REASONS_SHOWN)
                .map(|(reason, count)| match count {
                    1 => (*reason).to_owned(),
                    _ => format!("{count} × {reason}"),
                })
                .collect();
            if reasons.len() > REASONS_SHOWN {
                body.push(format!(
                    "and {} other reasons",
                    reasons.len() - REASONS_SHOWN
                ));
            }
            let summary = if alerts.iter().all(|a| a.enrollment_id.is_none()) {
                format!("{} ({})", title(kind, alerts.len()), alerts.len())
            } else {
                format!("{} on {} devices", title(kind, alerts.len()), alerts.len())
            };
            Notice {
                kind,
                count: alerts.len(),
                summary,
                body: body.join("\n"),
            }
        })
        .collect()
}

fn urgency(kind: AlertKind) -> u8 {
    match kind {
        AlertKind::InstallFailed | AlertKind::RolloutHalted => 0,
        AlertKind::PushCertificateExpiring
        | AlertKind::DeclarationInvalid
        | AlertKind::PushFailed => 1,
        AlertKind::PastDeadline => 2,
        AlertKind::DeviceStuck => 3,
        AlertKind::DeviceStale => 4,
        AlertKind::BootstrapTokenMissing => 5,
        AlertKind::NewRelease | AlertKind::RolloutDrafted => 6,
    }
}

fn title(kind: AlertKind, count: usize) -> &'static str {
    let plural = count > 1;
    match kind {
        AlertKind::InstallFailed if plural => "Installs failed",
        AlertKind::InstallFailed => "Install failed",
        AlertKind::DeclarationInvalid => "Declaration rejected",
        AlertKind::PastDeadline => "Deadline passed, not updated",
        AlertKind::DeviceStuck => "Update stuck",
        AlertKind::DeviceStale => "No status report",
        AlertKind::BootstrapTokenMissing => "No bootstrap token escrowed",
        AlertKind::PushCertificateExpiring => "Push certificate expiring",
        AlertKind::PushFailed if plural => "Pushes failed",
        AlertKind::PushFailed => "Push failed",
        AlertKind::NewRelease if plural => "New releases",
        AlertKind::NewRelease => "New release",
        AlertKind::RolloutHalted if plural => "Rollouts halted",
        AlertKind::RolloutHalted => "Rollout halted",
        AlertKind::RolloutDrafted if plural => "Rollouts drafted by policy",
        AlertKind::RolloutDrafted => "Rollout drafted by policy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: i64, kind: &str, device: &str, detail: &str) -> Alert {
        Alert {
            id,
            rollout_id: Some(1),
            at: "2026-04-12T09:00:00Z".into(),
            kind: kind.parse().unwrap(),
            enrollment_id: Some(device.into()),
            detail: detail.into(),
        }
    }

    #[test]
    fn three_hundred_failures_are_one_notice_that_counts_them_by_reason() {
        let alerts: Vec<Alert> = (0..300)
            .map(|i| {
                let reason = if i % 3 == 0 {
                    "download failed"
                } else {
                    "not enough disk space"
                };
                alert(i, "install_failed", &format!("D{i}"), reason)
            })
            .collect();
        let notices = group(&alerts, |_| None);
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].count, 300);
        assert_eq!(notices[0].summary, "Installs failed on 300 devices");
        assert_eq!(
            notices[0].body,
            "200 × not enough disk space\n100 × download failed"
        );
    }

    #[test]
    fn a_single_failure_names_the_device_and_apples_reason() {
        let notices = group(
            &[alert(
                1,
                "install_failed",
                "UDID-1",
                "SoftwareUpdateFailureReasonDownload",
            )],
            |id| (id == "UDID-1").then(|| "Ada's MacBook Pro".to_owned()),
        );
        assert_eq!(notices[0].summary, "Install failed on Ada's MacBook Pro");
        assert_eq!(notices[0].body, "SoftwareUpdateFailureReasonDownload");
    }

    #[test]
    fn kinds_stay_apart_and_failures_come_first() {
        let notices = group(
            &[
                alert(
                    1,
                    "device_stale",
                    "A",
                    "no status report since 2026-04-10T09:00:00Z",
                ),
                alert(2, "install_failed", "B", "download failed"),
                alert(3, "install_failed", "C", "download failed"),
            ],
            |_| None,
        );
        let kinds: Vec<&str> = notices.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(kinds, ["install_failed", "device_stale"]);
    }
}
