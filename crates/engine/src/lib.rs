//! The rules of software-update enforcement, pure: no I/O, no clock (`now` is a parameter), no
//! async. [`plan`] decides which devices a release applies to and builds the declarations;
//! [`machine`] moves each device through Apple's phases from what its status reports say.
#![deny(missing_docs)]

pub mod compliance;
pub mod kinds;
pub mod machine;
pub mod plan;
pub mod policy;
pub mod prompts;
pub mod rings;

pub use kinds::{AlertKind, DraftState, EventKind, Lag, PolicyAction, UnknownName, Weekends};
pub use machine::{
    Effect, Enforcement, Event, Observation, Phase, Push, RolloutState, Rules, step,
};
pub use plan::{Decision, DeviceFacts, DeviceIdSource, Release, ReleaseBuild, decide};
/// A record's last install-state is the device's own word, as `ddm` reads it.
pub use updraft_ddm::InstallState;

#[cfg(test)]
mod tests;
