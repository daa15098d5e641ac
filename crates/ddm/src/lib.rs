//! Apple's Declarative Device Management (DDM) and MDM check-in wire formats.
//!
//! Pure: this crate does no I/O, reads no clock (callers pass `now`), spawns nothing and is not
//! async. It parses and builds exactly what Apple's schemas describe, and every parser returns a
//! precise error instead of panicking on bad input.
//!
//! - [`declaration`]: declarations and the payloads Updraft builds.
//! - [`sync`]: the `tokens` and `declaration-items` answers, with deterministic tokens.
//! - [`status`]: status reports and the merged status of a device.
//! - [`checkin`]: MDM check-in property lists and the `DeclarativeManagement` command.
//! - [`version`]: OS versions, supplemental letters and build numbers, with Apple's ordering.
#![deny(missing_docs)]

pub mod checkin;
pub mod declaration;
pub mod hostile;
pub mod status;
pub mod sync;
pub mod version;

pub use checkin::{CheckinError, CheckinMessage, DdmEndpoint};
pub use declaration::{
    ActivationSimple, Declaration, DeclarationCategory, DeclarationError, DeclarationPayload,
    SoftwareUpdateEnforcementSpecific, StatusSubscriptions, TargetLocalDateTime,
};
pub use status::{
    Absorbed, DeviceStatus, InstallState, StatusBounds, StatusItem, StatusReport, StatusReportError,
};
pub use sync::{DeclarationItemsResponse, SyncTimestamp, TokensResponse};
pub use version::{OsVersion, VersionExtra, compare_builds};
