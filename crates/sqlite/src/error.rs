//! A database failure that says what was being done, whichever driver failed.

/// A database failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {cause}")]
pub struct Error {
    /// What was being done ("reading timelines").
    pub context: &'static str,
    /// Why it failed.
    #[source]
    pub cause: Cause,
}

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// sqlx (pools, migrations) failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// rusqlite (the connections of [`crate::Connections`]) failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A connection's thread could not take the work, or did not finish it.
    #[error(transparent)]
    Stopped(#[from] crate::Stopped),
    /// Connections could not be opened.
    #[error(transparent)]
    Open(#[from] crate::OpenError),
    /// The failure of something shared by several callers (a batch of writes, a writer that
    /// stopped), told to each of them.
    #[error("{0}")]
    Shared(String),
}

impl Error {
    /// A failure shared by several callers, told to each of them.
    pub fn shared(context: &'static str, reason: impl ToString) -> Self {
        Self {
            context,
            cause: Cause::Shared(reason.to_string()),
        }
    }
}

/// Names what was being done when a driver's call failed: `.context("reading alerts")?`.
pub trait Context<T> {
    /// The error, with what was being done.
    fn context(self, context: &'static str) -> Result<T, Error>;
}

impl<T, E: Into<Cause>> Context<T> for Result<T, E> {
    fn context(self, context: &'static str) -> Result<T, Error> {
        self.map_err(|cause| Error {
            context,
            cause: cause.into(),
        })
    }
}
