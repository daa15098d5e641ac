//! The domain's closed sets that are stored and shown by name: what a timeline entry or an
//! alert records, and the rollout's state. Each is stored as its snake_case name and sent to the UI
//! the same way (`ui/src/lib/bindings.ts`), where a label table keyed by the generated type must
//! name every kind.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(text: &str) -> Result<Self, UnknownName> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownName(text.to_owned())),
                }
            }
        }
    };
}

/// A stored name this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

closed_set! {
    /// What a timeline entry records.
    EventKind {
        /// The console first saw the device.
        Enrolled = "enrolled",
        /// A rollout planned the device's update.
        Planned = "planned",
        /// A rollout left the device out, and why.
        Excluded = "excluded",
        /// The enforcement set was assigned on the DDM server.
        DeclarationAssigned = "declaration_assigned",
        /// The enforcement set was unassigned (done, or cancelled).
        DeclarationUnassigned = "declaration_unassigned",
        /// The device was pushed.
        PushSent = "push_sent",
        /// The push was refused.
        PushFailed = "push_failed",
        /// The device's rollout was cancelled.
        RolloutCancelled = "rollout_cancelled",
        /// The declaration was sent again after a failure.
        Retry = "retry",
        /// A Mac with Apple silicon fetched its bootstrap token to install.
        BootstrapTokenRequested = "bootstrap_token_requested",
        /// The device no longer reports the declaration.
        DeclarationRemoved = "declaration_removed",
        /// The device rejected the declaration.
        DeclarationInvalid = "declaration_invalid",
        /// The device reports the declaration active.
        DeclarationActive = "declaration_active",
        /// The device reports a new OS version.
        OsUpdated = "os_updated",
        /// `softwareupdate.install-state` changed.
        InstallState = "install_state",
        /// The install failed, with the device's reason.
        InstallFailed = "install_failed",
        /// The deadline passed and the device is not updated.
        PastDeadline = "past_deadline",
        /// No status report for too long.
        Stale = "stale",
        /// Downloading or installing for too long.
        Stuck = "stuck",
    }
}

closed_set! {
    /// What an alert is about.
    AlertKind {
        /// An install failed.
        InstallFailed = "install_failed",
        /// A device rejected the declaration.
        DeclarationInvalid = "declaration_invalid",
        /// A device passed its deadline without updating.
        PastDeadline = "past_deadline",
        /// A device has been downloading or installing too long.
        DeviceStuck = "device_stuck",
        /// A device has not reported for too long.
        DeviceStale = "device_stale",
        /// A Mac with Apple silicon has no bootstrap token escrowed.
        BootstrapTokenMissing = "bootstrap_token_missing",
        /// The server's push certificate expires soon.
        PushCertificateExpiring = "push_certificate_expiring",
        /// The server stored a change but could not push the devices.
        PushFailed = "push_failed",
        /// The lookup service lists a new release that applies to the fleet.
        NewRelease = "new_release",
        /// A ring failed its gate: the rings after it wait for an admin.
        RolloutHalted = "rollout_halted",
        /// A release policy drafted (or started) a rollout of a new release.
        RolloutDrafted = "rollout_drafted",
    }
}

closed_set! {
    /// A rollout's state, as the admin sets it (whether every device is done is the records' to say).
    RolloutState {
        /// Devices are planned and assigned as they report.
        Active = "active",
        /// Devices not yet assigned wait; assigned ones still install at their deadline.
        Paused = "paused",
        /// Everything it assigned is unassigned; it never runs again.
        Cancelled = "cancelled",
        /// A ring waiting for the ring before it to pass its gate: nothing is assigned yet.
        Gated = "gated",
        /// The ring before failed its gate; nothing is assigned until an admin promotes it.
        Halted = "halted",
    }
}

impl RolloutState {
    /// Whether devices still move in it (planned, assigned, followed).
    pub fn is_open(self) -> bool {
        self != Self::Cancelled
    }
}

closed_set! {
    /// Where a ring's weekend deadline goes.
    #[derive(Default)]
    Weekends {
        /// It stays on the weekend.
        #[default]
        Allowed = "allowed",
        /// To the Monday after.
        NextMonday = "next_monday",
        /// To the Friday before.
        FridayBefore = "friday_before",
    }
}

closed_set! {
    /// What a release policy does when a release appears.
    PolicyAction {
        /// Drafts the rollout for an admin to confirm in the wizard.
        Draft = "draft",
        /// Starts the rollout at once.
        Start = "start",
    }
}

closed_set! {
    /// What became of a rollout a policy drafted.
    DraftState {
        /// Waits for an admin.
        Drafted = "drafted",
        /// Started, by the admin or by the policy.
        Started = "started",
        /// The admin set it aside; the policy does not draft that release again.
        Dismissed = "dismissed",
    }
}

closed_set! {
    /// Why a device does not run a release yet, as the compliance report says it.
    Lag {
        /// Held back by an admin.
        OnHold = "on_hold",
        /// The install failed, or the device rejected the declaration.
        Failed = "failed",
        /// The rollout left it out (unsupported, already current through another build...).
        Excluded = "excluded",
        /// No status report for too long.
        Silent = "silent",
        /// Its deadline passed and it has not updated.
        PastDeadline = "past_deadline",
        /// On its way: planned, downloading, waiting for its deadline.
        InProgress = "in_progress",
        /// Its ring waits on its gate, or was halted by it: nothing is assigned yet.
        RingWaiting = "ring_waiting",
        /// No rollout of the release covers it.
        NotInRollout = "not_in_rollout",
    }
}

closed_set! {
    /// Where a device is in a rollout.
    Phase {
        /// Not part of the rollout; see the exclusion reason.
        Excluded = "excluded",
        /// The assignment is decided but not yet confirmed by the server.
        Planned = "planned",
        /// The declaration is assigned on the server.
        Assigned = "assigned",
        /// The device was pushed to sync.
        Pushed = "pushed",
        /// The device holds the declaration, active and valid.
        Active = "active",
        /// The device rejected the declaration; see the reasons.
        Invalid = "invalid",
        /// install-state `waiting`.
        Waiting = "waiting",
        /// install-state `downloading`.
        Downloading = "downloading",
        /// install-state `prepared`.
        Prepared = "prepared",
        /// install-state `installing`.
        Installing = "installing",
        /// The install failed; see the reason and count.
        Failed = "failed",
        /// The device reached the target.
        Updated = "updated",
        /// Phase 7 started: the declaration is unassigned and the device pushed.
        Unassigned = "unassigned",
        /// The device confirmed the declaration is gone.
        CleanedUp = "cleaned_up",
        /// The admin cancelled; the declaration was unassigned.
        Cancelled = "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored name is serde's name, so a row and a JSON value of the same kind agree.
    #[test]
    fn every_name_reads_back_and_matches_serde() {
        fn check<T: std::fmt::Debug + PartialEq + FromStr + Serialize + Copy + fmt::Display>(
            all: &[T],
        ) where
            T::Err: std::fmt::Debug,
        {
            for value in all {
                let name = value.to_string();
                assert_eq!(name.parse::<T>().unwrap(), *value);
                assert_eq!(
                    serde_json::to_value(value).unwrap(),
                    serde_json::Value::String(name)
                );
            }
        }
        check(EventKind::ALL);
        check(AlertKind::ALL);
        check(RolloutState::ALL);
        check(Phase::ALL);
        check(Weekends::ALL);
        check(PolicyAction::ALL);
        check(DraftState::ALL);
        check(Lag::ALL);
        assert_eq!(
            "resumed".parse::<RolloutState>(),
            Err(UnknownName("resumed".into()))
        );
    }
}
