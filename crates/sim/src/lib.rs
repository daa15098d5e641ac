//! A fleet of simulated Apple devices. Each speaks only HTTP to the DDM server, as a real device
//! does: it enrolls (Authenticate, TokenUpdate, SetBootstrapToken), answers pushes on the command
//! connection, syncs declarations, reports status items per Apple's schema, and moves an enforced
//! update through waiting, downloading, prepared and installing to a restart into the new version
//! at its deadline in its own time zone, or earlier if its user accepts. Faults come by seed.
//! Time is the injected clock, so a rollout of weeks runs in seconds and the same seed repeats.
#![deny(missing_docs)]

pub mod device;
pub mod fleet;
pub mod identity;

pub use device::{DeviceSpec, Fault, SharedDeclarations, SimDevice, SoftwareCatalog};
pub use fleet::{DeviceOutcome, Endpoints, Fleet, FleetPlan, generate};
pub use identity::{DeviceIdentity, IdentityError, IdentityIssuer};
