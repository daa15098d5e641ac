//! SQLite as every database of Updraft's uses it: the settings both drivers open it with, the
//! checkpointer that keeps the WAL small beside the writers, rusqlite connections on threads of
//! their own for whole units of work, and errors that say what was being done.
//!
//! The console's store and the server's database both run on sqlx (migrations, the many small
//! queries) and on rusqlite (the hot paths: a whole transaction per hand-off); see
//! `ARCHITECTURE.md` for why two drivers.
#![deny(missing_docs)]

mod checkpoint;
mod connections;
mod error;
mod settings;

pub use checkpoint::{Checkpointer, Schedule};
pub use connections::{Connections, OpenError, Stopped};
pub use error::{Cause, Context, Error};
pub use settings::{Access, BUSY_TIMEOUT, open, pool_options, timestamp};
