//! Each screen's answers, built from the store and the caches: one file per screen.

mod activity;
mod compliance;
mod dashboard;
mod devices;
pub mod policies;
mod rollouts;
